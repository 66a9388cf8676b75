"""The Visit aggregate: a scheduled (or unscheduled) visit, the date it was held, and its item-level CRF data.

One event per item (R6). The first entry of an item needs no reason; every later change, including
clearing it, needs one and keeps the old and new values (R5). Clearing is an event of its own and the
old value stays in the history (R8). A change may cite the data query it answers (R7, in the stamp).
A visit held outside its window is recorded, with a ``ProtocolDeviationRecorded`` event, not refused.
Items are recorded only once the visit's date held is recorded (a visit that has not happened takes no
data); the date may not be in the future.

Signatures, lock and SDV (R25, R27-R30, R34, R35) live here too, so that they change atomically with the
data: a change to signed content emits ``VisitSignatureInvalidated`` in the same save; a change of a
verified item emits ``ItemVerificationReset``; a locked visit refuses every entry, change and signature.

Item codes are ``acr_eular.<finding code>`` (13 sub-items and 2 exclusions: ``true``, ``false`` or
``null`` for unknown) and ``mrss.<site code>`` (17 sites, integers 0..3), the codes of docs/domain.md.
For an ACR/EULAR item ``null`` is a value (unknown); clearing it is an explicit ``clear``. For an
mRSS site ``null`` is not a score, so setting it to ``null`` clears it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from domain.audit import AuditedAggregate, AuditedCreated, change
from domain.crf import METADATA_ROUTE
from domain.errors import Conflict, InvalidInput
from domain.lock import Lockable, RecordLocked, RecordUnlocked
from domain.schedule import (
    ANCHOR_RULE,
    UNSCHEDULED,
    VISIT_CODES,
    VISIT_LABELS,
    PlannedVisit,
    days_outside,
)
from domain.scoring import ACR_EULAR_CODES, MRSS_SITES, ScoringInputError, validate_mrss_site_score
from domain.signature import RecordSigned, Signable, SignatureInvalidated
from domain.trial import trial_uuid

ACR_PREFIX = "acr_eular."
MRSS_PREFIX = "mrss."
ITEM_CODES = tuple(ACR_PREFIX + c for c in ACR_EULAR_CODES) + tuple(MRSS_PREFIX + c for c in MRSS_SITES)
_ITEM_SET = frozenset(ITEM_CODES)

DEVIATION_OUT_OF_WINDOW = "visit_out_of_window"


def validate_item_code(item_code: Any) -> str:
    if not isinstance(item_code, str) or item_code not in _ITEM_SET:
        raise InvalidInput.one(
            "item_code", f"unknown item; the item codes, with their data types and allowed values, are listed at "
                         f"GET {METADATA_ROUTE} (acr_eular.<finding code> or mrss.<site code>)"
        )
    return item_code


def validate_item_value(item_code: str, value: Any, field: str | tuple = ("value",)) -> Any:
    """The value an item may hold: ACR/EULAR true/false/null; mRSS an integer 0..3."""
    if item_code.startswith(ACR_PREFIX):
        if value is not None and not isinstance(value, bool):
            raise InvalidInput.one(field, "an ACR/EULAR finding is true (present), false (absent) or null (unknown)")
        return value
    try:
        return validate_mrss_site_score(value)
    except ScoringInputError:
        raise InvalidInput.one(field, "an mRSS site score is an integer 0, 1, 2 or 3") from None


def parse_date(value: Any, field: str, latest: dt.date | None = None) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.date.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            raise InvalidInput.one(field, "must be a date as YYYY-MM-DD")
    if latest is not None and parsed > latest:
        raise InvalidInput.one(field, "must not be in the future")
    return parsed


def _d(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


class Visit(Signable, Lockable, AuditedAggregate):
    TOPIC = "trialaudit.Visit"
    RECORD_TYPE = "visit"
    LOCK_SCOPE = "visit"
    signature_events = ("VisitSigned", "VisitSignatureInvalidated")
    lock_events = ("VisitLocked", "VisitUnlocked")

    @staticmethod
    def id_for(participant_id: UUID | str, code: str) -> UUID:
        """Scheduled visits have stable ids; each unscheduled visit gets a random one."""
        return trial_uuid("visit", str(participant_id), code)

    class VisitScheduled(AuditedCreated):
        TOPIC = "trialaudit.Visit.VisitScheduled"
        participant_id: str
        site: str
        arm: str
        code: str
        target_date: str | None
        window_start: str | None
        window_end: str | None
        randomised_on: str
        anchor_rule: str

    class VisitRescheduled(AuditedAggregate.Event):
        """The target moved: a Day-0-based visit re-anchored to the actual infusion date."""

        TOPIC = "trialaudit.Visit.VisitRescheduled"
        target_date: str
        window_start: str
        window_end: str
        day0: str

        def apply(self, v: Any) -> None:
            v.target_date, v.window_start, v.window_end = self.target_date, self.window_start, self.window_end

    class VisitHeld(AuditedAggregate.Event):
        TOPIC = "trialaudit.Visit.VisitHeld"
        held_on: str

        def apply(self, v: Any) -> None:
            v.held_on = self.held_on

    class VisitDateCorrected(AuditedAggregate.Event):
        TOPIC = "trialaudit.Visit.VisitDateCorrected"
        held_on: str
        old_held_on: str

        def apply(self, v: Any) -> None:
            v.held_on = self.held_on

    class ProtocolDeviationRecorded(AuditedAggregate.Event):
        """Recorded beside the visit, never instead of it: nominal and actual dates are both kept."""

        TOPIC = "trialaudit.Visit.ProtocolDeviationRecorded"
        kind: str
        description: str
        target_date: str | None
        window_start: str | None
        window_end: str | None
        actual_date: str
        days_outside: int

        def apply(self, v: Any) -> None:
            v.deviations = [*v.deviations, {
                "kind": self.kind, "description": self.description, "target_date": self.target_date,
                "window_start": self.window_start, "window_end": self.window_end,
                "actual_date": self.actual_date, "days_outside": self.days_outside,
                "recorded_at": self.timestamp, "version": self.originator_version,
            }]

    class ItemRecorded(AuditedAggregate.Event):
        """First entry of an item (no reason needed)."""

        TOPIC = "trialaudit.Visit.ItemRecorded"
        item_code: str
        value: Any

        def apply(self, v: Any) -> None:
            v.items = {**v.items, self.item_code: self.value}

    class ItemCorrected(AuditedAggregate.Event):
        """A later change: old and new value, with the reason (and any query id) in the stamp (R5, R7)."""

        TOPIC = "trialaudit.Visit.ItemCorrected"
        item_code: str
        old_value: Any
        value: Any

        def apply(self, v: Any) -> None:
            v.items = {**v.items, self.item_code: self.value}

    class ItemCleared(AuditedAggregate.Event):
        """A tombstone: the item no longer has a value; the old one stays in the history (R8)."""

        TOPIC = "trialaudit.Visit.ItemCleared"
        item_code: str
        old_value: Any

        def apply(self, v: Any) -> None:
            v.items = {k: val for k, val in v.items.items() if k != self.item_code}
            v.cleared = v.cleared | {self.item_code}

    class VisitSigned(RecordSigned):
        """An investigator signed the visit's data (R27-R29)."""

        TOPIC = "trialaudit.Visit.VisitSigned"

    class VisitSignatureInvalidated(SignatureInvalidated):
        """A later change broke a signature of the visit, named in ``broken_by`` (R30)."""

        TOPIC = "trialaudit.Visit.VisitSignatureInvalidated"

    class VisitLocked(RecordLocked):
        TOPIC = "trialaudit.Visit.VisitLocked"

    class VisitUnlocked(RecordUnlocked):
        TOPIC = "trialaudit.Visit.VisitUnlocked"

    class ItemVerified(AuditedAggregate.Event):
        """Source-data verification of one item's current value, by a monitor (R35)."""

        TOPIC = "trialaudit.Visit.ItemVerified"
        item_code: str
        value: Any

        def apply(self, v: Any) -> None:
            v.sdv = {**v.sdv, self.item_code: {"value": self.value, "verified_by": dict(self.audit["actor"]),
                                               "verified_at": self.timestamp, "version": self.originator_version}}

    class ItemVerificationReset(AuditedAggregate.Event):
        """The verified value changed, so its SDV flag was reset automatically (R35)."""

        TOPIC = "trialaudit.Visit.ItemVerificationReset"
        item_code: str
        verified_value: Any
        changed_by_version: int

        def apply(self, v: Any) -> None:
            v.sdv = {k: val for k, val in v.sdv.items() if k != self.item_code}

    #: events that change the signed content (items and the date held)
    content_event_names = ("ItemRecorded", "ItemCorrected", "ItemCleared", "VisitHeld", "VisitDateCorrected")

    def __init__(self, participant_id: str, site: str, arm: str, code: str, target_date: str | None,
                 window_start: str | None, window_end: str | None, randomised_on: str, anchor_rule: str):
        self.participant_id = participant_id
        self.site = site
        self.arm = arm
        self.code = code
        self.target_date = target_date
        self.window_start = window_start
        self.window_end = window_end
        self.randomised_on = randomised_on
        self.anchor_rule = anchor_rule
        self.held_on: str | None = None
        self.items: dict[str, Any] = {}
        #: items that had a value once and were cleared (a later entry is a change: reason needed)
        self.cleared: frozenset[str] = frozenset()
        self.deviations: list[dict[str, Any]] = []
        self.signatures: list[dict[str, Any]] = []
        self.lock: dict[str, Any] | None = None
        #: item code -> the SDV flag of its current value (R35)
        self.sdv: dict[str, Any] = {}

    # ----------------------------------------------------------------- creation
    @classmethod
    def schedule(cls, *, participant_id: str, site: str, arm: str, plan: PlannedVisit,
                 randomised_on: dt.date, stamp: dict) -> "Visit":
        return cls._create_visit(
            cls.id_for(participant_id, plan.code), participant_id, site, arm, plan.code,
            plan.target_date.isoformat(), plan.window_start.isoformat(), plan.window_end.isoformat(),
            randomised_on.isoformat(), stamp,
        )

    @classmethod
    def unscheduled(cls, *, visit_id: UUID, participant_id: str, site: str, arm: str,
                    randomised_on: dt.date, stamp: dict) -> "Visit":
        return cls._create_visit(
            visit_id, participant_id, site, arm, UNSCHEDULED, None, None, None, randomised_on.isoformat(), stamp
        )

    @classmethod
    def _create_visit(cls, visit_id, participant_id, site, arm, code, target, start, end, randomised_on, stamp):
        if code not in VISIT_CODES:
            raise ValueError(f"unknown visit code {code!r}")
        return cls._create(
            cls.VisitScheduled,
            id=visit_id,
            participant_id=str(participant_id), site=site, arm=arm, code=code,
            target_date=target, window_start=start, window_end=end,
            randomised_on=randomised_on, anchor_rule=ANCHOR_RULE,
            audit=stamp,
            changes=[change("code", None, code), change("target_date", None, target),
                     change("window_start", None, start), change("window_end", None, end)],
        )

    # ----------------------------------------------------------------- derived
    @property
    def label(self) -> str:
        return VISIT_LABELS[self.code]

    @property
    def status(self) -> str:
        return visit_status(self.held_on, self.window_start, self.window_end, self.code)

    @property
    def out_of_window(self) -> bool:
        if self.held_on is None:
            return False
        return days_outside(_d(self.held_on), _d(self.window_start), _d(self.window_end)) != 0

    # ----------------------------------------------------------------- schedule
    def reschedule(self, plan: PlannedVisit, day0: dt.date, stamp: dict) -> bool:
        """Move the target of a visit not yet held. Returns False when nothing changes."""
        if self.held_on is not None:
            return False
        new = (plan.target_date.isoformat(), plan.window_start.isoformat(), plan.window_end.isoformat())
        old = (self.target_date, self.window_start, self.window_end)
        if new == old:
            return False
        changes = [change(f, o, n) for f, o, n in zip(("target_date", "window_start", "window_end"), old, new) if o != n]
        self._record(self.VisitRescheduled, stamp, changes, target_date=new[0], window_start=new[1],
                     window_end=new[2], day0=day0.isoformat())
        return True

    def hold(self, held_on: dt.date, stamp: dict, deviation_stamp: dict) -> bool:
        """Record (or correct, with a reason) the date the visit was held; an out-of-window date also
        records a protocol deviation. Returns False when the date is unchanged."""
        new = held_on.isoformat()
        if new == self.held_on:
            return False
        if self.held_on is None:
            self._record(self.VisitHeld, stamp, [change("held_on", None, new)], held_on=new)
        else:
            if not isinstance(stamp.get("reason"), str):
                raise InvalidInput.one("reason", "the visit date is already recorded; changing it needs a reason")
            self._record(self.VisitDateCorrected, stamp, [change("held_on", self.held_on, new)],
                         held_on=new, old_held_on=self.held_on)
        outside = days_outside(held_on, _d(self.window_start), _d(self.window_end))
        if outside:
            when = f"{abs(outside)} day(s) {'before' if outside < 0 else 'after'} the window"
            self._record(
                self.ProtocolDeviationRecorded, deviation_stamp, [change("protocol_deviation", None, DEVIATION_OUT_OF_WINDOW)],
                kind=DEVIATION_OUT_OF_WINDOW,
                description=f"{self.code} held on {new}, {when} {self.window_start}..{self.window_end} (target {self.target_date})",
                target_date=self.target_date, window_start=self.window_start, window_end=self.window_end,
                actual_date=new, days_outside=outside,
            )
        return True

    # ----------------------------------------------------------------- items
    def require_date_held(self, item_code: str) -> None:
        """A visit's data are recorded once the visit has happened, i.e. once its date is recorded
        (issue 14.3): a visit still to come (M6, M12 months ahead) takes no item."""
        if self.held_on is None:
            raise Conflict(f"record the visit date first: {self.code} has no date held, so {item_code} cannot be "
                           f"recorded (POST /visits/{self.id}/held with the date; it may not be in the future)")

    def has_history(self, item_code: str) -> bool:
        return item_code in self.items or item_code in self.cleared

    def set_item(self, item_code: Any, value: Any, stamp: dict, *, clear: bool = False) -> bool:
        """Record, change or clear one item. Returns False when nothing changes (no event).

        ``stamp`` must carry a reason for anything after the first entry (R5)."""
        item_code = validate_item_code(item_code)
        if item_code.startswith(MRSS_PREFIX) and value is None:
            clear = True
        if clear:
            if value is not None:
                raise InvalidInput.one("value", "to clear an item send value null with clear true")
            self.require_date_held(item_code)
            if item_code not in self.items:
                if item_code in self.cleared:
                    return False
                raise Conflict(f"{item_code} has no value to clear")
            self._require_reason(stamp, f"clearing {item_code}")
            old = self.items[item_code]
            self._record(self.ItemCleared, stamp, [change(item_code, old, None)], item_code=item_code, old_value=old)
            return True
        value = validate_item_value(item_code, value)
        self.require_date_held(item_code)
        if item_code in self.items and self.items[item_code] == value and type(self.items[item_code]) is type(value):
            return False
        if not self.has_history(item_code):
            self._record(self.ItemRecorded, stamp, [change(item_code, None, value)], item_code=item_code, value=value)
            return True
        self._require_reason(stamp, f"changing {item_code}")
        old = self.items.get(item_code)
        self._record(self.ItemCorrected, stamp, [change(item_code, old, value)], item_code=item_code,
                     old_value=old, value=value)
        return True

    # ----------------------------------------------------------------- signatures, lock, SDV
    def lock_label(self) -> str:
        return f"visit {self.code} ({self.id})"

    def signed_content(self) -> dict[str, Any]:
        """What a visit signature covers (R29): the items and the date held."""
        return {"items": dict(sorted(self.items.items())), "held_on": self.held_on}

    def signing_problems(self) -> list[str]:
        problems = []
        if self.held_on is None:
            problems.append("the date the visit was held is not recorded")
        if not self.items:
            problems.append("no item is recorded")
        return problems

    def is_content_event(self, event: Any) -> bool:
        return type(event).__name__ in self.content_event_names

    def _record(self, event_class: type, stamp: dict[str, Any], changes: list, **fields: Any) -> None:
        name = event_class.__name__
        if name in self.content_event_names:
            self.refuse_if_locked("data entry or change")
        elif name == self.signature_events[0]:
            self.refuse_if_locked("signature")
        super()._record(event_class, stamp, changes, **fields)
        if name in self.content_event_names:
            self._after_content_change(self.pending_events[-1], stamp)

    def _after_content_change(self, event: Any, stamp: dict) -> None:
        """Invalidate signatures (R30) and reset the SDV flag of a changed item (R35), in the same save."""
        broken_by = {"version": event.originator_version, "type": type(event).__name__, "record_type": "visit",
                     "record_id": str(self.id), "item_code": getattr(event, "item_code", None),
                     "recorded_at": event.timestamp.isoformat()}
        self.invalidate_signatures(broken_by, stamp)
        code = getattr(event, "item_code", None)
        if code in self.sdv and (code not in self.items or self.items[code] != self.sdv[code]["value"]):
            reset_stamp = {**stamp, "reason": f"SDV reset: {code} changed by {type(event).__name__} (version "
                                              f"{event.originator_version})", "reason_code": None}
            super()._record(self.ItemVerificationReset, reset_stamp, [change(f"sdv.{code}", True, False)],
                            item_code=code, verified_value=self.sdv[code]["value"],
                            changed_by_version=event.originator_version)

    def verify_item(self, item_code: Any, stamp: dict) -> bool:
        """Mark the current value of an item source-data verified (R35). False when already verified."""
        item_code = validate_item_code(item_code)
        if item_code not in self.items:
            raise Conflict(f"{item_code} has no value to verify")
        value = self.items[item_code]
        flag = self.sdv.get(item_code)
        if flag is not None and flag["value"] == value:
            return False
        self._record(self.ItemVerified, stamp, [change(f"sdv.{item_code}", False, True)], item_code=item_code,
                     value=value)
        return True

    @staticmethod
    def _require_reason(stamp: dict, what: str) -> None:
        if not isinstance(stamp.get("reason"), str):
            raise InvalidInput.one("reason", f"{what} after its first entry needs a reason (R5)")


def visit_status(held_on: str | None, window_start: str | None, window_end: str | None, code: str) -> str:
    """The one status rule of a visit, used by the aggregate and by its read model."""
    if held_on is None:
        return "planned" if code == UNSCHEDULED else "scheduled"
    return "held_out_of_window" if days_outside(dt.date.fromisoformat(held_on), _d(window_start), _d(window_end)) else "held"
