"""Data queries (R32) and source-data verification (R35)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import ActorDep, ServicesDep
from api.responses import json_response
from api.schemas import PROBLEMS, HistoryEntry
from api.signature_schemas import (
    AnswerQuery,
    CancelQuery,
    CloseQuery,
    OpenQuery,
    QueryOut,
    QueryResult,
    QueryRow,
    QueryState,
    ReopenQuery,
    SdvResult,
)

router = APIRouter(tags=["queries"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})
TRANSITION = {409: {**PROBLEMS[409], "description": "The query's state does not allow this (ODM 2.0), or the data are locked"}}


@router.post("/queries", status_code=201, response_model=QueryResult)
def open_query(body: OpenQuery, actor: ActorDep, svc: ServicesDep):
    """Open a query on one item of a visit (monitor of the site, data manager)."""
    return json_response(svc.app.open_query(actor, visit_id=body.visit_id, item_code=body.item_code, text=body.text), 201)


@router.get("/queries", response_model=list[QueryRow])
def list_queries(
    actor: ActorDep, svc: ServicesDep,
    site: str | None = Query(default=None, max_length=40),
    state: QueryState | None = Query(default=None),  # type: ignore[valid-type]
    visit_id: str | None = Query(default=None, max_length=100),
    participant_id: str | None = Query(default=None, max_length=100),
):
    """Queries per site and state (read model); site-bound users see their own site only."""
    return json_response(svc.app.list_queries(actor, site=site, state=state, visit_id=visit_id,
                                              participant_id=participant_id))


@router.get("/queries/{query_id}", response_model=QueryOut)
def get_query(query_id: str, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.get_query(actor, query_id))


@router.get("/queries/{query_id}/history", response_model=list[HistoryEntry])
def query_history(query_id: str, actor: ActorDep, svc: ServicesDep):
    """The query's whole lifecycle: who, when, state old -> new (R32)."""
    return json_response(svc.app.query_history(actor, query_id))


@router.post("/queries/{query_id}/answer", response_model=QueryResult, responses=TRANSITION)
def answer(query_id: str, body: AnswerQuery, actor: ActorDep, svc: ServicesDep):
    """The site answers (investigator, coordinator); a `correction` changes the queried item, citing the
    query, in the same transaction (R7)."""
    correction = body.correction.model_dump() if body.correction else None
    return json_response(svc.app.answer_query(actor, query_id, text=body.text, correction=correction,
                                              expected_version=body.expected_version))


@router.post("/queries/{query_id}/close", response_model=QueryResult, responses=TRANSITION)
def close(query_id: str, actor: ActorDep, svc: ServicesDep, body: CloseQuery | None = None):
    body = body or CloseQuery()
    return json_response(svc.app.close_query(actor, query_id, text=body.text, expected_version=body.expected_version))


@router.post("/queries/{query_id}/reopen", response_model=QueryResult, responses=TRANSITION)
def reopen(query_id: str, body: ReopenQuery, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.reopen_query(actor, query_id, text=body.text, expected_version=body.expected_version))


@router.post("/queries/{query_id}/cancel", response_model=QueryResult, responses=TRANSITION)
def cancel(query_id: str, body: CancelQuery, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.cancel_query(actor, query_id, reason=body.reason, expected_version=body.expected_version))


@router.post("/visits/{visit_id}/items/{item_code}/sdv", response_model=SdvResult, responses={409: PROBLEMS[409]})
def verify_item(visit_id: str, item_code: str, actor: ActorDep, svc: ServicesDep):
    """A monitor marks the item's current value source-data verified (R35); the flag resets itself when the
    value changes."""
    return json_response(svc.app.verify_item(actor, visit_id, item_code))
