from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import ActorDep, ServicesDep, TokenDep
from api.schemas import PROBLEMS, OwnPasswordChange, Token, UserOut, UserResult

router = APIRouter(tags=["auth"])

_LOGIN_PROBLEMS = {
    401: PROBLEMS[401],
    403: {**PROBLEMS[403], "description": "Password change required: the password was set by an administrator "
                                          "and can only be used at POST /auth/password"},
    422: PROBLEMS[422],
    429: {**PROBLEMS[401], "description": "Too many failed logins from this address or for this username "
                                          "(Retry-After says when to try again)"},
}


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/auth/token", response_model=Token, responses=_LOGIN_PROBLEMS)
async def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], svc: ServicesDep):
    """OAuth2 password flow. Every login and failed login is audited; 5 failures lock the account. The token
    opens a session that ends after TRIALAUDIT_IDLE_TIMEOUT_SECONDS without a request, at the latest
    TRIALAUDIT_SESSION_MAX_SECONDS after login, at logout, or when the password, role or site changes."""
    user = await run_in_threadpool(svc.app.authenticate, form.username, form.password, client=_client(request))
    access_token = await run_in_threadpool(svc.tokens.issue, str(user.id))
    return {"access_token": access_token, "token_type": "bearer", "expires_in": svc.tokens.ttl_seconds}


@router.post("/auth/logout", status_code=204, responses={401: PROBLEMS[401]})
def logout(token: TokenDep, svc: ServicesDep):
    """End the session of the token this is called with (the token answers 401 from now on)."""
    svc.tokens.logout(token)
    return Response(status_code=204)


@router.post("/auth/password", response_model=UserResult, responses=_LOGIN_PROBLEMS)
def change_own_password(request: Request, body: OwnPasswordChange, svc: ServicesDep):
    """Choose your own password with your current one (no token needed): the only use of a password an
    administrator set. A wrong current password counts as a failed login. Ends every session of the account."""
    return svc.app.change_own_password(body.username, body.current_password, body.new_password,
                                       client=_client(request))


@router.get("/me", response_model=UserOut, responses={401: PROBLEMS[401]})
def me(actor: ActorDep, svc: ServicesDep):
    return svc.app.get_user(actor, actor.user_id)
