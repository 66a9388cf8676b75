"""The visit schedule of docs/domain.md §5 (a [P] proposal, to be confirmed by the protocol).

Anchor (the proposal, not the simpler alternative): Day 0 is the infusion date for an infused
Group 1 participant; until then, and for Group 2 and Group 1 without an infusion, Day 0 is the
randomisation date + the planned manufacturing interval (default 21 days). At randomisation every
participant's Day 0 is therefore R + 21 (the nominal infusion day); when a Group 1 infusion is held,
the visits that follow it are re-anchored to the actual infusion date (``VisitRescheduled``). This
keeps intention-to-treat follow-up for manufacturing failures and equal follow-up in both arms.

R, the randomisation date, is the calendar date at the site of the ``ParticipantRandomised`` event's
recorded time. Windows are inclusive. Pure functions; every interval can be changed by passing a
different ``manufacturing_days``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from domain.trial import ARM_STANDARD, ARM_TREG

MANUFACTURING_DAYS_DEFAULT = 21
ANCHOR_RULE = "schedule/day0-infusion-or-R+21-v1"

VISIT_CODES = ("SCR", "BL", "BC", "INF", "D1", "D7", "M1", "M3", "M6", "M12", "UNS")
VISIT_LABELS = {
    "SCR": "Screening",
    "BL": "Baseline / randomisation",
    "BC": "Blood collection / leukapheresis",
    "INF": "Treg infusion (Day 0)",
    "D1": "Day 1",
    "D7": "Day 7",
    "M1": "Month 1",
    "M3": "Month 3",
    "M6": "Month 6",
    "M12": "Month 12 (primary endpoint, end of study)",
    "UNS": "Unscheduled",
}
UNSCHEDULED = "UNS"
BASELINE = "BL"
PRIMARY_ENDPOINT = "M12"
INFUSION = "INF"


@dataclass(frozen=True)
class VisitRule:
    """``base`` is 'R' (randomisation) or 'D' (Day 0); target = base + offset, window = target - before .. + after."""

    code: str
    base: str
    offset: int
    before: int
    after: int
    arms: tuple[str, ...]


BOTH = (ARM_TREG, ARM_STANDARD)
#: the scheduled visits, in order (UNS has no target)
RULES: tuple[VisitRule, ...] = (
    VisitRule("SCR", "R", -1, 27, 0, BOTH),  # R-28 .. R-1; nominally the day before randomisation
    VisitRule("BL", "R", 0, 0, 0, BOTH),  # on the day of randomisation
    VisitRule("BC", "R", 1, 0, 6, (ARM_TREG,)),  # R+1 .. R+7
    VisitRule("INF", "R", MANUFACTURING_DAYS_DEFAULT, 7, 14, (ARM_TREG,)),  # nominal R+21, R+14 .. R+35
    VisitRule("D1", "D", 1, 0, 1, (ARM_TREG,)),  # D+1, +1 d
    VisitRule("D7", "D", 7, 2, 2, BOTH),  # Group 2 by phone
    VisitRule("M1", "D", 30, 3, 3, BOTH),
    VisitRule("M3", "D", 90, 7, 7, BOTH),
    VisitRule("M6", "D", 180, 14, 14, BOTH),
    VisitRule("M12", "D", 365, 14, 14, BOTH),
)
RULE_BY_CODE = {r.code: r for r in RULES}


@dataclass(frozen=True)
class PlannedVisit:
    code: str
    target_date: dt.date
    window_start: dt.date
    window_end: dt.date


def planned_day0(randomised_on: dt.date, manufacturing_days: int = MANUFACTURING_DAYS_DEFAULT) -> dt.date:
    return randomised_on + dt.timedelta(days=manufacturing_days)


def plan_visit(rule: VisitRule, randomised_on: dt.date, day0: dt.date,
               manufacturing_days: int = MANUFACTURING_DAYS_DEFAULT) -> PlannedVisit:
    offset = manufacturing_days if rule.code == INFUSION else rule.offset
    target = (randomised_on if rule.base == "R" else day0) + dt.timedelta(days=offset)
    return PlannedVisit(rule.code, target, target - dt.timedelta(days=rule.before), target + dt.timedelta(days=rule.after))


def schedule_for(arm: str, randomised_on: dt.date,
                 manufacturing_days: int = MANUFACTURING_DAYS_DEFAULT) -> list[PlannedVisit]:
    """The scheduled visits of a participant of ``arm`` randomised on ``randomised_on``."""
    if arm not in BOTH:
        raise ValueError(f"unknown arm {arm!r}")
    day0 = planned_day0(randomised_on, manufacturing_days)
    return [plan_visit(r, randomised_on, day0, manufacturing_days) for r in RULES if arm in r.arms]


def reanchored(code: str, randomised_on: dt.date, day0: dt.date) -> PlannedVisit | None:
    """The new plan of a Day-0-based visit once the actual Day 0 is known (None for R-based visits)."""
    rule = RULE_BY_CODE.get(code)
    if rule is None or rule.base != "D":
        return None
    return plan_visit(rule, randomised_on, day0)


def days_outside(held_on: dt.date, window_start: dt.date | None, window_end: dt.date | None) -> int:
    """0 inside the window; negative days before it, positive days after it."""
    if window_start is not None and held_on < window_start:
        return (held_on - window_start).days
    if window_end is not None and held_on > window_end:
        return (held_on - window_end).days
    return 0
