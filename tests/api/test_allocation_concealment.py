"""Issue 13 E.19: site roles never see allocation slots or the block structure (R23, allocation
concealment per ICH E9 §2.3.2); sponsor-side roles and the event log keep them."""

from __future__ import annotations

import pytest

from application.concealment import concealed_field


def _fields(changes) -> set[str]:
    return {c["field"] for c in changes or ()}


@pytest.mark.parametrize("role", ["investigator", "coordinator", "monitor"])
def test_site_roles_see_no_slot_and_no_rule_anywhere(client, login, randomised_participant, role):
    inv = login("inv1", "investigator")
    for _ in range(2):  # a few allocations at the site, so the sequence has slots worth hiding
        randomised_participant(inv)
    pid, _ = randomised_participant(inv)
    viewer = inv if role == "investigator" else login(f"{role}1", role)

    assert client.get(f"/participants/{pid}", headers=viewer).json()["allocation_slot"] is None
    history = client.get(f"/participants/{pid}/history", headers=viewer).json()
    randomised = next(h for h in history if h["type"] == "ParticipantRandomised")
    assert _fields(randomised["changes"]) == {"arm"}
    trail = client.get("/audit/events", params={"limit": 500}, headers=viewer).json()["events"]
    assert any(e["type"] == "AllocationUsed" for e in trail)
    leaked = {f for e in trail for f in _fields(e["changes"]) if concealed_field(f)}
    assert leaked == set()
    assert "allocation_slot" not in str(trail) and "block sizes" not in str(trail)
    item = client.get(f"/audit/items/{pid}/allocation_slot", headers=viewer).json()
    assert item["values"] == []
    casebook = client.get(f"/participants/{pid}/casebook", headers=viewer).json()
    assert casebook["participant"]["allocation_slot"] is None
    assert all(not concealed_field(f) for h in casebook["participant_history"] for f in _fields(h["changes"]))


def test_the_randomisation_response_carries_no_slot(client, login):
    from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE

    inv = login("inv2", "investigator")
    pid = client.post("/participants", json={"screening_number": "S-CONC-1", "site": "MINSK", "sex": "F",
                                             "birth_year": 1970}, headers=inv).json()["id"]
    client.post(f"/participants/{pid}/eligibility", json={"inclusion": INCLUSION_ALL_TRUE,
                                                          "exclusion": EXCLUSION_ALL_FALSE}, headers=inv)
    client.post(f"/participants/{pid}/consent", json={"consent_version": "ICF v1.0", "signed_on": "2026-01-05"},
                headers=inv)
    r = client.post(f"/participants/{pid}/randomisation", headers=inv)
    assert r.status_code == 200, r.text
    assert r.json()["allocation_slot"] is None and r.json()["arm"] in ("treg_plus_standard", "standard")
    assert "slot" not in client.post(f"/participants/{pid}/randomisation", headers=inv).json()["detail"]


def test_sponsor_roles_still_see_the_slot(client, login, randomised_participant):
    pid, _ = randomised_participant()
    dm = login("dm1", "data_manager", "*")
    assert client.get(f"/participants/{pid}", headers=dm).json()["allocation_slot"] == 1
    history = client.get(f"/participants/{pid}/history", headers=dm).json()
    assert "allocation_slot" in _fields(next(h for h in history if h["type"] == "ParticipantRandomised")["changes"])


def test_the_odm_export_of_a_site_role_carries_no_slot(client, login, randomised_participant):
    """E.19: a site-bound user's ODM archive (participant or site) holds the arm but not the allocation slot;
    a data manager's holds both."""
    inv = login("inv1", "investigator")
    pid, _ = randomised_participant(inv)
    dm = login("dm1", "data_manager", "*")
    for who, slot_expected in ((inv, False), (dm, True)):
        for params in ({"participant": pid}, {}):
            r = client.get("/exports/odm", params=params, headers=who)
            assert r.status_code == 200, r.text
            assert ('<ItemData ItemOID="IT.RAND.ALLOCATION_SLOT"' in r.text) is slot_expected, params
            assert '<ItemData ItemOID="IT.RAND.ARM"' in r.text
