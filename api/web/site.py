"""The site's workspace (issue 17): enrolment, visit forms, adverse events, queries, SDV, signing, locks.

Every form posts to a route here that only translates: it reads the form, validates it with the API's own
request model (``api.schemas``, ``api.signature_schemas``, ``api.safety_schemas``) and calls the same
application method as the matching API route (``api/routers/*.py``). Errors are shown next to the fields
they concern (the API's 422 field paths mapped to the inputs), a conflict (409) re-renders the form with
the values stored now, and nothing changes on any error. The visit forms are built from the study metadata
(``GET /study/metadata``: its item codes, forms, categories and mRSS sites), with the question texts of
``domain.crf``; the registry criteria come from ``domain.trial`` and the AE form from ``ReportAdverseEvent``.
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from api.safety_schemas import FollowUp, ReportAdverseEvent, SafetyReport
from api.schemas import Consent, Eligibility, ItemValue, ScreenParticipant, VisitHeld, Withdrawal
from api.signature_schemas import AnswerQuery, CloseQuery, LockRequest, OpenQuery, ReopenQuery, SignRequest, UnlockRequest
from api.web.pages import ActorW, WebRoute, page
from api.web.session import check_csrf
from application.study_metadata import study_metadata
from domain import access
from domain.audit import REASON_CODES, Actor
from domain.crf import ACR_EULAR_LABELS, AE_LABELS, MRSS_LABELS, PARTICIPANT_LABELS
from domain.errors import Conflict, InvalidInput
from domain.signature import LEGAL_STATEMENTS
from domain.trial import EXCLUSION_CODES, INCLUSION_CODES, SEXES

_UNION_TAG = re.compile(r"^(.*\[.*\]|int|str|bool|float|date|datetime|function-.*)$")
router = APIRouter(prefix="/ui/site", include_in_schema=False, route_class=WebRoute)

#: The forms are built from the study's metadata (GET /study/metadata), the data dictionary that is itself
#: built from the list the API accepts items from: one list, not a second one typed here.
METADATA = study_metadata()
_FORMS = {f["code"]: f for f in METADATA["forms"]}
ITEM_CODES: tuple[str, ...] = tuple(METADATA["item_codes"])
MRSS_SITE_CODES = [i["code"].split(".", 1)[1] for i in _FORMS["mrss"]["items"]]

#: the mRSS sites as the body is: (row label, right site, left site) or a single midline site
BODY_ROWS: list[tuple[str, str | None, str | None]] = []
for _code in MRSS_SITE_CODES:
    if _code.endswith("_right"):
        BODY_ROWS.append((_code[:-6], _code, _code[:-6] + "_left"))
    elif not _code.endswith("_left"):
        BODY_ROWS.append((_code, None, None))
MIDLINE = [c for c in MRSS_SITE_CODES if not c.endswith(("_right", "_left"))]
PAIRED = [(base, r, lft) for base, r, lft in BODY_ROWS if r]
_acr: dict[str, list[str]] = {}
for _item in _FORMS["acr_eular"]["items"]:  # findings by category, in the metadata's order; then exclusions
    _acr.setdefault(_item["category"] if _item["role"] == "finding" else "Exclusions", []).append(
        _item["code"].split(".", 1)[1])
ACR_GROUPS = [(name, codes) for name, codes in _acr.items() if name != "Exclusions"] + \
    [("Exclusions", _acr.get("Exclusions", []))]


def _svc(request: Request) -> Any:
    return request.app.state.services


def _go(url: str, done: str | None = None) -> RedirectResponse:
    """303 to url, with ?done= before any #fragment: a query written after the fragment is never sent."""
    path, hash_, fragment = url.partition("#")
    if done:
        path += ("&" if "?" in path else "?") + urlencode({"done": done})
    return RedirectResponse(path + hash_ + fragment, 303)


