"""Audit-trail review (R18): "changes after signature or lock".

``changes_after_signature_or_lock(events)`` is a pure function over domain events in log order (any
aggregates; the others are skipped). It lists every change of clinical content made

* while the record (a visit or an AE) or the participant's casebook had a valid signature: the change
  that broke it (the ``SignatureInvalidated`` follows it in the same save), and
* after a lock over the record (visit, participant or study) had been lifted: locked data takes no
  change, so a change after a lock is a change after an unlock.

The review reports of the audit index can call it with the events they read, or use
``ReviewQueries.changes_after_signature_or_lock`` below.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from application.views import iso
from domain import access
from domain.adverse_event import AdverseEvent
from domain.audit import Actor
from domain.casebook import Casebook
from domain.lock import RecordLocked, RecordUnlocked, StudyLock
from domain.participant import Participant
from domain.signature import RecordSigned, SignatureInvalidated
from domain.visit import Visit

CONTENT = {
    Visit: set(Visit.content_event_names),
    AdverseEvent: set(AdverseEvent.content_event_names),
}
RECORD_TYPES = {Visit: "visit", AdverseEvent: "adverse_event", Participant: "participant"}


def _owner(event: Any) -> type | None:
    qualname = type(event).__qualname__.split(".")[0]
    return {"Visit": Visit, "AdverseEvent": AdverseEvent, "Participant": Participant, "Casebook": Casebook,
            "StudyLock": StudyLock}.get(qualname)


def _is_change(owner: type, event: Any) -> bool:
    if owner is Participant:
        return event.originator_version > 1
    if owner is AdverseEvent and getattr(event, "field", None) == "sponsor_causality":
        return False
    return type(event).__name__ in CONTENT.get(owner, ())


def changes_after_signature_or_lock(events: Iterable[Any]) -> Iterator[dict[str, Any]]:
    participant_of: dict[str, str] = {}
    site_of: dict[str, str] = {}
    signed: dict[str, dict[str, dict]] = {}      # record or casebook id -> signature id -> signature
    unlocked: dict[str, dict[str, Any]] = {}     # record, participant or "study" -> the last unlock
    for event in events:
        owner = _owner(event)
        if owner is None:
            continue
        rid = str(event.originator_id)
        if event.originator_version == 1:
            pid = str(getattr(event, "participant_id", None) or rid)
            participant_of[rid] = pid
            site_of[rid] = getattr(event, "site", "")
        key = "study" if owner is StudyLock else (participant_of.get(rid) if owner is Casebook else rid)
        if isinstance(event, RecordSigned):
            signed.setdefault(key if owner is not Casebook else f"casebook:{key}", {})[event.signature_id] = {
                "signature_id": event.signature_id, "signer": event.signer["full_name"], "meaning": event.meaning,
                "signed_at": iso(event.timestamp), "record_type": event.record_type}
        elif isinstance(event, SignatureInvalidated):
            signed.get(key if owner is not Casebook else f"casebook:{key}", {}).pop(event.signature_id, None)
        elif isinstance(event, RecordUnlocked):
            unlocked[key] = {"scope": event.scope, "unlocked_at": iso(event.timestamp),
                             "by": event.audit["actor"]["full_name"], "reason": event.audit.get("reason")}
        elif isinstance(event, RecordLocked):
            continue
        elif owner in RECORD_TYPES and _is_change(owner, event):
            pid = participant_of.get(rid, rid)
            signatures = [*signed.get(rid, {}).values(), *signed.get(f"casebook:{pid}", {}).values()]
            locks = [unlocked[k] for k in (rid, pid, "study") if k in unlocked]
            if not signatures and not locks:
                continue
            yield {
                "record_type": RECORD_TYPES[owner], "record_id": rid, "participant_id": pid,
                "site": site_of.get(rid) or site_of.get(pid), "version": event.originator_version,
                "type": type(event).__name__, "recorded_at": iso(event.timestamp),
                "actor": {k: event.audit["actor"][k] for k in ("user_id", "full_name", "role", "site")},
                "reason": event.audit.get("reason"), "query_id": event.audit.get("query_id"),
                "changes": list(event.changes),
                "after": sorted({"signature" for _ in signatures} | {"lock" for _ in locks}),
                "signatures_broken": signatures, "after_unlock": locks,
            }


class ReviewQueries:
    """Mixin of TrialApplication: the review report over the whole log (until the audit index serves it)."""

    def changes_after_signature_or_lock(self: Any, actor: Actor, *, site: str | None = None) -> list[dict[str, Any]]:
        access.require(actor, "review.read")
        if access.is_site_bound(actor):
            if site not in (None, actor.site):
                access.require(actor, "review.read", site)
            site = actor.site
        return self._changes_after_signature_or_lock_rows(site)

    def _changes_after_signature_or_lock_rows(self: Any, site: str | None, lo: str | None = None,
                                              hi: str | None = None) -> list[dict[str, Any]]:
        """The report's rows in the recorded-time range [lo, hi) (ISO UTC text), without an access check."""

        def events() -> Iterator[Any]:
            start = 0
            while True:
                page = self.recorder.select_notifications(start=start, limit=1000, inclusive_of_start=False)
                for n in page:
                    yield self.mapper.to_domain_event(n)
                if len(page) < 1000:
                    return
                start = page[-1].id

        return [row for row in changes_after_signature_or_lock(events())
                if (site is None or row["site"] == site) and (lo is None or row["recorded_at"] >= lo)
                and (hi is None or row["recorded_at"] < hi)]
