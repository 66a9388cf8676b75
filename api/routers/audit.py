"""The audit trail: retrieval, streamed downloads, item history and review reports (R13, R15, R18, R19).

Every answer comes from the audit index (never from replaying aggregates), and every answer is
itself recorded on the trail (R11).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, StreamingResponse

from api.deps import ActorDep, ServicesDep
from api.responses import json_response
from api.schemas import (
    PROBLEMS,
    AuditExportJob,
    AuditExportRequest,
    AuditItemHistory,
    AuditPage,
    AuditReport,
    InstantOrDay,
    ReportSignOff,
    ReportSignOffResult,
)
from domain.errors import Conflict, NotFound

router = APIRouter(prefix="/audit", tags=["audit"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})

ReportKind = Literal["critical-changes", "outside-hours", "late-entries", "change-rates", "changes-after-signature-or-lock"]
MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

Text = Annotated[str | None, Query(max_length=200)]
JobId = Annotated[str, Path(max_length=64, description="The id POST /audit/exports answered (24 hex digits)")]
FROM = "Recorded at or after: an ISO 8601 instant with zone, or a date (YYYY-MM-DD: from 00:00 UTC that day)"
TO = "Recorded before: an ISO 8601 instant with zone, or a date (YYYY-MM-DD: up to the end of that day, UTC)"


@router.get(
    "/events",
    response_model=AuditPage,
    responses={200: {"content": {MEDIA["csv"]: {}, MEDIA["jsonl"]: {}},
                     "description": "A page (JSON), or with format=csv|jsonl the whole filtered trail, streamed"}},
)
def events(
    actor: ActorDep,
    svc: ServicesDep,
    participant: Text = None,
    site: Text = None,
    user: Annotated[str | None, Query(max_length=200, description="A user id or username")] = None,
    item: Annotated[str | None, Query(max_length=200, description="A field or item code; a trailing * takes a prefix")] = None,
    from_: Annotated[InstantOrDay | None, Query(alias="from", description=FROM)] = None,
    to: Annotated[InstantOrDay | None, Query(description=TO)] = None,
    type: Annotated[str | None, Query(max_length=500, description="Event type(s), comma-separated")] = None,
    aggregate_type: Text = None,
    include_retrievals: Annotated[bool, Query(description="Also the audit-trail retrievals themselves")] = False,
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")] = None,
    format: Literal["json", "csv", "jsonl"] = "json",
):
    """The audit trail, filtered, oldest (`asc`) or newest (`desc`) first by recorded order, paged by an
    opaque cursor. `format=csv` (one row per changed field) or `format=jsonl` (one event per line)
    downloads every matching event, streamed (R15). Site-bound roles see their own site only (R19)."""
    filters = dict(participant=participant, site=site, user=user, item=item, from_=from_, to=to, type=type,
                   aggregate_type=aggregate_type, include_retrievals=include_retrievals, order=order)
    if format == "json":
        return json_response(svc.app.audit_events(actor, limit=limit, cursor=cursor, **filters))
    body = svc.app.export_audit_events(actor, format=format, **filters)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        body, media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="audit-trail-{stamp}.{format}"'},
    )


@router.post("/exports", status_code=202, response_model=AuditExportJob,
             responses={429: {"model": PROBLEMS[422]["model"], "description": "Too many of your export jobs are running"}})
def start_export(body: AuditExportRequest, actor: ActorDep, svc: ServicesDep):
    """Export the filtered trail as a background job (R15): 202 at once, then poll the job and download the
    file. Access is checked and the export recorded on the trail before the job starts (R11)."""
    filters = body.model_dump(exclude={"format"})
    svc.exports.check_capacity(actor.user_id)  # before the export is recorded: a refusal changes nothing
    chunks = svc.app.export_audit_events(actor, format=body.format, **filters)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    job = svc.exports.start(actor.user_id, "audit-trail", f"audit-trail-{stamp}.{body.format}", chunks)
    return json_response(_public(job), 202)


def _job_of(svc, actor, job_id: str) -> dict:
    try:
        job = svc.exports.status(job_id)
    except KeyError:
        raise NotFound(f"no export job {job_id}") from None
    if job["owner"] != actor.user_id:  # an export holds what its owner may see: nobody else's to fetch
        raise NotFound(f"no export job {job_id}")
    return job


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in ("owner", "pid", "host")}


@router.get("/exports/{job_id}", response_model=AuditExportJob, responses={404: PROBLEMS[404]})
def export_status(job_id: JobId, actor: ActorDep, svc: ServicesDep):
    return json_response(_public(_job_of(svc, actor, job_id)))


@router.get("/exports/{job_id}/file", responses={404: PROBLEMS[404], 409: PROBLEMS[409],
            200: {"content": {MEDIA["csv"]: {}, MEDIA["jsonl"]: {}}, "description": "The exported trail"}})
def export_file(job_id: JobId, actor: ActorDep, svc: ServicesDep):
    job = _job_of(svc, actor, job_id)
    if job["state"] != "done":
        raise Conflict(f"export job {job_id} is {job['state']}" + (f": {job['error']}" if job.get("error") else ""))
    fmt = job["filename"].rsplit(".", 1)[-1]
    return FileResponse(svc.exports.data_path(job_id), media_type=MEDIA[fmt], filename=job["filename"],
                        headers={"X-Content-SHA256": job["sha256"]})


@router.get("/items/{participant_id}/{item}", response_model=AuditItemHistory)
def item_history(
    participant_id: str, item: str, actor: ActorDep, svc: ServicesDep,
    aggregate_id: Annotated[str | None, Query(max_length=100, description="Only this record (e.g. one visit)")] = None,
):
    """Every value one item or field of a participant has had: who, role, when (UTC and the site's local
    time), old -> new, and why (R13)."""
    return json_response(svc.app.audit_item_history(actor, participant_id, item, aggregate_id=aggregate_id))


@router.get("/reports/{kind}", response_model=AuditReport)
def report(
    kind: ReportKind, actor: ActorDep, svc: ServicesDep,
    site: Text = None,
    from_: Annotated[InstantOrDay | None, Query(alias="from", description=FROM)] = None,
    to: Annotated[InstantOrDay | None, Query(description=TO)] = None,
    hours: Annotated[str | None, Query(pattern=r"^\d\d:\d\d-\d\d:\d\d$", description="Site hours, local time (outside-hours)")] = None,
    weekends: Annotated[bool, Query(description="Count weekend entries as outside hours (outside-hours)")] = True,
    late_days: Annotated[int | None, Query(ge=0, le=3650, description="Days after the clinical date (late-entries)")] = None,
    period: Literal["day", "week"] = "day",
    include_first_entries: Annotated[bool, Query(description="Also first entries (critical-changes)")] = False,
):
    """Audit-trail review reports (R18): changes to critical data, entries outside site hours, late
    entries, and change rates per user and site."""
    return json_response(svc.app.audit_report(
        actor, kind, site=site, from_=from_, to=to, hours=hours, weekends=weekends, late_days=late_days,
        period=period, include_first_entries=include_first_entries,
    ))


@router.post("/reports/{kind}/sign-off", status_code=201, response_model=ReportSignOffResult)
def sign_off(kind: ReportKind, body: ReportSignOff, actor: ActorDep, svc: ServicesDep):
    """A data manager or monitor signs off the review of one report over a period; the sign-off is an
    audited event that keeps the report's row count and hash (R18)."""
    return json_response(svc.app.sign_off_audit_report(
        actor, kind, period_from=body.period_from, period_to=body.period_to, comment=body.comment,
    ), 201)