def _model(model: type[BaseModel], data: dict[str, Any], prefix: tuple[str, ...] = ()) -> BaseModel:
    """The API's request model of this command: its 422 errors name the same fields as the API's."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        found: dict[tuple, str] = {}
        for err in e.errors():  # a union's member tags (``literal[...]``, ``int``) are not fields: drop them
            path = prefix + tuple(str(p) for p in err["loc"] if not _UNION_TAG.match(str(p)))
            found.setdefault(path, err["msg"])
        raise InvalidInput(list(found.items())) from None


def _field_errors(e: InvalidInput, rename: dict[str, str] | None = None) -> dict[str, str]:
    """The API's error paths (``value``, ``inclusion.x``, ``items.mrss.face``) keyed by the form input's name."""
    found: dict[str, str] = {}
    for path, message in e.errors:
        name = ".".join(map(str, path))
        name = (rename or {}).get(name, name)
        found[name] = f"{found[name]}; {message}" if name in found else message
    return found


def _blank(value: str | None) -> str | None:
    return value if value and value.strip() else None


def _int(value: str | None) -> Any:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return value


def _can(actor: Actor, action: str, site: str | None = None) -> bool:
    return access.can(actor, action, site)


def _labels() -> dict[str, Any]:
    return {"acr_labels": ACR_EULAR_LABELS, "mrss_labels": MRSS_LABELS, "p_labels": PARTICIPANT_LABELS,
            "reason_codes": sorted(REASON_CODES), "meanings": LEGAL_STATEMENTS, "ae_labels": AE_LABELS}


# ---------------------------------------------------------------------- participants and enrolment
@router.get("")
def home() -> Response:
    return RedirectResponse("/ui/site/participants", 303)


def _participants_page(request: Request, actor: Actor, *, form: dict | None = None, errors: dict | None = None,
                       status: int = 200) -> Response:
    svc = _svc(request)
    rows = sorted(svc.app.list_participants(actor), key=lambda r: (r["site"], r["screening_number"]))
    sites = sorted(svc.app.sites) if actor.site in ("*", None) else [actor.site]
    study_lock = svc.app.study_lock_status(actor) if _can(actor, "lock.read") else None
    signing = svc.app.signature_enablement(actor) if actor.role == "investigator" else None
    response = page(request, actor, "site:participants", "site/participants.html",
                    {"rows": rows, "sites": sites, "sexes": SEXES, "form": form or {}, "errors": errors or {},
                     "can_write": _can(actor, "participant.write"), "done": request.query_params.get("done"),
                     "study_lock": study_lock, "can_lock": _can(actor, "lock.manage"), "signing": signing},
                    rows=len(rows))
    response.status_code = status
    return response


@router.get("/participants")
def participants(request: Request, actor: ActorW):
    return _participants_page(request, actor)


@router.post("/participants")
async def screen(request: Request, actor: ActorW):
    form = await check_csrf(request)
    try:
        body = _model(ScreenParticipant, {"screening_number": form.get("screening_number", ""), "site": form.get("site", ""),
                                          "sex": form.get("sex", ""), "birth_year": _int(form.get("birth_year"))})
        result = await run_in_threadpool(_svc(request).app.screen_participant, actor, **body.model_dump(), source="web")
    except InvalidInput as e:
        return _participants_page(request, actor, form=form, errors=_field_errors(e), status=422)
    except Conflict as e:
        return _participants_page(request, actor, form=form, errors={"screening_number": e.detail}, status=409)
    return _go(f"/ui/site/participants/{result['id']}", "screened")


@router.post("/study/lock")
async def study_lock(request: Request, actor: ActorW):
    """The data manager locks or unlocks the whole study (``POST /study/lock``, ``/study/unlock``)."""
    form = await check_csrf(request)
    app = _svc(request).app
    try:
        if form.get("action") == "unlock":
            body = _model(UnlockRequest, {"reason": form.get("study_reason", "")})
            await run_in_threadpool(lambda: app.unlock_study(actor, reason=body.reason, source="web"))
        else:
            body = _model(LockRequest, {"reason": _blank(form.get("study_reason"))})
            await run_in_threadpool(lambda: app.lock_study(actor, reason=body.reason, source="web"))
    except InvalidInput as e:
        return _participants_page(request, actor, errors={f"study_{k}": m for k, m in _field_errors(e).items()}, status=422)
    except Conflict as e:
        return _participants_page(request, actor, errors={"study_reason": e.detail}, status=409)
    return _go("/ui/site/participants#study-lock", "study unlocked" if form.get("action") == "unlock" else "study locked")


@router.post("/signing/acknowledgement")
async def acknowledge(request: Request, actor: ActorW):
    """The investigator's accountability statement, typed in full (``POST /me/signature-acknowledgement``, R31)."""
    from api.signature_schemas import Acknowledgement

    form = await check_csrf(request)
    app = _svc(request).app
    try:
        body = _model(Acknowledgement, {"statement": form.get("statement", "")})
        await run_in_threadpool(lambda: app.acknowledge_signature_accountability(actor, statement=body.statement,
                                                                                 source="web"))
    except InvalidInput as e:
        return _participants_page(request, actor, errors=_field_errors(e), form={"statement": form.get("statement", "")},
                                  status=422)
    except Conflict as e:
        return _participants_page(request, actor, errors={"statement": e.detail}, status=409)
    return _go("/ui/site/participants#signing", "signing enabled")


