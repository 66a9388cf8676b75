"""Locks (R25, R34) and source-data verification (R35), mixed into TrialApplication.

``_before_save`` runs on every save of a command: any entry, correction or signature that touches a
participant whose casebook or the study is locked is refused (409, naming the lock), and a change to
the content of a signed casebook invalidates that signature in the same transaction (R30). A visit's
own lock lives in the Visit aggregate, so it is checked where the change is made.

A write racing a participant or study lock is ordered by the database: a change committed before the
lock's event is before the lock (the lock aggregates are not re-read inside the write's transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from application.views import iso, lock_view, sdv_view
from domain import access
from domain.adverse_event import AdverseEvent
from domain.audit import Actor, make_stamp
from domain.casebook import Casebook
from domain.errors import Conflict, Locked
from domain.lock import StudyLock, locked_message
from domain.participant import Participant
from domain.signature import RecordSigned
from domain.visit import Visit, validate_item_code


def _blank_to_none(reason: Any) -> Any:
    return None if isinstance(reason, str) and not reason.strip() else reason


def participant_of(aggregate: Any) -> str | None:
    """The participant whose data an aggregate holds (None: not participant data)."""
    if isinstance(aggregate, (Visit, AdverseEvent, Casebook)):
        return str(aggregate.participant_id)
    if isinstance(aggregate, Participant):
        return str(aggregate.id)
    return None


def data_events(aggregate: Any) -> list[Any]:
    """Pending events that enter or change clinical data (a record's creation counts)."""
    if isinstance(aggregate, Participant):
        return list(aggregate.pending_events)
    if isinstance(aggregate, (Visit, AdverseEvent)):
        return [e for e in aggregate.pending_events if e.originator_version == 1 or aggregate.is_content_event(e)]
    return []


def describe(aggregate: Any, event: Any) -> dict[str, Any]:
    """The event that broke a casebook signature, as the invalidation names it (R30)."""
    record_type = {Visit: "visit", AdverseEvent: "adverse_event", Participant: "participant"}[type(aggregate)]
    return {"version": event.originator_version, "type": type(event).__name__, "record_type": record_type,
            "record_id": str(aggregate.id), "record_label": getattr(aggregate, "code", None) or str(aggregate.id),
            "item_code": getattr(event, "item_code", None), "field": getattr(event, "field", None),
            "recorded_at": iso(event.timestamp)}


class LockCommands:
    """Mixin of TrialApplication (relies on its ``_get``, ``_save``, ``_visit_for``, ``_participant_for``)."""

    # ------------------------------------------------------------------ the guard on every save
    def _before_save(self: Any, aggregates: Sequence[Any]) -> list[Any]:
        """Refuse changes to locked data; invalidate casebook signatures the changes break. Returns the
        aggregates to save as well (casebooks whose signatures were invalidated)."""
        touched: dict[str, list[tuple[Any, Any]]] = {}
        signing: set[str] = set()
        for aggregate in aggregates:
            pid = participant_of(aggregate)
            if pid is None:
                continue
            for event in data_events(aggregate):
                touched.setdefault(pid, []).append((aggregate, event))
            if any(isinstance(e, RecordSigned) for e in aggregate.pending_events):
                signing.add(pid)
        if not touched and not signing:
            return []
        saving = {str(a.participant_id): a for a in aggregates if isinstance(a, Casebook)}
        pids = set(touched) | signing
        # One indexed read tells which of the study lock and the casebooks exist (usually none).
        study_id = StudyLock.id_for()
        casebook_ids = {pid: Casebook.id_for(pid) for pid in pids if pid not in saving}
        found = self._existing_many([study_id, *casebook_ids.values()])
        study = found[study_id]
        if study is not None and study.lock is not None:
            raise Locked(locked_message(study.lock_label(), study.lock, "data entry, change or signature"))
        extra = []
        for pid in pids:
            casebook = saving.get(pid) or found[casebook_ids[pid]]
            if casebook is None:
                continue
            if casebook.lock is not None:
                raise Locked(locked_message(casebook.lock_label(), casebook.lock, "data entry, change or signature"))
            if pid in touched and casebook.valid_signatures:
                aggregate, event = touched[pid][0]
                casebook.invalidate_signatures(describe(aggregate, event), event.audit)
                if pid not in saving:
                    extra.append(casebook)
        return extra

    def _study_lock(self: Any) -> StudyLock | None:
        return self._existing(StudyLock.id_for())

    def _casebook(self: Any, participant_id: Any) -> Casebook | None:
        return self._existing(Casebook.id_for(participant_id))

    def _existing(self: Any, aggregate_id: Any) -> Any:
        """The aggregate, or None. These are looked up on every save and usually do not exist: one
        indexed read answers that, where the repository would reconstruct and raise."""
        if not self.recorder.select_events(aggregate_id, desc=True, limit=1):
            return None
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _existing_many(self: Any, aggregate_ids: Sequence[Any]) -> dict[Any, Any]:
        """Each lock holder (study lock, casebook) or None, asking the store once which exist at all.

        Most never exist. Where the store keeps a shared generation of the lock holders' events
        (``_lock_changes``, moved by every process once such a write has committed), the ids found
        absent are remembered with it and not asked for again until it moves: a holder cannot come
        into being without moving it. As before, a lock committed after this check and before the
        command's own commit is ordered after the command by the database."""
        probe = getattr(self.recorder, "originators_with_events", None)
        if probe is None:
            return {i: self._existing(i) for i in aggregate_ids}
        changes = getattr(self, "_lock_changes", None)
        generation = changes.generation() if changes is not None else None
        absent: set[Any] = set()
        if generation is not None:
            kept = getattr(self, "_absent_lock_holders", None)
            if kept is not None and kept[0] == generation:
                absent = kept[1]
        unknown = [i for i in aggregate_ids if i not in absent]
        present = probe(unknown) if unknown else set()
        found: dict[Any, Any] = {}
        for aggregate_id in aggregate_ids:
            found[aggregate_id] = None
            if aggregate_id in present:
                try:
                    found[aggregate_id] = self.repository.get(aggregate_id)
                except AggregateNotFoundError:
                    pass
        newly_absent = [i for i in unknown if i not in present]
        if newly_absent and generation is not None and changes.generation() == generation:
            if len(absent) >= 100_000:
                absent = set()
            if absent:
                absent.update(newly_absent)  # the set kept for this generation (set.update is atomic)
            else:
                self._absent_lock_holders = (generation, set(newly_absent))
        return found

    def _refuse_if_locked(self: Any, participant_id: str, what: str, visit: Visit | None = None) -> None:
        """Check every lock over a record before asking for a password (the save checks them again)."""
        if visit is not None:
            visit.refuse_if_locked(what)
        for holder in (self._study_lock(), self._casebook(participant_id)):
            if holder is not None:
                holder.refuse_if_locked(what)

    # ------------------------------------------------------------------ visit locks
    def lock_visit(self: Any, actor: Actor, visit_id: Any, *, reason: Any = None, source: str = "api") -> dict[str, Any]:
        """Lock a visit (data manager): no entry, correction or signature until it is unlocked (R34)."""
        visit = self._visit_for(actor, visit_id, "lock.manage")
        visit.lock_record(make_stamp(actor, reason=_blank_to_none(reason), source=source))
        return self._lock_result("visit", str(visit.id), visit, self._save(visit))

    def unlock_visit(self: Any, actor: Actor, visit_id: Any, *, reason: Any, source: str = "api") -> dict[str, Any]:
        """Unlock a visit: a data manager, with a reason (R25)."""
        stamp = make_stamp(actor, reason=reason, source=source, reason_required=True)
        visit = self._visit_for(actor, visit_id, "lock.manage")
        visit.unlock_record(stamp)
        return self._lock_result("visit", str(visit.id), visit, self._save(visit))

    # ------------------------------------------------------------------ participant (casebook) locks
    def _casebook_for(self: Any, actor: Actor, participant_id: Any, action: str, stamp: dict) -> tuple[Participant, Casebook]:
        participant = self._participant_for(actor, participant_id, action)
        casebook = self._casebook(participant.id) or Casebook.open(str(participant.id), participant.site, stamp)
        return participant, casebook

    def lock_participant(self: Any, actor: Actor, participant_id: Any, *, reason: Any = None, source: str = "api") -> dict[str, Any]:
        stamp = make_stamp(actor, reason=_blank_to_none(reason), source=source)
        participant, casebook = self._casebook_for(actor, participant_id, "lock.manage", stamp)
        casebook.lock_record(stamp)
        return self._lock_result("participant", str(participant.id), casebook, self._save(casebook))

    def unlock_participant(self: Any, actor: Actor, participant_id: Any, *, reason: Any, source: str = "api") -> dict[str, Any]:
        stamp = make_stamp(actor, reason=reason, source=source, reason_required=True)
        participant, casebook = self._casebook_for(actor, participant_id, "lock.manage", stamp)
        casebook.unlock_record(stamp)
        return self._lock_result("participant", str(participant.id), casebook, self._save(casebook))

    # ------------------------------------------------------------------ study lock
    def lock_study(self: Any, actor: Actor, *, reason: Any = None, source: str = "api") -> dict[str, Any]:
        """Lock the whole study (e.g. before final analysis or unblinding, R34)."""
        access.require(actor, "lock.manage")
        stamp = make_stamp(actor, reason=_blank_to_none(reason), source=source)
        study = self._study_lock() or StudyLock.open_register(stamp)
        study.lock_record(stamp)
        return self._lock_result("study", None, study, self._save(study))

    def unlock_study(self: Any, actor: Actor, *, reason: Any, source: str = "api") -> dict[str, Any]:
        access.require(actor, "lock.manage")
        stamp = make_stamp(actor, reason=reason, source=source, reason_required=True)
        study = self._study_lock()
        if study is None:
            raise Conflict("the study is not locked")
        study.unlock_record(stamp)
        return self._lock_result("study", None, study, self._save(study))

    def study_lock_status(self: Any, actor: Actor) -> dict[str, Any]:
        access.require(actor, "lock.read")
        study = self._study_lock()
        return self._lock_result("study", None, study, 0) if study else {
            "scope": "study", "id": None, "locked": False, "lock": None, "version": 0, "notification_id": 0}

    @staticmethod
    def _lock_result(scope: str, record_id: str | None, holder: Any, notification_id: int) -> dict[str, Any]:
        return {"scope": scope, "id": record_id, "locked": holder.lock is not None, "lock": lock_view(holder.lock),
                "version": holder.version, "notification_id": notification_id}

    # ------------------------------------------------------------------ source-data verification
    def verify_item(self: Any, actor: Actor, visit_id: Any, item_code: Any, *, source: str = "api") -> dict[str, Any]:
        """A monitor marks an item's current value verified (R35); it resets itself when the value changes."""
        visit = self._visit_for(actor, visit_id, "sdv.write")
        item_code = validate_item_code(item_code)
        changed = visit.verify_item(item_code, make_stamp(actor, source=source))
        notification_id = self._save(visit) if changed else 0
        return {"visit_id": str(visit.id), "item_code": item_code, "value": visit.items.get(item_code),
                "sdv": sdv_view({item_code: visit.sdv[item_code]})[item_code], "changed": changed,
                "version": visit.version, "notification_id": notification_id}
