"""Pure scoring of the primary outcome: 2013 ACR/EULAR SSc criteria and the modified Rodnan skin score.

Exactly the rules of docs/domain.md §1 and §2, including the engine conventions marked [P] there.
No I/O, no clock. Every result names the rule that produced it, because published readings differ
(the 2013 table's footnote read literally gives 0-28; some calculators stop at 9; the French
recommendations give 0-24): a reader must know which one the number comes from.

Invalid input raises ``ScoringInputError`` (a ``ValueError``) and computes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------- ACR/EULAR 2013

ACR_EULAR_RULE = "ACR/EULAR 2013 SSc criteria (van den Hoogen 2013), table footnote read literally: " \
    "sum over 8 categories of the highest present weight, item 1 a category worth 9; range 0-28; " \
    "classified at >= 9; unknown counts 0"
ACR_EULAR_RULE_ID = "acr_eular_2013/category-maxima-v1"
ACR_EULAR_THRESHOLD = 9
ACR_EULAR_MAX_TOTAL = 28

#: (category code, ((finding code, weight), ...)) in the order of the published table.
ACR_EULAR_CATEGORIES: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
    ("SKIN_THICKENING_PROXIMAL_TO_MCP", (("skin_thickening_proximal_to_mcp", 9),)),
    ("SKIN_THICKENING_FINGERS", (("puffy_fingers", 2), ("sclerodactyly", 4))),
    ("FINGERTIP_LESIONS", (("digital_tip_ulcers", 2), ("fingertip_pitting_scars", 3))),
    ("TELANGIECTASIA", (("telangiectasia", 2),)),
    ("ABNORMAL_NAILFOLD_CAPILLARIES", (("abnormal_nailfold_capillaries", 2),)),
    ("PAH_AND_OR_ILD", (("pulmonary_arterial_hypertension", 2), ("interstitial_lung_disease", 2))),
    ("RAYNAUD_PHENOMENON", (("raynaud_phenomenon", 3),)),
    ("SSC_AUTOANTIBODIES", (("anti_centromere", 3), ("anti_topoisomerase_i", 3), ("anti_rna_polymerase_iii", 3))),
)
SUFFICIENT_FINDING = "skin_thickening_proximal_to_mcp"
ACR_EULAR_EXCLUSIONS = ("skin_thickening_sparing_fingers", "ssc_like_disorder_better_explains")
#: the 13 scored sub-items, in table order
ACR_EULAR_FINDINGS = tuple(code for _, subs in ACR_EULAR_CATEGORIES for code, _ in subs)
#: every code a findings mapping may carry: 13 sub-items and 2 exclusions
ACR_EULAR_CODES = ACR_EULAR_FINDINGS + ACR_EULAR_EXCLUSIONS

# --------------------------------------------------------------------------- mRSS

MRSS_RULE = "modified Rodnan skin score (Clements 1995; Khanna 2017): 17 sites scored 0-3, total 0-51, never imputed"
MRSS_RULE_ID = "mrss/17-sites-v1"
MRSS_SITES = (
    "face", "anterior_chest", "abdomen",
    "fingers_right", "fingers_left", "hands_right", "hands_left",
    "forearms_right", "forearms_left", "upper_arms_right", "upper_arms_left",
    "thighs_right", "thighs_left", "lower_legs_right", "lower_legs_left",
    "feet_right", "feet_left",
)
MRSS_SITE_MIN, MRSS_SITE_MAX = 0, 3
MRSS_TOTAL_MAX = 51
#: points of improvement that count as clinically meaningful (docs/domain.md §2; configurable 3.2-5.3)
MRSS_MCID_DEFAULT = 5.0
MRSS_CHANGE_RULE = "mRSS change = follow-up - baseline; improved_mcid: -change >= MCID; " \
    "EUSTAR progression: change > 5 and >= 25 % of baseline; regression: the mirror image"


class ScoringInputError(ValueError):
    """The input is not a valid record for the instrument; nothing was computed."""


class _Result:
    """Results read as attributes or as a mapping (``result.total`` or ``result["total"]``)."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.__dataclass_fields__ else default  # type: ignore[attr-defined]

    def keys(self):
        return self.__dataclass_fields__.keys()  # type: ignore[attr-defined]

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (mappings copied, so the result can be changed freely)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class AcrEularScore(_Result):
    applicable: bool
    total_score: int | None
    meets_criteria: bool
    indeterminate: bool
    sufficient_criterion_met: bool
    #: category code -> highest present weight (None when not applicable)
    category_scores: dict[str, int] | None
    #: the total if every unknown sub-item were present (None when not applicable)
    max_possible_score: int | None
    #: finding codes (sub-items and exclusions) that are unknown
    unknown: tuple[str, ...]
    #: exclusions that are present (why the criteria do not apply)
    exclusions_present: tuple[str, ...]
    threshold: int = ACR_EULAR_THRESHOLD
    rule: str = ACR_EULAR_RULE_ID
    rule_text: str = ACR_EULAR_RULE


