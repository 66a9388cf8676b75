"""Electronic signatures (R27-R31): sign a visit, an AE or a casebook after re-entering the password;
verify signatures; enable signing (identity verification, accountability acknowledgement); and the
"changes after signature or lock" review (R18)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import ActorDep, ServicesDep
from api.responses import json_response
from api.schemas import PROBLEMS
from api.signature_schemas import (
    Acknowledgement,
    CasebookOut,
    CasebookSignRequest,
    EnablementOut,
    EnablementResult,
    IdentityVerification,
    ReviewRow,
    SignatureCheck,
    SignatureResult,
    SignRequest,
)

router = APIRouter(tags=["signatures"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})
SIGN_RESPONSES = {409: {**PROBLEMS[409], "description": "Locked, incomplete, already signed, or signing not enabled (R31)"},
                  401: {**PROBLEMS[401], "description": "No valid token, or the re-entered password is wrong (R28)"}}


@router.post("/visits/{visit_id}/signatures", status_code=201, response_model=SignatureResult, responses=SIGN_RESPONSES)
def sign_visit(visit_id: str, body: SignRequest, actor: ActorDep, svc: ServicesDep):
    """Sign the visit (investigator of the site). The password is checked again; a wrong one signs nothing,
    is recorded and counts towards lockout (R28). The signature keeps the printed name, role, meaning,
    legal statement, UTC time, record id and version, and the hash of the signed content (R27, R29)."""
    return json_response(svc.app.sign_visit(actor, visit_id, meaning=body.meaning, password=body.password,
                                            expected_version=body.expected_version), 201)


@router.get("/visits/{visit_id}/signatures", response_model=list[SignatureCheck])
def verify_visit(visit_id: str, actor: ActorDep, svc: ServicesDep):
    """Every signature of the visit, with its hash recomputed from the stored events (R29)."""
    return json_response(svc.app.verify_signatures(actor, "visit", visit_id))


@router.post("/adverse-events/{ae_id}/signatures", status_code=201, response_model=SignatureResult,
             responses=SIGN_RESPONSES)
def sign_adverse_event(ae_id: str, body: SignRequest, actor: ActorDep, svc: ServicesDep):
    """Sign the AE record (investigator of the site), after re-entering the password (R28)."""
    return json_response(svc.app.sign_adverse_event(actor, ae_id, meaning=body.meaning, password=body.password,
                                                    expected_version=body.expected_version), 201)


@router.get("/adverse-events/{ae_id}/signatures", response_model=list[SignatureCheck])
def verify_adverse_event(ae_id: str, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.verify_signatures(actor, "adverse_event", ae_id))


@router.post("/participants/{participant_id}/signatures", status_code=201, response_model=SignatureResult,
             responses=SIGN_RESPONSES)
def sign_casebook(participant_id: str, body: CasebookSignRequest, actor: ActorDep, svc: ServicesDep):
    """Sign the participant's whole casebook: their fields, every visit and every AE (R27-R29). A later
    change to any of them invalidates it (R30)."""
    return json_response(svc.app.sign_casebook(actor, participant_id, meaning=body.meaning, password=body.password), 201)


@router.get("/participants/{participant_id}/signatures", response_model=list[SignatureCheck])
def verify_casebook(participant_id: str, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.verify_signatures(actor, "casebook", participant_id))


@router.get("/participants/{participant_id}/casebook/state", response_model=CasebookOut)
def casebook(participant_id: str, actor: ActorDep, svc: ServicesDep):
    """The casebook's lock, the study lock, and the casebook signatures with their manifestation (R27)."""
    return json_response(svc.app.get_casebook(actor, participant_id))


@router.post("/users/{user_id}/signature-enablement", status_code=201, response_model=EnablementResult,
             responses={409: PROBLEMS[409]})
def verify_identity(user_id: str, body: IdentityVerification, actor: ActorDep, svc: ServicesDep):
    """An administrator records how the user's identity was verified, the first step before they can sign (R31)."""
    return json_response(svc.app.verify_signer_identity(actor, user_id, method=body.method, evidence=body.evidence), 201)


@router.get("/users/{user_id}/signature-enablement", response_model=EnablementOut)
def enablement(user_id: str, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.signature_enablement(actor, user_id))


@router.get("/me/signature-acknowledgement", response_model=EnablementOut)
def my_enablement(actor: ActorDep, svc: ServicesDep):
    """Your signing status and the accountability statement to acknowledge (R31)."""
    return json_response(svc.app.signature_enablement(actor))


@router.post("/me/signature-acknowledgement", status_code=201, response_model=EnablementResult,
             responses={409: PROBLEMS[409]})
def acknowledge(body: Acknowledgement, actor: ActorDep, svc: ServicesDep):
    """Acknowledge that your electronic signature is the legally binding equivalent of your handwritten
    signature (R31; 21 CFR 11.100(c)). Repeat the statement exactly."""
    return json_response(svc.app.acknowledge_signature_accountability(actor, statement=body.statement), 201)


@router.get("/reviews/changes-after-signature-or-lock", response_model=list[ReviewRow])
def changes_after_signature_or_lock(actor: ActorDep, svc: ServicesDep, site: str | None = Query(default=None, max_length=40)):
    """Audit-trail review (R18): every change of clinical content that broke a signature or followed an unlock."""
    return json_response(svc.app.changes_after_signature_or_lock(actor, site=site))
