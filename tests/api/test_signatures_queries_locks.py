"""Issue 7 "Done when", over HTTP: an investigator signs a visit, a correction visibly breaks the signature
and it is signed again; a monitor's query is answered with a correction and closed; a locked visit
refuses changes; and no one crosses a site wall (R23, R25, R27-R35)."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from api.cli import cli_actor
from api.container import build, setup_store
from domain.signature import ACCOUNTABILITY_STATEMENT
from domain.trial import ROLES, SITE_BOUND_ROLES
from domain.visit import Visit
from infrastructure.settings import Settings
from tests.api.test_adverse_events import sae_body
from tests.conftest import EXCLUSION_ALL_FALSE, FAST_ARGON2, INCLUSION_ALL_TRUE, PASSWORD, SITES

ITEM = "mrss.fingers_right"


def enable_signing(client, admin, user_headers):
    me = client.get("/me/signature-acknowledgement", headers=user_headers).json()
    r = client.post(f"/users/{me['user_id']}/signature-enablement", headers=admin,
                    json={"method": "government photo ID checked in person", "evidence": "passport seen 2026-01-02"})
    assert r.status_code == 201, r.text
    r = client.post("/me/signature-acknowledgement", json={"statement": me["statement"]}, headers=user_headers)
    assert r.status_code == 201 and r.json()["enabled"] is True, r.text


def test_done_when_story(client, randomised_participant, login):
    pid, inv = randomised_participant()
    admin, mon, dm = login("admin1", "admin", "*"), login("mon1", "monitor", "MINSK"), login("dm1", "data_manager", "*")
    bl = str(Visit.id_for(pid, "BL"))
    assert client.post(f"/visits/{bl}/held", json={"date": "2026-01-05"}, headers=inv).status_code == 200
    for code, value in ((ITEM, 1), ("acr_eular.puffy_fingers", True)):
        assert client.put(f"/visits/{bl}/items/{code}", json={"value": value}, headers=inv).status_code == 200

    # signing needs R31 first, then re-authentication (R28)
    r = client.post(f"/visits/{bl}/signatures", json={"meaning": "approval", "password": PASSWORD}, headers=inv)
    assert r.status_code == 409 and "R31" in r.json()["detail"]
    enable_signing(client, admin, inv)
    r = client.post(f"/visits/{bl}/signatures", json={"meaning": "approval", "password": "wrong password!"}, headers=inv)
    assert r.status_code == 401 and "nothing was signed" in r.json()["detail"]
    r = client.post(f"/visits/{bl}/signatures", json={"meaning": "approval", "password": PASSWORD}, headers=inv)
    assert r.status_code == 201, r.text
    (s,) = client.get(f"/visits/{bl}", headers=inv).json()["signatures"]
    assert {"signer", "meaning", "signed_at", "valid"} <= set(s) and s["valid"] is True and s["meaning"] == "approval"
    assert s["signer"].endswith("Person") and s["signer_role"] == "investigator"  # the printed name (R27)
    assert s["signed_at"].endswith("Z") and s["legal_statement"] in s["manifestation"]

    # a monitor's query, answered with a correction that cites it; the correction breaks the signature
    r = client.post("/queries", json={"visit_id": bl, "item_code": ITEM, "text": "Source shows 2, please check"}, headers=mon)
    assert r.status_code == 201 and r.json()["state"] == "open", r.text
    qid = r.json()["id"]
    assert [q["id"] for q in client.get("/queries?site=MINSK&state=open", headers=mon).json()] == [qid]
    r = client.post(f"/queries/{qid}/answer", headers=inv,
                    json={"text": "Transcription error", "correction": {"value": 2, "reason": "source document shows 2"}})
    assert r.status_code == 200 and r.json()["state"] == "answered", r.text
    visit = client.get(f"/visits/{bl}", headers=inv).json()
    assert visit["items"][ITEM] == 2
    (s,) = visit["signatures"]
    assert s["valid"] is False and s["invalidated_by"]["type"] == "ItemCorrected"
    assert s["status"].startswith("unsigned since ItemCorrected")
    history = client.get(f"/visits/{bl}/items/{ITEM}/history", headers=inv).json()
    assert history[-1]["query_id"] == qid and history[-1]["old_value"] == 1
    r = client.post(f"/queries/{qid}/close", json={"text": "Resolved"}, headers=mon)
    assert r.status_code == 200 and r.json()["state"] == "closed"
    assert client.get("/queries?state=open", headers=mon).json() == []

    # signed again; verification recomputes the hashes
    r = client.post(f"/visits/{bl}/signatures", json={"meaning": "approval", "password": PASSWORD}, headers=inv)
    assert r.status_code == 201, r.text
    checks = client.get(f"/visits/{bl}/signatures", headers=inv).json()
    assert [(c["valid"], c["hash_verified"], c["content_unchanged"]) for c in checks] == [(False, True, False), (True, True, True)]

    # SDV resets when the value changes
    assert client.post(f"/visits/{bl}/items/{ITEM}/sdv", headers=mon).status_code == 200
    assert ITEM in client.get(f"/visits/{bl}", headers=mon).json()["sdv"]

    # a locked visit refuses changes and signatures (409 naming the lock); unlocking needs a reason
    assert client.post(f"/visits/{bl}/lock", json={"reason": "cleaned"}, headers=dm).status_code == 200
    r = client.put(f"/visits/{bl}/items/{ITEM}", json={"value": 3, "reason": "late source update"}, headers=inv)
    assert r.status_code == 409 and "locked" in r.json()["detail"] and "dm1" in r.json()["detail"].lower()
    r = client.post(f"/visits/{bl}/signatures", json={"meaning": "review", "password": PASSWORD}, headers=inv)
    assert r.status_code == 409
    assert client.post(f"/visits/{bl}/unlock", json={}, headers=dm).status_code == 422
    assert client.post(f"/visits/{bl}/unlock", json={"reason": "late source update"}, headers=dm).status_code == 200
    r = client.put(f"/visits/{bl}/items/{ITEM}", json={"value": 3, "reason": "late source update"}, headers=inv)
    assert r.status_code == 200
    assert ITEM not in client.get(f"/visits/{bl}", headers=mon).json()["sdv"]
    rows = client.get("/reviews/changes-after-signature-or-lock", headers=dm).json()
    assert [r["after"] for r in rows] == [["signature"], ["lock", "signature"]]


# --------------------------------------------------------------------------- role x action x site (R23, R33)
@pytest.fixture(scope="module")
def world():
    """One store for the whole matrix: a participant at MINSK, every role at MINSK and at GOMEL."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    directory = tempfile.mkdtemp(prefix="trialaudit-matrix-")
    settings = Settings(database_url=f"sqlite:///{directory}/m.db", data_dir=directory, sites=SITES, demo=False, **FAST_ARGON2)
    setup_store(settings)
    svc = build(settings)
    app = svc.app
    headers, actors = {}, {}
    for role in ROLES:
        for site in ("MINSK", "GOMEL"):
            user = app.register_user(cli_actor(), username=f"{role}.{site}".lower().replace("_", "-"),
                                     full_name=f"{role} {site}", role=role,
                                     site=site if role in SITE_BOUND_ROLES else "*", password=PASSWORD, source="cli")
            actors[role, site] = app.actor_for(user["id"])
            headers[role, site] = {"Authorization": f"Bearer {svc.tokens.issue(user['id'])}"}
    inv, admin = actors["investigator", "MINSK"], actors["admin", "MINSK"]
    for site in ("MINSK", "GOMEL"):
        who = actors["investigator", site]
        app.verify_signer_identity(admin, who.user_id, method="photo ID in person", evidence="passport seen")
        app.acknowledge_signature_accountability(who, statement=ACCOUNTABILITY_STATEMENT)
    p = app.screen_participant(inv, screening_number="S-MATRIX", site="MINSK", sex="F", birth_year=1970)
    app.assess_eligibility(inv, p["id"], inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(inv, p["id"], consent_version="ICF v1", signed_on="2026-01-05")
    app.randomise(inv, p["id"])
    arm = app.get_participant(inv, p["id"])["arm"]
    bl = str(Visit.id_for(p["id"], "BL"))
    app.record_visit_held(inv, bl, date="2026-01-05")
    app.record_item(inv, bl, ITEM, value=1)
    ae = app.report_adverse_event(inv, p["id"], values=sae_body(arm, aeser="N", aeshosp="N", aetoxgr="1",
                                                                aesi_category=None))
    query = app.open_query(actors["monitor", "MINSK"], visit_id=bl, item_code=ITEM, text="Please check")
    with TestClient(create_app(svc)) as client:
        yield {"client": client, "headers": headers, "pid": p["id"], "bl": bl, "ae": ae["id"], "query": query["id"]}
    svc.close()
    shutil.rmtree(directory, ignore_errors=True)


SIGN = {"meaning": "review", "password": PASSWORD}
SITE_ROLES = {"investigator", "coordinator"}
READERS = {"investigator", "coordinator", "monitor", "data_manager", "inspector"}
#: (name, method, path template, body, roles allowed); every other role answers 403, and a site-bound role
#: at the other site answers 403 too
ENDPOINTS = [
    ("read visit", "GET", "/visits/{bl}", None, READERS),
    ("enter item", "PUT", "/visits/{bl}/items/acr_eular.puffy_fingers", {"value": True}, SITE_ROLES),
    ("record visit date", "POST", "/visits/{bl}/held", {"date": "2026-01-05"}, SITE_ROLES),
    ("sign visit", "POST", "/visits/{bl}/signatures", SIGN, {"investigator"}),
    ("verify visit signatures", "GET", "/visits/{bl}/signatures", None, READERS),
    ("sign AE", "POST", "/adverse-events/{ae}/signatures", SIGN, {"investigator"}),
    ("sign casebook", "POST", "/participants/{pid}/signatures", SIGN, {"investigator"}),
    ("read casebook", "GET", "/participants/{pid}/casebook/state", None, READERS),
    ("open query", "POST", "/queries", {"visit_id": "{bl}", "item_code": ITEM, "text": "Is this right?"},
     {"monitor", "data_manager"}),
    ("read query", "GET", "/queries/{query}", None, READERS),
    ("answer query", "POST", "/queries/{query}/answer", {"text": "Checked, correct"}, SITE_ROLES),
    ("close query", "POST", "/queries/{query}/close", {}, {"monitor", "data_manager"}),
    ("reopen query", "POST", "/queries/{query}/reopen", {"text": "Please look again"}, {"monitor", "data_manager"}),
    ("cancel query", "POST", "/queries/{query}/cancel", {"reason": "raised in error"}, {"monitor", "data_manager"}),
    ("SDV", "POST", "/visits/{bl}/items/" + ITEM + "/sdv", None, {"monitor"}),
    ("lock visit", "POST", "/visits/{bl}/lock", {}, {"data_manager"}),
    ("unlock visit", "POST", "/visits/{bl}/unlock", {"reason": "matrix test unlock"}, {"data_manager"}),
    ("lock participant", "POST", "/participants/{pid}/lock", {}, {"data_manager"}),
    ("unlock participant", "POST", "/participants/{pid}/unlock", {"reason": "matrix test unlock"}, {"data_manager"}),
    ("review changes after signature or lock", "GET", "/reviews/changes-after-signature-or-lock", None,
     {"monitor", "data_manager", "inspector"}),
]
STUDY_WIDE = {"review changes after signature or lock"}


def _fill(value, world):
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name,method,path,body,allowed", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_role_site_matrix(world, name, method, path, body, allowed):
    """R23, R33: each role at the participant's site and at the other site, endpoint by endpoint. Monitors,
    data managers and inspectors never edit site data; no site-bound role crosses the site wall."""
    client = world["client"]
    outcomes = {}
    for role in ROLES:
        for site in ("MINSK", "GOMEL"):
            kwargs = {"json": _fill(body, world)} if body is not None else {}
            r = client.request(method, _fill(path, world), headers=world["headers"][role, site], **kwargs)
            assert r.status_code < 500, (role, site, r.text)
            outcomes[role, site] = r.status_code
    for (role, site), status in outcomes.items():
        crosses = site == "GOMEL" and role in SITE_BOUND_ROLES and name not in STUDY_WIDE
        if role in allowed and not crosses:
            assert status not in (401, 403), (name, role, site, status)
        else:
            assert status == 403, (name, role, site, status)


def test_site_bound_query_listing_stays_behind_the_wall(world):
    """R23: a GOMEL monitor asking for MINSK queries is refused; without a site filter, sees only GOMEL."""
    client, headers = world["client"], world["headers"]
    assert client.get("/queries?site=MINSK", headers=headers["monitor", "GOMEL"]).status_code == 403
    assert all(q["site"] == "GOMEL" for q in client.get("/queries", headers=headers["monitor", "GOMEL"]).json())
    assert client.get("/queries?site=MINSK", headers=headers["monitor", "MINSK"]).json()
    assert client.post("/study/lock", json={}, headers=headers["monitor", "MINSK"]).status_code == 403
    assert client.post("/study/lock", json={}, headers=headers["investigator", "MINSK"]).status_code == 403


def test_audit_review_report_lists_changes_after_signature(world):
    """R18: the audit review reports include "changes after signature or lock"."""
    client, headers = world["client"], world["headers"]
    r = client.get("/audit/reports/changes-after-signature-or-lock", headers=headers["data_manager", "MINSK"])
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "changes-after-signature-or-lock" and isinstance(r.json()["rows"], list)
