"""Pure safety rules for adverse events (docs/domain.md §3, §4): code lists, field validation, the
consistency rules, seriousness/relatedness/SUSAR classification and the reporting clocks.

No I/O and no clock reads: "now" and "today" are parameters. Every function here is table-tested in
tests/unit/test_safety_rules.py.
"""

from __future__ import annotations

import datetime as dt
import re
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.trial import ARM_TREG

RULES_VERSION = "trialaudit AE rules v1 (docs/domain.md §3; ICH E2A; CTCAE v5.0; EU CTR Art 41-42)"

NY = ("Y", "N")
#: CTCAE v5.0 grades, stored as text "1".."5" (docs/domain.md §3.1).
GRADES = ("1", "2", "3", "4", "5")
CTCAE_VERSIONS = ("5.0",)
#: The six ICH E2A seriousness criteria as CDASH flags (§3.2).
SERIOUSNESS_FLAGS = ("aesdth", "aeslife", "aeshosp", "aesdisab", "aescong", "aesmie")
#: Causality (§3.3): WHO-UMC on a sponsor-defined 5-point scale, plus the WHO-UMC categories that count
#: as related until resolved, plus NOT APPLICABLE (no product given: Group 2, or before infusion).
CAUSALITY = (
    "DEFINITE", "PROBABLE", "POSSIBLE", "UNLIKELY", "NOT RELATED",
    "CONDITIONAL", "UNASSESSABLE", "NOT APPLICABLE",
)
#: Binary for reporting, conservatively (§3.3): unclassified and unassessable count as related.
RELATED = frozenset({"DEFINITE", "PROBABLE", "POSSIBLE", "CONDITIONAL", "UNASSESSABLE"})
NOT_APPLICABLE = "NOT APPLICABLE"
#: Expectedness against the Reference Safety Information (§3.4); null = not yet assessed.
EXPECTEDNESS = ("EXPECTED", "UNEXPECTED")
#: AEOUT, CDISC OUT C66768 (§3.4).
OUTCOMES = (
    "RECOVERED/RESOLVED",
    "RECOVERING/RESOLVING",
    "NOT RECOVERED/NOT RESOLVED",
    "RECOVERED/RESOLVED WITH SEQUELAE",
    "FATAL",
    "UNKNOWN",
)
OUTCOMES_NEEDING_END = frozenset({"RECOVERED/RESOLVED", "RECOVERED/RESOLVED WITH SEQUELAE", "FATAL"})
OUTCOMES_ONGOING = frozenset({"RECOVERING/RESOLVING", "NOT RECOVERED/NOT RESOLVED"})
#: AEACN, CDISC ACN C66767 (§3.4).
ACTIONS = (
    "DOSE INCREASED", "DOSE NOT CHANGED", "DOSE RATE REDUCED", "DOSE REDUCED",
    "DRUG INTERRUPTED", "DRUG WITHDRAWN", "NOT APPLICABLE", "UNKNOWN",
)
#: Adverse events of special interest for autologous polyclonal Treg (§4).
AESI_CATEGORIES = (
    "infusion_related_reaction",
    "infection",
    "cytokine_release_syndrome",
    "malignancy",
    "ssc_worsening",
    "product_related",
    "hypersensitivity_to_reagents",
    "procedure_complication",
)

#: Every recorded AE field, in CDASH order (lower case), as the API names them.
FIELDS = (
    "aeterm", "aestdat", "aeendat", "aetoxgr", "ctcae_version", "aeser", *SERIOUSNESS_FLAGS,
    "aerel_treg", "aerel_proc", "aeexp", "rsi_version", "aeout", "aeacn", "aesi_category", "aware_at",
)
#: Fields that may be left out (null) when an AE is first reported.
OPTIONAL = frozenset({"aeendat", "aeexp", "rsi_version", "aesi_category"})
DEFAULTS = {"ctcae_version": "5.0"}

_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
#: Tolerated skew between a client's clock and the server's for "not in the future".
CLOCK_SKEW = dt.timedelta(minutes=5)

Errors = list[tuple[tuple[str, ...], str]]


