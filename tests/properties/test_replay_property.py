"""For any sequence of valid commands, replay reproduces the state, and `as_of` any recorded instant
equals the state after the events up to it (R17)."""

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.trial import replay
from application.views import participant_view


def seen(view: dict) -> dict:
    """A participant view as the site investigator sees it (no allocation slot, issue 13 E.19)."""
    return {**view, "allocation_slot": None}
from domain.trial import EXCLUSION_CODES, INCLUSION_CODES
from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE

REASON = "corrected against the source document"

command = st.one_of(
    st.tuples(st.just("correct"), st.just("sex"), st.sampled_from(["F", "M", "U"])),
    st.tuples(st.just("correct"), st.just("birth_year"), st.integers(1930, 2005)),
    st.tuples(st.just("correct"), st.just("consent_version"), st.sampled_from(["ICF v1.0", "ICF v1.1", "ICF v2.0"])),
    st.tuples(st.just("correct"), st.just("consent_signed_on"), st.dates(dt.date(2025, 1, 1), dt.date(2026, 6, 1)).map(str)),
    st.tuples(st.just("correct"), st.sampled_from([f"eligibility.inclusion.{c}" for c in INCLUSION_CODES]
                                                 + [f"eligibility.exclusion.{c}" for c in EXCLUSION_CODES]), st.booleans()),
    st.tuples(st.just("randomise"), st.none(), st.none()),
    st.tuples(st.just("withdraw"), st.none(), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(command, min_size=1, max_size=12))
def test_replay_and_as_of_reproduce_every_recorded_state_R17(services, add_user, actor_of, commands):
    app = services.app
    inv = app.user_by_name("prop_inv")
    inv = actor_of(add_user("prop_inv", "investigator")) if inv is None else inv.as_actor()
    pid = app.screen_participant(inv, screening_number=f"P-{app.recorder.max_notification_id() + 1}", site="MINSK", sex="F", birth_year=1970)["id"]
    app.assess_eligibility(inv, pid, inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(inv, pid, consent_version="ICF v1.0", signed_on="2026-01-05")
    states = {1: None}
    for kind, field, value in commands:
        try:
            if kind == "correct":
                app.correct_participant(inv, pid, field=field, new_value=value, reason=REASON)
            elif kind == "randomise":
                app.randomise(inv, pid)
            else:
                app.withdraw(inv, pid, reason="participant withdrew consent")
        except Exception as e:  # refusals are part of the property: they must change nothing
            assert type(e).__name__ in ("InvalidInput", "Conflict"), e
        current = app.get_participant(inv, pid)
        states[current["version"]] = current

    events = list(app.events.get(app.repository.get(__import__("uuid").UUID(pid)).id))
    # replaying every stored event reproduces the current state exactly
    assert seen(participant_view(replay(events))) == app.get_participant(inv, pid)
    # as_of each recorded instant equals the state after the events up to it
    for event in events:
        expected = seen(participant_view(replay(e for e in events if e.timestamp <= event.timestamp)))
        assert app.get_participant(inv, pid, as_of=event.timestamp) == expected
        if event.originator_version in states and states[event.originator_version] is not None:
            if all(e.timestamp != event.timestamp for e in events if e.originator_version > event.originator_version):
                assert expected == states[event.originator_version]
