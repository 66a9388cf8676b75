"""The inspector's workspace: server-rendered pages over the same application services as the API.

Each page only translates: it reads its query, calls the service the matching API route calls, and
renders a template. Every page shown is recorded on the audit trail (``record_page_view``), and says
so in its footer. Errors become pages with the API's statuses: 403 for a role or site that may not
see it, 404, 409, 422 naming each bad field by its path.
"""

from __future__ import annotations

import datetime as dt
import io
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from api.errors import STATUS
from api.web import charts
from api.web.session import (
    SESSION_COOKIE,
    CsrfRefused,
    LoginRequired,
    check_csrf,
    clear_session,
    csrf_token,
    new_csrf,
    remember_csrf,
    set_cookie,
    sign_in,
    web_actor,
)
from domain import access
from domain.audit import Actor
from domain.errors import AuthenticationFailed, DomainError, InvalidInput, PasswordChangeRequired, TooManyAttempts

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
REPORT_KINDS = ("changes-after-signature-or-lock", "critical-changes", "outside-hours", "late-entries", "change-rates")
RECORD_KINDS = ("Participant", "Visit", "AdverseEvent", "DataQuery", "Casebook")
PAGE_SIZE = 100
VERIFY_ON_OPEN = 200_000
ARM_LABELS = {"treg_plus_standard": "Group 1: standard + Treg", "standard": "Group 2: standard only"}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _fmt_utc(value: Any) -> str:
    if not value:
        return ""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["utc"] = _fmt_utc
templates.env.globals["arm_label"] = lambda arm: ARM_LABELS.get(arm or "", arm or "not randomised")


def render(request: Request, template: str, context: dict[str, Any], *, status: int = 200) -> Response:
    actor = getattr(request.state, "actor", None)
    context = {"actor": actor, "csrf": csrf_token(request), "generated_at": _utc_now(), "recorded": None, **context}
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    remember_csrf(request, response)
    return response


def page(request: Request, actor: Actor, name: str, template: str, context: dict[str, Any], *,
         filters: dict[str, Any] | None = None, rows: int = 0) -> Response:
    """Record the page view on the audit trail (R11), then render it; the footer says so."""
    svc = request.app.state.services
    svc.app.record_page_view(actor, name, {"path": request.url.path, **(filters or {})}, rows)
    return render(request, template, {**context, "recorded": f"web:{name}"})


def _error_page(request: Request, status: int, title: str, detail: str, errors: list[dict] | None = None) -> Response:
    return render(request, "error.html", {"status": status, "title": title, "detail": detail, "errors": errors or []},
                  status=status)


class WebRoute(APIRoute):
    """Answers the API's errors as pages (same statuses), and sends a browser without a session to sign in."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as e:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/ui/login?{urlencode({'next': target, 'why': str(e)})}", 303)
                if request.cookies.get(SESSION_COOKIE):
                    clear_session(response, request)
                return response
            except CsrfRefused as e:
                return _error_page(request, 403, "Form refused", str(e))
            except RequestValidationError as e:
                errors = [{"path": ".".join(str(p) for p in err["loc"]), "message": err["msg"]} for err in e.errors()]
                return _error_page(request, 422, "Invalid input", "; ".join(f"{x['path']}: {x['message']}" for x in errors),
                                   errors)
            except DomainError as e:
                status = next((s for cls, s in STATUS.items() if isinstance(e, cls)), 400)
                errors = []
                if isinstance(e, InvalidInput):
                    prefix = "query" if request.method == "GET" else "form"
                    errors = [{"path": ".".join((prefix, *map(str, path))), "message": msg} for path, msg in e.errors]
                return _error_page(request, status, e.title, e.detail if not errors else
                                   "; ".join(f"{x['path']}: {x['message']}" for x in errors), errors)

        return route


router = APIRouter(prefix="/ui", include_in_schema=False, route_class=WebRoute)
ActorW = Annotated[Actor, Depends(web_actor)]


def _instant(value: str | None, name: str) -> dt.datetime | None:
    """An instant from the URL or a form: ISO 8601 with its zone; a value without one (a browser's
    datetime-local field, labelled UTC) is taken as UTC."""
    if value is None or not value.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput.one(name, "an ISO 8601 instant, e.g. 2026-03-12T09:30:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _date(value: str | None, name: str) -> dt.date | None:
    if value is None or not value.strip():
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput.one(name, "a date YYYY-MM-DD") from None


def _iso(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z") if moment else ""


def _local(recorded_at: str, zone: str | None) -> str:
    if not zone or not recorded_at:
        return ""
    moment = dt.datetime.fromisoformat(recorded_at.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(zone)).strftime(f"%Y-%m-%d %H:%M:%S {zone}")


def _leaf_indices(svc: Any, aggregate_ids: set[str]) -> dict[int, int]:
    """Notification id -> Merkle leaf index for the events of these records (the leaf that seals each)."""
    found: dict[int, int] = {}
    log = svc.integrity.log if svc.integrity is not None else None
    if log is None:
        return found
    for aggregate_id in aggregate_ids:
        try:
            leaves = log.leaves_of(UUID(aggregate_id))
        except ValueError:
            continue
        found.update({leaf.notification_id: leaf.leaf_index for leaf in leaves})
    return found


def _record_names(svc: Any, actor: Actor, participant_id: str, cb: dict[str, Any] | None = None) -> dict[str, str]:
    """Record id -> what an inspector calls it: the visit's code (from the visits read model, so visits
    planned after the instant are named too), the AE's term as the casebook shows it."""
    names = {str(participant_id): "participant"}
    names.update({v["id"]: f"visit {v['code']}" for v in svc.app.list_visits(actor, participant_id)})
    if cb is not None:
        names.update({a["id"]: f"AE {a.get('aeterm') or ''}".strip() for a in cb["adverse_events"]})
    return names