def _participant_page(request: Request, actor: Actor, pid: str, *, errors: dict | None = None, form: dict | None = None,
                      section: str | None = None, status: int = 200, confirm: bool = False, conflict: str | None = None) -> Response:
    svc = _svc(request)
    p = svc.app.get_participant(actor, pid)
    visits = svc.app.list_visits(actor, pid) if p["arm"] else []
    today = dt.date.today().isoformat()
    for v in visits:
        v["overdue"] = not v["held_on"] and bool(v["window_end"]) and v["window_end"] < today
    casebook = svc.app.get_casebook(actor, pid)
    aes = svc.app.list_adverse_events(actor, pid) if _can(actor, "ae.read") else []
    queries = svc.app.list_queries(actor, participant_id=pid)
    response = page(request, actor, "site:participant", "site/participant.html", {
        **_labels(), "p": p, "visits": visits, "casebook": casebook, "aes": aes, "queries": queries,
        "inclusion": INCLUSION_CODES, "exclusion": EXCLUSION_CODES, "errors": errors or {}, "form": form or {},
        "section": section, "confirm": confirm, "conflict": conflict, "done": request.query_params.get("done"),
        "can_write": _can(actor, "participant.write", p["site"]), "can_sign": _can(actor, "signature.sign", p["site"]),
        "can_lock": _can(actor, "lock.manage", p["site"]), "can_ae": _can(actor, "ae.write", p["site"]),
    }, filters={"participant": pid}, rows=1 + len(visits))
    response.status_code = status
    return response


@router.get("/participants/{pid}")
def participant(request: Request, pid: str, actor: ActorW):
    return _participant_page(request, actor, pid)


async def _participant_command(request: Request, actor: Actor, pid: str, section: str, call: Any,
                               done: str, rename: dict[str, str] | None = None) -> Response:
    form = await check_csrf(request)
    try:
        await run_in_threadpool(call, form)
    except InvalidInput as e:
        return _participant_page(request, actor, pid, errors=_field_errors(e, rename), form=form, section=section, status=422)
    except Conflict as e:
        return _participant_page(request, actor, pid, form=form, section=section, status=409, conflict=e.detail)
    return _go(f"/ui/site/participants/{pid}#{section}", done)


def _version(form: dict) -> int | None:
    return _int(form.get("expected_version")) or None


@router.post("/participants/{pid}/eligibility")
async def eligibility(request: Request, pid: str, actor: ActorW):
    app = _svc(request).app

    def call(form: dict) -> None:
        answers = {kind: {c: form[f"{kind}.{c}"] == "yes" for c in codes if form.get(f"{kind}.{c}") in ("yes", "no")}
                   for kind, codes in (("inclusion", INCLUSION_CODES), ("exclusion", EXCLUSION_CODES))}
        missing = [((kind, c), "answer yes or no") for kind, codes in (("inclusion", INCLUSION_CODES), ("exclusion", EXCLUSION_CODES))
                   for c in codes if c not in answers[kind]]
        if missing:
            raise InvalidInput(missing)
        body = _model(Eligibility, {**answers, "reason": _blank(form.get("reason")), "expected_version": _version(form)})
        app.assess_eligibility(actor, pid, inclusion=body.inclusion, exclusion=body.exclusion, reason=body.reason,
                               expected_version=body.expected_version, source="web")

    return await _participant_command(request, actor, pid, "eligibility", call, "eligibility recorded")


@router.post("/participants/{pid}/consent")
async def consent(request: Request, pid: str, actor: ActorW):
    app = _svc(request).app

    def call(form: dict) -> None:
        body = _model(Consent, {"consent_version": form.get("consent_version", ""), "signed_on": form.get("signed_on", ""),
                                "expected_version": _version(form)})
        app.record_consent(actor, pid, consent_version=body.consent_version, signed_on=body.signed_on.isoformat(),
                           expected_version=body.expected_version, source="web")

    return await _participant_command(request, actor, pid, "consent", call, "consent recorded")


@router.post("/participants/{pid}/randomisation")
async def randomise(request: Request, pid: str, actor: ActorW):
    """Two steps: the first shows what will happen (and nothing else); only the confirmed one allocates."""
    form = await check_csrf(request)
    if form.get("confirm") != "yes":
        return _participant_page(request, actor, pid, section="randomisation", confirm=True, form=form)
    app = _svc(request).app
    try:
        await run_in_threadpool(lambda: app.randomise(actor, pid, expected_version=_version(form), source="web"))
    except Conflict as e:
        return _participant_page(request, actor, pid, form=form, section="randomisation", status=409, conflict=e.detail)
    return _go(f"/ui/site/participants/{pid}#randomisation", "randomised")


@router.post("/participants/{pid}/withdrawal")
async def withdraw(request: Request, pid: str, actor: ActorW):
    app = _svc(request).app

    def call(form: dict) -> None:
        body = _model(Withdrawal, {"reason": form.get("reason", ""), "expected_version": _version(form)})
        if not body.reason.strip():
            raise InvalidInput.one("reason", "a withdrawal needs a reason")
        app.withdraw(actor, pid, reason=body.reason, expected_version=body.expected_version, source="web")

    return await _participant_command(request, actor, pid, "withdrawal", call, "withdrawn")