@dataclass(frozen=True)
class MrssScore(_Result):
    total: int
    sites: dict[str, int]
    rule: str = MRSS_RULE_ID
    rule_text: str = MRSS_RULE


@dataclass(frozen=True)
class MrssChange(_Result):
    baseline: int
    followup: int
    change: int
    improved_mcid: bool
    eustar_progression: bool
    eustar_regression: bool
    mcid: float
    rule: str = "mrss-change/v1"
    rule_text: str = MRSS_CHANGE_RULE


def validate_acr_eular_findings(findings: Any) -> dict[str, bool | None]:
    """Every known code mapped to True/False/None (missing = unknown). Raises on anything else."""
    if not isinstance(findings, Mapping):
        raise ScoringInputError("findings must be a mapping of finding code to true, false or null")
    errors = []
    for code, value in findings.items():
        if code not in ACR_EULAR_CODES:
            errors.append(f"unknown finding code {code!r}")
        elif value is not None and not isinstance(value, bool):
            errors.append(f"{code}: {value!r} is not true, false or null")
    if errors:
        raise ScoringInputError("; ".join(errors))
    return {code: findings.get(code) for code in ACR_EULAR_CODES}


def score_acr_eular_2013(findings: Mapping[str, bool | None]) -> AcrEularScore:
    """Score findings per docs/domain.md §1: ``True`` present, ``False`` absent, ``None``/missing unknown.

    1. Any exclusion present: not applicable (total None, not classified).
    2. Total = sum over the 8 categories of the highest weight among present sub-items; classified at >= 9.
    ``indeterminate``: applicable, not classified, and counting every unknown sub-item as present would
    reach the threshold.
    """
    values = validate_acr_eular_findings(findings)
    unknown = tuple(code for code in ACR_EULAR_CODES if values[code] is None)
    excluded = tuple(code for code in ACR_EULAR_EXCLUSIONS if values[code] is True)
    if excluded:
        return AcrEularScore(
            applicable=False, total_score=None, meets_criteria=False, indeterminate=False,
            sufficient_criterion_met=False, category_scores=None, max_possible_score=None,
            unknown=unknown, exclusions_present=excluded,
        )
    categories: dict[str, int] = {}
    best_case = 0
    for category, subs in ACR_EULAR_CATEGORIES:
        categories[category] = max((w for code, w in subs if values[code] is True), default=0)
        best_case += max((w for code, w in subs if values[code] is not False), default=0)
    total = sum(categories.values())
    meets = total >= ACR_EULAR_THRESHOLD
    return AcrEularScore(
        applicable=True,
        total_score=total,
        meets_criteria=meets,
        indeterminate=not meets and best_case >= ACR_EULAR_THRESHOLD,
        sufficient_criterion_met=values[SUFFICIENT_FINDING] is True,
        category_scores=categories,
        max_possible_score=best_case,
        unknown=unknown,
        exclusions_present=(),
    )


def validate_mrss_site_score(value: Any) -> int:
    """A JSON integer 0..3: not a bool, a float, a string or null."""
    if isinstance(value, bool) or not isinstance(value, int) or not MRSS_SITE_MIN <= value <= MRSS_SITE_MAX:
        raise ScoringInputError(f"{value!r} is not an integer from {MRSS_SITE_MIN} to {MRSS_SITE_MAX}")
    return value


def score_mrss(sites: Mapping[str, int]) -> MrssScore:
    """Total of exactly the 17 sites, each an integer 0..3 (docs/domain.md §2). Never imputes."""
    if not isinstance(sites, Mapping):
        raise ScoringInputError("sites must be a mapping of the 17 site codes to integers 0..3")
    errors = [f"missing site {code!r}" for code in MRSS_SITES if code not in sites]
    errors += [f"unknown site {code!r} (the back is not scored)" for code in sites if code not in MRSS_SITES]
    for code in MRSS_SITES:
        if code in sites:
            try:
                validate_mrss_site_score(sites[code])
            except ScoringInputError as e:
                errors.append(f"{code}: {e}")
    if errors:
        raise ScoringInputError("; ".join(errors))
    ordered = {code: sites[code] for code in MRSS_SITES}
    return MrssScore(total=sum(ordered.values()), sites=ordered)


def mrss_change(baseline: int, followup: int, mcid: float = MRSS_MCID_DEFAULT) -> MrssChange:
    """Change from baseline and its flags (docs/domain.md §2 [P]); ``mcid`` between 3.2 and 5.3 points."""
    for name, value in (("baseline", baseline), ("followup", followup)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MRSS_TOTAL_MAX:
            raise ScoringInputError(f"{name} must be an mRSS total 0..{MRSS_TOTAL_MAX}")
    if not 3.2 <= mcid <= 5.3:
        raise ScoringInputError("the MCID is between 3.2 and 5.3 points (docs/domain.md §2)")
    delta = followup - baseline
    return MrssChange(
        baseline=baseline,
        followup=followup,
        change=delta,
        improved_mcid=-delta >= mcid,
        eustar_progression=delta > 5 and delta >= 0.25 * baseline,
        eustar_regression=-delta > 5 and -delta >= 0.25 * baseline,
        mcid=mcid,
    )
