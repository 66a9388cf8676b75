"""Domain rules of signatures, queries, locks and SDV, without I/O (R25, R29, R30, R32, R34, R35)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import pytest

from domain.audit import Actor, make_stamp
from domain.errors import Conflict, InvalidInput, Locked
from domain.query import CANCELLED, CLOSED, OPEN, STATES, TRANSITIONS, DataQuery, next_state
from domain.schedule import PlannedVisit
from domain.signature import canonical_json, content_hash, verify
from domain.visit import Visit

INV = Actor("u-inv", "inv", "Dr Ivan Petrov", "investigator", "MINSK")
DM = Actor("u-dm", "dm", "Dana Manager", "data_manager", "*")
MON = Actor("u-mon", "mon", "Mo Nitor", "monitor", "MINSK")
ITEM = "mrss.fingers_right"


def visit() -> Visit:
    d = dt.date(2026, 1, 5)
    v = Visit.schedule(participant_id=str(uuid.uuid4()), site="MINSK", arm="standard",
                       plan=PlannedVisit("BL", d, d, d), randomised_on=d, stamp=make_stamp(INV))
    v.hold(d, make_stamp(INV), make_stamp(INV))
    v.set_item(ITEM, 1, make_stamp(INV))
    return v


def test_canonical_json_and_hash_are_documented_bytes():
    """R29: sorted keys, no whitespace, UTF-8; record id and version inside the hash."""
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    expected = hashlib.sha256(b'{"content":{"x":1},"record_id":"r","record_type":"visit","version":3}').hexdigest()
    assert content_hash("visit", "r", 3, {"x": 1}) == expected


def test_a_change_after_signing_invalidates_in_the_same_batch_of_events():
    """R30: the invalidation follows the breaking event and names it; the hash still verifies at the signed version."""
    v = visit()
    v.collect_events()
    sig = v.sign(INV, "approval", make_stamp(INV), "s1")
    signed_content = v.signed_content()
    assert verify(sig, "visit", str(v.id), signed_content)
    v.set_item(ITEM, 2, make_stamp(INV, reason="re-examined at the site"))
    events = v.collect_events()
    assert [type(e).__name__ for e in events] == ["VisitSigned", "ItemCorrected", "VisitSignatureInvalidated"]
    assert events[2].broken_by["version"] == events[1].originator_version
    assert v.signatures[0]["valid"] is False
    assert verify(v.signatures[0], "visit", str(v.id), signed_content)
    assert not verify(v.signatures[0], "visit", str(v.id), v.signed_content())
    assert not verify(v.signatures[0], "visit", str(uuid.uuid4()), signed_content)


def test_signing_rules():
    """R25: no signing of incomplete visits, no double signing, a known meaning only."""
    d = dt.date(2026, 1, 5)
    empty = Visit.schedule(participant_id="p", site="MINSK", arm="standard", plan=PlannedVisit("M1", d, d, d),
                           randomised_on=d, stamp=make_stamp(INV))
    with pytest.raises(Conflict, match="not recorded"):
        empty.sign(INV, "approval", make_stamp(INV), "s0")
    v = visit()
    with pytest.raises(InvalidInput):
        v.sign(INV, "looks fine", make_stamp(INV), "s1")
    v.sign(INV, "approval", make_stamp(INV), "s1")
    with pytest.raises(Conflict, match="already signed"):
        v.sign(INV, "approval", make_stamp(INV), "s2")
    v.sign(INV, "review", make_stamp(INV), "s3")


def test_a_locked_visit_refuses_entry_change_and_signature_and_unlock_needs_a_reason():
    """R25, R34."""
    v = visit()
    v.lock_record(make_stamp(DM, reason="cleaned"))
    with pytest.raises(Locked, match="Dana Manager"):
        v.set_item(ITEM, 2, make_stamp(INV, reason="late correction"))
    with pytest.raises(Locked):
        v.set_item("acr_eular.puffy_fingers", True, make_stamp(INV))
    with pytest.raises(Locked):
        v.sign(INV, "approval", make_stamp(INV), "s1")
    with pytest.raises(Conflict):
        v.lock_record(make_stamp(DM))
    with pytest.raises(InvalidInput):
        v.unlock_record(make_stamp(DM))
    v.unlock_record(make_stamp(DM, reason="query re-opened"))
    assert v.set_item(ITEM, 2, make_stamp(INV, reason="late correction"))


def test_sdv_flag_resets_when_the_value_changes_but_not_for_other_items():
    """R35."""
    v = visit()
    v.set_item("acr_eular.puffy_fingers", True, make_stamp(INV))
    assert v.verify_item(ITEM, make_stamp(MON)) and not v.verify_item(ITEM, make_stamp(MON))
    v.set_item("acr_eular.puffy_fingers", False, make_stamp(INV, reason="re-examined at the site"))
    assert ITEM in v.sdv
    v.collect_events()
    v.set_item(ITEM, None, make_stamp(INV, reason="site not examined after all"))
    assert ITEM not in v.sdv
    assert [type(e).__name__ for e in v.collect_events()] == ["ItemCleared", "ItemVerificationReset"]
    with pytest.raises(Conflict):
        v.verify_item(ITEM, make_stamp(MON))


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", ["answer", "close", "reopen", "cancel"])
def test_query_state_machine_table(state, action):
    """R32: exactly the ODM 2.0 transitions are allowed; everything else is a 409."""
    if (state, action) in TRANSITIONS:
        assert next_state(state, action) in STATES
    else:
        with pytest.raises(Conflict):
            next_state(state, action)


def test_query_lifecycle_events():
    q = DataQuery.open(query_id=uuid.uuid4(), visit_id="v", visit_code="BL", participant_id="p", site="MINSK",
                       item_code=ITEM, text="Source shows 2?", value_at_opening=1, stamp=make_stamp(MON))
    assert q.state == OPEN
    with pytest.raises(InvalidInput):
        q.answer("   ", make_stamp(INV))
    q.answer("Corrected", make_stamp(INV), correction={"item_code": ITEM, "old_value": 1, "new_value": 2})
    q.close(None, make_stamp(MON))
    assert q.state == CLOSED
    q.reopen("Also left hand?", make_stamp(MON))
    q.cancel("raised twice", make_stamp(MON, reason="raised twice"))
    assert q.state == CANCELLED and [m["kind"] for m in q.messages] == ["open", "answer", "close", "reopen", "cancel"]
    replayed = None
    for e in q.collect_events():
        replayed = e.mutate(replayed)
    assert replayed.state == CANCELLED and replayed.messages[1]["correction"]["new_value"] == 2
