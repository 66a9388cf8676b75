"""Visits, item-level CRF data, their history and the scores of the primary outcome."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ActorDep, AsOfDep, ServicesDep
from api.responses import json_response
from api.schemas import (
    PROBLEMS,
    HistoryEntry,
    ItemHistoryEntry,
    ItemResult,
    ItemValue,
    UnscheduledVisit,
    VisitHeld,
    VisitOut,
    VisitResult,
    VisitScores,
    VisitSummary,
)

router = APIRouter(tags=["visits"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})


@router.get("/participants/{participant_id}/visits", response_model=list[VisitSummary])
def list_visits(participant_id: str, actor: ActorDep, svc: ServicesDep):
    """The participant's visits: the schedule made at randomisation (docs/domain.md §5) and unscheduled visits."""
    return svc.app.list_visits(actor, participant_id)


@router.post("/participants/{participant_id}/visits", status_code=201, response_model=VisitResult,
             responses={409: PROBLEMS[409]})
def add_unscheduled(participant_id: str, body: UnscheduledVisit, actor: ActorDep, svc: ServicesDep):
    """Add an unscheduled visit (UNS), optionally with the date it was held."""
    return svc.app.add_unscheduled_visit(actor, participant_id, date=body.date, reason=body.reason)


@router.get("/participants/{participant_id}/scores", response_model=list[VisitScores])
def scores(participant_id: str, actor: ActorDep, svc: ServicesDep, as_of: AsOfDep):
    """ACR/EULAR 2013 and mRSS per visit with data, with the change from baseline; with `as_of`,
    the scores as recorded at that instant."""
    return svc.app.participant_scores(actor, participant_id, as_of=as_of)


@router.get("/visits/{visit_id}", response_model=VisitOut)
def get_visit(visit_id: str, actor: ActorDep, svc: ServicesDep):
    """The visit with its current item values, date held, status and protocol deviations."""
    return svc.app.get_visit(actor, visit_id)


@router.get("/visits/{visit_id}/history", response_model=list[HistoryEntry])
def visit_history(visit_id: str, actor: ActorDep, svc: ServicesDep):
    return svc.app.visit_history(actor, visit_id)


@router.post("/visits/{visit_id}/held", response_model=VisitResult, responses={409: PROBLEMS[409]})
def held(visit_id: str, body: VisitHeld, actor: ActorDep, svc: ServicesDep):
    """Record the date the visit was held. Outside its window it is recorded with a protocol deviation,
    not refused. A change of the date needs a reason."""
    return svc.app.record_visit_held(
        actor, visit_id, date=body.date, reason=body.reason, reason_code=body.reason_code, query_id=body.query_id,
        expected_version=body.expected_version,
    )


@router.put("/visits/{visit_id}/items/{item_code}", response_model=ItemResult, responses={409: PROBLEMS[409]})
def put_item(visit_id: str, item_code: str, body: ItemValue, actor: ActorDep, svc: ServicesDep):
    """Record one item (one event). First entry needs no reason; any later change or a clear needs one (422)."""
    return svc.app.record_item(
        actor, visit_id, item_code, value=body.value, reason=body.reason, reason_code=body.reason_code,
        query_id=body.query_id, clear=body.clear, expected_version=body.expected_version,
    )


@router.get("/visits/{visit_id}/items/{item_code}/history", response_model=list[ItemHistoryEntry])
def item_history(visit_id: str, item_code: str, actor: ActorDep, svc: ServicesDep):
    """Every value the item has had, oldest first, with actor, time, reason and any query (R13), and each
    source-data verification mark as what it is: who verified which value, when, and which change reset it
    (R35). Verification entries carry no old/new value: they do not change the item."""
    return json_response(svc.app.item_history(actor, visit_id, item_code))
