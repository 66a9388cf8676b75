"""Adverse events (docs/contract.md "Adverse events"): report, read, correct, follow up, record reports."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ActorDep, ServicesDep
from api.responses import json_response
from api.safety_schemas import (
    AdverseEventCorrection,
    AdverseEventDeletion,
    AdverseEventListingRow,
    AdverseEventOut,
    AdverseEventResult,
    FollowUp,
    ReportAdverseEvent,
    SafetyReport,
    SponsorAssessment,
)
from api.schemas import PROBLEMS, HistoryEntry

router = APIRouter(tags=["adverse events"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})


@router.post("/participants/{participant_id}/adverse-events", status_code=201, response_model=AdverseEventResult,
             responses={409: PROBLEMS[409]})
def report(participant_id: str, body: ReportAdverseEvent, actor: ActorDep, svc: ServicesDep):
    """Report an AE of a participant at your site; any reporting clock it starts is in `obligations`."""
    values = body.model_dump()
    return json_response(svc.app.report_adverse_event(actor, participant_id, values=values), 201)


@router.get("/participants/{participant_id}/adverse-events", response_model=list[AdverseEventListingRow])
def listing(participant_id: str, actor: ActorDep, svc: ServicesDep):
    """The participant's AE listing (read model), oldest onset first; deleted AEs are flagged, not hidden."""
    return json_response(svc.app.list_adverse_events(actor, participant_id))


@router.get("/adverse-events/{ae_id}", response_model=AdverseEventOut)
def get(ae_id: str, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.get_adverse_event(actor, ae_id))


@router.post("/adverse-events/{ae_id}/corrections", response_model=AdverseEventResult, responses={409: PROBLEMS[409]})
def correct(ae_id: str, body: AdverseEventCorrection, actor: ActorDep, svc: ServicesDep):
    """Correct one field with a reason (R5); a reclassification starts a new reporting clock."""
    return json_response(svc.app.correct_adverse_event(
        actor, ae_id, field=body.field, new_value=body.new_value, reason=body.reason, reason_code=body.reason_code,
        query_id=body.query_id, aware_at=body.aware_at, expected_version=body.expected_version,
    ))


@router.post("/adverse-events/{ae_id}/follow-ups", response_model=AdverseEventResult, responses={409: PROBLEMS[409]})
def follow_up(ae_id: str, body: FollowUp, actor: ActorDep, svc: ServicesDep):
    """New information on several fields at once (e.g. outcome and end date); one event per field (R6)."""
    return json_response(svc.app.follow_up_adverse_event(
        actor, ae_id, changes=body.changes, reason=body.reason, reason_code=body.reason_code, aware_at=body.aware_at,
        expected_version=body.expected_version,
    ))


@router.post("/adverse-events/{ae_id}/reports", status_code=201, response_model=AdverseEventResult,
             responses={409: PROBLEMS[409]})
def record_report(ae_id: str, body: SafetyReport, actor: ActorDep, svc: ServicesDep):
    """Record a report made to the sponsor or the authority; it meets the oldest open obligation of its kind."""
    return json_response(svc.app.record_safety_report(
        actor, ae_id, recipient=body.recipient, kind=body.kind, reported_at=body.reported_at, reference=body.reference,
        expected_version=body.expected_version,
    ), 201)


@router.post("/adverse-events/{ae_id}/sponsor-assessment", response_model=AdverseEventResult,
             responses={409: PROBLEMS[409]})
def sponsor_assessment(ae_id: str, body: SponsorAssessment, actor: ActorDep, svc: ServicesDep):
    """The sponsor's causality opinion (data managers): both opinions are kept and reported; the AE counts as
    related when either says so, so the sponsor can add relatedness but never remove it (EU CTR Annex III)."""
    return json_response(svc.app.assess_causality_by_sponsor(
        actor, ae_id, causality=body.causality, reason=body.reason, aware_at=body.aware_at,
        expected_version=body.expected_version,
    ))


@router.post("/adverse-events/{ae_id}/deletion", response_model=AdverseEventResult, responses={409: PROBLEMS[409]})
def delete(ae_id: str, body: AdverseEventDeletion, actor: ActorDep, svc: ServicesDep):
    """Entered in error: a tombstone with a reason (R8); the values stay in the history."""
    return json_response(svc.app.delete_adverse_event(actor, ae_id, reason=body.reason, expected_version=body.expected_version))


@router.get("/adverse-events/{ae_id}/history", response_model=list[HistoryEntry])
def history(ae_id: str, actor: ActorDep, svc: ServicesDep):
    """Every event of the AE, oldest first: who, when, old -> new, and why."""
    return json_response(svc.app.adverse_event_history(actor, ae_id))
