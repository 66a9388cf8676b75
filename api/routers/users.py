from __future__ import annotations

from fastapi import APIRouter

from api.deps import ActorDep, ServicesDep
from api.schemas import (
    PROBLEMS,
    AccountChange,
    HistoryEntry,
    NewUser,
    PasswordChange,
    RoleChange,
    SiteChange,
    UserOut,
    UserResult,
)

router = APIRouter(prefix="/users", tags=["users"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 409, 422)})


@router.post("", status_code=201, response_model=UserResult)
def register(body: NewUser, actor: ActorDep, svc: ServicesDep):
    """Register an account (admin). Accounts are never deleted or reused (R22)."""
    return svc.app.register_user(actor, **body.model_dump(), temporary=True)


@router.get("", response_model=list[UserOut])
def register_of_users(actor: ActorDep, svc: ServicesDep):
    """The register of accounts and their current rights (admin, inspector)."""
    return svc.app.list_users(actor)


@router.get("/{user_id}", response_model=UserOut)
def get(user_id: str, actor: ActorDep, svc: ServicesDep):
    return svc.app.get_user(actor, user_id)


@router.get("/{user_id}/history", response_model=list[HistoryEntry])
def history(user_id: str, actor: ActorDep, svc: ServicesDep):
    """The dated history of the account's rights, logins and failed logins (R11, R22)."""
    return svc.app.user_history(actor, user_id)


@router.post("/{user_id}/role", response_model=UserResult)
def change_role(user_id: str, body: RoleChange, actor: ActorDep, svc: ServicesDep):
    return svc.app.change_user_role(actor, user_id, role=body.role, reason=body.reason, expected_version=body.expected_version)


@router.post("/{user_id}/site", response_model=UserResult)
def change_site(user_id: str, body: SiteChange, actor: ActorDep, svc: ServicesDep):
    return svc.app.change_user_site(actor, user_id, site=body.site, reason=body.reason, expected_version=body.expected_version)


@router.post("/{user_id}/deactivation", response_model=UserResult)
def deactivate(user_id: str, body: AccountChange, actor: ActorDep, svc: ServicesDep):
    return svc.app.deactivate_user(actor, user_id, reason=body.reason, expected_version=body.expected_version)


@router.post("/{user_id}/reactivation", response_model=UserResult)
def reactivate(user_id: str, body: AccountChange, actor: ActorDep, svc: ServicesDep):
    return svc.app.reactivate_user(actor, user_id, reason=body.reason, expected_version=body.expected_version)


@router.post("/{user_id}/unlock", response_model=UserResult)
def unlock(user_id: str, body: AccountChange, actor: ActorDep, svc: ServicesDep):
    return svc.app.unlock_user(actor, user_id, reason=body.reason, expected_version=body.expected_version)


@router.post("/{user_id}/password", response_model=UserResult)
def change_password(user_id: str, body: PasswordChange, actor: ActorDep, svc: ServicesDep):
    """Your own password (with ``current_password``), or an administrator's one-time reset of another's
    (with ``reason``). Either ends every session of the account."""
    return svc.app.change_password(actor, user_id, new_password=body.new_password, reason=body.reason,
                                   current_password=body.current_password)
