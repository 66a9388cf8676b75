"""Domain rules of the participant lifecycle, without I/O."""

import datetime as dt
import uuid

import pytest

from domain.audit import Actor, make_stamp, validate_reason
from domain.errors import Conflict, InvalidInput
from domain.participant import Participant
from domain.trial import ARMS, EXCLUSION_CODES, INCLUSION_CODES, assess_eligibility

INV = Actor("u-1", "inv", "Dr A. Investigator", "investigator", "MINSK")
TODAY = dt.date(2026, 11, 26)
ALL_IN = {c: True for c in INCLUSION_CODES}
NONE_EX = {c: False for c in EXCLUSION_CODES}


def screened(**kw) -> Participant:
    values = {"screening_number": "SCR-001", "site": "MINSK", "sex": "F", "birth_year": 1970, **kw}
    return Participant.screen(participant_id=uuid.uuid4(), stamp=make_stamp(INV), **values)


def test_every_event_carries_the_actor_as_they_were_R3():
    p = screened()
    event = p.pending_events[0]
    assert event.audit["actor"] == {
        "user_id": "u-1", "username": "inv", "full_name": "Dr A. Investigator", "role": "investigator", "site": "MINSK",
    }
    assert event.timestamp.tzinfo is not None and event.timestamp.utcoffset() == dt.timedelta(0)  # R4


def test_an_event_cannot_be_made_without_an_actor_R1():
    with pytest.raises(ValueError, match="actor"):
        make_stamp(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="actor"):
        Participant.screen(participant_id=uuid.uuid4(), screening_number="S", site="MINSK", sex="F",
                           birth_year=1970, stamp={"actor": {}, "reason": None})


@pytest.mark.parametrize("reason", [None, "", "   ", "n/a", "NA", "-", "...", "test", "x", "fix", "ok"])
def test_blank_or_placeholder_reasons_are_refused_R5(reason):
    with pytest.raises(InvalidInput):
        validate_reason(reason)


def test_a_real_reason_is_kept_with_whitespace_folded_R5():
    assert validate_reason("  transcription   error,  see source  ") == "transcription error, see source"


def test_screening_refuses_every_bad_field_at_once():
    with pytest.raises(InvalidInput) as e:
        screened(screening_number=" ", sex="female", birth_year=1800)
    assert {p for p, _ in e.value.errors} == {("screening_number",), ("sex",), ("birth_year",)}


def test_screening_number_refuses_names_and_free_text():
    with pytest.raises(InvalidInput):
        screened(screening_number="Ivan Petrov")


@pytest.mark.parametrize(
    "inclusion,exclusion,eligible",
    [
        (ALL_IN, NONE_EX, True),
        ({**ALL_IN, "ssc_clinical_diagnosis": False}, NONE_EX, False),
        ({**ALL_IN, "written_informed_consent": False}, NONE_EX, False),
        (ALL_IN, {**NONE_EX, "malignancy_last_5_years": True}, False),
        (ALL_IN, {**NONE_EX, "other_risk_condition": True}, False),
    ],
)
def test_eligible_iff_every_inclusion_holds_and_no_exclusion_does(inclusion, exclusion, eligible):
    assert assess_eligibility(inclusion, exclusion) == (eligible, [])


def test_all_ten_criteria_must_be_answered():
    partial = dict(NONE_EX)
    del partial["decompensated_disease"]
    eligible, errors = assess_eligibility(ALL_IN, {**partial, "made_up": False})
    assert (("exclusion", "decompensated_disease"), "must be answered (true or false)") in errors
    assert any(path == ("exclusion", "made_up") for path, _ in errors)


def test_randomisation_needs_eligibility_and_consent():
    p = screened()
    with pytest.raises(Conflict, match="eligibility has not been assessed and consent has not been recorded"):
        p.check_can_randomise()
    p.assess_eligibility(ALL_IN, {**NONE_EX, "decompensated_disease": True}, make_stamp(INV))
    p.record_consent("ICF v1", "2026-01-01", make_stamp(INV), TODAY)
    with pytest.raises(Conflict, match="not eligible"):
        p.check_can_randomise()


def test_reassessment_of_eligibility_needs_a_reason_R5():
    p = screened()
    p.assess_eligibility(ALL_IN, NONE_EX, make_stamp(INV))
    with pytest.raises(InvalidInput, match="reason"):
        p.assess_eligibility(ALL_IN, {**NONE_EX, "other_risk_condition": True}, make_stamp(INV))
    p.assess_eligibility(ALL_IN, {**NONE_EX, "other_risk_condition": True}, make_stamp(INV, reason="new cardiology report received"))
    assert p.eligible is False
    assert p.pending_events[-1].changes == [
        {"field": "eligibility.exclusion.other_risk_condition", "old_value": False, "new_value": True},
        {"field": "eligible", "old_value": True, "new_value": False},
    ]


