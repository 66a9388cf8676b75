"""Visits, items and scores over HTTP: the issue's acceptance scenario (R5, R6, R7, R8, R13, R17)."""

import datetime as dt

import pytest

from domain.scoring import MRSS_SITES

BL_FINDINGS = {"puffy_fingers": True, "sclerodactyly": False, "raynaud_phenomenon": True, "abnormal_nailfold_capillaries": True,
               "anti_topoisomerase_i": True, "skin_thickening_proximal_to_mcp": False}


def put(client, headers, vid, code, value, **extra):
    return client.put(f"/visits/{vid}/items/{code}", json={"value": value, **extra}, headers=headers)


def visits_by_code(client, pid, headers):
    r = client.get(f"/participants/{pid}/visits", headers=headers)
    assert r.status_code == 200, r.text
    return {v["code"]: v for v in r.json()}


def test_visits_are_created_at_randomisation(client, randomised_participant):
    pid, headers = randomised_participant()
    arm = client.get(f"/participants/{pid}", headers=headers).json()["arm"]
    visits = visits_by_code(client, pid, headers)
    expected = {"SCR", "BL", "D7", "M1", "M3", "M6", "M12"} | ({"BC", "INF", "D1"} if arm == "treg_plus_standard" else set())
    assert set(visits) == expected
    for v in visits.values():
        assert set(v) >= {"id", "code", "target_date", "window_start", "window_end", "status"}
        assert v["status"] == "scheduled" and v["window_start"] <= v["target_date"] <= v["window_end"]
    m12 = dt.date.fromisoformat(visits["M12"]["target_date"])
    assert (m12 - dt.date.fromisoformat(visits["BL"]["target_date"])).days == 365 + 21