@router.post("/participants/{pid}/signature")
async def sign_casebook(request: Request, pid: str, actor: ActorW):
    app = _svc(request).app

    def call(form: dict) -> None:
        body = _model(SignRequest, {"meaning": form.get("meaning", ""), "password": form.get("password", "")})
        app.sign_casebook(actor, pid, meaning=body.meaning, password=body.password, source="web")

    return await _signing(request, actor, call, lambda e, form: _participant_page(
        request, actor, pid, errors=e, form=form, section="casebook-signature", status=e.pop("_status")),
        f"/ui/site/participants/{pid}#casebook-signature")


@router.post("/participants/{pid}/lock")
async def lock_participant(request: Request, pid: str, actor: ActorW):
    app = _svc(request).app

    def call(form: dict) -> None:
        if form.get("action") == "unlock":
            body = _model(UnlockRequest, {"reason": form.get("reason", "")})
            app.unlock_participant(actor, pid, reason=body.reason, source="web")
        else:
            body = _model(LockRequest, {"reason": _blank(form.get("reason"))})
            app.lock_participant(actor, pid, reason=body.reason, source="web")

    return await _participant_command(request, actor, pid, "lock", call, "lock changed")


async def _signing(request: Request, actor: Actor, call: Any, again: Any, target: str) -> Response:
    """Signing re-authenticates: a wrong password signs nothing, is recorded and counts towards the lockout."""
    from domain.errors import AuthenticationFailed

    form = await check_csrf(request)
    form_shown = {k: v for k, v in form.items() if k != "password"}
    try:
        await run_in_threadpool(call, form)
    except InvalidInput as e:
        return again({**_field_errors(e), "_status": 422}, form_shown)
    except AuthenticationFailed as e:
        return again({"password": e.detail, "_status": 401}, form_shown)
    except Conflict as e:
        return again({"signature": e.detail, "_status": 409}, form_shown)
    return _go(target, "signed")


# ---------------------------------------------------------------------- the visit form
def _sdv_withdrawn(history: list[dict]) -> dict[str, dict]:
    """Items whose verification was reset by a later change, with when and by which change (R35)."""
    withdrawn: dict[str, dict] = {}
    for e in history:
        for c in e["changes"]:
            if not c["field"].startswith("sdv."):
                continue
            code = c["field"][4:]
            if e["type"].endswith("ItemVerificationReset"):
                withdrawn[code] = {"at": e["recorded_at"], "by": e["actor"]["full_name"]}
            else:
                withdrawn.pop(code, None)
    return withdrawn


def _visit_page(request: Request, actor: Actor, vid: str, *, errors: dict | None = None, form: dict | None = None,
                status: int = 200, conflict: dict | None = None, section: str | None = None,
                preview: dict | None = None) -> Response:
    svc = _svc(request)
    v = svc.app.get_visit(actor, vid)
    p = svc.app.get_participant(actor, v["participant_id"])
    casebook = svc.app.get_casebook(actor, v["participant_id"])
    history = svc.app.visit_history(actor, vid)
    scores = next((s for s in svc.app.participant_scores(actor, v["participant_id"]) if s["visit_id"] == vid), None)
    queries = [q for q in svc.app.list_queries(actor, visit_id=vid)]
    open_by_item: dict[str, list] = {}
    for q in queries:
        if q["state"] in ("open", "answered"):
            open_by_item.setdefault(q["item_code"], []).append(q)
    lock = v["lock"] or casebook["lock"] or casebook["study_lock"]
    lock_scope = "visit" if v["lock"] else "participant's casebook" if casebook["lock"] else "study" if casebook["study_lock"] else None
    signed = [s for s in v["signatures"] if s["valid"]]
    can_write = _can(actor, "visit.write", v["site"]) and lock is None
    response = page(request, actor, "site:visit", "site/visit.html", {
        **_labels(), "v": v, "p": p, "scores": scores, "queries": queries, "open_by_item": open_by_item,
        "lock": lock, "lock_scope": lock_scope, "signed": signed, "history_count": len(history),
        "withdrawn": _sdv_withdrawn(history), "stored": set(v["items"]) | set(v["cleared_items"]),
        "body_rows": BODY_ROWS, "midline": MIDLINE, "paired": PAIRED, "acr_groups": ACR_GROUPS,
        "errors": errors or {}, "form": form, "conflict": conflict, "section": section, "preview": preview,
        "can_write": can_write, "can_sdv": _can(actor, "sdv.write", v["site"]) and lock is None,
        "can_query": _can(actor, "query.open", v["site"]), "can_sign": _can(actor, "signature.sign", v["site"]),
        "can_lock": _can(actor, "lock.manage", v["site"]), "item_codes": ITEM_CODES,
        "query_item": request.query_params.get("query_item", ""), "done": request.query_params.get("done"),
    }, filters={"visit": vid}, rows=len(v["items"]))
    response.status_code = status
    return response


