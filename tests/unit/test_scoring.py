"""Pure scoring, table-driven, per docs/domain.md §1 and §2 (primary outcome a)."""

import pytest

from domain.scoring import (
    ACR_EULAR_CODES,
    ACR_EULAR_FINDINGS,
    ACR_EULAR_RULE_ID,
    MRSS_RULE_ID,
    MRSS_SITES,
    ScoringInputError,
    mrss_change,
    score_acr_eular_2013,
    score_mrss,
)

ALL_ABSENT = {c: False for c in ACR_EULAR_CODES}


def absent(**present):
    """Every finding absent (no unknowns) except those given."""
    return {**ALL_ABSENT, **present}


# (case, findings, applicable, total, meets, indeterminate, sufficient)
ACR_CASES = [
    ("nothing present, nothing unknown", absent(), True, 0, False, False, False),
    ("item 1 alone is sufficient", absent(skin_thickening_proximal_to_mcp=True), True, 9, True, False, True),
    ("every finding present: the footnote reading's maximum",
     {c: True for c in ACR_EULAR_FINDINGS} | {"skin_thickening_sparing_fingers": False,
                                              "ssc_like_disorder_better_explains": False}, True, 28, True, False, True),
    ("items 2-8 all present: 19 without item 1",
     {c: True for c in ACR_EULAR_FINDINGS if c != "skin_thickening_proximal_to_mcp"}
     | {"skin_thickening_proximal_to_mcp": False}, True, 19, True, False, False),
    ("puffy fingers and sclerodactyly: only the higher (4) counts", absent(puffy_fingers=True, sclerodactyly=True), True, 4, False, False, False),
    ("puffy fingers alone", absent(puffy_fingers=True), True, 2, False, False, False),
    ("ulcers and pitting scars: only the higher (3)", absent(digital_tip_ulcers=True, fingertip_pitting_scars=True), True, 3, False, False, False),
    ("PAH and ILD together are at most 2", absent(pulmonary_arterial_hypertension=True, interstitial_lung_disease=True), True, 2, False, False, False),
    ("three autoantibodies are at most 3",
     absent(anti_centromere=True, anti_topoisomerase_i=True, anti_rna_polymerase_iii=True), True, 3, False, False, False),
    ("8 points: one short of the threshold",
     absent(sclerodactyly=True, telangiectasia=True, abnormal_nailfold_capillaries=True), True, 8, False, False, False),
    ("exactly 9 from additive items: classified at the threshold",
     absent(sclerodactyly=True, raynaud_phenomenon=True, telangiectasia=True), True, 9, True, False, False),
    ("7 with every other finding absent: not classified, not indeterminate",
     absent(sclerodactyly=True, raynaud_phenomenon=True), True, 7, False, False, False),
    ("7 with telangiectasia unknown: the unknown could classify -> indeterminate",
     {**absent(sclerodactyly=True, raynaud_phenomenon=True), "telangiectasia": None}, True, 7, False, True, False),
    ("6 with one unknown worth 2: cannot reach 9 -> determinate",
     {**absent(sclerodactyly=True, puffy_fingers=True, telangiectasia=True), "abnormal_nailfold_capillaries": None},
     True, 6, False, False, False),
    ("unknown puffy fingers beside present sclerodactyly adds nothing to the best case",
     {**absent(sclerodactyly=True, raynaud_phenomenon=True), "puffy_fingers": None}, True, 7, False, False, False),
    ("everything unknown (empty record): 0 but indeterminate", {}, True, 0, False, True, False),
    ("classified with unknowns left: not indeterminate",
     {"skin_thickening_proximal_to_mcp": True}, True, 9, True, False, True),
    ("exclusion present: not applicable even with item 1",
     absent(skin_thickening_proximal_to_mcp=True, skin_thickening_sparing_fingers=True), False, None, False, False, False),
    ("the other exclusion", absent(ssc_like_disorder_better_explains=True, sclerodactyly=True), False, None, False, False, False),
    ("an unknown exclusion does not exclude",
     {**absent(skin_thickening_proximal_to_mcp=True), "ssc_like_disorder_better_explains": None}, True, 9, True, False, True),
]


