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
    row = re.search(r"<tr><td><code>mrss.face</code></td>(.*?)</tr>", r.text).group(1)
    assert re.findall(r"<td>(?:<strong>)?(\w+)", row) == ["1", "3", "2"]  # opened with 1, typed 3, stored now 2
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
    ae_page = r.headers["location"].split("?")[0]
    shown = coord.get(ae_page).text
    assert "Reporting clocks" in shown and "Pneumonia" in shown
    clock = re.search(r"<tr class=\"[^\"]*\"><td>([^<]+) <span class=\"small\">\(sae_initial\)</span></td><td>sponsor</td>", shown)
    assert clock, shown[shown.index("Reporting clocks"):][:1500]  # the SAE started the sponsor's clock, with its deadline
    bad = form_post(coord, ae_page, ae_page + "/reports", {"recipient": "sponsor", "kind": "sae_initial", "reported_at": "soon"})
    assert bad.status_code == 422 and 'id="err-report-reported_at" role="alert"' in bad.text
    ok = form_post(coord, ae_page, ae_page + "/reports", {"recipient": "sponsor", "kind": "sae_initial",
                                                           "reported_at": "2026-02-02T12:00", "reference": "SAE-1"})
    assert ok.status_code == 303, ok.text
    assert "(sae_initial)</span></td><td>sponsor" not in coord.get(ae_page).text  # the clock is met
    ae_id = ae_page.rsplit("/", 1)[1]
    fu = form_post(coord, ae_page, ae_page + "/follow-up", {"change.aeout": "RECOVERED/RESOLVED", "reason": ""})
    assert fu.status_code == 422 and 'id="err-reason" role="alert"' in fu.text
    fu = form_post(coord, ae_page, ae_page + "/follow-up", {"change.aeout": "RECOVERED/RESOLVED", "change.aeendat": "2026-02-20",
                                                             "reason": "discharged, resolved per the clinic letter"})
    assert fu.status_code == 303, re.findall(r'role="alert">[^<]*', fu.text)
    assert services.app.get_adverse_event(services.app.actor_for(users["dm"]["id"]), ae_id)["aeout"] == "RECOVERED/RESOLVED"


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
ARM_FIELDS = {"arm", "allocation_slot", "screening_number"}  # and the screening number, unique per participant


def _normalised(entries: list[dict]) -> list[dict]:
    """An audit trail's content without what must differ between two runs: ids, times, the arm drawn,
    content hashes (they cover ids), and the channel (``source``: web or api)."""
    out = []
    for e in entries:
        changes = [{"field": c["field"], "old": "<arm>" if c["field"] in ARM_FIELDS else c["old_value"],
                    "new": "<arm>" if c["field"] in ARM_FIELDS else c["new_value"]} for c in e["changes"]]
        row = {"type": e["type"], "actor": (e["actor"]["username"], e["actor"]["role"]), "reason": e["reason"],
               "reason_code": e.get("reason_code"), "query": bool(e.get("query_id")), "changes": changes}
        text = TIME_RE.sub("<t>", UUID_RE.sub("<id>", repr(row)))
        out.append(re.sub(r"'[0-9a-f]{64}'", "'<hash>'", text))
    return out


