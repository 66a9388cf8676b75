"""The site's workspace (issue 17) over TestClient on both stores: enrolment, the visit form with reasons,
conflicts, SDV, queries, signing, locks, and the access rules. The browser drives it in test_site_browser.py."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.scoring import MRSS_SITES
from domain.signature import ACCOUNTABILITY_STATEMENT
from tests.conftest import PASSWORD
from tests.web.test_pages import csrf_of, sign_in

INCL = ("ssc_clinical_diagnosis", "can_follow_procedures", "written_informed_consent")


@pytest.fixture
def users(add_user):
    made = {}
    for name, role in (("coord", "coordinator"), ("inv", "investigator"), ("mon", "monitor"), ("dm", "data_manager"),
                       ("insp", "inspector"), ("adm", "admin")):
        made[name] = add_user(name, role, "*" if role in ("data_manager", "inspector") else "MINSK")
    made["gomel"] = add_user("coord.gomel", "coordinator", "GOMEL")
    return made


def client_for(services, username: str) -> TestClient:
    c = TestClient(create_app(services))
    c.__enter__()
    r = sign_in(c, username)
    assert r.status_code == 303, r.text
    return c


def post(c: TestClient, path: str, data: dict, page: str | None = None):
    form = c.get(page or path.rsplit("/", 1)[0] if page is None else page)
    return c.post(path, data={"csrf_token": csrf_of(form.text), **data}, follow_redirects=False)


def form_post(c: TestClient, page: str, path: str, data: dict):
    html = c.get(page).text
    return c.post(path, data={"csrf_token": csrf_of(html), **data}, follow_redirects=False)


def enrol(c: TestClient, number: str = "MIN-101") -> str:
    r = form_post(c, "/ui/site/participants", "/ui/site/participants",
                  {"screening_number": number, "site": "MINSK", "sex": "F", "birth_year": "1971"})
    assert r.status_code == 303, r.text
    pid = r.headers["location"].split("/")[-1].split("?")[0]
    page = f"/ui/site/participants/{pid}"
    answers = {f"inclusion.{c_}": "yes" for c_ in INCL}
    from domain.trial import EXCLUSION_CODES
    answers.update({f"exclusion.{c_}": "no" for c_ in EXCLUSION_CODES})
    assert form_post(c, page, f"{page}/eligibility", answers).status_code == 303
    assert form_post(c, page, f"{page}/consent", {"consent_version": "ICF v1.2", "signed_on": "2026-01-05"}).status_code == 303
    confirm = form_post(c, page, f"{page}/randomisation", {})
    assert confirm.status_code == 200 and "Yes, randomise now" in confirm.text
    assert "Group 1" not in confirm.text and "Group 2" not in confirm.text  # the arm only after
    assert form_post(c, page, f"{page}/randomisation", {"confirm": "yes"}).status_code == 303
    return pid


def visit_id(services, pid: str, code: str) -> str:
    app = services.app
    actor = app.actor_for(app.user_by_name("dm").id)
    return next(v["id"] for v in app.list_visits(actor, pid) if v["code"] == code)


def all_sites(value: int) -> dict[str, str]:
    return {f"item.mrss.{s}": str(value) for s in MRSS_SITES}


def test_enrolment_through_randomisation_shows_the_arm_only_after_confirmation(services, users):
    """R1, R5: screening, the checklist's verdict, consent, a two-step randomisation, withdrawal with a reason."""
    c = client_for(services, "coord")
    pid = enrol(c)
    page = c.get(f"/ui/site/participants/{pid}").text
    assert "eligible (every inclusion holds" in page and "Allocated to" in page and "Visit schedule" in page
    assert "M12" in page and "Target date" in page
    p = services.app.get_participant(services.app.actor_for(users["dm"]["id"]), pid)
    assert p["status"] == "randomised" and p["consent_version"] == "ICF v1.2"
    r = form_post(c, f"/ui/site/participants/{pid}", f"/ui/site/participants/{pid}/withdrawal", {"reason": ""})
    assert r.status_code == 422 and 'id="err-reason" role="alert"' in r.text and 'aria-describedby="err-reason"' in r.text
    r = form_post(c, f"/ui/site/participants/{pid}", f"/ui/site/participants/{pid}/withdrawal",
                  {"reason": "moved abroad"})
    assert r.status_code == 303
    events = services.app.participant_history(services.app.actor_for(users["dm"]["id"]), pid)
    assert events[-1]["reason"] == "moved abroad" and events[-1]["source"] == "web"


def test_screening_errors_are_named_next_to_their_fields_and_nothing_is_saved(services, users):
    c = client_for(services, "coord")
    r = form_post(c, "/ui/site/participants", "/ui/site/participants",
                  {"screening_number": "", "site": "MINSK", "sex": "X", "birth_year": "18"})
    assert r.status_code == 422
    for field in ("screening_number", "sex", "birth_year"):
        assert f'id="err-{field}" role="alert"' in r.text and f'aria-describedby="err-{field}"' in r.text
    assert services.app.list_participants(services.app.actor_for(users["dm"]["id"])) == []