def test_investigator_records_baseline_and_m12_corrects_and_sees_scores_change(client, randomised_participant, login):
    """R5, R6, R7, R13: an item change needs a reason, keeps old and new values, and the scores follow."""
    pid, headers = randomised_participant()
    visits = visits_by_code(client, pid, headers)
    bl, m12 = visits["BL"]["id"], visits["M12"]["id"]
    r = client.post(f"/visits/{bl}/held", json={"date": visits["BL"]["target_date"]}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "held", r.text
    for code, value in BL_FINDINGS.items():
        assert put(client, headers, bl, f"acr_eular.{code}", value).status_code == 200
    for i, site in enumerate(MRSS_SITES):
        assert put(client, headers, bl, f"mrss.{site}", i % 3).status_code == 200
    # M12 is a year ahead; its data are recorded once a date is (here today: out of window, a deviation)
    r = client.post(f"/visits/{m12}/held", json={"date": visits["BL"]["target_date"]}, headers=headers)
    assert r.status_code == 200, r.text
    for code, value in {**BL_FINDINGS, "sclerodactyly": True}.items():
        assert put(client, headers, m12, f"acr_eular.{code}", value).status_code == 200
    for site in MRSS_SITES:
        assert put(client, headers, m12, f"mrss.{site}", 1).status_code == 200

    scores = {s["visit_code"]: s for s in client.get(f"/participants/{pid}/scores", headers=headers).json()}
    assert scores["BL"]["acr_eular"]["total_score"] == 2 + 3 + 2 + 3  # puffy, Raynaud, nailfold, antibody
    assert scores["BL"]["acr_eular"]["meets_criteria"] is True and scores["BL"]["acr_eular"]["rule"]
    assert scores["M12"]["acr_eular"]["total_score"] == 4 + 3 + 2 + 3
    assert scores["M12"]["acr_eular"]["change_from_baseline"] == 2
    bl_mrss = sum(i % 3 for i in range(17))
    assert scores["BL"]["mrss"]["total"] == bl_mrss and scores["M12"]["mrss"]["total"] == 17
    assert scores["M12"]["mrss"]["change_from_baseline"] == 17 - bl_mrss
    before_correction = dt.datetime.now(dt.timezone.utc)

    # a change without a reason: 422, nothing changes
    r = put(client, headers, m12, "acr_eular.sclerodactyly", False)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert any(e["path"] == "body.reason" for e in r.json()["errors"])
    r = put(client, headers, m12, "acr_eular.sclerodactyly", False, reason="   ")
    assert r.status_code == 422
    mon = login("mon1", "monitor", "MINSK")
    query = client.post("/queries", json={"visit_id": m12, "item_code": "acr_eular.sclerodactyly",
                                          "text": "Source says puffiness only"}, headers=mon).json()
    r = put(client, headers, m12, "acr_eular.sclerodactyly", False, reason="Re-examined: skin thickening is puffiness only",
            reason_code="source_document_updated", query_id=query["id"])
    assert r.status_code == 200 and r.json()["changed"] is True, r.text

    scores = {s["visit_code"]: s for s in client.get(f"/participants/{pid}/scores", headers=headers).json()}
    assert scores["M12"]["acr_eular"]["total_score"] == 10 and scores["M12"]["acr_eular"]["change_from_baseline"] == 0

    history = client.get(f"/visits/{m12}/items/acr_eular.sclerodactyly/history", headers=headers).json()
    assert [(h["old_value"], h["new_value"], h["reason"]) for h in history] == [
        (None, True, None), (True, False, "Re-examined: skin thickening is puffiness only")]
    assert history[1]["query_id"] == query["id"] and history[1]["actor"]["role"] == "investigator"
    assert history[1]["recorded_at"].endswith("Z")

    # as recorded before the correction (R17)
    old = {s["visit_code"]: s for s in client.get(
        f"/participants/{pid}/scores", params={"as_of": before_correction.isoformat()}, headers=headers).json()}
    assert old["M12"]["acr_eular"]["total_score"] == 12

    # the primary-outcome table per arm
    dm = login("dm1", "data_manager", "*")
    table = client.get("/outcomes/primary", headers=dm)
    assert table.status_code == 200, table.text
    arm = client.get(f"/participants/{pid}", headers=headers).json()["arm"]
    row = next(a for a in table.json()["arms"] if a["arm"] == arm)
    assert row["acr_eular_total"]["n"] == 1 and row["acr_eular_total"]["mean"] == 10 and row["classified"] == 1
    assert row["mrss_change"]["median"] == 17 - bl_mrss


@pytest.mark.parametrize("code,value", [
    ("mrss.face", 4), ("mrss.face", -1), ("mrss.face", 2.0), ("mrss.face", "2"), ("mrss.face", True),
    ("acr_eular.puffy_fingers", 1), ("acr_eular.puffy_fingers", "true"), ("mrss.back", 1), ("acr_eular.nope", True),
])
def test_invalid_values_get_422_and_change_nothing(client, randomised_participant, code, value):
    pid, headers = randomised_participant()
    vid = visits_by_code(client, pid, headers)["BL"]["id"]
    version = client.get(f"/visits/{vid}", headers=headers).json()["version"]
    r = put(client, headers, vid, code, value)
    assert r.status_code == 422, r.text
    after = client.get(f"/visits/{vid}", headers=headers).json()
    assert after["version"] == version and after["items"] == {}


def test_clearing_keeps_the_old_value_visible_R8(client, randomised_participant):
    """R8: a cleared item is an event; the history still shows the value it had."""
    pid, headers = randomised_participant()
    vid = visits_by_code(client, pid, headers)["M1"]["id"]
    today = visits_by_code(client, pid, headers)["BL"]["target_date"]
    assert client.post(f"/visits/{vid}/held", json={"date": today}, headers=headers).status_code == 200
    assert put(client, headers, vid, "mrss.face", 2).status_code == 200
    assert put(client, headers, vid, "mrss.face", None).status_code == 422  # a clear needs a reason
    assert put(client, headers, vid, "mrss.face", None, reason="recorded on the wrong visit").status_code == 200
    put(client, headers, vid, "acr_eular.telangiectasia", True)
    r = put(client, headers, vid, "acr_eular.telangiectasia", None, clear=True, reason="assessment not done at M1")
    assert r.status_code == 200 and r.json()["recorded"] is False
    visit = client.get(f"/visits/{vid}", headers=headers).json()
    assert visit["items"] == {} and set(visit["cleared_items"]) == {"mrss.face", "acr_eular.telangiectasia"}
    h = client.get(f"/visits/{vid}/items/mrss.face/history", headers=headers).json()
    assert [(x["type"], x["old_value"], x["new_value"], x["cleared"]) for x in h] == [
        ("ItemRecorded", None, 2, False), ("ItemCleared", 2, None, True)]


def test_out_of_window_visit_records_a_protocol_deviation(client, randomised_participant):
    pid, headers = randomised_participant()
    bl = visits_by_code(client, pid, headers)["BL"]
    late = dt.date.fromisoformat(bl["window_end"]) - dt.timedelta(days=3)  # before randomisation: outside
    r = client.post(f"/visits/{bl['id']}/held", json={"date": late.isoformat()}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "held_out_of_window" and body["deviations"][0]["days_outside"] == -3
    hist = client.get(f"/visits/{bl['id']}/history", headers=headers).json()
    assert [h["type"] for h in hist][-2:] == ["VisitHeld", "ProtocolDeviationRecorded"]
    future = (dt.date.today() + dt.timedelta(days=5)).isoformat()
    assert client.post(f"/visits/{bl['id']}/held", json={"date": future, "reason": "moved"}, headers=headers).status_code == 422


def test_unscheduled_visit(client, randomised_participant):
    pid, headers = randomised_participant()
    today = visits_by_code(client, pid, headers)["BL"]["target_date"]
    r = client.post(f"/participants/{pid}/visits", json={"reason": "flare of digital ulcers", "date": today},
                    headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["code"] == "UNS" and r.json()["target_date"] is None
    assert put(client, headers, r.json()["id"], "acr_eular.digital_tip_ulcers", True).status_code == 200
    assert "UNS" in visits_by_code(client, pid, headers)
    assert any(s["visit_code"] == "UNS" for s in client.get(f"/participants/{pid}/scores", headers=headers).json())


def test_access_across_sites_and_roles(client, randomised_participant, login):
    pid, headers = randomised_participant(site="MINSK")
    vid = visits_by_code(client, pid, headers)["BL"]["id"]
    gomel_inv = login("inv_gomel", "investigator", "GOMEL")
    minsk_mon = login("mon_minsk", "monitor", "MINSK")
    inspector = login("insp", "inspector", "*")
    admin = login("adm", "admin", "*")
    assert put(client, gomel_inv, vid, "mrss.face", 1).status_code == 403
    assert client.get(f"/visits/{vid}", headers=gomel_inv).status_code == 403
    assert client.get(f"/participants/{pid}/scores", headers=gomel_inv).status_code == 403
    assert put(client, minsk_mon, vid, "mrss.face", 1).status_code == 403
    assert client.get(f"/visits/{vid}", headers=minsk_mon).status_code == 200
    assert put(client, inspector, vid, "mrss.face", 1).status_code == 403
    assert client.get(f"/participants/{pid}/visits", headers=inspector).status_code == 200
    assert client.get(f"/visits/{vid}", headers=admin).status_code == 403
    assert client.get("/outcomes/primary", headers=admin).status_code == 403
    assert client.get("/outcomes/primary", headers=minsk_mon).json()["site"] == "MINSK"
    assert client.get("/outcomes/primary", params={"site": "MINSK"}, headers=gomel_inv).status_code == 403