@router.get("/visits/{vid}")
def visit(request: Request, vid: str, actor: ActorW):
    return _visit_page(request, actor, vid)


@router.post("/visits/{vid}/date")
async def visit_date(request: Request, vid: str, actor: ActorW):
    form = await check_csrf(request)
    app = _svc(request).app
    try:
        body = _model(VisitHeld, {"date": form.get("date", ""), "reason": _blank(form.get("date_reason")),
                                  "reason_code": _blank(form.get("date_reason_code")), "expected_version": _version(form)})
        await run_in_threadpool(lambda: app.record_visit_held(
            actor, vid, date=body.date, reason=body.reason, reason_code=body.reason_code,
            expected_version=body.expected_version, source="web"))
    except InvalidInput as e:
        return _visit_page(request, actor, vid, errors=_field_errors(e, {"reason": "date_reason", "reason_code": "date_reason_code"}),
                           form=form, status=422, section="date")
    except Conflict as e:
        return _visit_page(request, actor, vid, form=form, status=409, section="date",
                           conflict={"message": e.detail, "items": []})
    return _go(f"/ui/site/visits/{vid}#visit-date", "visit date recorded")


def _submitted(form: dict) -> dict[str, Any]:
    """item code -> the value sent ('' = left blank), for the items present in the form."""
    values: dict[str, Any] = {}
    for code in ITEM_CODES:
        raw = form.get(f"item.{code}")
        if raw is None:
            continue
        if code.startswith("acr_eular."):
            values[code] = {"yes": True, "no": False, "unknown": None, "": ""}.get(raw, raw)
        else:
            values[code] = _int(raw) if raw != "" else ""
    return values


def _values_at(history: list[dict], version: int | None) -> dict[str, Any]:
    """The items as they were at ``version`` (the form's expected_version), from the visit's history."""
    values: dict[str, Any] = {}
    for e in history:
        if version is not None and e["version"] > version:
            break
        for c in e["changes"]:
            if c["field"] in ITEM_CODES:
                values[c["field"]] = c["new_value"]
    return values


@router.post("/visits/{vid}/items")
async def visit_items(request: Request, vid: str, actor: ActorW):
    """Each item that differs from the stored value is sent as the API's ``PUT /visits/{id}/items/{code}``
    would send it (one event per item): a first entry without a reason, a change or a clear with the
    form's reason. Everything is checked before the first item is saved, so an error saves nothing."""
    form = await check_csrf(request)
    app = _svc(request).app
    v = app.get_visit(actor, vid)
    stored = set(v["items"]) | set(v["cleared_items"])
    reason, reason_code = _blank(form.get("reason")), _blank(form.get("reason_code"))
    plan, errors = [], {}
    for code, value in _submitted(form).items():
        present = code in v["items"]
        if value == "":
            if not present:
                continue  # left blank, never entered
            change = {"value": None, "clear": True}
        elif present and v["items"][code] == value and type(v["items"][code]) is type(value):
            continue
        else:
            change = {"value": value, "clear": False}
        body = {**change, "reason": reason if code in stored else None,
                "reason_code": reason_code if code in stored else None}
        try:
            plan.append((code, _model(ItemValue, body)))
        except InvalidInput as e:
            errors.update({f"item.{code}" if k == "value" else k: m for k, m in _field_errors(e).items()})
    if any(code in stored for code, _ in plan) and not reason and form.get("preview") != "yes":
        errors["reason"] = "changing a stored value needs a reason (R5); first entries need none"
    if not errors and plan:
        from domain.visit import validate_item_value
        for code, body in plan:
            if not body.clear:
                try:
                    validate_item_value(code, body.value)
                except InvalidInput as e:
                    errors[f"item.{code}"] = "; ".join(m for _, m in e.errors)
    if form.get("preview") == "yes":  # the scores as they would be stored; nothing is saved
        from application.scores import score_items

        would = {**v["items"]}
        for code, body in plan:
            if body.clear:
                would.pop(code, None)
            else:
                would[code] = body.value
        acr, mrss = (None, None) if errors else score_items(would)
        return _visit_page(request, actor, vid, errors=errors, form=form, status=422 if errors else 200, section="items",
                           preview={"acr": acr, "mrss": mrss, "changes": len(plan)})
    if errors:
        return _visit_page(request, actor, vid, errors=errors, form=form, status=422, section="items")

    def save() -> None:
        version = _version(form)
        for code, body in plan:
            result = app.record_item(actor, vid, code, value=body.value, reason=body.reason, reason_code=body.reason_code,
                                     clear=body.clear, expected_version=version, source="web")
            version = result["version"]

    try:
        await run_in_threadpool(save)
    except InvalidInput as e:
        return _visit_page(request, actor, vid, errors=_field_errors(e), form=form, status=422, section="items")
    except Conflict as e:
        now = app.get_visit(actor, vid)
        mine = _submitted(form)
        opened = _values_at(app.visit_history(actor, vid), _version(form))
        rows = [{"code": code, "mine": mine.get(code), "now": now["items"].get(code), "was": opened.get(code)}
                for code, _ in plan]
        return _visit_page(request, actor, vid, status=409, section="items",
                           conflict={"message": e.detail, "items": rows})
    return _go(f"/ui/site/visits/{vid}#items", f"{len(plan)} item(s) saved" if plan else "nothing changed")