def test_the_forms_leave_the_same_audit_trail_as_the_api(services, users, client):
    """R1, R5, R7, R13, R27, R32, R34, R35: one set of rules. The same scenario through the forms and through the
    JSON API leaves the same events with the same reasons, codes, query citations and actors; only ids, times,
    the arm drawn and the channel (source web / api) differ."""
    app = services.app
    dm_actor = app.actor_for(users["dm"]["id"])
    app.verify_signer_identity(app.actor_for(users["adm"]["id"]), users["inv"]["id"], method="photo ID in person",
                               evidence="passport seen")
    app.acknowledge_signature_accountability(app.actor_for(users["inv"]["id"]), statement=ACCOUNTABILITY_STATEMENT)
    correction = {"reason": "re-palpated at the clinic", "reason_code": "transcription_error"}

    # through the forms
    coord, inv, mon, dm = (client_for(services, n) for n in ("coord", "inv", "mon", "dm"))
    web_pid = enrol(coord, "MIN-WEB")
    vid = visit_id(services, web_pid, "BL")
    page = f"/ui/site/visits/{vid}"
    held = app.get_visit(dm_actor, vid)["target_date"]
    assert form_post(coord, page, f"{page}/date", {"date": held}).status_code == 303
    assert form_post(coord, page, f"{page}/items", {**all_sites(1), "item.acr_eular.puffy_fingers": "yes"}).status_code == 303
    assert form_post(coord, page, f"{page}/items", {**all_sites(1), "item.mrss.face": "3", **correction}).status_code == 303
    assert form_post(mon, page, f"{page}/sdv/mrss.face", {}).status_code == 303
    r = form_post(mon, page, f"{page}/queries", {"item_code": "mrss.face", "text": "source says 2"})
    web_qid = r.headers["location"].split("/")[-1].split("?")[0]
    assert form_post(inv, f"/ui/site/queries/{web_qid}", f"/ui/site/queries/{web_qid}/answer",
                     {"text": "corrected per source", "correct": "yes", "value": "2"}).status_code == 303
    assert form_post(mon, f"/ui/site/queries/{web_qid}", f"/ui/site/queries/{web_qid}/close", {}).status_code == 303
    assert form_post(inv, page, f"{page}/signature", {"meaning": "approval", "password": PASSWORD}).status_code == 303
    assert form_post(dm, page, f"{page}/lock", {"lock_reason": "interim analysis"}).status_code == 303

    # through the API, by the same users
    def h(name: str) -> dict[str, str]:
        r = client.post("/auth/token", data={"username": name, "password": PASSWORD})
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    hc, hi, hm, hd = h("coord"), h("inv"), h("mon"), h("dm")
    from domain.trial import EXCLUSION_CODES

    def ok(r, status=200):
        assert r.status_code == status, r.text
        return r.json()

    api_pid = ok(client.post("/participants", json={"screening_number": "MIN-API", "site": "MINSK", "sex": "F",
                                                    "birth_year": 1971}, headers=hc), 201)["id"]
    ok(client.post(f"/participants/{api_pid}/eligibility", headers=hc, json={
        "inclusion": {c: True for c in INCL}, "exclusion": {c: False for c in EXCLUSION_CODES}, "expected_version": 1}))
    ok(client.post(f"/participants/{api_pid}/consent", json={"consent_version": "ICF v1.2", "signed_on": "2026-01-05",
                                                            "expected_version": 2}, headers=hc))
    ok(client.post(f"/participants/{api_pid}/randomisation", json={"expected_version": 3}, headers=hc))
    avid = visit_id(services, api_pid, "BL")
    version = ok(client.post(f"/visits/{avid}/held", json={"date": held, "expected_version": 1}, headers=hc))["version"]
    # the form sends the items in the order of domain.visit.ITEM_CODES
    from domain.visit import ITEM_CODES
    first = {**{f"mrss.{s}": 1 for s in MRSS_SITES}, "acr_eular.puffy_fingers": True}
    for code in [c for c in ITEM_CODES if c in first]:
        version = ok(client.put(f"/visits/{avid}/items/{code}", json={"value": first[code], "expected_version": version},
                                headers=hc))["version"]
    ok(client.put(f"/visits/{avid}/items/mrss.face", json={"value": 3, **correction, "expected_version": version}, headers=hc))
    ok(client.post(f"/visits/{avid}/items/mrss.face/sdv", headers=hm))
    api_qid = ok(client.post("/queries", json={"visit_id": avid, "item_code": "mrss.face", "text": "source says 2"},
                             headers=hm), 201)["id"]
    q = ok(client.post(f"/queries/{api_qid}/answer", json={"text": "corrected per source", "expected_version": 1,
                                                           "correction": {"value": 2, "clear": False}}, headers=hi))
    ok(client.post(f"/queries/{api_qid}/close", json={"expected_version": q["version"]}, headers=hm))
    v = ok(client.get(f"/visits/{avid}", headers=hd))
    ok(client.post(f"/visits/{avid}/signatures", json={"meaning": "approval", "password": PASSWORD,
                                                       "expected_version": v["version"]}, headers=hi), 201)
    ok(client.post(f"/visits/{avid}/lock", json={"reason": "interim analysis"}, headers=hd))

    def trail(pid: str, visit: str, qid: str) -> list[str]:
        return (_normalised(app.participant_history(dm_actor, pid)) + _normalised(app.visit_history(dm_actor, visit))
                + _normalised(app.query_history(dm_actor, qid)))

    web, api = trail(web_pid, vid, web_qid), trail(api_pid, avid, api_qid)
    import difflib
    assert len(web) > 30 and web == api, "\n".join(difflib.unified_diff(api, web, "api", "web", lineterm=""))
    sources = {e["source"] for e in app.visit_history(dm_actor, vid) if e["actor"]["username"] != "system"}
    assert sources == {"web"} and {e["source"] for e in app.visit_history(dm_actor, avid)} <= {"api", "system"}