def _strip(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}


# ---------------------------------------------------------------------- sign in and out
WHY = {
    "ended": "Your session has ended (it expired after the idle timeout, or the account changed); sign in again.",
    "required": "Sign in to continue.",
}


@router.get("/login")
def login_form(request: Request, next: str = "/ui/participants", why: str | None = None, signed_out: bool = False):
    return render(request, "login.html", {"next": _safe_next(next), "why": WHY.get(why or ""), "signed_out": signed_out,
                                          "error": None})


def _safe_next(target: str) -> str:
    return target if target.startswith("/ui/") and not target.startswith("//") else "/ui/participants"


@router.post("/login")
async def login(request: Request):
    form = await check_csrf(request)
    target = _safe_next(form.get("next", "/ui/participants"))
    try:
        token = await sign_in(request, form.get("username", ""), form.get("password", ""))
    except PasswordChangeRequired:
        # a password an administrator set is one-time (21 CFR 11.300): it only serves to choose one's own
        return render(request, "password.html", {"username": form.get("username", ""), "error": None,
                                                 "why": "An administrator set this password: choose your own "
                                                        "before you sign in."}, status=403)
    except TooManyAttempts as e:
        response = render(request, "login.html", {"next": target, "why": None, "signed_out": False,
                                                  "error": e.detail}, status=429)
        response.headers["Retry-After"] = str(e.retry_after)
        return response
    except AuthenticationFailed as e:
        return render(request, "login.html", {"next": target, "why": None, "signed_out": False, "error": e.detail},
                      status=401)
    response = RedirectResponse(target, 303)
    set_cookie(response, request, SESSION_COOKIE, token)
    new_csrf(request)  # a fresh CSRF token with the new session
    remember_csrf(request, response)
    return response


@router.get("/password")
def password_form(request: Request):
    return render(request, "password.html", {"username": "", "error": None, "why": None})


@router.post("/password")
async def password_change(request: Request):
    """Choose your own password with the current one (the API's POST /auth/password, same rules)."""
    form = await check_csrf(request)
    username = form.get("username", "")
    svc = request.app.state.services
    if form.get("new_password", "") != form.get("repeat_password", ""):
        return render(request, "password.html", {"username": username, "why": None,
                                                 "error": "The two new passwords differ."}, status=422)
    try:
        await run_in_threadpool(svc.app.change_own_password, username, form.get("current_password", ""),
                                form.get("new_password", ""), client=request.client.host if request.client else "unknown",
                                source="web")
    except InvalidInput as e:
        return render(request, "password.html", {"username": username, "why": None,
                                                 "error": "; ".join(msg for _, msg in e.errors) or e.detail}, status=422)
    except (AuthenticationFailed, TooManyAttempts) as e:
        return render(request, "password.html", {"username": username, "why": None, "error": e.detail},
                      status=429 if isinstance(e, TooManyAttempts) else 401)
    return render(request, "login.html", {"next": "/ui/participants", "signed_out": False, "error": None,
                                          "why": "Your new password is set: sign in with it."})


