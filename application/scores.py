"""Scores of recorded visit data: one function for the live read model and for as-of replay.

Both paths call ``score_items`` on a visit's current item values and ``assemble`` on the visits of a
participant, so what ``?as_of=`` answers is by construction what the projection showed at that time.

The ACR/EULAR timing convention (docs/domain.md §1 [P], "ever present at the assessment date") is
applied at data entry: the CRF item asks whether the finding has ever been present, so each visit's
findings are scored as recorded there; nothing is carried from one visit to the next.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from domain.schedule import BASELINE, VISIT_CODES
from domain.scoring import (
    ACR_EULAR_CODES,
    MRSS_RULE,
    MRSS_RULE_ID,
    MRSS_SITES,
    mrss_change,
    score_acr_eular_2013,
    score_mrss,
)
from domain.visit import ACR_PREFIX, MRSS_PREFIX

_ACR_LEN, _MRSS_LEN = len(ACR_PREFIX), len(MRSS_PREFIX)


def score_items(items: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(ACR/EULAR score, mRSS score) of one visit's items; None for an instrument with no data."""
    findings = {k[_ACR_LEN:]: v for k, v in items.items() if k.startswith(ACR_PREFIX)}
    sites = {k[_MRSS_LEN:]: v for k, v in items.items() if k.startswith(MRSS_PREFIX)}
    acr = None
    if findings:
        result = score_acr_eular_2013(findings).as_dict()
        result["unknown"] = list(result["unknown"])
        result["exclusions_present"] = list(result["exclusions_present"])
        result["items_recorded"] = len(findings)
        result["items_expected"] = len(ACR_EULAR_CODES)
        acr = result
    mrss = None
    if sites:
        missing = [s for s in MRSS_SITES if s not in sites]
        if missing:  # never imputed: an incomplete record has no total
            mrss = {"total": None, "complete": False, "missing_sites": missing,
                    "sites": {s: sites[s] for s in MRSS_SITES if s in sites}, "rule": MRSS_RULE_ID, "rule_text": MRSS_RULE}
        else:
            mrss = {**score_mrss(sites).as_dict(), "complete": True, "missing_sites": []}
    return acr, mrss


def _order(entry: Mapping[str, Any]) -> tuple:
    code = entry["visit_code"]
    return (VISIT_CODES.index(code), entry.get("held_on") or "", entry["visit_id"])


def assemble(visits: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per visit with data, in schedule order, with the change from baseline.

    ``visits``: dicts with visit_id, visit_code, held_on, target_date, acr_eular, mrss (from ``score_items``).
    """
    entries = sorted((dict(v) for v in visits if v["acr_eular"] is not None or v["mrss"] is not None), key=_order)
    baseline = next((e for e in entries if e["visit_code"] == BASELINE), None)
    bl_acr = baseline["acr_eular"]["total_score"] if baseline and baseline["acr_eular"] else None
    bl_mrss = baseline["mrss"]["total"] if baseline and baseline["mrss"] else None
    for e in entries:
        if e["acr_eular"] is not None:
            total = e["acr_eular"]["total_score"]
            e["acr_eular"] = {**e["acr_eular"], "change_from_baseline": None if total is None or bl_acr is None else total - bl_acr}
        if e["mrss"] is not None:
            total = e["mrss"]["total"]
            extra: dict[str, Any] = {"change_from_baseline": None, "improved_mcid": None,
                                     "eustar_progression": None, "eustar_regression": None}
            if total is not None and bl_mrss is not None:
                ch = mrss_change(bl_mrss, total)
                extra = {"change_from_baseline": ch.change, "improved_mcid": ch.improved_mcid,
                         "eustar_progression": ch.eustar_progression, "eustar_regression": ch.eustar_regression}
            e["mrss"] = {**e["mrss"], **extra}
    return entries


def describe(values: list[float]) -> dict[str, Any]:
    """n, mean, SD (n-1), median and quartiles (inclusive method, as R's type 7 and numpy's default)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "median": None, "q1": None, "q3": None, "iqr": None}
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else None
    if n > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = float(values[0])
    r = lambda x: None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)  # noqa: E731
    return {"n": n, "mean": r(mean), "sd": r(sd), "median": r(statistics.median(values)), "q1": r(q1), "q3": r(q3),
            "iqr": r(q3 - q1)}