def test_preview_shows_the_scores_as_they_would_be_stored_and_saves_nothing(services, users):
    c = client_for(services, "coord")
    pid = enrol(c)
    vid = visit_id(services, pid, "BL")
    page = f"/ui/site/visits/{vid}"
    dm = services.app.actor_for(users["dm"]["id"])
    form_post(c, page, f"{page}/date", {"date": services.app.get_visit(dm, vid)["target_date"]})
    r = form_post(c, page, f"{page}/items", {**all_sites(2), "preview": "yes"})
    assert r.status_code == 200 and re.search(r'id="preview-mrss">34<', r.text) and "Not saved yet" in r.text
    assert services.app.get_visit(dm, vid)["items"] == {}
    r = form_post(c, page, f"{page}/items", {**all_sites(2), "item.mrss.face": "7", "preview": "yes"})
    assert r.status_code == 422 and 'id="err-item-mrss-face" role="alert"' in r.text


def test_study_lock_and_the_signing_acknowledgement_forms(services, users):
    """R31, R34: the investigator enables signing by typing the statement; the data manager locks the study
    (every form read-only, saying why) and unlocks it only with a reason."""
    app = services.app
    coord, inv, dm = client_for(services, "coord"), client_for(services, "inv"), client_for(services, "dm")
    pid = enrol(coord)
    vid = visit_id(services, pid, "BL")
    assert "an administrator must first record" in inv.get("/ui/site/participants").text
    app.verify_signer_identity(app.actor_for(users["adm"]["id"]), users["inv"]["id"], method="photo ID in person",
                               evidence="passport seen")
    r = form_post(inv, "/ui/site/participants", "/ui/site/signing/acknowledgement", {"statement": "I agree"})
    assert r.status_code == 422 and 'id="err-statement" role="alert"' in r.text
    assert not app.signature_enablement(app.actor_for(users["inv"]["id"]))["enabled"]
    r = form_post(inv, "/ui/site/participants", "/ui/site/signing/acknowledgement", {"statement": ACCOUNTABILITY_STATEMENT})
    assert r.status_code == 303 and app.signature_enablement(app.actor_for(users["inv"]["id"]))["enabled"]
    assert form_post(coord, "/ui/site/participants", "/ui/site/study/lock", {"study_reason": "x"}).status_code == 403
    r = form_post(dm, "/ui/site/participants", "/ui/site/study/lock", {"study_reason": "final analysis"})
    assert r.status_code == 303
    shown = coord.get(f"/ui/site/visits/{vid}").text
    assert "Read-only: the study is locked" in shown and "final analysis" in shown and 'id="save-items"' not in shown
    r = form_post(dm, "/ui/site/participants", "/ui/site/study/lock", {"action": "unlock", "study_reason": ""})
    assert r.status_code == 422 and 'id="err-study_reason" role="alert"' in r.text
    assert app.study_lock_status(app.actor_for(users["dm"]["id"]))["locked"]
    r = form_post(dm, "/ui/site/participants", "/ui/site/study/lock", {"action": "unlock", "study_reason": "analysis rerun"})
    assert r.status_code == 303 and not app.study_lock_status(app.actor_for(users["dm"]["id"]))["locked"]


def test_site_pages_carry_no_inline_script_style_or_handler(services, users):
    """A CSP of default-src 'self' keeps every form working: scripts only from /ui/static, no inline code."""
    coord = client_for(services, "coord")
    pid = enrol(coord)
    vid = visit_id(services, pid, "BL")
    for path in ("/ui/site/participants", f"/ui/site/participants/{pid}", f"/ui/site/visits/{vid}", "/ui/site/queries",
                 f"/ui/site/participants/{pid}/adverse-events/new"):
        html = coord.get(path).text
        scripts = re.findall(r"<script[^>]*>", html)
        assert all(re.fullmatch(r'<script src="/ui/static/[\w.-]+\.js" defer>', s) for s in scripts), (path, scripts)
        assert "</script>" not in html.replace('defer></script>', '') and " style=" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path
    assert coord.get("/ui/static/site.js").status_code == 200


def test_the_visit_form_is_built_from_the_study_metadata():
    """Issue 17: the forms come from the data dictionary (GET /study/metadata), not from a second list: every
    item the metadata lists is on the form layout, and nothing else."""
    from api.web import site
    from application.study_metadata import study_metadata

    md = study_metadata()
    on_form = {f"acr_eular.{c}" for _, codes in site.ACR_GROUPS for c in codes} | \
        {f"mrss.{c}" for c in site.MIDLINE} | {f"mrss.{c}" for _, r, lft in site.PAIRED for c in (r, lft)}
    assert on_form == set(md["item_codes"]) and list(site.ITEM_CODES) == md["item_codes"]
