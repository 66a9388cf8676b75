"""Casebooks replayed for inspectors (R14, R17): as recorded at an instant, as valid at a clinical date,
the difference between two instants, the step-through of events, and the HTML and PDF casebook."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from api.deps import ActorDep, AsOfDep, ServicesDep
from api.responses import json_response
from api.schemas import PROBLEMS, Instant
from application.casebook_html import casebook_blocks, render_casebook_html
from application.exports import OdmExports
from domain.errors import InvalidInput
from infrastructure.pdf import document_to_pdf

router = APIRouter(tags=["casebook"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})

ValidAt = Annotated[dt.date | None, Query(description="A clinical date (YYYY-MM-DD): visits held and AEs with onset on or before it")]


def _instant(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise InvalidInput.one(name, "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
    return value


@router.get("/participants/{participant_id}/casebook", response_model=dict[str, Any])
def casebook(participant_id: str, actor: ActorDep, svc: ServicesDep, as_of: AsOfDep, valid_at: ValidAt = None):
    """The casebook replayed from the events: as recorded at `as_of`, and/or as valid at `valid_at`."""
    return json_response(svc.app.casebook(actor, participant_id, as_of=as_of, valid_at=valid_at))


@router.get("/participants/{participant_id}/casebook/diff", response_model=dict[str, Any])
def casebook_diff(
    participant_id: str, actor: ActorDep, svc: ServicesDep,
    from_: Annotated[Instant, Query(alias="from", description="ISO 8601 instant with zone")],
    to: Annotated[Instant, Query(description="ISO 8601 instant with zone")],
):
    """Each field or item changed between the two instants: old -> new, with the events that changed it."""
    return json_response(svc.app.casebook_diff(actor, participant_id, from_=_instant(from_, "from"), to=_instant(to, "to")))


@router.get("/participants/{participant_id}/casebook/steps", response_model=dict[str, Any])
def casebook_steps(
    participant_id: str, actor: ActorDep, svc: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 50,
):
    """The events one at a time, each with the state of its record just after it (paged)."""
    return json_response(svc.app.casebook_steps(actor, participant_id, offset=offset, limit=limit))


def _casebook(svc, actor, participant_id: str, as_of, valid_at, fmt: str) -> dict[str, Any]:
    cb = svc.app.casebook(actor, participant_id, as_of=as_of, valid_at=valid_at)
    OdmExports(svc.app, svc.integrity.log).record_casebook_export(actor, participant_id, fmt=fmt, as_of=as_of)
    return cb


def _html(svc, actor, participant_id: str, as_of, valid_at, fmt: str) -> str:
    return render_casebook_html(_casebook(svc, actor, participant_id, as_of, valid_at, fmt))


@router.get("/participants/{participant_id}/casebook.html", response_class=HTMLResponse)
def casebook_html(participant_id: str, actor: ActorDep, svc: ServicesDep, as_of: AsOfDep, valid_at: ValidAt = None):
    """The human-readable casebook: data in context, every change, signature manifestations (R14, R27)."""
    return HTMLResponse(_html(svc, actor, participant_id, as_of, valid_at, "html"))


@router.get("/participants/{participant_id}/casebook.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def casebook_pdf(participant_id: str, actor: ActorDep, svc: ServicesDep, as_of: AsOfDep, valid_at: ValidAt = None):
    """The casebook as PDF: the same content as the HTML casebook (every change of every item, with its
    reason), laid out directly with reportlab."""
    cb = _casebook(svc, actor, participant_id, as_of, valid_at, "pdf")
    pdf = document_to_pdf(casebook_blocks(cb), title=f"Casebook {cb['participant']['screening_number']}")
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="casebook-{participant_id}.pdf"'})
