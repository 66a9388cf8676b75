"""Safety outcome and reporting deadlines (primary outcome b; docs/domain.md §3.6)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ActorDep, ServicesDep
from api.responses import json_response
from api.safety_schemas import DueReport, SafetySummary
from api.schemas import PROBLEMS, Instant

router = APIRouter(prefix="/safety", tags=["safety"], responses={k: PROBLEMS[k] for k in (401, 403, 422)})

Site = Annotated[str | None, Query(max_length=40, description="Only this site (site-bound users see only their own)")]
At = Annotated[
    Instant | None,
    Query(description="Evaluate deadlines at this ISO 8601 instant with zone (default: now)"),
]


@router.get("/summary", response_model=SafetySummary)
def summary(actor: ActorDep, svc: ServicesDep, site: Site = None):
    """Per arm: participants with at least one AE, by worst CTCAE grade, serious, fatal, related to the
    Treg product or to a procedure, SUSAR and AESI (participants and events)."""
    return json_response(svc.app.safety_summary(actor, site=site))


@router.get("/overdue", response_model=list[DueReport])
def overdue(actor: ActorDep, svc: ServicesDep, site: Site = None, at: At = None):
    """Reports past their deadline and not yet made, most overdue first, with `overdue_by`."""
    return json_response(svc.app.safety_obligations(actor, at=at, overdue_only=True, site=site))


@router.get("/reports-due", response_model=list[DueReport])
def reports_due(
    actor: ActorDep,
    svc: ServicesDep,
    site: Site = None,
    at: At = None,
    within_hours: Annotated[float | None, Query(gt=0, le=24 * 366, description="Only those due within this many hours")] = None,
):
    """Every report not yet made, soonest deadline first (overdue ones included and flagged)."""
    within = dt.timedelta(hours=within_hours) if within_hours is not None else None
    return json_response(svc.app.safety_obligations(actor, at=at, within=within, site=site))
