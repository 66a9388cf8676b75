"""The case report form as a reader sees it: labels, question text and units of every recorded field.

Pure data from docs/domain.md (§1 ACR/EULAR items, §2 mRSS sites, §3.5 CDASH AE fields) and the
participant's own fields, so that a casebook or an ODM export shows data in context (R14, R16).
"""

from __future__ import annotations

from typing import Any

from domain.scoring import (
    ACR_EULAR_CATEGORIES,
    ACR_EULAR_EXCLUSIONS,
    ACR_EULAR_RULE_ID,
    MRSS_RULE_ID,
    MRSS_SITE_MAX,
    MRSS_SITE_MIN,
)
from domain.trial import EXCLUSION_CODES, INCLUSION_CODES

#: ACR/EULAR sub-items and exclusions (docs/domain.md §1, the ``acr_eular_items`` block).
ACR_EULAR_LABELS: dict[str, str] = {
    "skin_thickening_proximal_to_mcp": "Skin thickening of the fingers of both hands extending proximal to the MCP joints (sufficient criterion)",
    "puffy_fingers": "Skin thickening of the fingers: puffy fingers",
    "sclerodactyly": "Skin thickening of the fingers: sclerodactyly of the fingers (distal to MCP, proximal to PIP)",
    "digital_tip_ulcers": "Fingertip lesions: digital tip ulcers",
    "fingertip_pitting_scars": "Fingertip lesions: fingertip pitting scars",
    "telangiectasia": "Telangiectasia",
    "abnormal_nailfold_capillaries": "Abnormal nailfold capillaries",
    "pulmonary_arterial_hypertension": "PAH (right heart catheterisation)",
    "interstitial_lung_disease": "Interstitial lung disease",
    "raynaud_phenomenon": "Raynaud's phenomenon",
    "anti_centromere": "SSc-related autoantibodies: anticentromere",
    "anti_topoisomerase_i": "SSc-related autoantibodies: anti-topoisomerase I (anti-Scl-70)",
    "anti_rna_polymerase_iii": "SSc-related autoantibodies: anti-RNA polymerase III",
    "skin_thickening_sparing_fingers": "Exclusion: skin thickening sparing the fingers",
    "ssc_like_disorder_better_explains": "Exclusion: a scleroderma-like disorder better explains the manifestations",
}

#: mRSS sites (docs/domain.md §2, the ``mrss_sites`` block), scored 0..3 by palpation.
MRSS_LABELS: dict[str, str] = {
    "face": "Face", "anterior_chest": "Anterior chest", "abdomen": "Abdomen",
    "fingers_right": "Fingers, right", "fingers_left": "Fingers, left",
    "hands_right": "Dorsum of hand, right", "hands_left": "Dorsum of hand, left",
    "forearms_right": "Forearm, right", "forearms_left": "Forearm, left",
    "upper_arms_right": "Upper arm, right", "upper_arms_left": "Upper arm, left",
    "thighs_right": "Thigh, right", "thighs_left": "Thigh, left",
    "lower_legs_right": "Lower leg, right", "lower_legs_left": "Lower leg, left",
    "feet_right": "Dorsum of foot, right", "feet_left": "Dorsum of foot, left",
}
MRSS_SCORE_LABELS = {"0": "normal", "1": "mild thickening", "2": "moderate thickening",
                     "3": "severe thickening (cannot pinch fold)"}
MRSS_UNIT = "mRSS site score 0-3 (0 normal, 1 mild, 2 moderate, 3 severe thickening)"
ACR_UNIT = "finding: true present / false absent / null unknown"

#: Adverse-event fields (docs/domain.md §3.5, CDASH names in lower case).
AE_LABELS: dict[str, str] = {
    "aeterm": "Reported term (verbatim)", "aestdat": "Start date", "aeendat": "End date",
    "aetoxgr": "Toxicity grade (CTCAE)", "ctcae_version": "CTCAE version", "aeser": "Serious event",
    "aesdth": "Results in death", "aeslife": "Life-threatening", "aeshosp": "Requires or prolongs hospitalisation",
    "aesdisab": "Persistent or significant disability / incapacity", "aescong": "Congenital anomaly / birth defect",
    "aesmie": "Other important medical event", "aerel_treg": "Causality to the Treg product (investigator)",
    "aerel_proc": "Causality to study procedures", "aeexp": "Expectedness", "rsi_version": "RSI version used",
    "aeout": "Outcome", "aeacn": "Action taken with study treatment", "aesi_category": "AE of special interest category",
    "aware_at": "Site first aware (UTC)", "aerel_treg_sponsor": "Causality to the Treg product (sponsor)",
    "deleted": "Deleted (entered in error)",
}

