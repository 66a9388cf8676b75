"""The AdverseEvent aggregate: the CDASH-named record of one AE, its follow-ups and corrections, and
the reporting clocks its classification starts (docs/domain.md §3, §3.6, §4).

- One event per changed field (R6), each with old and new value and a reason (R5).
- A change that makes the AE serious, related, unexpected, life-threatening or fatal starts a new
  reporting clock (``ReportingClockStarted``) in the same save; a report made is ``ReportSubmitted``.
- Deletion (entered in error) is a tombstone: the values stay in the history (R8).
- An investigator can sign the AE (R27-R29); a later follow-up, correction or deletion emits
  ``AdverseEventSignatureInvalidated`` in the same save (R30).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from domain.audit import AuditedAggregate, AuditedCreated, change
from domain.errors import Conflict, InvalidInput
from domain.safety import (
    DEFAULTS,
    FIELDS,
    OPTIONAL,
    CAUSALITY,
    NOT_APPLICABLE,
    RECIPIENTS,
    REPORT_KINDS,
    SPONSOR_CAUSALITY,
    CLOCK_SKEW,
    ClockStart,
    ReportingRules,
    classify,
    clocks_to_start,
    consistency_errors,
    instant_text,
    parse_instant,
    validate_fields,
)
from domain.signature import RecordSigned, Signable, SignatureInvalidated
from domain.trial import ARM_TREG

Path = tuple[str | int, ...]


def _raise(errors: list[tuple[Path, str]]) -> None:
    if errors:
        # one entry per path, in first-seen order
        seen, unique = set(), []
        for path, message in errors:
            if (path, message) not in seen:
                seen.add((path, message))
                unique.append((path, message))
        raise InvalidInput(unique)


class AdverseEvent(Signable, AuditedAggregate):
    TOPIC = "trialaudit.AdverseEvent"
    RECORD_TYPE = "adverse_event"
    signature_events = ("AdverseEventSigned", "AdverseEventSignatureInvalidated")
    #: events that change the signed content (the investigator's CDASH fields, or the record's removal)
    content_event_names = ("FollowUpRecorded", "FieldCorrected", "AdverseEventDeleted")

    class AdverseEventSigned(RecordSigned):
        """An investigator signed the AE record (R27-R29)."""

        TOPIC = "trialaudit.AdverseEvent.AdverseEventSigned"

    class AdverseEventSignatureInvalidated(SignatureInvalidated):
        """A later change broke a signature of the AE, named in ``broken_by`` (R30)."""

        TOPIC = "trialaudit.AdverseEvent.AdverseEventSignatureInvalidated"

    class AdverseEventReported(AuditedCreated):
        """First entry of an AE at the participant's site; ``record`` holds every CDASH field."""

        TOPIC = "trialaudit.AdverseEvent.AdverseEventReported"
        participant_id: str
        site: str
        arm: str | None
        record: dict[str, Any]

    class FollowUpRecorded(AuditedAggregate.Event):
        """New information about the AE (e.g. it resolved): one field, old and new value (R6)."""

        TOPIC = "trialaudit.AdverseEvent.FollowUpRecorded"
        field: str
        old_value: Any
        new_value: Any

        def apply(self, ae: Any) -> None:
            ae.record[self.field] = self.new_value

    class FieldCorrected(AuditedAggregate.Event):
        """A value recorded wrongly, corrected: one field, old and new value (R5, R6)."""

        TOPIC = "trialaudit.AdverseEvent.FieldCorrected"
        field: str
        old_value: Any
        new_value: Any

        def apply(self, ae: Any) -> None:
            ae.record[self.field] = self.new_value

    class ReportingClockStarted(AuditedAggregate.Event):
        """An obligation to report, with its deadline and what started it (docs/domain.md §3.6)."""

        TOPIC = "trialaudit.AdverseEvent.ReportingClockStarted"
        obligation: int
        kind: str
        recipient: str
        started_at: str
        due_at: str
        trigger: str
        anchored_to_awareness: bool

        def apply(self, ae: Any) -> None:
            ae.obligations[self.obligation] = {
                "obligation": self.obligation, "kind": self.kind, "recipient": self.recipient,
                "started_at": self.started_at, "due_at": self.due_at, "trigger": self.trigger,
                "anchored_to_awareness": self.anchored_to_awareness, "reported_at": None, "reference": None,
            }

    class ReportingClockRescheduled(AuditedAggregate.Event):
        """The awareness time was corrected, so a clock that runs from it moves with it."""

        TOPIC = "trialaudit.AdverseEvent.ReportingClockRescheduled"
        obligation: int
        started_at: str
        due_at: str

        def apply(self, ae: Any) -> None:
            ae.obligations[self.obligation].update(started_at=self.started_at, due_at=self.due_at)

    class ReportSubmitted(AuditedAggregate.Event):
        """A report was made to the sponsor or the authority, meeting one obligation."""

        TOPIC = "trialaudit.AdverseEvent.ReportSubmitted"
        obligation: int
        kind: str
        recipient: str
        reported_at: str
        reference: str | None
        late: bool

        def apply(self, ae: Any) -> None:
            ae.obligations[self.obligation].update(reported_at=self.reported_at, reference=self.reference)

    class SponsorCausalityAssessed(AuditedAggregate.Event):
        """The sponsor's causality opinion on the Treg product, kept beside the investigator's, which it
        can never replace or downgrade (EU CTR Annex III)."""

        TOPIC = "trialaudit.AdverseEvent.SponsorCausalityAssessed"
        causality: str
        old_value: str | None

        def apply(self, ae: Any) -> None:
            ae.record[SPONSOR_CAUSALITY] = self.causality

    class AdverseEventDeleted(AuditedAggregate.Event):
        """Entered in error: a tombstone; every value stays in the history (R8)."""

        TOPIC = "trialaudit.AdverseEvent.AdverseEventDeleted"

        def apply(self, ae: Any) -> None:
            ae.deleted = True

    def __init__(self, participant_id: str, site: str, arm: str | None, record: dict[str, Any]):
        self.participant_id = participant_id
        self.site = site
        self.arm = arm
        self.record = dict(record)
        self.obligations: dict[int, dict[str, Any]] = {}
        self.deleted = False
        self.signatures: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- reading
    def value(self, field: str) -> Any:
        return self.record.get(field)

    @property
    def classification(self):
        return classify(self.record)

    # ----------------------------------------------------------------- commands
    @classmethod
    def report(
        cls, *, ae_id, participant_id: str, site: str, arm: str | None, values: Mapping[str, Any],
        stamp: dict, now: dt.datetime, rules: ReportingRules,
    ) -> "AdverseEvent":
        """Report a new AE (R1): every field checked, every consistency rule applied, clocks started."""
        given = {**DEFAULTS, **{k: v for k, v in values.items()}}
        missing = [f for f in FIELDS if f not in OPTIONAL and given.get(f) is None]
        clean, errors = validate_fields({k: v for k, v in given.items() if k not in missing})
        errors = [*(((f,), "is required") for f in missing), *errors]
        _raise(errors)
        record = {f: clean.get(f) for f in FIELDS}
        _raise(consistency_errors(record, arm=arm, now=now))
        ae = cls._create(
            cls.AdverseEventReported,
            id=ae_id,
            participant_id=participant_id,
            site=site,
            arm=arm,
            record=record,
            audit=stamp,
            changes=[change(f, None, record[f]) for f in FIELDS if record[f] is not None],
        )
        ae._start_clocks(None, parse_instant(record["aware_at"]), stamp, rules, anchored=True)
        return ae

    def revise(
        self, values: Mapping[str, Any], stamp: dict, *, kind: str, aware_of_new_facts_at: dt.datetime | None,
        now: dt.datetime, rules: ReportingRules, path: Callable[[str], Path] = lambda f: (f,),
    ) -> list[dict[str, Any]]:
        """A follow-up (``kind="follow_up"``) or a correction (``"correction"``) of one or more fields.

        The stamp must carry a reason (R5). The whole record must still be consistent afterwards, so
        that a follow-up can change AEOUT and AEENDAT together. Returns the changes made.
        """
        self._require_not_deleted()
        if not stamp.get("reason"):
            raise InvalidInput.one("reason", "a reason for the change is required and must not be blank")
        if not values:
            raise InvalidInput.one("changes", "name at least one field to change")
        clean, errors = validate_fields(values)
        _raise([(path(f[0]), m) for f, m in errors])
        changed = {f: v for f, v in clean.items() if v != self.record.get(f)}
        if not changed:
            raise InvalidInput([(path(f), f"{f} already has this value; nothing to change") for f in clean])
        after = {**self.record, **changed}
        _raise([(path(f[0]) if f[0] in changed else f, m) for f, m in consistency_errors(after, arm=self.arm, now=now)])
        if aware_of_new_facts_at is not None:
            if aware_of_new_facts_at.tzinfo is None:
                raise InvalidInput.one("aware_at", "give the instant with its zone")
            if aware_of_new_facts_at > now + CLOCK_SKEW:
                raise InvalidInput.one("aware_at", "the time the site became aware of the new facts is in the future")
        before = self.classification
        event_class = self.FollowUpRecorded if kind == "follow_up" else self.FieldCorrected
        made = []
        for field in FIELDS:  # one event per field, in a stable order (R6)
            if field in changed:
                ch = change(field, self.record.get(field), changed[field])
                self._record(event_class, stamp, [ch], field=field, old_value=ch["old_value"], new_value=ch["new_value"])
                made.append(ch)
        if "aware_at" in changed:
            self._reschedule(parse_instant(changed["aware_at"]), stamp, rules)
        self._start_clocks(before, aware_of_new_facts_at or now, stamp, rules, anchored=False)
        return made

    def _start_clocks(self, before, started_at: dt.datetime, stamp: dict, rules: ReportingRules, *, anchored: bool) -> list[ClockStart]:
        starts = clocks_to_start(before, self.classification, started_at, rules)
        for start in starts:
            number = len(self.obligations) + 1
            self._record(
                self.ReportingClockStarted, stamp,
                [change(f"obligations.{number}.due_at", None, start.due_at)],
                obligation=number, kind=start.kind, recipient=start.recipient, started_at=start.started_at,
                due_at=start.due_at, trigger=start.trigger, anchored_to_awareness=anchored,
            )
        return starts

    def _reschedule(self, aware_at: dt.datetime, stamp: dict, rules: ReportingRules) -> None:
        started = instant_text(aware_at)
        for number, ob in sorted(self.obligations.items()):
            if ob["anchored_to_awareness"] and ob["started_at"] != started:
                due = instant_text(aware_at + rules.period(ob["kind"]))
                self._record(
                    self.ReportingClockRescheduled, stamp,
                    [change(f"obligations.{number}.due_at", ob["due_at"], due)],
                    obligation=number, started_at=started, due_at=due,
                )

    def record_report(
        self, *, recipient: Any, kind: Any, reported_at: Any, reference: Any, stamp: dict, now: dt.datetime
    ) -> dict[str, Any]:
        """Record that a report was made; it meets the oldest open obligation of that kind."""
        self._require_not_deleted()
        errors: list[tuple[Path, str]] = []
        if recipient not in RECIPIENTS:
            errors.append((("recipient",), f"must be one of {', '.join(RECIPIENTS)}"))
        if kind not in REPORT_KINDS:
            errors.append((("kind",), f"must be one of {', '.join(REPORT_KINDS)}"))
        elif recipient in RECIPIENTS and REPORT_KINDS[kind] != recipient:
            errors.append((("kind",), f"a {kind} report goes to the {REPORT_KINDS[kind]}, not the {recipient}"))
        try:
            when = parse_instant(reported_at)
        except (ValueError, TypeError):
            errors.append((("reported_at",), "must be an ISO 8601 instant with its zone"))
            when = None
        if when is not None and when > now + CLOCK_SKEW:
            errors.append((("reported_at",), "must not be in the future"))
        if reference is not None and (not isinstance(reference, str) or len(reference) > 200):
            errors.append((("reference",), "a reference of up to 200 characters"))
        _raise(errors)
        open_ = [ob for _, ob in sorted(self.obligations.items()) if ob["kind"] == kind and ob["reported_at"] is None]
        if not open_:
            raise Conflict(f"no open {kind} reporting obligation for this adverse event")
        ob = open_[0]
        if when < parse_instant(ob["started_at"]) - CLOCK_SKEW:
            raise InvalidInput.one("reported_at", f"a report cannot precede the start of its clock ({ob['started_at']})")
        reported = instant_text(when)
        late = reported > ob["due_at"]
        self._record(
            self.ReportSubmitted, stamp,
            [change(f"obligations.{ob['obligation']}.reported_at", None, reported)],
            obligation=ob["obligation"], kind=kind, recipient=recipient, reported_at=reported,
            reference=reference, late=late,
        )
        return dict(self.obligations[ob["obligation"]], late=late)

    def assess_causality_by_sponsor(
        self, causality: Any, stamp: dict, *, aware_of_new_facts_at: dt.datetime, rules: ReportingRules
    ) -> list[dict[str, Any]]:
        """Record the sponsor's opinion; if it makes the AE related, the reporting clocks start (§3.6)."""
        self._require_not_deleted()
        if causality not in CAUSALITY:
            raise InvalidInput.one("causality", f"must be one of {', '.join(CAUSALITY)}")
        if self.arm != ARM_TREG and causality != NOT_APPLICABLE:
            raise InvalidInput.one("causality", "no Treg product was given: the sponsor's causality is NOT APPLICABLE")
        old = self.record.get(SPONSOR_CAUSALITY)
        if causality == old:
            raise InvalidInput.one("causality", "the sponsor's causality already has this value")
        before = self.classification
        ch = change(SPONSOR_CAUSALITY, old, causality)
        self._record(self.SponsorCausalityAssessed, stamp, [ch], causality=causality, old_value=old)
        self._start_clocks(before, aware_of_new_facts_at, stamp, rules, anchored=False)
        return [ch]

    def delete(self, stamp: dict) -> None:
        self._require_not_deleted()
        if not stamp.get("reason"):
            raise InvalidInput.one("reason", "a reason for the deletion is required")
        self._record(self.AdverseEventDeleted, stamp, [change("deleted", False, True)])

    # ----------------------------------------------------------------- signatures
    def signed_content(self) -> dict[str, Any]:
        """What an AE signature covers (R29): the investigator's CDASH fields and whether it was deleted."""
        return {"record": {f: self.record.get(f) for f in FIELDS}, "deleted": self.deleted}

    def signing_problems(self) -> list[str]:
        return ["it was deleted (entered in error)"] if self.deleted else []

    def is_content_event(self, event: Any) -> bool:
        name = type(event).__name__
        return name in self.content_event_names and getattr(event, "field", None) != SPONSOR_CAUSALITY

    def _record(self, event_class: type, stamp: dict[str, Any], changes: list, **fields: Any) -> None:
        super()._record(event_class, stamp, changes, **fields)
        event = self.pending_events[-1]
        if self.is_content_event(event):
            self.invalidate_signatures(
                {"version": event.originator_version, "type": type(event).__name__, "record_type": "adverse_event",
                 "record_id": str(self.id), "field": getattr(event, "field", None),
                 "recorded_at": event.timestamp.isoformat()}, stamp)

    def _require_not_deleted(self) -> None:
        if self.deleted:
            raise Conflict("this adverse event was deleted (entered in error); its history stays readable")
