"""Pure safety rules, table by table (docs/domain.md §3; R1, R2, R5, R6 rely on them being exact)."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.safety import (
    AESI_INITIAL,
    SAE_FOLLOW_UP,
    SAE_INITIAL,
    SUSAR_7_DAY,
    SUSAR_15_DAY,
    Classification,
    PartialDate,
    ReportingRules,
    classify,
    clocks_to_start,
    consistency_errors,
    end_before_start,
    iso_duration,
    lateness,
    parse_instant,
    validate_fields,
)
from domain.trial import ARM_STANDARD, ARM_TREG

NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.timezone.utc)


def record(**overrides):
    base = {
        "aeterm": "Headache", "aestdat": "2026-03-10", "aeendat": None, "aetoxgr": "2", "ctcae_version": "5.0",
        "aeser": "N", "aesdth": "N", "aeslife": "N", "aeshosp": "N", "aesdisab": "N", "aescong": "N", "aesmie": "N",
        "aerel_treg": "UNLIKELY", "aerel_proc": "NOT RELATED", "aeexp": None, "rsi_version": None,
        "aeout": "NOT RECOVERED/NOT RESOLVED", "aeacn": "NOT APPLICABLE", "aesi_category": None,
        "aware_at": "2026-03-11T08:00:00.000000Z",
    }
    return {**base, **overrides}


def bad_fields(rec, arm=ARM_TREG):
    return {path[0] for path, _ in consistency_errors(rec, arm=arm, now=NOW)}


# --------------------------------------------------------------------------- consistency rules
CASES = [
    # (description, overrides, arm, fields that must be named; empty = consistent)
    ("a plain ongoing AE is consistent", {}, ARM_TREG, set()),
    ("AESER=Y with no flag", {"aeser": "Y"}, ARM_TREG, {"aeser", "aesdth", "aeslife", "aeshosp", "aesdisab", "aescong", "aesmie"}),
    ("AESER=N with AESHOSP=Y", {"aeshosp": "Y"}, ARM_TREG, {"aeser", "aeshosp"}),
    ("AESER=Y with AESHOSP=Y", {"aeser": "Y", "aeshosp": "Y"}, ARM_TREG, set()),
    ("AESER=Y with AESMIE=Y", {"aeser": "Y", "aesmie": "Y"}, ARM_TREG, set()),
    ("AESDTH=Y but not FATAL", {"aeser": "Y", "aesdth": "Y"}, ARM_TREG, {"aesdth", "aeout"}),
    ("FATAL but AESDTH=N", {"aeser": "Y", "aeslife": "Y", "aeout": "FATAL", "aeendat": "2026-03-12"}, ARM_TREG, {"aesdth", "aeout"}),
    ("FATAL with AESDTH=Y and grade 5", {"aeser": "Y", "aesdth": "Y", "aeout": "FATAL", "aeendat": "2026-03-12", "aetoxgr": "5"}, ARM_TREG, set()),
    ("grade 5 without FATAL", {"aetoxgr": "5"}, ARM_TREG, {"aetoxgr", "aeout"}),
    ("RECOVERED/RESOLVED needs an end date", {"aeout": "RECOVERED/RESOLVED"}, ARM_TREG, {"aeendat", "aeout"}),
    ("WITH SEQUELAE needs an end date", {"aeout": "RECOVERED/RESOLVED WITH SEQUELAE"}, ARM_TREG, {"aeendat", "aeout"}),
    ("FATAL needs an end date", {"aeser": "Y", "aesdth": "Y", "aeout": "FATAL"}, ARM_TREG, {"aeendat", "aeout"}),
    ("RECOVERING forbids an end date", {"aeout": "RECOVERING/RESOLVING", "aeendat": "2026-03-12"}, ARM_TREG, {"aeendat", "aeout"}),
    ("NOT RECOVERED forbids an end date", {"aeendat": "2026-03-12"}, ARM_TREG, {"aeendat", "aeout"}),
    ("UNKNOWN outcome allows either", {"aeout": "UNKNOWN", "aeendat": "2026-03-12"}, ARM_TREG, set()),
    ("end before start", {"aeout": "RECOVERED/RESOLVED", "aeendat": "2026-03-09"}, ARM_TREG, {"aeendat", "aestdat"}),
    ("end on the start day", {"aeout": "RECOVERED/RESOLVED", "aeendat": "2026-03-10"}, ARM_TREG, set()),
    ("partial end month of the start is not before it", {"aeout": "RECOVERED/RESOLVED", "aeendat": "2026-03"}, ARM_TREG, set()),
    ("partial end year of the start is not before it", {"aeout": "RECOVERED/RESOLVED", "aeendat": "2026"}, ARM_TREG, set()),
    ("partial end month before the start", {"aeout": "RECOVERED/RESOLVED", "aeendat": "2026-02"}, ARM_TREG, {"aeendat", "aestdat"}),
    ("start in the future", {"aestdat": "2026-04-01", "aware_at": "2026-03-20T00:00:00Z"}, ARM_TREG, {"aestdat", "aware_at"}),
    ("awareness in the future", {"aware_at": "2026-03-21T00:00:00Z"}, ARM_TREG, {"aware_at"}),
    ("aware long before the start", {"aware_at": "2026-03-01T00:00:00Z"}, ARM_TREG, {"aware_at", "aestdat"}),
    ("expectedness without RSI version", {"aeexp": "UNEXPECTED"}, ARM_TREG, {"aeexp", "rsi_version"}),
    ("RSI version without expectedness", {"rsi_version": "IB v2"}, ARM_TREG, {"aeexp", "rsi_version"}),
    ("Group 2 related to the product", {"aerel_treg": "POSSIBLE"}, ARM_STANDARD, {"aerel_treg"}),
    ("Group 2 NOT APPLICABLE", {"aerel_treg": "NOT APPLICABLE"}, ARM_STANDARD, set()),
    ("Group 2 action taken with treatment", {"aerel_treg": "NOT APPLICABLE", "aeacn": "DRUG INTERRUPTED"}, ARM_STANDARD, {"aeacn"}),
    ("not allocated related to the product", {"aerel_treg": "PROBABLE"}, None, {"aerel_treg"}),
    ("Group 1 may say NOT APPLICABLE (before infusion)", {"aerel_treg": "NOT APPLICABLE"}, ARM_TREG, set()),
    ("a malignancy is always serious", {"aesi_category": "malignancy"}, ARM_TREG, {"aesi_category", "aesmie", "aeser"}),
    ("a malignancy as an important medical event", {"aesi_category": "malignancy", "aeser": "Y", "aesmie": "Y"}, ARM_TREG, set()),
]


@pytest.mark.parametrize("overrides, arm, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_consistency_rules_name_every_field_involved(overrides, arm, expected):
    """Each rule of docs/domain.md §3.2-3.4 is refused, naming the fields (R2: exact values only)."""
    assert bad_fields(record(**overrides), arm) == expected


def test_several_broken_rules_are_all_reported_at_once():
    errors = bad_fields(record(aeser="Y", aetoxgr="5", aeendat="2026-03-01"))
    assert {"aeser", "aetoxgr", "aeout", "aeendat", "aestdat"} <= errors


# --------------------------------------------------------------------------- per-field validation
FIELD_CASES = [
    ("aetoxgr", 3, "3"), ("aetoxgr", "5", "5"), ("aetoxgr", 0, None), ("aetoxgr", 6, None), ("aetoxgr", True, None),
    ("aeser", "Y", "Y"), ("aeser", "yes", None), ("aeser", True, None),
    ("aestdat", "2026", "2026"), ("aestdat", "2026-02", "2026-02"), ("aestdat", "2026-02-28", "2026-02-28"),
    ("aestdat", "2026-02-30", None), ("aestdat", "2026-13", None), ("aestdat", "26-02-01", None), ("aestdat", "2026/02/01", None),
    ("aware_at", "2026-03-12T09:30:00+03:00", "2026-03-12T06:30:00.000000Z"), ("aware_at", "2026-03-12T09:30:00Z", "2026-03-12T09:30:00.000000Z"),
    ("aware_at", "2026-03-12T09:30:00", None), ("aware_at", dt.datetime(2026, 3, 12, 9, 30), None),
    ("aerel_treg", "PROBABLE", "PROBABLE"), ("aerel_treg", "LIKELY", None), ("aerel_proc", "NOT APPLICABLE", "NOT APPLICABLE"),
    ("aeout", "FATAL", "FATAL"), ("aeout", "DIED", None), ("aeacn", "DRUG WITHDRAWN", "DRUG WITHDRAWN"), ("aeacn", "STOPPED", None),
    ("aesi_category", "infection", "infection"), ("aesi_category", None, None), ("aesi_category", "rash", None),
    ("aeterm", "  Pneumonia  ", "Pneumonia"), ("aeterm", "   ", None), ("aeexp", "UNEXPECTED", "UNEXPECTED"), ("aeexp", "N", None),
]


@pytest.mark.parametrize("field, value, clean", FIELD_CASES)
def test_field_validation(field, value, clean):
    """Code lists and formats (CDISC NY, OUT, ACN; CTCAE grade; partial dates; instants with zone, R4)."""
    result, errors = validate_fields({field: value})
    if clean is None and not (field == "aesi_category" and value is None):
        assert errors and errors[0][0] == (field,)
    else:
        assert not errors and result[field] == clean


def test_unknown_field_is_refused():
    _, errors = validate_fields({"aesev": "MILD"})
    assert errors[0][0] == ("aesev",)


@pytest.mark.parametrize(
    "start, end, before",
    [("2026-03-10", "2026-03-09", True), ("2026-03-10", "2026-03-10", False), ("2026-03", "2026-03-01", False),
     ("2026-03-15", "2026-03", False), ("2026", "2025-12-31", True), ("2026-03-15", "2026-02", True), ("2026", "2026-01", False)],
)
def test_partial_dates_compare_conservatively(start, end, before):
    assert end_before_start(PartialDate.parse(start), PartialDate.parse(end)) is before


# --------------------------------------------------------------------------- classification and clocks
RULES = ReportingRules()
T0 = dt.datetime(2026, 3, 11, 8, 0, tzinfo=dt.timezone.utc)


def cls(**kw):
    base = dict(serious=False, related=False, unexpected=False, fatal=False, life_threatening=False, aesi=False)
    return Classification(**{**base, **kw})


@pytest.mark.parametrize(
    "causality, related",
    [("DEFINITE", True), ("PROBABLE", True), ("POSSIBLE", True), ("CONDITIONAL", True), ("UNASSESSABLE", True),
     ("UNLIKELY", False), ("NOT RELATED", False), ("NOT APPLICABLE", False)],
)
def test_relatedness_is_binary_and_conservative(causality, related):
    """WHO-UMC to binary (docs/domain.md §3.3): unclassified and unassessable count as related."""
    assert classify(record(aerel_treg=causality)).related is related


CLOCK_CASES = [
    ("non-serious AE: no clock", None, cls(), []),
    ("SAE: 24 h to the sponsor", None, cls(serious=True), [(SAE_INITIAL, "sponsor", dt.timedelta(hours=24))]),
    ("AESI: 24 h to the sponsor", None, cls(aesi=True), [(AESI_INITIAL, "sponsor", dt.timedelta(hours=24))]),
    ("SUSAR: SAE and 15 days", None, cls(serious=True, related=True, unexpected=True),
     [(SAE_INITIAL, "sponsor", dt.timedelta(hours=24)), (SUSAR_15_DAY, "authority", dt.timedelta(days=15))]),
    ("fatal SUSAR: 7 days", None, cls(serious=True, related=True, unexpected=True, fatal=True),
     [(SAE_INITIAL, "sponsor", dt.timedelta(hours=24)), (SUSAR_7_DAY, "authority", dt.timedelta(days=7))]),
    ("life-threatening SUSAR: 7 days", None, cls(serious=True, related=True, unexpected=True, life_threatening=True),
     [(SAE_INITIAL, "sponsor", dt.timedelta(hours=24)), (SUSAR_7_DAY, "authority", dt.timedelta(days=7))]),
    ("related but expected SAE: no SUSAR", None, cls(serious=True, related=True),
     [(SAE_INITIAL, "sponsor", dt.timedelta(hours=24))]),
    ("non-serious -> serious", cls(), cls(serious=True), [(SAE_INITIAL, "sponsor", dt.timedelta(hours=24))]),
    ("serious: not related -> related and unexpected", cls(serious=True, unexpected=True),
     cls(serious=True, unexpected=True, related=True),
     [(SAE_FOLLOW_UP, "sponsor", dt.timedelta(hours=24)), (SUSAR_15_DAY, "authority", dt.timedelta(days=15))]),
    ("serious related: expected -> unexpected", cls(serious=True, related=True), cls(serious=True, related=True, unexpected=True),
     [(SUSAR_15_DAY, "authority", dt.timedelta(days=15))]),
    ("SUSAR: non-fatal -> fatal (Art 42(2)(c))", cls(serious=True, related=True, unexpected=True),
     cls(serious=True, related=True, unexpected=True, fatal=True),
     [(SAE_FOLLOW_UP, "sponsor", dt.timedelta(hours=24)), (SUSAR_7_DAY, "authority", dt.timedelta(days=7))]),
    ("life-threatening SUSAR -> fatal: a new 7-day clock", cls(serious=True, related=True, unexpected=True, life_threatening=True),
     cls(serious=True, related=True, unexpected=True, life_threatening=True, fatal=True),
     [(SAE_FOLLOW_UP, "sponsor", dt.timedelta(hours=24)), (SUSAR_7_DAY, "authority", dt.timedelta(days=7))]),
    ("downgrade: no clock", cls(serious=True, related=True), cls(serious=True), []),
    ("no reclassification: no clock", cls(serious=True), cls(serious=True), []),
]


@pytest.mark.parametrize("before, after, expected", [c[1:] for c in CLOCK_CASES], ids=[c[0] for c in CLOCK_CASES])
def test_reporting_clocks(before, after, expected):
    """docs/domain.md §3.6: 24 h / 7 d / 15 d from awareness; reclassification starts a new clock."""
    starts = clocks_to_start(before, after, T0, RULES)
    assert [(s.kind, s.recipient, parse_instant(s.due_at) - parse_instant(s.started_at)) for s in starts] == expected
    assert all(parse_instant(s.started_at) == T0 for s in starts)
    if before is not None and starts:
        assert starts[0].trigger.startswith("reclassified: became")


def test_deadlines_are_configurable():
    rules = ReportingRules(sae_to_sponsor=dt.timedelta(hours=12), susar_other=dt.timedelta(days=10))
    starts = clocks_to_start(None, cls(serious=True, related=True, unexpected=True), T0, rules)
    assert [parse_instant(s.due_at) - T0 for s in starts] == [dt.timedelta(hours=12), dt.timedelta(days=10)]


@pytest.mark.parametrize(
    "due, at, late",
    [("2026-03-12T08:00:00Z", T0 + dt.timedelta(hours=23), None),
     ("2026-03-12T08:00:00Z", T0 + dt.timedelta(hours=24), None),
     ("2026-03-12T08:00:00Z", T0 + dt.timedelta(hours=30, minutes=30), dt.timedelta(hours=6, minutes=30))],
)
def test_lateness(due, at, late):
    assert lateness(due, at) == late


@pytest.mark.parametrize(
    "delta, text",
    [(dt.timedelta(0), "PT0S"), (dt.timedelta(hours=6, minutes=30), "PT6H30M"), (dt.timedelta(days=1, seconds=5), "P1DT5S"),
     (dt.timedelta(days=15), "P15D")],
)
def test_iso_durations(delta, text):
    assert iso_duration(delta) == text