@router.post("/logout")
async def logout(request: Request):
    await check_csrf(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:  # the session ends on the server too, not only in this browser (R24)
        try:
            await run_in_threadpool(request.app.state.services.tokens.logout, token)
        except AuthenticationFailed:
            pass  # already ended
    response = RedirectResponse("/ui/login?signed_out=1", 303)
    clear_session(response, request)
    new_csrf(request)
    remember_csrf(request, response)
    return response


@router.get("/")
def home() -> Response:
    return RedirectResponse("/ui/participants", 303)


# ---------------------------------------------------------------------- participants
@router.get("/participants")
def participants(request: Request, actor: ActorW, q: str = "", site: str = "", status: str = ""):
    svc = request.app.state.services
    rows = svc.app.list_participants(actor, site=site or None, status=status or None)
    needle = q.strip().lower()
    if needle:
        rows = [r for r in rows if any(needle in str(r.get(k) or "").lower() for k in ("screening_number", "id", "site", "arm", "status"))]
    rows.sort(key=lambda r: (r["site"], r["screening_number"]))
    return page(request, actor, "participants", "participants.html",
                {"rows": rows, "q": q, "site": site, "status": status, "sites": sorted(svc.app.sites)},
                filters=_strip({"q": q, "site": site, "status": status}), rows=len(rows))


@router.get("/participants/{participant_id}")
def trail(request: Request, participant_id: str, actor: ActorW, order: str = "desc", kind: str = "", type: str = "",
          item: str = "", user: str = "",
          cursor: str = ""):
    svc = request.app.state.services
    q = request.query_params
    start, end = _instant(q.get("from"), "from"), _instant(q.get("to"), "to")
    participant = svc.app.get_participant(actor, participant_id)
    result = svc.app.audit_events(
        actor, participant=participant_id, aggregate_type=kind or None, type=type or None, item=item or None,
        user=user or None, from_=start, to=end, order=order, limit=PAGE_SIZE, cursor=cursor or None,
    )
    events = result["events"]
    leaf_of = _leaf_indices(svc, {e["aggregate_id"] for e in events})
    zone = svc.app.sites.get(participant["site"])
    for e in events:
        e["leaf_index"] = leaf_of.get(e["position"])
        e["local"] = _local(e["recorded_at"], zone)
        e["just_before"] = _iso(dt.datetime.fromisoformat(e["recorded_at"].replace("Z", "+00:00")) - dt.timedelta(microseconds=1))
    filters = _strip({"order": order, "kind": kind, "type": type, "item": item, "user": user,
                      "from": q.get("from"), "to": q.get("to")})
    next_url = None
    if result["next_cursor"]:
        next_url = f"?{urlencode({**filters, 'cursor': result['next_cursor']})}"
    return page(request, actor, "participant", "trail.html",
                {"p": participant, "events": events, "filters": filters, "order": order, "kinds": RECORD_KINDS,
                 "zone": zone, "next_url": next_url},
                filters={"participant": participant_id, **filters}, rows=len(events))


@router.get("/participants/{participant_id}/items/{item}")
def item_history(request: Request, participant_id: str, item: str, actor: ActorW, aggregate_id: str = ""):
    svc = request.app.state.services
    history = svc.app.audit_item_history(actor, participant_id, item, aggregate_id=aggregate_id or None)
    participant = svc.app.get_participant(actor, participant_id)
    return page(request, actor, "item", "item.html", {"p": participant, "item": item, "h": history},
                filters={"participant": participant_id, "item": item}, rows=len(history["values"]))


@router.get("/participants/{participant_id}/casebook")
def time_travel(request: Request, participant_id: str, actor: ActorW, as_of: str = "", valid_at: str = ""):
    svc = request.app.state.services
    instant = _instant(as_of, "as_of")
    clinical = _date(valid_at, "valid_at")
    cb = svc.app.casebook(actor, participant_id, as_of=instant, valid_at=clinical)
    later: dict[tuple[str, str], dict] = {}
    if instant is not None:
        now = _utc_now()
        if instant < now:
            diff = svc.app.casebook_diff(actor, participant_id, from_=instant, to=now)
            later = {(c["record_id"], c["field"]): c for c in diff["changes"]}
    names = _record_names(svc, actor, participant_id, cb) if later else {}
    return page(request, actor, "casebook", "casebook.html",
                {"cb": cb, "p": cb["participant"], "as_of": as_of, "valid_at": valid_at, "instant": instant,
                 "later": later, "later_list": list(later.values()), "names": names},
                filters=_strip({"participant": participant_id, "as_of": _iso(instant), "valid_at": valid_at}),
                rows=cb["event_count"])


@router.get("/participants/{participant_id}/compare")
def compare(request: Request, participant_id: str, actor: ActorW):
    svc = request.app.state.services
    q = request.query_params
    start, end = _instant(q.get("from"), "from"), _instant(q.get("to"), "to")
    participant = svc.app.get_participant(actor, participant_id)
    diff, names = None, {}
    if start is not None and end is not None:
        diff = svc.app.casebook_diff(actor, participant_id, from_=start, to=end)
        names = _record_names(svc, actor, participant_id)
    return page(request, actor, "compare", "compare.html",
                {"p": participant, "diff": diff, "from_": q.get("from", ""), "to": q.get("to", ""), "names": names},
                filters=_strip({"participant": participant_id, "from": _iso(start), "to": _iso(end)}),
                rows=len(diff["changes"]) if diff else 0)


@router.get("/participants/{participant_id}/scores")
def scores(request: Request, participant_id: str, actor: ActorW):
    svc = request.app.state.services
    participant = svc.app.get_participant(actor, participant_id)
    visits = svc.app.participant_scores(actor, participant_id)
    labels = [v["visit_code"] for v in visits]
    mrss = [(v.get("mrss") or {}).get("total") for v in visits]
    acr = [(v.get("acr_eular") or {}).get("total_score") for v in visits]
    chart = charts.line_chart("mRSS total and ACR/EULAR 2013 total per visit", labels,
                              [("mRSS total (0-51)", mrss), ("ACR/EULAR total (0-28)", acr)])
    return page(request, actor, "scores", "scores.html", {"p": participant, "visits": visits, "chart": chart},
                filters={"participant": participant_id}, rows=len(visits))


@router.get("/participants/{participant_id}/bundle.zip")
def bundle(request: Request, participant_id: str, actor: ActorW):
    """The participant's inspector bundle (the CLI's ``trialaudit bundle``), zipped for download."""
    from infrastructure.bundle import write_bundle

    svc = request.app.state.services
    access.require(actor, "integrity.bundle")  # whole events, slots included: oversight roles only
    svc.app.get_participant(actor, participant_id)  # the role and the site wall, as in the API
    data = svc.integrity.bundle(participant_id)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"bundle-{participant_id}"
        manifest = write_bundle(data, out, svc.integrity.signer.public_key_pem())
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(out.rglob("*")):
                zf.write(path, path.relative_to(out.parent).as_posix())
    svc.app.record_page_view(actor, "bundle", {"participant": participant_id, "tree_size": manifest["tree_size"]},
                             manifest["events"])
    return Response(buffer.getvalue(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="bundle-{participant_id}.zip"', "Cache-Control": "no-store"})


# ---------------------------------------------------------------------- study pictures
@router.get("/outcomes")
def outcomes(request: Request, actor: ActorW, site: str = ""):
    svc = request.app.state.services
    po = svc.app.primary_outcome(actor, site=site or None)
    arms = po["arms"]
    charts_ = [
        charts.box_chart("ACR/EULAR 2013 total at M12", [(ARM_LABELS.get(a["arm"], a["arm"]), a["acr_eular_total"]) for a in arms]),
        charts.box_chart("mRSS change from baseline at M12", [(ARM_LABELS.get(a["arm"], a["arm"]), a["mrss_change"]) for a in arms]),
    ]
    return page(request, actor, "outcomes", "outcomes.html", {"po": po, "charts": charts_, "site": site,
                                                              "sites": sorted(svc.app.sites)},
                filters=_strip({"site": site}), rows=len(arms))


@router.get("/safety")
def safety(request: Request, actor: ActorW, site: str = ""):
    svc = request.app.state.services
    summary = svc.app.safety_summary(actor, site=site or None)
    clocks = svc.app.safety_obligations(actor, at=None, site=site or None)
    clocks.sort(key=lambda c: (not c["overdue"], -c["overdue_seconds"], c["due_at"]))
    return page(request, actor, "safety", "safety.html", {"s": summary, "clocks": clocks, "site": site,
                                                          "sites": sorted(svc.app.sites)},
                filters=_strip({"site": site}), rows=len(clocks))


# ---------------------------------------------------------------------- audit search
AUDIT_FILTERS = ("participant", "site", "user", "item", "type", "kind", "from", "to", "order")


def _audit_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    values = {k: q.get(k, "").strip() for k in AUDIT_FILTERS}
    return dict(
        participant=values["participant"] or None, site=values["site"] or None, user=values["user"] or None,
        item=values["item"] or None, type=values["type"] or None, aggregate_type=values["kind"] or None,
        from_=_instant(values["from"], "from"), to=_instant(values["to"], "to"), order=values["order"] or "desc",
    ), _strip(values)


@router.get("/audit")
def audit(request: Request, actor: ActorW, cursor: str = ""):
    svc = request.app.state.services
    filters, shown = _audit_filters(request)
    result = svc.app.audit_events(actor, limit=PAGE_SIZE, cursor=cursor or None, **filters)
    zone_of = svc.app.sites
    for e in result["events"]:
        e["local"] = _local(e["recorded_at"], zone_of.get(e.get("site") or ""))
    next_url = f"?{urlencode({**shown, 'cursor': result['next_cursor']})}" if result["next_cursor"] else None
    download = urlencode(shown)
    return page(request, actor, "audit", "audit.html",
                {"events": result["events"], "f": shown, "next_url": next_url, "download": download,
                 "kinds": RECORD_KINDS, "reports": REPORT_KINDS, "sites": sorted(svc.app.sites)},
                filters=shown, rows=len(result["events"]))


@router.get("/audit/download")
def audit_download(request: Request, actor: ActorW, format: str = "csv"):
    if format not in ("csv", "jsonl"):
        raise InvalidInput.one("format", "csv or jsonl")
    svc = request.app.state.services
    filters, _ = _audit_filters(request)
    body = svc.app.export_audit_events(actor, format=format, **filters)  # recorded as an export (R11, R15)
    stamp = _utc_now().strftime("%Y%m%dT%H%M%SZ")
    media = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}[format]
    return StreamingResponse(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="audit-trail-{stamp}.{format}"', "Cache-Control": "no-store"})


@router.get("/audit/reports/{kind}")
def audit_report(request: Request, kind: str, actor: ActorW, site: str = "", signed: str = ""):
    svc = request.app.state.services
    q = request.query_params
    report = svc.app.audit_report(actor, kind, site=site or None, from_=_instant(q.get("from"), "from"),
                                  to=_instant(q.get("to"), "to"))
    rows = report.get("rows") or report.get("entries") or []
    columns = sorted({k for r in rows[:50] for k, v in r.items() if not isinstance(v, (dict, list))})
    return page(request, actor, f"report:{kind}", "report.html",
                {"kind": kind, "report": report, "rows": rows, "columns": columns, "site": site,
                 "from_": q.get("from", ""), "to": q.get("to", ""), "signed": signed, "error": None,
                 "today": _utc_now().date().isoformat()},
                filters=_strip({"kind": kind, "site": site}), rows=len(rows))


@router.post("/audit/reports/{kind}/sign-off")
async def audit_sign_off(request: Request, kind: str, actor: ActorW):
    """The review's sign-off, after the password is entered again (as for an electronic signature)."""
    from fastapi.concurrency import run_in_threadpool

    form = await check_csrf(request)
    svc = request.app.state.services
    if kind not in REPORT_KINDS:
        raise InvalidInput.one("kind", f"one of {', '.join(REPORT_KINDS)}")
    errors = [(name,) for name in ("period_from", "period_to", "comment") if not form.get(name, "").strip()]
    if errors:
        raise InvalidInput([(e, "required") for e in errors])
    start, end = _date(form["period_from"], "period_from"), _date(form["period_to"], "period_to")

    def sign() -> dict:
        svc.app._reauthenticate(actor, form.get("password", ""), f"the sign-off of the {kind} report")
        return svc.app.sign_off_audit_report(actor, kind, period_from=start, period_to=end, comment=form["comment"])

    result = await run_in_threadpool(sign)
    return RedirectResponse(f"/ui/audit/reports/{quote(kind)}?signed={quote(result['report_sha256'])}", 303)


# ---------------------------------------------------------------------- integrity
@router.get("/integrity")
def integrity(request: Request, actor: ActorW, participant: str = "", verify: bool = False):
    svc = request.app.state.services
    head = svc.integrity.head().to_json()
    key_fingerprint = _fingerprint(head["public_key"])
    # the whole log is recomputed (about 250,000 events/s): at once up to VERIFY_ON_OPEN leaves, on asking beyond
    report = svc.integrity.verify() if verify or head["tree_size"] <= VERIFY_ON_OPEN else None
    chosen = svc.app.get_participant(actor, participant) if participant else None
    visible = svc.app.list_participants(actor)
    return page(request, actor, "integrity", "integrity.html",
                {"head": head, "fingerprint": key_fingerprint, "report": report, "chosen": chosen,
                 "participants": visible, "participant": participant,
                 "may_bundle": access.can(actor, "integrity.bundle")},
                filters=_strip({"participant": participant}), rows=1)


def _fingerprint(public_key_b64: str) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()
    return ":".join(digest[i:i + 4] for i in range(0, 32, 4))