@pytest.mark.parametrize("case,findings,applicable,total,meets,indeterminate,sufficient", ACR_CASES, ids=[c[0] for c in ACR_CASES])
def test_acr_eular_2013_table(case, findings, applicable, total, meets, indeterminate, sufficient):
    r = score_acr_eular_2013(findings)
    assert (r.applicable, r.total_score, r.meets_criteria, r.indeterminate, r.sufficient_criterion_met) == (
        applicable, total, meets, indeterminate, sufficient), case
    assert r["total_score"] == r.total_score and r.rule == ACR_EULAR_RULE_ID
    if applicable:
        assert sum(r.category_scores.values()) == r.total_score and len(r.category_scores) == 8
        assert 0 <= r.total_score <= 28
    else:
        assert r.category_scores is None


def test_acr_eular_category_scores_are_reported():
    r = score_acr_eular_2013(absent(puffy_fingers=True, sclerodactyly=True, anti_topoisomerase_i=True))
    assert r.category_scores["SKIN_THICKENING_FINGERS"] == 4
    assert r.category_scores["SSC_AUTOANTIBODIES"] == 3
    assert r.category_scores["SKIN_THICKENING_PROXIMAL_TO_MCP"] == 0


@pytest.mark.parametrize("bad", [
    {"puffy_finger": True},  # unknown key
    {"puffy_fingers": 1},  # not a boolean
    {"puffy_fingers": "true"},
    {"puffy_fingers": 0},
    {"acr_eular.puffy_fingers": True},  # the item-code prefix is not a finding code
    [("puffy_fingers", True)],
    None,
])
def test_acr_eular_rejects_invalid_input(bad):
    with pytest.raises(ValueError):
        score_acr_eular_2013(bad)


ALL_ZERO = {s: 0 for s in MRSS_SITES}


@pytest.mark.parametrize("sites,total", [
    (ALL_ZERO, 0),
    ({s: 3 for s in MRSS_SITES}, 51),
    ({**ALL_ZERO, "face": 1, "fingers_right": 3, "fingers_left": 2}, 6),
])
def test_mrss_totals(sites, total):
    r = score_mrss(sites)
    assert r.total == total and r["total"] == total and r.rule == MRSS_RULE_ID
    assert list(r.sites) == list(MRSS_SITES)


@pytest.mark.parametrize("bad", [
    {**ALL_ZERO, "face": 4},
    {**ALL_ZERO, "face": -1},
    {**ALL_ZERO, "face": 1.0},
    {**ALL_ZERO, "face": 1.5},
    {**ALL_ZERO, "face": None},
    {**ALL_ZERO, "face": True},
    {**ALL_ZERO, "face": "2"},
    {k: v for k, v in ALL_ZERO.items() if k != "feet_left"},  # a missing site
    {**ALL_ZERO, "back": 0},  # the back is not scored
    {},
    None,
])
def test_mrss_rejects_anything_but_17_integer_sites(bad):
    with pytest.raises(ScoringInputError):
        score_mrss(bad)
    assert issubclass(ScoringInputError, ValueError)


@pytest.mark.parametrize("baseline,followup,change,improved,progression,regression", [
    (20, 15, -5, True, False, False),  # MCID 5 reached
    (20, 16, -4, False, False, False),
    (20, 26, 6, False, True, False),  # > 5 and >= 25 % of 20
    (30, 36, 6, False, False, False),  # > 5 but 20 % of 30
    (20, 14, -6, True, False, True),  # mirror image
    (10, 10, 0, False, False, False),
])
def test_mrss_change_flags(baseline, followup, change, improved, progression, regression):
    r = mrss_change(baseline, followup)
    assert (r.change, r.improved_mcid, r.eustar_progression, r.eustar_regression) == (change, improved, progression, regression)


def test_mrss_change_mcid_is_configurable_within_the_published_range():
    assert mrss_change(20, 16, mcid=3.2).improved_mcid
    with pytest.raises(ValueError):
        mrss_change(20, 16, mcid=2)