def test_the_visit_form_first_entry_then_a_correction_needs_a_reason_and_changes_the_score(services, users):
    """R5, R6, R13: first entries without a reason; a change refused without one (nothing saved), then saved."""
    c = client_for(services, "coord")
    pid = enrol(c)
    vid = visit_id(services, pid, "BL")
    page = f"/ui/site/visits/{vid}"
    assert form_post(c, page, f"{page}/date", {"date": services.app.get_visit(
        services.app.actor_for(users["dm"]["id"]), vid)["target_date"]}).status_code == 303
    r = form_post(c, page, f"{page}/items", {**all_sites(1), "item.acr_eular.puffy_fingers": "yes"})
    assert r.status_code == 303, r.text
    shown = c.get(page).text
    assert re.search(r'id="mrss-total">17<', shown)
    r = form_post(c, page, f"{page}/items", {**all_sites(1), "item.mrss.face": "3"})
    assert r.status_code == 422 and 'id="err-reason" role="alert"' in r.text
    dm = services.app.actor_for(users["dm"]["id"])
    assert services.app.get_visit(dm, vid)["items"]["mrss.face"] == 1
    r = form_post(c, page, f"{page}/items", {**all_sites(1), "item.mrss.face": "3", "reason": "palpated again",
                                              "reason_code": "transcription_error"})
    assert r.status_code == 303
    assert re.search(r'id="mrss-total">19<', c.get(page).text)
    h = services.app.item_history(dm, vid, "mrss.face")
    assert [e["reason"] for e in h] == [None, "palpated again"] and h[1]["reason_code"] == "transcription_error"


def test_a_stale_form_gets_the_conflict_with_the_new_values_and_overwrites_nothing(services, users):
    c1, c2 = client_for(services, "coord"), client_for(services, "inv")
    pid = enrol(c1)
    vid = visit_id(services, pid, "BL")
    page = f"/ui/site/visits/{vid}"
    form_post(c1, page, f"{page}/date", {"date": services.app.get_visit(services.app.actor_for(users["dm"]["id"]), vid)["target_date"]})
    form_post(c1, page, f"{page}/items", all_sites(1))
    stale = c2.get(page).text  # the second user opens the form
    version = re.search(r'name="expected_version" value="(\d+)"', stale.split('id="items-form"')[1]).group(1)
    r = form_post(c1, page, f"{page}/items", {**all_sites(1), "item.mrss.face": "2", "reason": "re-examined at the clinic"})
    assert r.status_code == 303, re.findall(r"role=\"alert\">[^<]*", r.text)
    r = c2.post(f"{page}/items", data={"csrf_token": csrf_of(stale), "expected_version": version, **all_sites(1),
                                       "item.mrss.face": "3", "reason": "palpated by the second examiner"}, follow_redirects=False)
    assert r.status_code == 409 and 'id="conflict"' in r.text and "Stored now" in r.text
    assert services.app.get_visit(services.app.actor_for(users["dm"]["id"]), vid)["items"]["mrss.face"] == 2


