"""Properties of the pure safety rules (hypothesis): partial-date comparison is conservative, and a record
built to satisfy docs/domain.md §3 is never refused, whatever its seriousness and outcome."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from domain.safety import (
    OUTCOMES,
    OUTCOMES_NEEDING_END,
    OUTCOMES_ONGOING,
    SERIOUSNESS_FLAGS,
    PartialDate,
    consistency_errors,
    end_before_start,
)
from domain.trial import ARM_TREG

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
dates = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2026, 5, 31))


@st.composite
def partial(draw):
    d = draw(dates)
    return PartialDate.parse(draw(st.sampled_from([d.isoformat(), d.isoformat()[:7], d.isoformat()[:4]])))


@given(partial(), partial())
def test_end_before_start_only_when_every_reading_is_before(start, end):
    """Refused exactly when no complete date the partial end could be is on or after any the start could be."""
    assert end_before_start(start, end) == (end.latest < start.earliest)
    if end_before_start(start, end):
        assert end.latest < start.earliest <= start.latest


@given(
    flags=st.fixed_dictionaries({f: st.sampled_from("YN") for f in SERIOUSNESS_FLAGS if f != "aesdth"}),
    outcome=st.sampled_from(OUTCOMES),
    grade=st.sampled_from("1234"),
    start=dates,
    length=st.integers(0, 60),
)
def test_a_record_built_by_the_rules_is_accepted(flags, outcome, grade, start, length):
    fatal = outcome == "FATAL"
    end = min(start + dt.timedelta(days=length), NOW.date())
    record = {
        "aeterm": "x", "aestdat": start.isoformat(), "ctcae_version": "5.0", **flags, "aesdth": "Y" if fatal else "N",
        "aetoxgr": "5" if fatal else grade, "aerel_treg": "POSSIBLE", "aerel_proc": "NOT RELATED", "aeexp": None,
        "rsi_version": None, "aeout": outcome, "aeacn": "NOT APPLICABLE", "aesi_category": None,
        "aeendat": end.isoformat() if outcome in OUTCOMES_NEEDING_END else None,
        "aware_at": f"{start.isoformat()}T12:00:00Z",
    }
    record["aeser"] = "Y" if any(record[f] == "Y" for f in SERIOUSNESS_FLAGS) else "N"
    assert outcome not in OUTCOMES_ONGOING or record["aeendat"] is None
    assert consistency_errors(record, arm=ARM_TREG, now=NOW) == []
