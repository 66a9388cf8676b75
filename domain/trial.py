"""Facts of the trial this system serves (../shared/docs/trial.md)."""

from __future__ import annotations

from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

TRIAL_ID = "NCT05214014"
TRIAL_TITLE = "Treatment of Systemic Sclerosis With Autologous Regulatory T-cells"

ARM_TREG = "treg_plus_standard"  # Group 1
ARM_STANDARD = "standard"  # Group 2
ARMS = (ARM_TREG, ARM_STANDARD)
ARM_LABELS = {
    ARM_TREG: "Group 1: standard treatment + autologous regulatory T cells",
    ARM_STANDARD: "Group 2: standard treatment only",
}

INCLUSION_CODES = (
    "ssc_clinical_diagnosis",
    "can_follow_procedures",
    "written_informed_consent",
)
EXCLUSION_CODES = (
    "malignancy_last_5_years",
    "decompensated_disease",
    "chronic_infection_hiv_hbv_hcv_tb",
    "pregnant_breastfeeding_or_no_contraception",
    "mental_disorder_or_dependence",
    "unable_to_consent_or_comply",
    "other_risk_condition",
)

#: CDISC SEX codelist (C66731), without UNDIFFERENTIATED.
SEXES = ("F", "M", "U")

ROLES = ("admin", "investigator", "coordinator", "monitor", "data_manager", "inspector")
#: Roles bound to one site: they see (and, where allowed, change) only that site's participants.
SITE_BOUND_ROLES = frozenset({"investigator", "coordinator", "monitor"})
#: Site value of users who are not bound to one site.
ALL_SITES = "*"


@lru_cache(maxsize=65536)
def trial_uuid(*parts: str) -> UUID:
    """A stable id inside this trial's namespace (pure, so cached: ids are looked up on every save)."""
    return uuid5(NAMESPACE_URL, "/".join(("trialaudit", TRIAL_ID, *parts)))


def assess_eligibility(
    inclusion: dict[str, bool], exclusion: dict[str, bool]
) -> tuple[bool, list[tuple[tuple[str, ...], str]]]:
    """Eligible iff every inclusion holds and no exclusion does. All ten must be answered.

    Returns (eligible, errors); errors are (path, message) pairs, empty when the input is complete.
    """
    errors: list[tuple[tuple[str, ...], str]] = []
    for group, codes, answers in (
        ("inclusion", INCLUSION_CODES, inclusion),
        ("exclusion", EXCLUSION_CODES, exclusion),
    ):
        if not isinstance(answers, dict):
            errors.append(((group,), "must be an object of criterion code to true/false"))
            continue
        for code in codes:
            if code not in answers:
                errors.append(((group, code), "must be answered (true or false)"))
            elif not isinstance(answers[code], bool):
                errors.append(((group, code), "must be true or false"))
        for code in answers:
            if code not in codes:
                errors.append(((group, code), f"unknown {group} criterion; known: {', '.join(codes)}"))
    if errors:
        return False, errors
    eligible = all(inclusion[c] for c in INCLUSION_CODES) and not any(
        exclusion[c] for c in EXCLUSION_CODES
    )
    return eligible, []
