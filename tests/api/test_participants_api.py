"""The participant API per contract.md: auth, problems, history, as_of, expected_version, roles and sites."""

import datetime as dt
import time

import pytest

from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE, PASSWORD

SCREEN = {"screening_number": "SCR-001", "site": "MINSK", "sex": "F", "birth_year": 1970}


def test_without_a_token_every_endpoint_answers_401(client):
    for method, path in [("get", "/participants/x"), ("post", "/participants"), ("get", "/participants/x/history"), ("get", "/users")]:
        r = getattr(client, method)(path)
        assert r.status_code == 401, path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/participants/x", headers={"Authorization": "Bearer forged.token"}).status_code == 401


def test_token_flow_and_failed_logins(client, add_user):
    add_user("inv1", "investigator")
    r = client.post("/auth/token", data={"username": "inv1", "password": "not the password"})
    assert r.status_code == 401 and r.json()["detail"] == "incorrect username or password"
    r = client.post("/auth/token", data={"username": "inv1", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["token_type"] == "bearer" and r.json()["expires_in"] > 0
    me = client.get("/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()
    assert me["username"] == "inv1" and me["role"] == "investigator"


def test_expired_token_is_refused(client, add_user, services):
    user = add_user("inv1", "investigator")
    token = services.tokens.issue(user["id"], now=time.time() - 10_000)
    r = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_full_story_over_http_with_history(client, login):
    """The 'done when' of the foundation issue: screen, assess, consent, randomise, correct, history."""
    h = login("inv1", "investigator")
    r = client.post("/participants", json=SCREEN, headers=h)
    assert r.status_code == 201
    pid = r.json()["id"]
    assert r.json()["version"] == 1 and r.json()["status"] == "screened" and r.json()["arm"] is None
    r = client.post(f"/participants/{pid}/eligibility", json={"inclusion": INCLUSION_ALL_TRUE, "exclusion": EXCLUSION_ALL_FALSE}, headers=h)
    assert r.status_code == 200 and r.json()["eligible"] is True
    r = client.post(f"/participants/{pid}/consent", json={"consent_version": "ICF v1.0", "signed_on": "2026-01-05"}, headers=h)
    assert r.status_code == 200
    r = client.post(f"/participants/{pid}/randomisation", headers=h)
    assert r.status_code == 200 and r.json()["arm"] in ("treg_plus_standard", "standard")
    r = client.post(f"/participants/{pid}/corrections", json={"field": "birth_year", "new_value": 1971, "reason": "transcription error; see clinic note"}, headers=h)
    assert r.status_code == 200 and r.json()["birth_year"] == 1971
    state = client.get(f"/participants/{pid}", headers=h).json()
    assert {k: state[k] for k in ("id", "screening_number", "site", "status", "arm", "eligible", "version")} == {
        "id": pid, "screening_number": "SCR-001", "site": "MINSK", "status": "randomised",
        "arm": r.json()["arm"], "eligible": True, "version": 5,
    }
    history = client.get(f"/participants/{pid}/history", headers=h).json()
    assert [e["type"] for e in history] == ["ParticipantScreened", "EligibilityAssessed", "ConsentRecorded", "ParticipantRandomised", "FieldCorrected"]
    last = history[-1]
    assert last["actor"] == {"user_id": last["actor"]["user_id"], "username": "inv1", "full_name": "Inv1 Person", "role": "investigator", "site": "MINSK"}
    assert last["reason"] == "transcription error; see clinic note"
    assert last["changes"] == [{"field": "birth_year", "old_value": 1970, "new_value": 1971}]
    assert dt.datetime.fromisoformat(last["recorded_at"]).tzinfo is not None
    assert history[0]["reason"] is None


@pytest.mark.parametrize(
    "body,paths",
    [
        ({"field": "birth_year", "new_value": 1971}, ["body.reason"]),
        ({"field": "birth_year", "new_value": 1971, "reason": "   "}, ["body.reason"]),
        ({"field": "birth_year", "new_value": 1971, "reason": "n/a"}, ["body.reason"]),
        ({"field": "birth_year", "new_value": "old", "reason": "transcription error"}, ["body.new_value"]),
        ({"field": "arm", "new_value": "standard", "reason": "transcription error"}, ["body.field"]),
        ({"field": "birth_year", "new_value": 1971, "reason": "transcription error", "actor": {"role": "admin"}}, ["body.actor"]),
    ],
)
def test_bad_corrections_get_422_with_the_field_path_and_change_nothing_R5(client, login, body, paths):
    h = login("inv1", "investigator")
    pid = client.post("/participants", json=SCREEN, headers=h).json()["id"]
    r = client.post(f"/participants/{pid}/corrections", json=body, headers=h)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in r.json()["errors"]] == paths
    assert client.get(f"/participants/{pid}", headers=h).json()["version"] == 1


def test_screening_validation_lists_every_bad_field(client, login):
    h = login("inv1", "investigator")
    r = client.post("/participants", json={"screening_number": "", "site": "MINSK", "sex": "X", "birth_year": 1800}, headers=h)
    assert r.status_code == 422
    assert {e["path"] for e in r.json()["errors"]} == {"body.screening_number", "body.sex", "body.birth_year"}
    r = client.post(f"/participants", json={**SCREEN, "site": "NOWHERE"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.site"


def test_eligibility_must_answer_all_ten(client, login):
    h = login("inv1", "investigator")
    pid = client.post("/participants", json=SCREEN, headers=h).json()["id"]
    partial = dict(EXCLUSION_ALL_FALSE)
    partial.pop("other_risk_condition")
    r = client.post(f"/participants/{pid}/eligibility", json={"inclusion": INCLUSION_ALL_TRUE, "exclusion": partial}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.exclusion.other_risk_condition"
    r = client.post(f"/participants/{pid}/eligibility", json={"inclusion": {**INCLUSION_ALL_TRUE, "bogus": True}, "exclusion": EXCLUSION_ALL_FALSE}, headers=h)
    assert r.status_code == 422 and "body.inclusion.bogus" in r.json()["errors"][0]["path"]


def test_randomisation_409_unless_eligible_and_consented(client, login):
    h = login("inv1", "investigator")
    pid = client.post("/participants", json=SCREEN, headers=h).json()["id"]
    r = client.post(f"/participants/{pid}/randomisation", headers=h)
    assert r.status_code == 409 and "consent" in r.json()["detail"]


def test_stale_expected_version_answers_409_and_changes_nothing(client, login):
    h = login("inv1", "investigator")
    pid = client.post("/participants", json=SCREEN, headers=h).json()["id"]
    body = {"field": "sex", "new_value": "M", "reason": "wrong box ticked", "expected_version": 3}
    r = client.post(f"/participants/{pid}/corrections", json=body, headers=h)
    assert r.status_code == 409 and r.json()["current_version"] == 1
    assert client.get(f"/participants/{pid}", headers=h).json()["sex"] == "F"
    r = client.post(f"/participants/{pid}/corrections", json={**body, "expected_version": 1}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2


def test_duplicate_screening_number_is_409(client, login):
    h = login("inv1", "investigator")
    assert client.post("/participants", json=SCREEN, headers=h).status_code == 201
    r = client.post("/participants", json=SCREEN, headers=h)
    assert r.status_code == 409 and "already in use" in r.json()["detail"]


def test_as_of_over_http_R17(client, login):
    h = login("inv1", "investigator")
    pid = client.post("/participants", json=SCREEN, headers=h).json()["id"]
    time.sleep(0.01)
    instant = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    time.sleep(0.01)
    client.post(f"/participants/{pid}/corrections", json={"field": "sex", "new_value": "M", "reason": "wrong box ticked"}, headers=h)
    assert client.get(f"/participants/{pid}", params={"as_of": instant}, headers=h).json()["sex"] == "F"
    assert client.get(f"/participants/{pid}", headers=h).json()["sex"] == "M"
    r = client.get(f"/participants/{pid}", params={"as_of": "2026-01-01T00:00:00"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "query.as_of"


def test_site_walls_and_read_only_roles_R23_R33(client, login):
    minsk = login("inv1", "investigator", "MINSK")
    pid = client.post("/participants", json=SCREEN, headers=minsk).json()["id"]
    gomel = login("inv2", "investigator", "GOMEL")
    assert client.get(f"/participants/{pid}", headers=gomel).status_code == 403
    assert client.get(f"/participants/{pid}/history", headers=gomel).status_code == 403
    r = client.post(f"/participants/{pid}/corrections", json={"field": "sex", "new_value": "M", "reason": "trying across sites"}, headers=gomel)
    assert r.status_code == 403
    assert client.post("/participants", json={**SCREEN, "screening_number": "X-1"}, headers=gomel).status_code == 403
    assert [p["id"] for p in client.get("/participants", headers=gomel).json()] == []
    for role, site in [("inspector", "*"), ("monitor", "MINSK"), ("data_manager", "*")]:
        h = login(f"{role}1", role, site)
        assert client.get(f"/participants/{pid}", headers=h).status_code == 200
        assert client.get(f"/participants/{pid}/history", headers=h).status_code == 200
        r = client.post(f"/participants/{pid}/corrections", json={"field": "sex", "new_value": "M", "reason": "should be refused"}, headers=h)
        assert r.status_code == 403, role
        assert client.post("/participants", json={**SCREEN, "screening_number": f"{role}-1"}, headers=h).status_code == 403
    admin = login("admin1", "admin", "*")
    assert client.get(f"/participants/{pid}", headers=admin).status_code == 403
    assert client.get(f"/participants/{pid}", headers=minsk).json()["version"] == 1


def test_unknown_participant_is_404(client, login):
    h = login("inv1", "investigator")
    assert client.get("/participants/00000000-0000-0000-0000-000000000000", headers=h).status_code == 404
    assert client.get("/participants/not-a-uuid", headers=h).status_code == 404


def test_user_administration_over_http_R22(client, login):
    admin = login("admin1", "admin", "*")
    r = client.post("/users", json={"username": "coord1", "full_name": "Olga Coordinator", "role": "coordinator", "site": "MINSK", "password": PASSWORD}, headers=admin)
    assert r.status_code == 201
    uid = r.json()["id"]
    r = client.post(f"/users/{uid}/deactivation", json={"reason": "left the site team"}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.post("/auth/token", data={"username": "coord1", "password": PASSWORD}).status_code == 401
    r = client.post("/users", json={"username": "coord1", "full_name": "Someone Else", "role": "coordinator", "site": "MINSK", "password": PASSWORD}, headers=admin)
    assert r.status_code == 409
    inv = login("inv1", "investigator")
    assert client.get("/users", headers=inv).status_code == 403
    assert client.get(f"/users/{uid}/history", headers=login("insp1", "inspector", "*")).status_code == 200
