"""R17: the casebook replayed from events equals the live views; as-of, valid-at, diff and steps."""

from __future__ import annotations

import datetime as dt

from tests.export.conftest import ok, z


def test_replaying_every_event_reproduces_the_current_state_R17(client, story):
    pid, inv = story["pid"], story["inv"]
    cb = ok(client.get(f"/participants/{pid}/casebook", headers=inv))
    live = ok(client.get(f"/participants/{pid}", headers=inv))
    assert cb["participant"] == live
    live_visits = ok(client.get(f"/participants/{pid}/visits", headers=inv))
    assert [v["id"] for v in cb["visits"]] == [v["id"] for v in live_visits]
    for replayed, summary in zip(cb["visits"], live_visits):
        full = ok(client.get(f"/visits/{summary['id']}", headers=inv))
        assert {k: replayed[k] for k in full} == full
        for k in ("code", "target_date", "window_start", "window_end", "held_on", "status", "version"):
            assert replayed[k] == summary[k]
    assert cb["scores"] == ok(client.get(f"/participants/{pid}/scores", headers=inv))
    for ae in cb["adverse_events"]:
        full = ok(client.get(f"/adverse-events/{ae['id']}", headers=inv))
        assert {k: ae[k] for k in full} == full
    assert {ae["id"] for ae in cb["adverse_events"]} == {story["ae"], story["deleted_ae"]}
    history = ok(client.get(f"/participants/{pid}/history", headers=inv))
    assert len(cb["participant_history"]) == len(history)


def test_as_of_shows_the_values_recorded_then_R17(client, story):
    pid, inv, bl = story["pid"], story["inv"], story["bl"]
    cb = ok(client.get(f"/participants/{pid}/casebook", params={"as_of": z(story["marks"]["first_entry"])}, headers=inv))
    visit = next(v for v in cb["visits"] if v["id"] == bl)
    assert visit["items"] == {"acr_eular.puffy_fingers": True, "acr_eular.raynaud_phenomenon": None, "mrss.face": 2}
    assert cb["adverse_events"] == []
    assert cb["participant"]["birth_year"] == 1970
    now = ok(client.get(f"/participants/{pid}/casebook", headers=inv))
    assert next(v for v in now["visits"] if v["id"] == bl)["items"]["mrss.face"] == 3
    assert client.get(f"/participants/{pid}/casebook", params={"as_of": "2000-01-01T00:00:00Z"}, headers=inv).status_code == 404


def test_valid_at_keeps_what_happened_by_that_clinical_date(client, story):
    pid, inv = story["pid"], story["inv"]
    held = story["visits"]["BL"]["target_date"]
    day_before = (dt.date.fromisoformat(held) - dt.timedelta(days=1)).isoformat()
    cb = ok(client.get(f"/participants/{pid}/casebook", params={"valid_at": held}, headers=inv))
    assert [v["code"] for v in cb["visits"]] == ["BL"]
    assert {ae["aeterm"] for ae in cb["adverse_events"]} == {"Headache", "Nausea"}
    cb = ok(client.get(f"/participants/{pid}/casebook", params={"valid_at": day_before}, headers=inv))
    assert cb["visits"] == []
    both = ok(client.get(f"/participants/{pid}/casebook",
                         params={"valid_at": held, "as_of": z(story["marks"]["randomised"])}, headers=inv))
    assert both["visits"] == [] and both["adverse_events"] == []


def test_diff_between_two_instants_names_old_new_and_the_events(client, story):
    pid, inv, bl = story["pid"], story["inv"], story["bl"]
    d = ok(client.get(f"/participants/{pid}/casebook/diff",
                      params={"from": z(story["marks"]["first_entry"]), "to": z(story["marks"]["end"])}, headers=inv))
    by = {(c["record_id"], c["field"]): c for c in d["changes"]}
    face = by[(bl, "mrss.face")]
    assert (face["old_value"], face["new_value"]) == (2, 3) and face["net_change"]
    assert face["events"][0]["type"] == "ItemCorrected" and face["events"][0]["reason"] == "Re-examined by the same examiner"
    puffy = by[(bl, "acr_eular.puffy_fingers")]
    assert (puffy["old_value"], puffy["new_value"]) == (True, False)
    assert [e["type"] for e in puffy["events"]] == ["ItemCleared", "ItemCorrected"]
    assert by[(pid, "birth_year")]["old_value"] == 1970 and by[(pid, "birth_year")]["new_value"] == 1971
    assert by[(story["ae"], "aetoxgr")]["new_value"] == "2"
    r = client.get(f"/participants/{pid}/casebook/diff", params={"from": "2026-01-01T00:00:00", "to": z(story["marks"]["end"])}, headers=inv)
    assert r.status_code == 422


def test_steps_page_through_every_event_with_the_state_after(client, story):
    pid, inv = story["pid"], story["inv"]
    first = ok(client.get(f"/participants/{pid}/casebook/steps", params={"limit": 5}, headers=inv))
    total = first["total"]
    assert first["steps"][0]["event"]["type"] == "ParticipantScreened"
    assert first["steps"][0]["state_after"]["version"] == 1
    steps, offset = [], 0
    while offset is not None:
        page = ok(client.get(f"/participants/{pid}/casebook/steps", params={"offset": offset, "limit": 7}, headers=inv))
        steps += page["steps"]
        offset = page["next_offset"]
    assert len(steps) == total and [s["step"] for s in steps] == list(range(total))
    last_face = [s for s in steps if s["event"]["record_id"] == story["bl"]][-1]["state_after"]
    assert last_face["items"]["mrss.face"] == 3


def test_casebook_access_follows_sites_and_roles_R23(client, story, login):
    pid = story["pid"]
    assert client.get(f"/participants/{pid}/casebook", headers=login("insp1", "inspector", "*")).status_code == 200
    assert client.get(f"/participants/{pid}/casebook", headers=login("dm1", "data_manager", "*")).status_code == 200
    assert client.get(f"/participants/{pid}/casebook", headers=login("mon1", "monitor", "MINSK")).status_code == 200
    for user, role, site in (("inv_g", "investigator", "GOMEL"), ("mon_g", "monitor", "GOMEL"), ("adm", "admin", "*")):
        h = login(user, role, site)
        for path in ("casebook", "casebook.html", "casebook/steps"):
            assert client.get(f"/participants/{pid}/{path}", headers=h).status_code == 403
        assert client.get("/exports/odm", params={"participant": pid}, headers=h).status_code == 403
    assert client.get(f"/participants/{pid}/casebook").status_code == 401