def test_query_answer_with_correction_sdv_signature_and_lock(services, users):
    """R7, R27-R30, R32, R34, R35 through the forms."""
    app = services.app
    coord, inv, mon, dm = (client_for(services, n) for n in ("coord", "inv", "mon", "dm"))
    pid = enrol(coord)
    vid = visit_id(services, pid, "BL")
    page = f"/ui/site/visits/{vid}"
    form_post(coord, page, f"{page}/date", {"date": app.get_visit(app.actor_for(users["dm"]["id"]), vid)["target_date"]})
    form_post(coord, page, f"{page}/items", all_sites(1))
    # monitor: SDV then a query
    assert form_post(mon, page, f"{page}/sdv/mrss.face", {}).status_code == 303
    assert "✓ verified by" in mon.get(page).text
    r = form_post(mon, page, f"{page}/queries", {"item_code": "mrss.face", "text": ""})
    assert r.status_code == 422 and 'id="err-query-text" role="alert"' in r.text
    r = form_post(mon, page, f"{page}/queries", {"item_code": "mrss.face", "text": "source says 2"})
    qid = r.headers["location"].split("/")[-1].split("?")[0]
    assert "mrss.face" in inv.get("/ui/site/queries?state=open").text
    r = form_post(inv, f"/ui/site/queries/{qid}", f"/ui/site/queries/{qid}/answer",
                  {"text": "corrected per source", "correct": "yes", "value": "2"})
    assert r.status_code == 303, r.text
    dm_actor = app.actor_for(users["dm"]["id"])
    last = [e for e in app.visit_history(dm_actor, vid) if e["type"].endswith("ItemCorrected")][-1]
    assert last["changes"][0]["new_value"] == 2 and last["query_id"] == qid and last["source"] == "web"
    assert "verification withdrawn" in mon.get(page).text  # the tick vanished, visibly
    # signing needs enablement (admin identity check + the investigator's acknowledgement)
    app.verify_signer_identity(app.actor_for(users["adm"]["id"]), users["inv"]["id"], method="photo ID in person",
                               evidence="passport seen")
    app.acknowledge_signature_accountability(app.actor_for(users["inv"]["id"]), statement=ACCOUNTABILITY_STATEMENT)
    r = form_post(inv, page, f"{page}/signature", {"meaning": "authorship", "password": "wrong password!!"})
    assert r.status_code == 401 and 'id="err-' in r.text and not app.get_visit(dm_actor, vid)["signatures"]
    r = form_post(inv, page, f"{page}/signature", {"meaning": "approval", "password": PASSWORD})
    assert r.status_code == 303, r.text
    shown = coord.get(page).text
    assert "changing any value or the visit date invalidates this signature".lower() in shown.lower()
    form_post(coord, page, f"{page}/items", {**all_sites(1), "item.mrss.face": "3", "reason": "late info"})
    assert "Invalidated" in coord.get(page).text
    # lock: read-only and why
    r = form_post(dm, page, f"{page}/lock", {"lock_reason": "interim analysis"})
    assert r.status_code == 303
    shown = coord.get(page).text
    assert "Read-only: the visit is locked by" in shown and "interim analysis" in shown
    assert 'id="save-items"' not in shown and "disabled" in shown
    r = form_post(coord, page, f"{page}/items", {**all_sites(1), "item.mrss.face": "0", "reason": "typing slip on the paper form"})
    assert r.status_code == 409 and app.get_visit(dm_actor, vid)["items"]["mrss.face"] == 3
    r = form_post(dm, page, f"{page}/lock", {"action": "unlock", "lock_reason": ""})
    assert r.status_code == 422 and 'id="err-lock_reason"' in r.text


def test_access_rules_other_site_inspector_and_csrf(services, users):
    coord = client_for(services, "coord")
    pid = enrol(coord)
    vid = visit_id(services, pid, "BL")
    gomel = client_for(services, "coord.gomel")
    assert gomel.get(f"/ui/site/participants/{pid}").status_code == 403
    assert gomel.get(f"/ui/site/visits/{vid}").status_code == 403
    insp = client_for(services, "insp")
    shown = insp.get(f"/ui/site/visits/{vid}")
    assert shown.status_code == 200 and 'id="save-items"' not in shown.text
    r = form_post(insp, f"/ui/site/visits/{vid}", f"/ui/site/visits/{vid}/items", all_sites(0))
    assert r.status_code == 403
    r = coord.post(f"/ui/site/visits/{vid}/items", data=all_sites(0), follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    adm = client_for(services, "adm")
    assert adm.get(f"/ui/site/participants/{pid}").status_code == 403


def test_adverse_event_form_maps_the_api_field_paths_to_the_inputs(services, users):
    coord = client_for(services, "coord")
    pid = enrol(coord)
    page = f"/ui/site/participants/{pid}/adverse-events/new"
    r = form_post(coord, page, f"/ui/site/participants/{pid}/adverse-events", {"aeterm": "Pneumonia"})
    assert r.status_code == 422
    for field in ("aestdat", "aetoxgr", "aeser", "aware_at"):
        assert f'id="err-{field}" role="alert"' in r.text
    assert "AESER = Y exactly when" in r.text  # the consistency rules beside the form
    values = {"aeterm": "Pneumonia", "aestdat": "2026-02-01", "aetoxgr": "3", "ctcae_version": "5.0", "aeser": "Y",
              "aesdth": "N", "aeslife": "N", "aeshosp": "Y", "aesdisab": "N", "aescong": "N", "aesmie": "N",
              "aerel_treg": "NOT RELATED", "aerel_proc": "NOT RELATED", "aeout": "NOT RECOVERED/NOT RESOLVED",
              "aeacn": "DOSE NOT CHANGED", "aware_at": "2026-02-02T10:00"}
    arm = services.app.get_participant(services.app.actor_for(users["dm"]["id"]), pid)["arm"]
    if arm == "standard":  # Group 2: the product's causality and action are NOT APPLICABLE (a domain rule)
        r = form_post(coord, page, f"/ui/site/participants/{pid}/adverse-events", values)
        assert r.status_code == 422 and 'id="err-aerel_treg" role="alert"' in r.text and 'id="err-aeacn" role="alert"' in r.text
        values.update(aerel_treg="NOT APPLICABLE", aeacn="NOT APPLICABLE")
    r = form_post(coord, page, f"/ui/site/participants/{pid}/adverse-events", values)
    assert r.status_code == 303, r.text
    shown = coord.get(r.headers["location"]).text
    assert "Reporting clocks" in shown and "Pneumonia" in shown
