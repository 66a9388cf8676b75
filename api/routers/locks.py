"""Visit, participant and study locks (R25, R34): data managers lock and unlock (with a reason); locked
data answers 409 to any entry, correction or signature."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ActorDep, ServicesDep
from api.responses import json_response
from api.schemas import PROBLEMS
from api.signature_schemas import LockRequest, LockResult, UnlockRequest

router = APIRouter(tags=["locks"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 409, 422)})


@router.post("/visits/{visit_id}/lock", response_model=LockResult)
def lock_visit(visit_id: str, actor: ActorDep, svc: ServicesDep, body: LockRequest | None = None):
    return json_response(svc.app.lock_visit(actor, visit_id, reason=(body or LockRequest()).reason))


@router.post("/visits/{visit_id}/unlock", response_model=LockResult)
def unlock_visit(visit_id: str, body: UnlockRequest, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.unlock_visit(actor, visit_id, reason=body.reason))


@router.post("/participants/{participant_id}/lock", response_model=LockResult)
def lock_participant(participant_id: str, actor: ActorDep, svc: ServicesDep, body: LockRequest | None = None):
    """Lock the participant's casebook: every visit and AE of the participant and the participant's own data."""
    return json_response(svc.app.lock_participant(actor, participant_id, reason=(body or LockRequest()).reason))


@router.post("/participants/{participant_id}/unlock", response_model=LockResult)
def unlock_participant(participant_id: str, body: UnlockRequest, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.unlock_participant(actor, participant_id, reason=body.reason))


@router.get("/study/lock", response_model=LockResult)
def study_lock(actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.study_lock_status(actor))


@router.post("/study/lock", response_model=LockResult)
def lock_study(actor: ActorDep, svc: ServicesDep, body: LockRequest | None = None):
    """Lock the whole study (e.g. before final analysis or unblinding)."""
    return json_response(svc.app.lock_study(actor, reason=(body or LockRequest()).reason))


@router.post("/study/unlock", response_model=LockResult)
def unlock_study(body: UnlockRequest, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.unlock_study(actor, reason=body.reason))