# --------------------------------------------------------------------------- instants and partial dates
def instant_text(value: dt.datetime) -> str:
    """An aware instant as stored: UTC, ISO 8601, microseconds, 'Z' (sorts as text)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_instant(value: Any) -> dt.datetime:
    """An ISO 8601 instant WITH its zone (R4). Raises ValueError for naive or malformed input."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(text)
    else:
        raise ValueError("not an instant")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("naive")
    return parsed.astimezone(dt.timezone.utc)


@dataclass(frozen=True)
class PartialDate:
    """An ISO 8601 date, possibly partial: YYYY, YYYY-MM or YYYY-MM-DD (CDASH AESTDAT/AEENDAT)."""

    text: str
    earliest: dt.date
    latest: dt.date

    @classmethod
    def parse(cls, value: Any) -> "PartialDate":
        if not isinstance(value, str):
            raise ValueError("not text")
        m = _PARTIAL_DATE.match(value.strip())
        if not m:
            raise ValueError("not YYYY, YYYY-MM or YYYY-MM-DD")
        year, month, day = int(m[1]), m[2], m[3]
        if year < 1900:
            raise ValueError("year before 1900")
        if month is None:
            return cls(value.strip(), dt.date(year, 1, 1), dt.date(year, 12, 31))
        month_n = int(month)
        if not 1 <= month_n <= 12:
            raise ValueError("month out of range")
        if day is None:
            return cls(value.strip(), dt.date(year, month_n, 1), dt.date(year, month_n, monthrange(year, month_n)[1]))
        date = dt.date(year, month_n, int(day))  # raises ValueError for 2026-02-30
        return cls(value.strip(), date, date)


def end_before_start(start: PartialDate, end: PartialDate) -> bool:
    """Conservative: refuse only when every reading of the end lies before every reading of the start."""
    return end.latest < start.earliest


# --------------------------------------------------------------------------- per-field validation
def _codelist(allowed: tuple[str, ...], label: str):
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)} ({label})")
        return value

    return check


def _text(max_len: int, what: str):
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what} is required")
        text = " ".join(value.split())
        if len(text) > max_len:
            raise ValueError(f"{what} is longer than {max_len} characters")
        return text

    return check