def test_correction_keeps_old_and_new_value_and_reason_R5_R6():
    p = screened()
    stamp = make_stamp(INV, reason="transcription error from the screening log", reason_required=True)
    p.correct("birth_year", 1971, stamp, TODAY)
    event = p.pending_events[-1]
    assert (event.field, event.old_value, event.new_value) == ("birth_year", 1970, 1971)
    assert event.changes == [{"field": "birth_year", "old_value": 1970, "new_value": 1971}]
    assert event.audit["reason"] == "transcription error from the screening log"


@pytest.mark.parametrize(
    "field,value,path",
    [
        ("arm", "standard", ("field",)),
        ("site", "GOMEL", ("field",)),
        ("nonsense", 1, ("field",)),
        ("birth_year", "1971", ("new_value",)),
        ("sex", "female", ("new_value",)),
        ("birth_year", 1970, ("new_value",)),  # no change
    ],
)
def test_bad_corrections_are_refused_and_change_nothing(field, value, path):
    p = screened()
    version = p.version
    with pytest.raises(InvalidInput) as e:
        p.correct(field, value, make_stamp(INV, reason="correcting per source document", reason_required=True), TODAY)
    assert e.value.errors[0][0] == path
    assert p.version == version


def test_correcting_a_criterion_recomputes_eligibility():
    p = screened()
    p.assess_eligibility(ALL_IN, NONE_EX, make_stamp(INV))
    p.correct("eligibility.inclusion.can_follow_procedures", False,
              make_stamp(INV, reason="investigator re-read the source note", reason_required=True), TODAY)
    assert p.eligible is False and p.status == "screen_failed"


def test_withdrawal_is_final_for_new_data_but_corrections_remain_possible():
    p = screened()
    p.withdraw("participant relocated abroad", make_stamp(INV, reason="participant relocated abroad", reason_required=True))
    assert p.status == "withdrawn"
    with pytest.raises(Conflict):
        p.record_consent("ICF v1", "2026-01-01", make_stamp(INV), TODAY)
    p.correct("sex", "M", make_stamp(INV, reason="transcription error on screening form", reason_required=True), TODAY)
    assert p.sex == "M"


def test_the_copy_for_a_command_shares_nothing_mutable_with_the_cached_participant():
    """Participant.__deepcopy__ (the repository copies the cached aggregate for every command): a
    command's changes, saved or not, never reach the cached copy, and every attribute is either
    immutable or copied, so a new mutable attribute cannot slip in unnoticed."""
    import copy

    p = screened()
    p.assess_eligibility(ALL_IN, NONE_EX, make_stamp(INV))
    p.record_consent("ICF v1", "2026-01-01", make_stamp(INV), TODAY)
    p.randomise(ARMS[0], 1, "MINSK", "rule", make_stamp(INV))
    p.collect_events()
    immutable = (str, int, bool, type(None), dt.datetime, uuid.UUID)
    for name, value in vars(p).items():
        assert isinstance(value, immutable) or name in (*Participant._MUTABLE, "_pending_events"), name
    before = copy.deepcopy(vars(p))
    clone = copy.deepcopy(p)
    assert type(clone) is Participant and vars(clone) == vars(p)
    for name in (*Participant._MUTABLE, "_pending_events"):
        assert getattr(clone, name) is not getattr(p, name)
    clone.correct("birth_year", 1971, make_stamp(INV, reason="transcription error at entry"), TODAY)
    clone.correct("eligibility.inclusion." + INCLUSION_CODES[0], False,
                  make_stamp(INV, reason="source document re-read"), TODAY)
    clone.inclusion[INCLUSION_CODES[1]] = False  # even an in-place change stays in the copy
    assert len(clone.pending_events) == 2 and p.pending_events == []
    assert vars(p) == before


def test_the_actor_in_every_stamp_has_every_field_of_the_actor_R3():
    """Actor.as_dict is spelt out for speed; it must still carry every field (who acted, R3)."""
    import dataclasses

    from domain.audit import Actor

    actor = Actor(user_id="u-1", username="inv1", full_name="Inv One", role="investigator", site="MINSK")
    assert actor.as_dict() == dataclasses.asdict(actor)
