"""The visit schedule and the Visit aggregate's item rules (R5, R6, R8)."""

import datetime as dt

import pytest

from domain.audit import Actor, make_stamp
from domain.errors import Conflict, InvalidInput
from domain.schedule import schedule_for
from domain.trial import ARM_STANDARD, ARM_TREG
from domain.visit import Visit

R = dt.date(2026, 1, 10)
INV = Actor(user_id="u1", username="inv", full_name="Inv Estigator", role="investigator", site="MINSK")


def plan(arm):
    return {p.code: p for p in schedule_for(arm, R)}


def test_schedule_per_arm_and_anchor():
    treg, std = plan(ARM_TREG), plan(ARM_STANDARD)
    assert list(treg) == ["SCR", "BL", "BC", "INF", "D1", "D7", "M1", "M3", "M6", "M12"]
    assert list(std) == ["SCR", "BL", "D7", "M1", "M3", "M6", "M12"]
    day0 = R + dt.timedelta(days=21)  # planned Day 0 = R + manufacturing interval, in both arms
    assert treg["INF"].target_date == day0
    assert (treg["INF"].window_start, treg["INF"].window_end) == (R + dt.timedelta(14), R + dt.timedelta(35))
    assert (treg["SCR"].window_start, treg["SCR"].window_end) == (R - dt.timedelta(28), R - dt.timedelta(1))
    assert treg["BL"].target_date == R and treg["BC"].window_end == R + dt.timedelta(7)
    assert treg["D1"].window_end == day0 + dt.timedelta(2)
    for arm in (treg, std):
        m12 = arm["M12"]
        assert m12.target_date == day0 + dt.timedelta(365)
        assert (m12.window_start, m12.window_end) == (m12.target_date - dt.timedelta(14), m12.target_date + dt.timedelta(14))
        assert arm["M1"].window_start == day0 + dt.timedelta(27)


def new_visit(code="BL", held=True):
    """A scheduled visit; held on its target date unless ``held`` is false (items need the date held)."""
    v = Visit.schedule(participant_id="p1", site="MINSK", arm=ARM_TREG, plan=plan(ARM_TREG)[code], randomised_on=R,
                       stamp=make_stamp(INV))
    if held:
        v.hold(dt.date.fromisoformat(v.target_date), make_stamp(INV), make_stamp(INV))
    v.collect_events()
    return v


def test_a_visit_without_its_date_takes_no_item():
    """Issue 14.3: a visit's data are recorded once its date is recorded; nothing is recorded before."""
    v = new_visit("M12", held=False)
    for code, value, clear in (("mrss.face", 1, False), ("acr_eular.puffy_fingers", True, False),
                               ("mrss.face", None, False), ("acr_eular.puffy_fingers", None, True)):
        with pytest.raises(Conflict, match="record the visit date first"):
            v.set_item(code, value, make_stamp(INV, reason="entered on the wrong visit"), clear=clear)
    assert v.collect_events() == [] and v.items == {}
    v.hold(R + dt.timedelta(days=40), make_stamp(INV), make_stamp(INV))
    assert v.set_item("mrss.face", 1, make_stamp(INV))


def test_first_entry_needs_no_reason_later_changes_do_R5_R6():
    """R5, R6: one event per item; a change after the first entry needs a reason and keeps old and new."""
    v = new_visit()
    assert v.set_item("acr_eular.puffy_fingers", True, make_stamp(INV))
    with pytest.raises(InvalidInput) as e:
        v.set_item("acr_eular.puffy_fingers", False, make_stamp(INV))
    assert e.value.errors[0][0] == ("reason",)
    assert v.set_item("acr_eular.puffy_fingers", False, make_stamp(INV, reason="source note re-read"))
    events = v.collect_events()
    assert [type(e).__name__ for e in events] == ["ItemRecorded", "ItemCorrected"]
    assert events[1].changes == [{"field": "acr_eular.puffy_fingers", "old_value": True, "new_value": False}]
    assert not v.set_item("acr_eular.puffy_fingers", False, make_stamp(INV))  # no change, no event


@pytest.mark.parametrize("code,value", [
    ("mrss.face", 4), ("mrss.face", -1), ("mrss.face", True), ("mrss.face", 1.5), ("mrss.face", "2"),
    ("acr_eular.puffy_fingers", 1), ("acr_eular.puffy_fingers", "yes"),
])
def test_invalid_values_are_refused_with_the_value_path(code, value):
    v = new_visit()
    with pytest.raises(InvalidInput) as e:
        v.set_item(code, value, make_stamp(INV))
    assert e.value.errors[0][0] == ("value",)
    assert v.collect_events() == [] and v.items == {}


def test_unknown_item_code_is_refused():
    with pytest.raises(InvalidInput):
        new_visit().set_item("mrss.back", 1, make_stamp(INV))


def test_clearing_is_a_tombstone_with_the_old_value_R8():
    """R8: clearing keeps the old value in the event; re-entry afterwards is a change needing a reason."""
    v = new_visit()
    v.set_item("mrss.face", 2, make_stamp(INV))
    with pytest.raises(InvalidInput):
        v.set_item("mrss.face", None, make_stamp(INV))
    v.set_item("mrss.face", None, make_stamp(INV, reason="entered on the wrong visit"))
    assert "mrss.face" not in v.items
    with pytest.raises(InvalidInput):
        v.set_item("mrss.face", 1, make_stamp(INV))
    v.set_item("mrss.face", 1, make_stamp(INV, reason="examined again at this visit"))
    events = v.collect_events()
    assert [type(e).__name__ for e in events] == ["ItemRecorded", "ItemCleared", "ItemCorrected"]
    assert events[1].old_value == 2 and events[2].old_value is None


def test_acr_null_is_unknown_and_clear_is_explicit():
    v = new_visit()
    v.set_item("acr_eular.telangiectasia", None, make_stamp(INV))
    assert v.items == {"acr_eular.telangiectasia": None}
    v.set_item("acr_eular.telangiectasia", None, make_stamp(INV, reason="not assessed at this visit"), clear=True)
    assert v.items == {}
    with pytest.raises(Conflict):
        new_visit().set_item("acr_eular.telangiectasia", None, make_stamp(INV, reason="nothing to clear here"), clear=True)


def test_out_of_window_visit_is_recorded_with_a_deviation():
    v = new_visit("M1", held=False)
    late = dt.date.fromisoformat(v.window_end) + dt.timedelta(days=4)
    v.hold(late, make_stamp(INV), make_stamp(INV))
    events = v.collect_events()
    assert [type(e).__name__ for e in events] == ["VisitHeld", "ProtocolDeviationRecorded"]
    assert events[1].days_outside == 4 and v.status == "held_out_of_window"
    with pytest.raises(InvalidInput):
        v.hold(late - dt.timedelta(days=4), make_stamp(INV), make_stamp(INV))
    v.hold(late - dt.timedelta(days=4), make_stamp(INV, reason="date transcribed wrongly"), make_stamp(INV))
    assert v.status == "held"