@router.post("/visits/{vid}/sdv/{code}")
async def verify(request: Request, vid: str, code: str, actor: ActorW):
    await check_csrf(request)
    app = _svc(request).app
    try:
        await run_in_threadpool(lambda: app.verify_item(actor, vid, code, source="web"))
    except Conflict as e:
        return _visit_page(request, actor, vid, status=409, section="items", conflict={"message": e.detail, "items": []})
    return _go(f"/ui/site/visits/{vid}#row-{code}", f"{code} verified")


@router.post("/visits/{vid}/queries")
async def open_query(request: Request, vid: str, actor: ActorW):
    form = await check_csrf(request)
    app = _svc(request).app
    try:
        body = _model(OpenQuery, {"visit_id": vid, "item_code": form.get("item_code", ""), "text": form.get("text", "")})
        if not body.text.strip():
            raise InvalidInput.one("text", "say what is to be checked")
        result = await run_in_threadpool(lambda: app.open_query(actor, visit_id=vid, item_code=body.item_code,
                                                                text=body.text, source="web"))
    except InvalidInput as e:
        return _visit_page(request, actor, vid, errors={f"query.{k}": m for k, m in _field_errors(e).items()},
                           form=form, status=422, section="query")
    except Conflict as e:
        return _visit_page(request, actor, vid, errors={"query.text": e.detail}, form=form, status=409, section="query")
    return _go(f"/ui/site/queries/{result['id']}", "query opened")


@router.post("/visits/{vid}/signature")
async def sign_visit(request: Request, vid: str, actor: ActorW):
    app = _svc(request).app

    def call(form: dict) -> None:
        body = _model(SignRequest, {"meaning": form.get("meaning", ""), "password": form.get("password", ""),
                                    "expected_version": _version(form)})
        app.sign_visit(actor, vid, meaning=body.meaning, password=body.password,
                       expected_version=body.expected_version, source="web")

    return await _signing(request, actor, call, lambda e, form: _visit_page(
        request, actor, vid, errors=e, form=form, section="signature", status=e.pop("_status")),
        f"/ui/site/visits/{vid}#signature")


@router.post("/visits/{vid}/lock")
async def lock_visit(request: Request, vid: str, actor: ActorW):
    form = await check_csrf(request)
    app = _svc(request).app
    try:
        if form.get("action") == "unlock":
            body = _model(UnlockRequest, {"reason": form.get("lock_reason", "")})
            await run_in_threadpool(lambda: app.unlock_visit(actor, vid, reason=body.reason, source="web"))
        else:
            body = _model(LockRequest, {"reason": _blank(form.get("lock_reason"))})
            await run_in_threadpool(lambda: app.lock_visit(actor, vid, reason=body.reason, source="web"))
    except InvalidInput as e:
        return _visit_page(request, actor, vid, errors={f"lock_{k}": m for k, m in _field_errors(e).items()},
                           form=form, status=422, section="lock")
    except Conflict as e:
        return _visit_page(request, actor, vid, errors={"lock_reason": e.detail}, form=form, status=409, section="lock")
    return _go(f"/ui/site/visits/{vid}#lock", "unlocked" if form.get("action") == "unlock" else "locked")


# ---------------------------------------------------------------------- data queries
@router.get("/queries")
def inbox(request: Request, actor: ActorW, state: str = ""):
    svc = _svc(request)
    rows = svc.app.list_queries(actor, state=state or None)
    rows.sort(key=lambda q: ({"open": 0, "answered": 1}.get(q["state"], 2), q["opened_at"]))
    names = {p["id"]: p["screening_number"] for p in svc.app.list_participants(actor)}
    return page(request, actor, "site:queries", "site/queries.html",
                {"rows": rows, "state": state, "names": names, "done": request.query_params.get("done")},
                filters={"state": state} if state else {}, rows=len(rows))