def _grade(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value not in GRADES:
        raise ValueError("must be a CTCAE v5.0 grade 1..5")
    return value


def _partial_date(value: Any) -> str:
    try:
        return PartialDate.parse(value).text
    except ValueError:
        raise ValueError("must be an ISO 8601 date, complete or partial: YYYY, YYYY-MM or YYYY-MM-DD") from None


def _instant(value: Any) -> str:
    try:
        return instant_text(parse_instant(value))
    except (ValueError, TypeError):
        raise ValueError(
            "must be an ISO 8601 instant with its zone, e.g. 2026-03-12T09:30:00+03:00 (a time without zone is refused)"
        ) from None


VALIDATORS = {
    "aeterm": _text(200, "the verbatim term"),
    "aestdat": _partial_date,
    "aeendat": _partial_date,
    "aetoxgr": _grade,
    "ctcae_version": _codelist(CTCAE_VERSIONS, "CTCAE version"),
    "aeser": _codelist(NY, "NY"),
    **{flag: _codelist(NY, "NY") for flag in SERIOUSNESS_FLAGS},
    "aerel_treg": _codelist(CAUSALITY, "causality"),
    "aerel_proc": _codelist(CAUSALITY, "causality"),
    "aeexp": _codelist(EXPECTEDNESS, "expectedness against the RSI"),
    "rsi_version": _text(100, "the Reference Safety Information version"),
    "aeout": _codelist(OUTCOMES, "CDISC OUT"),
    "aeacn": _codelist(ACTIONS, "CDISC ACN"),
    "aesi_category": _codelist(AESI_CATEGORIES, "AESI category, docs/domain.md §4"),
    "aware_at": _instant,
}


def validate_value(field: str, value: Any) -> Any:
    """One field's value, cleaned; ValueError with a message for the user. None only where optional."""
    if value is None:
        if field in OPTIONAL:
            return None
        raise ValueError("is required")
    return VALIDATORS[field](value)


def validate_fields(values: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    """Clean every field given; unknown fields are errors. Returns (clean values, errors)."""
    clean: dict[str, Any] = {}
    errors: Errors = []
    for field, value in values.items():
        if field not in VALIDATORS:
            errors.append(((field,), f"unknown adverse-event field; known: {', '.join(FIELDS)}"))
            continue
        try:
            clean[field] = validate_value(field, value)
        except ValueError as e:
            errors.append(((field,), str(e)))
    return clean, errors


# --------------------------------------------------------------------------- consistency rules
def _flag_names(fields: list[str]) -> str:
    return ", ".join(f.upper() for f in fields)


def consistency_errors(
    record: Mapping[str, Any], *, arm: str | None, now: dt.datetime
) -> Errors:
    """Every cross-field rule of docs/domain.md §3 that ``record`` (complete, clean) breaks.

    Each error names every field of the rule it breaks, so that a 422 shows all of them.
    """
    errors: Errors = []

    def refuse(fields: tuple[str, ...], message: str) -> None:
        errors.extend(((f,), message) for f in fields)

    # AESER = Y exactly when at least one seriousness criterion is Y (§3.2).
    yes = [f for f in SERIOUSNESS_FLAGS if record["aeser"] is not None and record.get(f) == "Y"]
    if record["aeser"] == "Y" and not yes:
        refuse(("aeser", *SERIOUSNESS_FLAGS),
               "AESER is Y but no seriousness criterion (AESDTH, AESLIFE, AESHOSP, AESDISAB, AESCONG, AESMIE) is Y; "
               "AESER = Y exactly when at least one is")
    elif record["aeser"] == "N" and yes:
        refuse(("aeser", *yes), f"AESER is N but {_flag_names(yes)} is Y; AESER = Y exactly when a seriousness criterion is Y")
    # AESDTH = Y exactly when AEOUT = FATAL, and grade 5 only with FATAL (§3.1, §3.2).
    fatal = record["aeout"] == "FATAL"
    if record["aesdth"] == "Y" and not fatal:
        refuse(("aesdth", "aeout"), f"AESDTH is Y but AEOUT is {record['aeout']}; AESDTH = Y exactly when AEOUT = FATAL")
    elif record["aesdth"] == "N" and fatal:
        refuse(("aesdth", "aeout"), "AEOUT is FATAL but AESDTH is N; AESDTH = Y exactly when AEOUT = FATAL")
    if record["aetoxgr"] == "5" and not fatal:
        refuse(("aetoxgr", "aeout"), f"CTCAE grade 5 (death) needs AEOUT = FATAL, not {record['aeout']}")
    # Outcome and end date (§3.4).
    if record["aeout"] in OUTCOMES_NEEDING_END and record.get("aeendat") is None:
        refuse(("aeendat", "aeout"), f"AEOUT {record['aeout']} needs an end date (AEENDAT)")
    if record["aeout"] in OUTCOMES_ONGOING and record.get("aeendat") is not None:
        refuse(("aeendat", "aeout"), f"AEOUT {record['aeout']} means the AE is ongoing; remove the end date (AEENDAT)")
    # End not before start, compared conservatively for partial dates.
    start = PartialDate.parse(record["aestdat"])
    today = now.date()
    if start.earliest > today:
        refuse(("aestdat",), "the start date is in the future")
    if record.get("aeendat") is not None:
        end = PartialDate.parse(record["aeendat"])
        if end_before_start(start, end):
            refuse(("aeendat", "aestdat"), f"the end date {end.text} is before the start date {start.text}")
        if end.earliest > today:
            refuse(("aeendat",), "the end date is in the future")
    # Awareness: an instant, not in the future, not before the AE could have started.
    aware = parse_instant(record["aware_at"])
    if aware > now + CLOCK_SKEW:
        refuse(("aware_at",), "the time the site became aware is in the future")
    elif aware.date() + dt.timedelta(days=1) < start.earliest:  # (elif: a date near 9999-12-31 would overflow)
        refuse(("aware_at", "aestdat"), "the site cannot have become aware of the AE before it started")
    # Expectedness is judged against a named RSI version (§3.4).
    if record.get("aeexp") is not None and record.get("rsi_version") is None:
        refuse(("rsi_version", "aeexp"), "expectedness needs the Reference Safety Information version it was judged against")
    if record.get("aeexp") is None and record.get("rsi_version") is not None:
        refuse(("aeexp", "rsi_version"), "an RSI version is given but no expectedness (EXPECTED or UNEXPECTED)")
    # No product in Group 2 (or before allocation): relatedness to it and action taken with it are NOT APPLICABLE (§3.3, §3.4).
    if arm != ARM_TREG:
        who = "Group 2 (standard treatment only) receives no Treg product" if arm else "the participant is not allocated"
        if record["aerel_treg"] != NOT_APPLICABLE:
            refuse(("aerel_treg",), f"{who}: relatedness to the product must be NOT APPLICABLE")
        if record["aeacn"] != NOT_APPLICABLE:
            refuse(("aeacn",), f"{who}: action taken with the study treatment must be NOT APPLICABLE")
    # A malignancy AESI is always an important medical event [P] (§4).
    if record.get("aesi_category") == "malignancy" and record["aeser"] != "Y":
        refuse(("aesi_category", "aesmie", "aeser"), "a malignancy is always an important medical event: set AESMIE = Y and AESER = Y")
    return errors


# --------------------------------------------------------------------------- classification
@dataclass(frozen=True)
class Classification:
    """What the reporting obligations depend on (ICH E2A; docs/domain.md §3.3, §3.6)."""

    serious: bool
    related: bool  # to the Treg product, binary and conservative
    unexpected: bool
    fatal: bool
    life_threatening: bool
    aesi: bool

    @property
    def susar(self) -> bool:
        return self.serious and self.related and self.unexpected

    @property
    def fatal_or_life_threatening(self) -> bool:
        return self.fatal or self.life_threatening


def is_related(causality: str | None) -> bool:
    return causality in RELATED


#: The sponsor's own causality opinion, kept beside the investigator's (EU CTR Annex III; §3.3).
SPONSOR_CAUSALITY = "aerel_treg_sponsor"


def classify(record: Mapping[str, Any]) -> Classification:
    """Related when either opinion says so: the sponsor may add relatedness, never take it away."""
    return Classification(
        serious=record.get("aeser") == "Y",
        related=is_related(record.get("aerel_treg")) or is_related(record.get(SPONSOR_CAUSALITY)),
        unexpected=record.get("aeexp") == "UNEXPECTED",
        fatal=record.get("aeout") == "FATAL" or record.get("aesdth") == "Y",
        life_threatening=record.get("aeslife") == "Y",
        aesi=record.get("aesi_category") is not None,
    )


# --------------------------------------------------------------------------- reporting clocks
SPONSOR = "sponsor"
AUTHORITY = "authority"
RECIPIENTS = (SPONSOR, AUTHORITY)

SAE_INITIAL = "sae_initial"
SAE_FOLLOW_UP = "sae_follow_up"
AESI_INITIAL = "aesi_initial"
SUSAR_7_DAY = "susar_7_day"
SUSAR_15_DAY = "susar_15_day"
REPORT_KINDS = {
    SAE_INITIAL: SPONSOR,
    SAE_FOLLOW_UP: SPONSOR,
    AESI_INITIAL: SPONSOR,
    SUSAR_7_DAY: AUTHORITY,
    SUSAR_15_DAY: AUTHORITY,
}
REPORT_LABELS = {
    SAE_INITIAL: "SAE, investigator to sponsor (EU CTR Art 41(2); ICH E6 4.11.1)",
    SAE_FOLLOW_UP: "SAE follow-up after reclassification, investigator to sponsor (EU CTR Art 41(2))",
    AESI_INITIAL: "AESI, investigator to sponsor (EU CTR Art 41(1); protocol [P])",
    SUSAR_7_DAY: "fatal or life-threatening SUSAR, sponsor to authority (ICH E2A; EU CTR Art 42(2)(a),(c))",
    SUSAR_15_DAY: "other SUSAR, sponsor to authority (ICH E2A; EU CTR Art 42(2)(b))",
}


@dataclass(frozen=True)
class ReportingRules:
    """Deadlines, configurable because national law governs (docs/domain.md §3.6 gives the defaults)."""

    sae_to_sponsor: dt.timedelta = dt.timedelta(hours=24)
    aesi_to_sponsor: dt.timedelta = dt.timedelta(hours=24)
    susar_fatal_or_life_threatening: dt.timedelta = dt.timedelta(days=7)
    susar_other: dt.timedelta = dt.timedelta(days=15)

    def period(self, kind: str) -> dt.timedelta:
        return {
            SAE_INITIAL: self.sae_to_sponsor,
            SAE_FOLLOW_UP: self.sae_to_sponsor,
            AESI_INITIAL: self.aesi_to_sponsor,
            SUSAR_7_DAY: self.susar_fatal_or_life_threatening,
            SUSAR_15_DAY: self.susar_other,
        }[kind]

    def describe(self) -> dict[str, str]:
        return {kind: iso_duration(self.period(kind)) for kind in REPORT_KINDS}


@dataclass(frozen=True)
class ClockStart:
    kind: str
    recipient: str
    started_at: str
    due_at: str
    trigger: str


UPGRADES = ("serious", "related", "unexpected", "life_threatening", "fatal", "aesi")


def upgrades(before: Classification, after: Classification) -> list[str]:
    """What became true: the reclassifications that start new clocks."""
    return [name for name in UPGRADES if getattr(after, name) and not getattr(before, name)]


def clocks_to_start(
    before: Classification | None, after: Classification, started_at: dt.datetime, rules: ReportingRules
) -> list[ClockStart]:
    """The reporting clocks a report (``before`` None) or a change starts, from awareness of the facts.

    - every SAE to the sponsor within 24 h; an AESI to the sponsor within 24 h;
    - a SUSAR to the authority within 7 days if fatal or life-threatening, else 15 days;
    - re-classification (non-serious -> serious, not related -> related, expected -> unexpected,
      non-fatal -> fatal) starts a new clock from awareness of the new facts (§3.6): a serious AE that
      becomes related, life-threatening or fatal needs a follow-up to the sponsor; a SUSAR that becomes
      fatal or life-threatening needs a 7-day report even after a 15-day one (Art 42(2)(c)).
    """
    if before is None:
        became = [name for name in UPGRADES if getattr(after, name)]
        trigger = "initial report" + (f" ({', '.join(became)})" if became else "")
        changed = set(UPGRADES)
    else:
        changed = set(upgrades(before, after))
        if not changed:
            return []
        trigger = "reclassified: became " + ", ".join(n for n in UPGRADES if n in changed)
    kinds: list[str] = []
    if after.serious and (before is None or not before.serious):
        kinds.append(SAE_INITIAL)
    elif after.serious and before is not None and changed & {"related", "life_threatening", "fatal"}:
        kinds.append(SAE_FOLLOW_UP)
    if after.aesi and (before is None or not before.aesi):
        kinds.append(AESI_INITIAL)
    if after.susar:
        was_susar = before is not None and before.susar
        if after.fatal_or_life_threatening and (not was_susar or changed & {"life_threatening", "fatal"}):
            kinds.append(SUSAR_7_DAY)
        elif not after.fatal_or_life_threatening and not was_susar:
            kinds.append(SUSAR_15_DAY)
    start = started_at.astimezone(dt.timezone.utc)
    return [
        ClockStart(kind, REPORT_KINDS[kind], instant_text(start), instant_text(start + rules.period(kind)), trigger)
        for kind in kinds
    ]


def lateness(due_at: str, at: dt.datetime) -> dt.timedelta | None:
    """How late something due at ``due_at`` is at ``at`` (None when not yet due)."""
    late = at - parse_instant(due_at)
    return late if late > dt.timedelta(0) else None


def iso_duration(delta: dt.timedelta) -> str:
    """A non-negative duration as ISO 8601, e.g. P1DT6H30M (seconds rounded down)."""
    total = max(0, int(delta.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return text if text != "P" else "PT0S"