#: The participant's own recorded fields.
PARTICIPANT_LABELS: dict[str, str] = {
    "screening_number": "Screening number", "site": "Site", "sex": "Sex (CDISC SEX)", "birth_year": "Year of birth",
    "eligible": "Eligible", "consent_version": "Consent form version", "consent_signed_on": "Consent signed on",
    "arm": "Randomised arm", "allocation_slot": "Allocation slot", "status": "Status",
    "withdrawal_reason": "Withdrawal reason",
    **{f"eligibility.inclusion.{c}": f"Inclusion: {c.replace('_', ' ')}" for c in INCLUSION_CODES},
    **{f"eligibility.exclusion.{c}": f"Exclusion: {c.replace('_', ' ')}" for c in EXCLUSION_CODES},
}

VISIT_FIELD_LABELS: dict[str, str] = {
    "code": "Visit", "target_date": "Target date", "window_start": "Window start", "window_end": "Window end",
    "held_on": "Date held", "protocol_deviation": "Protocol deviation",
}

FORM_LABELS = {
    "acr_eular": f"ACR/EULAR 2013 SSc classification criteria (rule {ACR_EULAR_RULE_ID})",
    "mrss": f"Modified Rodnan skin score (rule {MRSS_RULE_ID})",
    "visit": "Visit date and schedule",
}


def item_label(item_code: str) -> str:
    """The question text of a visit item (``acr_eular.<code>`` or ``mrss.<site>``) or a visit field."""
    if item_code.startswith("acr_eular."):
        return ACR_EULAR_LABELS.get(item_code[10:], item_code)
    if item_code.startswith("mrss."):
        return "mRSS: " + MRSS_LABELS.get(item_code[5:], item_code)
    return VISIT_FIELD_LABELS.get(item_code, item_code)


def item_unit(item_code: str) -> str | None:
    if item_code.startswith("acr_eular."):
        return ACR_UNIT
    if item_code.startswith("mrss."):
        return MRSS_UNIT
    return None


def field_label(record_type: str, field: str) -> str:
    table = {"participant": PARTICIPANT_LABELS, "adverse_event": AE_LABELS}.get(record_type)
    if table is None:
        return item_label(field)
    if field.startswith("obligations."):
        return "Reporting obligation " + field.split(".", 1)[1].replace(".", " ")
    if field.startswith("signatures"):
        return "Signature"
    return table.get(field, field)


# --------------------------------------------------------------------------- the data dictionary (issue 14.9)
#: where the data dictionary is served; unknown item codes point here
METADATA_ROUTE = "/study/metadata"
#: what "required" means for an item of each form
REQUIRED_RULE = {
    "acr_eular": "not required: a finding may be unknown (null), which scores 0; the score says when unknowns "
                 "could change the classification (indeterminate)",
    "mrss": "required: the mRSS total is computed only when all 17 sites are scored (never imputed)",
}


def visit_item_definitions() -> list[dict[str, Any]]:
    """Every item a visit accepts (``PUT /visits/{id}/items/{code}``), from the same list the Visit validates
    against (``domain.visit.ITEM_CODES``), with its form, label, data type, allowed values or range, unit
    and whether it is required. One list: the API and the data dictionary cannot disagree."""
    from domain.visit import ACR_PREFIX, ITEM_CODES, MRSS_PREFIX

    weights = {code: (category, weight) for category, subs in ACR_EULAR_CATEGORIES for code, weight in subs}
    result: list[dict[str, Any]] = []
    for code in ITEM_CODES:
        if code.startswith(ACR_PREFIX):
            finding = code[len(ACR_PREFIX):]
            category, weight = weights.get(finding, (None, None))
            result.append({
                "code": code, "form": "acr_eular", "label": item_label(code), "data_type": "boolean",
                "allowed_values": [True, False, None], "range": None,
                "value_labels": {"true": "present", "false": "absent", "null": "unknown"},
                "unit": item_unit(code), "required": False,
                "role": "exclusion" if finding in ACR_EULAR_EXCLUSIONS else "finding",
                "category": category, "weight": weight,
            })
        elif code.startswith(MRSS_PREFIX):
            result.append({
                "code": code, "form": "mrss", "label": item_label(code), "data_type": "integer",
                "allowed_values": list(range(MRSS_SITE_MIN, MRSS_SITE_MAX + 1)),
                "range": {"min": MRSS_SITE_MIN, "max": MRSS_SITE_MAX},
                "value_labels": dict(MRSS_SCORE_LABELS), "unit": item_unit(code), "required": True,
                "role": "site score", "category": None, "weight": None,
            })
    return result