def _query_page(request: Request, actor: Actor, qid: str, *, errors: dict | None = None, form: dict | None = None,
                status: int = 200, conflict: str | None = None) -> Response:
    svc = _svc(request)
    q = svc.app.get_query(actor, qid)
    v = svc.app.get_visit(actor, q["visit_id"])
    p = svc.app.get_participant(actor, q["participant_id"])
    response = page(request, actor, "site:query", "site/query.html", {
        **_labels(), "q": q, "v": v, "p": p, "errors": errors or {}, "form": form or {}, "conflict": conflict,
        "current": v["items"].get(q["item_code"]), "done": request.query_params.get("done"),
        "can_answer": _can(actor, "query.answer", q["site"]) and q["state"] in ("open",),
        "can_manage": _can(actor, "query.manage", q["site"]),
    }, filters={"query": qid}, rows=len(q["messages"]))
    response.status_code = status
    return response


@router.get("/queries/{qid}")
def query(request: Request, qid: str, actor: ActorW):
    return _query_page(request, actor, qid)


@router.post("/queries/{qid}/{action}")
async def query_action(request: Request, qid: str, action: str, actor: ActorW):
    form = await check_csrf(request)
    app = _svc(request).app
    version = _version(form)

    def call() -> None:
        if action == "answer":
            correction = None
            if form.get("correct") == "yes":
                q = app.get_query(actor, qid)
                raw = _submitted({f"item.{q['item_code']}": form.get("value", "")}).get(q["item_code"], "")
                correction = {"value": None if raw == "" else raw, "clear": raw == "",
                              "reason": _blank(form.get("reason")), "reason_code": _blank(form.get("reason_code"))}
            body = _model(AnswerQuery, {"text": form.get("text", ""), "correction": correction, "expected_version": version})
            if not body.text.strip():
                raise InvalidInput.one("text", "the answer needs a text")
            app.answer_query(actor, qid, text=body.text, correction=body.correction.model_dump() if body.correction else None,
                             expected_version=body.expected_version, source="web")
        elif action == "close":
            body = _model(CloseQuery, {"text": _blank(form.get("text")), "expected_version": version})
            app.close_query(actor, qid, text=body.text, expected_version=body.expected_version, source="web")
        elif action == "reopen":
            body = _model(ReopenQuery, {"text": form.get("text", ""), "expected_version": version})
            if not body.text.strip():
                raise InvalidInput.one("text", "say why the query is reopened")
            app.reopen_query(actor, qid, text=body.text, expected_version=body.expected_version, source="web")
        else:
            raise InvalidInput.one("action", "answer, close or reopen")

    try:
        await run_in_threadpool(call)
    except InvalidInput as e:
        errors = {k.replace("correction.", ""): m for k, m in _field_errors(e).items()}
        return _query_page(request, actor, qid, errors={f"{action}.{k}": m for k, m in errors.items()}, form=form, status=422)
    except Conflict as e:
        return _query_page(request, actor, qid, form=form, status=409, conflict=e.detail)
    return _go(f"/ui/site/queries/{quote(qid)}", f"query {action}ed".replace("closeed", "closed"))


# ---------------------------------------------------------------------- adverse events
def _choices(annotation: Any) -> list[str]:
    """The allowed values of a Literal field of the API's model (through Optional)."""
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return [str(a) for a in typing.get_args(arg)]
    return []


def _ae_fields() -> list[dict[str, Any]]:
    fields = []
    for name, info in ReportAdverseEvent.model_fields.items():
        fields.append({"name": name, "label": AE_LABELS.get(name, name), "help": info.description or "",
                       "choices": _choices(info.annotation), "required": info.is_required(),
                       "kind": "datetime" if name == "aware_at" else "text"})
    return fields


def _ae_page(request: Request, actor: Actor, pid: str, *, errors: dict | None = None, form: dict | None = None,
             status: int = 200, ae_id: str | None = None) -> Response:
    svc = _svc(request)
    p = svc.app.get_participant(actor, pid)
    ae = svc.app.get_adverse_event(actor, ae_id) if ae_id else None
    clocks = [c for c in svc.app.safety_obligations(actor, at=None, site=p["site"]) if c["adverse_event_id"] == ae_id] if ae_id else []
    response = page(request, actor, "site:adverse-event", "site/ae.html", {
        **_labels(), "p": p, "ae": ae, "clocks": clocks, "fields": _ae_fields(), "errors": errors or {},
        "form": form or {}, "rule": ReportAdverseEvent.__doc__, "done": request.query_params.get("done"),
        "can_write": _can(actor, "ae.write", p["site"]), "can_sign": _can(actor, "signature.sign", p["site"]),
        "recipients": _choices(SafetyReport.model_fields["recipient"].annotation),
        "report_kinds": _choices(SafetyReport.model_fields["kind"].annotation),
    }, filters={"participant": pid, **({"adverse_event": ae_id} if ae_id else {})}, rows=1)
    response.status_code = status
    return response


@router.get("/participants/{pid}/adverse-events/new")
def new_ae(request: Request, pid: str, actor: ActorW):
    return _ae_page(request, actor, pid)


