"""A participant with a full story: visit held, items recorded, corrected and cleared, an AE reported,
corrected and followed up, another AE deleted, a participant field corrected."""

from __future__ import annotations

import datetime as dt
import time

import pytest

NOW = dt.datetime.now(dt.timezone.utc)


def z(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def ae_body(**overrides):
    body = {
        "aeterm": "Headache", "aestdat": (NOW - dt.timedelta(days=1)).date().isoformat(), "aetoxgr": "1",
        "aeser": "N", "aesdth": "N", "aeslife": "N", "aeshosp": "N", "aesdisab": "N", "aescong": "N", "aesmie": "N",
        "aerel_treg": "NOT APPLICABLE", "aerel_proc": "NOT RELATED", "aeout": "NOT RECOVERED/NOT RESOLVED",
        "aeacn": "NOT APPLICABLE", "aware_at": z(NOW - dt.timedelta(hours=3)),
    }
    return {**body, **overrides}


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture
def story(client, randomised_participant):
    """Returns a dict with pid, headers, visit ids, ae ids and instants between the steps."""
    pid, inv = randomised_participant()
    visits = {v["code"]: v for v in ok(client.get(f"/participants/{pid}/visits", headers=inv))}
    bl = visits["BL"]["id"]
    marks = {}
    time.sleep(0.002)
    marks["randomised"] = dt.datetime.now(dt.timezone.utc)
    ok(client.post(f"/visits/{bl}/held", json={"date": visits["BL"]["target_date"]}, headers=inv))
    ok(client.put(f"/visits/{bl}/items/acr_eular.puffy_fingers", json={"value": True}, headers=inv))
    ok(client.put(f"/visits/{bl}/items/acr_eular.raynaud_phenomenon", json={"value": None}, headers=inv))
    ok(client.put(f"/visits/{bl}/items/mrss.face", json={"value": 2}, headers=inv))
    time.sleep(0.002)
    marks["first_entry"] = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.002)
    ok(client.put(f"/visits/{bl}/items/mrss.face", json={"value": 3, "reason": "Re-examined by the same examiner"}, headers=inv))
    ok(client.put(f"/visits/{bl}/items/acr_eular.raynaud_phenomenon",
                  json={"value": True, "reason": "Patient diary shows colour change", "reason_code": "late_information"}, headers=inv))
    ok(client.put(f"/visits/{bl}/items/acr_eular.puffy_fingers", json={"value": None, "clear": True,
                  "reason": "Recorded on the wrong visit"}, headers=inv))
    ok(client.put(f"/visits/{bl}/items/acr_eular.puffy_fingers", json={"value": False,
                  "reason": "Re-entered after review of the source"}, headers=inv))
    ae = ok(client.post(f"/participants/{pid}/adverse-events", json=ae_body(), headers=inv), 201)
    ok(client.post(f"/adverse-events/{ae['id']}/corrections",
                   json={"field": "aetoxgr", "new_value": "2", "reason": "Grade 2 per the clinic note"}, headers=inv))
    wrong = ok(client.post(f"/participants/{pid}/adverse-events", json=ae_body(aeterm="Nausea"), headers=inv), 201)
    ok(client.post(f"/adverse-events/{wrong['id']}/deletion", json={"reason": "Entered for the wrong participant"}, headers=inv))
    ok(client.post(f"/participants/{pid}/corrections",
                   json={"field": "birth_year", "new_value": 1971, "reason": "Transcription error from the ID card"}, headers=inv))
    time.sleep(0.002)
    marks["end"] = dt.datetime.now(dt.timezone.utc)
    return {"pid": pid, "inv": inv, "bl": bl, "visits": visits, "ae": ae["id"], "deleted_ae": wrong["id"], "marks": marks}
