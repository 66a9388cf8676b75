"""Issue 14 items 1, 2, 3 and 9 over HTTP, on both stores: an item's history with its SDV marks, corrections
that cite a data query, the visit-date rule for item entry, and the study's data dictionary."""

from __future__ import annotations

import datetime as dt
import uuid

from domain.visit import Visit

ITEM = "mrss.fingers_right"


def _held(client, vid: str, headers: dict, date: str = "2026-01-05") -> None:
    r = client.post(f"/visits/{vid}/held", json={"date": date}, headers=headers)
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- 14.1 item history and SDV (R13, R35)
def test_item_history_lists_values_and_verification_marks_as_what_they_are(client, randomised_participant, login):
    pid, inv = randomised_participant()
    mon = login("mon1", "monitor", "MINSK")
    bl = str(Visit.id_for(pid, "BL"))
    _held(client, bl, inv)
    assert client.put(f"/visits/{bl}/items/{ITEM}", json={"value": 2}, headers=inv).status_code == 200
    assert client.post(f"/visits/{bl}/items/{ITEM}/sdv", headers=mon).status_code == 200
    r = client.put(f"/visits/{bl}/items/{ITEM}", json={"value": 3, "reason": "late source update"}, headers=inv)
    assert r.status_code == 200, r.text
    correction_version = r.json()["version"] - 1  # the reset is saved right after the correction

    r = client.get(f"/visits/{bl}/items/{ITEM}/history", headers=mon)
    assert r.status_code == 200, r.text  # was 500 on main
    history = r.json()
    assert [h["kind"] for h in history] == ["value", "verification", "value", "verification_reset"]
    first, mark, change, reset = history
    # only value entries are value changes: the SDV mark is not "null -> 2"
    assert [(h["old_value"], h["new_value"]) for h in history if h["kind"] == "value"] == [(None, 2), (2, 3)]
    assert "new_value" not in mark and mark["verified_value"] == 2 and mark["actor"]["role"] == "monitor"
    assert mark["type"] == "ItemVerified"
    # who verified which value, when, and which change reset it
    assert first["verification"]["verified_by"]["username"] == "mon1"
    assert first["verification"]["verified_at"] == mark["recorded_at"]
    assert first["verification"]["reset_by_version"] == change["version"] == correction_version
    assert change["verification"] is None and change["reason"] == "late source update"
    assert reset["type"] == "ItemVerificationReset" and reset["verified_value"] == 2
    assert reset["reset_by_version"] == change["version"] and "new_value" not in reset