@router.get("/participants/{pid}/adverse-events/{ae_id}")
def show_ae(request: Request, pid: str, ae_id: str, actor: ActorW):
    return _ae_page(request, actor, pid, ae_id=ae_id)


def _ae_values(form: dict) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in _ae_fields():
        raw = form.get(f["name"], "")
        if raw == "" and not f["required"]:
            continue
        if f["kind"] == "datetime" and raw and not raw.endswith("Z") and "+" not in raw[10:]:
            raw += ":00Z" if len(raw) == 16 else "Z"  # the browser's datetime-local field, labelled UTC
        values[f["name"]] = raw
    return values


@router.post("/participants/{pid}/adverse-events")
async def report_ae(request: Request, pid: str, actor: ActorW):
    form = await check_csrf(request)
    app = _svc(request).app
    try:
        body = _model(ReportAdverseEvent, _ae_values(form))
        result = await run_in_threadpool(lambda: app.report_adverse_event(actor, pid, values=body.model_dump(), source="web"))
    except InvalidInput as e:
        return _ae_page(request, actor, pid, errors=_field_errors(e), form=form, status=422)
    except Conflict as e:
        return _ae_page(request, actor, pid, errors={"aeterm": e.detail}, form=form, status=409)
    return _go(f"/ui/site/participants/{pid}/adverse-events/{result['id']}", "adverse event reported")


@router.post("/participants/{pid}/adverse-events/{ae_id}/follow-up")
async def follow_up_ae(request: Request, pid: str, ae_id: str, actor: ActorW):
    form = await check_csrf(request)
    app = _svc(request).app
    changes = {k[7:]: v for k, v in form.items() if k.startswith("change.") and v != ""}
    try:
        body = _model(FollowUp, {"changes": changes, "reason": form.get("reason", ""),
                                 "reason_code": _blank(form.get("reason_code")), "expected_version": _version(form)})
        await run_in_threadpool(lambda: app.follow_up_adverse_event(
            actor, ae_id, changes=body.changes, reason=body.reason, reason_code=body.reason_code, aware_at=None,
            expected_version=body.expected_version, source="web"))
    except InvalidInput as e:
        errors = {("change." + k[8:] if k.startswith("changes.") else k): m for k, m in _field_errors(e).items()}
        return _ae_page(request, actor, pid, ae_id=ae_id, errors=errors, form=form, status=422)
    except Conflict as e:
        return _ae_page(request, actor, pid, ae_id=ae_id, errors={"follow_up": e.detail}, form=form, status=409)
    return _go(f"/ui/site/participants/{pid}/adverse-events/{ae_id}", "follow-up recorded")


@router.post("/participants/{pid}/adverse-events/{ae_id}/signature")
async def sign_ae(request: Request, pid: str, ae_id: str, actor: ActorW):
    app = _svc(request).app

    def call(form: dict) -> None:
        body = _model(SignRequest, {"meaning": form.get("meaning", ""), "password": form.get("password", ""),
                                    "expected_version": _version(form)})
        app.sign_adverse_event(actor, ae_id, meaning=body.meaning, password=body.password,
                               expected_version=body.expected_version, source="web")

    return await _signing(request, actor, call, lambda e, form: _ae_page(
        request, actor, pid, ae_id=ae_id, errors=e, form=form, status=e.pop("_status")),
        f"/ui/site/participants/{pid}/adverse-events/{ae_id}")


@router.post("/participants/{pid}/adverse-events/{ae_id}/reports")
async def record_report(request: Request, pid: str, ae_id: str, actor: ActorW):
    """A report made to the sponsor or the authority (``POST /adverse-events/{id}/reports``): it meets the
    oldest open clock of its kind."""
    form = await check_csrf(request)
    app = _svc(request).app
    values = _ae_values({"aware_at": form.get("reported_at", "")})
    try:
        body = _model(SafetyReport, {"recipient": form.get("recipient", ""), "kind": form.get("kind", ""),
                                     "reported_at": values.get("aware_at", ""), "reference": _blank(form.get("reference")),
                                     "expected_version": _version(form)})
        await run_in_threadpool(lambda: app.record_safety_report(
            actor, ae_id, recipient=body.recipient, kind=body.kind, reported_at=body.reported_at, reference=body.reference,
            expected_version=body.expected_version, source="web"))
    except InvalidInput as e:
        return _ae_page(request, actor, pid, ae_id=ae_id, errors={f"report.{k}": m for k, m in _field_errors(e).items()},
                        form=form, status=422)
    except Conflict as e:
        return _ae_page(request, actor, pid, ae_id=ae_id, errors={"report.kind": e.detail}, form=form, status=409)
    return _go(f"/ui/site/participants/{pid}/adverse-events/{ae_id}#clocks", "report recorded")
