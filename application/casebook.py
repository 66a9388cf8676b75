"""A participant's casebook replayed from its events, for inspectors (R14, R17), mixed into TrialApplication.

The casebook is the participant, its visits (with items and scores), its adverse events and the
signatures on any of them, folded from the events of those aggregates; it never reads a read model
for values (read models only tell which visits and AEs belong to the participant).

Bitemporal rule (R17), exactly:
- ``as_of`` (recorded time, an instant with zone): only events whose recorded ``timestamp`` <= as_of
  are folded. Without it, every event recorded so far ("as currently recorded").
- ``valid_at`` (clinical time, a calendar date): of the records so folded, keep the visits whose date
  held (as recorded at ``as_of``) is on or before ``valid_at`` and the adverse events whose onset
  ``aestdat`` (as recorded at ``as_of``; a partial date counts from its first possible day) is on or
  before ``valid_at``. Visits never held, and AEs starting later, are left out. The participant's
  own record (screening, eligibility, consent, allocation) is always shown.
- So ``valid_at`` alone = what we now know was true at that clinical date; ``valid_at`` with
  ``as_of`` = what the system said then about that clinical date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from application import concealment
from application.adverse_events import adverse_event_view
from application.scores import assemble, score_items
from application.views import event_view, iso, participant_view
from application.visits import visit_view
from domain import access
from domain.adverse_event import AdverseEvent
from domain.audit import Actor
from domain.crf import FORM_LABELS, field_label, item_label, item_unit
from domain.errors import InvalidInput, NotFound
from domain.participant import Participant
from domain.schedule import VISIT_CODES
from domain.visit import Visit

BITEMPORAL_RULE = (
    "as_of (recorded instant): fold the events recorded at or before it (default: all recorded so far); "
    "valid_at (clinical date): then keep visits held on or before it and AEs whose onset (aestdat, a "
    "partial date from its first possible day) is on or before it, dates as recorded at as_of; "
    "the participant's own record is always shown"
)

KIND_OF = {Participant: "participant", Visit: "visit", AdverseEvent: "adverse_event"}


def record_kind(aggregate_or_event: Any) -> str:
    cls = aggregate_or_event if isinstance(aggregate_or_event, type) else type(aggregate_or_event)
    for base, kind in KIND_OF.items():
        if issubclass(cls, base) or cls.__qualname__.startswith(base.__name__ + "."):
            return kind
    return "other"


def _onset_date(text: Any) -> dt.date | None:
    if not isinstance(text, str) or len(text) < 4:
        return None
    parts = text.split("-")
    try:
        return dt.date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2][:2]) if len(parts) > 2 else 1)
    except ValueError:
        return None


def fold(events: Iterable[Any], until: dt.datetime | None = None) -> dict[UUID, Any]:
    """Fold a participant's events (any order across aggregates, version order within) into aggregates."""
    states: dict[UUID, Any] = {}
    for e in events:
        if until is not None and e.timestamp > until:
            continue
        states[e.originator_id] = e.mutate(states.get(e.originator_id))
    return states


class CasebookQueries:
    """Mixin of TrialApplication: relies on its _get, events, read_models, sites."""

    # ------------------------------------------------------------------ sources
    def _casebook_participant(self: Any, actor: Actor, participant_id: Any, action: str = "casebook.read") -> Participant:
        access.require(actor, action)
        participant = self._get(Participant, participant_id, "participant")
        access.require(actor, action, participant.site)
        return participant

    def casebook_aggregate_ids(self: Any, participant: Participant) -> list[UUID]:
        """The participant and every visit and AE recorded for it (from the read models: ids only)."""
        self.read_models.wait_for()
        store = self.read_models.store
        pid = str(participant.id)
        visits = store.query("SELECT visit_id FROM visit_scores WHERE participant_id = ?", (pid,))
        aes = store.query("SELECT id FROM ae_listing WHERE participant_id = ?", (pid,))
        return [participant.id, *(UUID(r["visit_id"]) for r in visits), *(UUID(r["id"]) for r in aes)]

    def casebook_events(self: Any, participant: Participant) -> list[Any]:
        """Every event of the casebook, in recorded order (timestamp, then aggregate, then version)."""
        events: list[Any] = []
        for order, aggregate_id in enumerate(self.casebook_aggregate_ids(participant)):
            events.extend((e.timestamp, order, e.originator_version, e) for e in self.events.get(aggregate_id))
        events.sort(key=lambda t: t[:3])
        return [t[3] for t in events]

    # ------------------------------------------------------------------ views
    def _casebook_time(self: Any, site: str | None, ts: dt.datetime) -> dict[str, str | None]:
        zone = self.sites.get(site or "")
        return {"utc": iso(ts), "local": ts.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds") if zone else None,
                "zone": zone}

    def _change_entry(self: Any, e: Any, site: str | None) -> dict[str, Any]:
        kind = record_kind(e)
        view = event_view(e)
        view["recorded"] = self._casebook_time(site, e.timestamp)
        view["record_type"] = kind
        view["record_id"] = str(e.originator_id)
        view["changes"] = [
            {**c, "label": field_label(kind, c["field"]) if kind != "visit" else item_label(c["field"]),
             "unit": item_unit(c["field"]) if kind == "visit" else None}
            for c in e.changes
        ]
        return view

    def _visit_entry(self: Any, v: Visit, history: list[dict[str, Any]],
                     by_version: dict[tuple[str, int], dict[str, Any]] | None = None) -> dict[str, Any]:
        view = visit_view(v)
        acr, mrss = score_items(v.items)
        view["scores"] = {"acr_eular": acr, "mrss": mrss}
        view["item_details"] = [
            {"item_code": code, "label": item_label(code), "unit": item_unit(code), "value": value,
             "form": "acr_eular" if code.startswith("acr_eular.") else "mrss"}
            for code, value in sorted(v.items.items())
        ]
        view["history"] = [h for h in history if h["record_id"] == str(v.id)]
        view["signatures"] = _signatures(v, by_version)
        return view

    def casebook(
        self: Any, actor: Actor, participant_id: Any, *, as_of: dt.datetime | None = None,
        valid_at: dt.date | None = None, now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """The casebook replayed from events, as recorded at ``as_of`` and valid at ``valid_at`` (R17)."""
        if as_of is not None and as_of.tzinfo is None:
            raise InvalidInput.one("as_of", "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
        current = self._casebook_participant(actor, participant_id)
        events = self.casebook_events(current)
        book = self._casebook_from(current, events, as_of=as_of, valid_at=valid_at, now=now)
        if concealment.conceals(actor):  # no allocation slot for site roles (issue 13 E.19)
            book["participant"] = concealment.participant(actor, book["participant"])
            book["participant_history"] = [concealment.event(actor, h) for h in book["participant_history"]]
        return book

    def _casebook_from(self: Any, current: Participant, events: list[Any], *, as_of, valid_at, now=None) -> dict[str, Any]:
        states = fold(events, as_of)
        participant = states.get(current.id)
        if participant is None:
            raise NotFound(f"participant {current.id} had not been screened at {iso(as_of)}")
        site = participant.site
        history = [self._change_entry(e, site) for e in events if as_of is None or e.timestamp <= as_of]
        visits = [s for s in states.values() if isinstance(s, Visit)]
        aes = [s for s in states.values() if isinstance(s, AdverseEvent)]
        if valid_at is not None:
            visits = [v for v in visits if v.held_on is not None and dt.date.fromisoformat(v.held_on) <= valid_at]
            aes = [a for a in aes if (d := _onset_date(a.record.get("aestdat"))) is not None and d <= valid_at]
        visits.sort(key=lambda v: (VISIT_CODES.index(v.code), v.held_on or "", str(v.id)))
        aes.sort(key=lambda a: (a.record.get("aestdat") or "", a.created_on, str(a.id)))
        kept = {current.id, *(v.id for v in visits), *(a.id for a in aes)}
        history = [h for h in history if UUID(h["record_id"]) in kept]
        scores = assemble(
            {"visit_id": str(v.id), "visit_code": v.code, "held_on": v.held_on, "target_date": v.target_date,
             "acr_eular": (s := score_items(v.items))[0], "mrss": s[1]}
            for v in visits
        )
        by_version = {(h["record_id"], h["version"]): h for h in history}
        now = now or dt.datetime.now(dt.timezone.utc)
        ae_views = []
        for a in aes:
            view = adverse_event_view(a, now)
            view["history"] = [h for h in history if h["record_id"] == str(a.id)]
            view["signatures"] = _signatures(a, by_version)
            ae_views.append(view)
        signatures = [s for v in [participant, *visits, *aes] for s in _signatures(v, by_version)]
        return {
            "participant": participant_view(participant),
            "participant_history": [h for h in history if h["record_id"] == str(current.id)],
            "visits": [self._visit_entry(v, history, by_version) for v in visits],
            "scores": scores,
            "adverse_events": ae_views,
            "signatures": signatures,
            "forms": FORM_LABELS,
            "as_of": iso(as_of),
            "valid_at": valid_at.isoformat() if valid_at else None,
            "rule": BITEMPORAL_RULE,
            "site_zone": self.sites.get(site),
            "event_count": len(history),
            "generated_at": iso(now),
        }

    def casebook_diff(self: Any, actor: Actor, participant_id: Any, *, from_: dt.datetime, to: dt.datetime) -> dict[str, Any]:
        """Every field or item whose value changed between two recorded instants: old -> new, with the events."""
        for name, value in (("from", from_), ("to", to)):
            if value.tzinfo is None:
                raise InvalidInput.one(name, "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
        if to < from_:
            raise InvalidInput.one("to", "must not be before from")
        current = self._casebook_participant(actor, participant_id)
        site = current.site
        before: dict[tuple[str, str], Any] = {}
        touched: dict[tuple[str, str], dict[str, Any]] = {}
        for e in self.casebook_events(current):
            if e.timestamp > to:
                break
            kind = record_kind(e)
            for c in e.changes:
                key = (str(e.originator_id), c["field"])
                if e.timestamp <= from_:
                    before[key] = c["new_value"]
                    continue
                entry = touched.setdefault(key, {
                    "record_type": kind, "record_id": key[0], "field": c["field"],
                    "label": item_label(c["field"]) if kind == "visit" else field_label(kind, c["field"]),
                    "old_value": before.get(key), "events": [],
                })
                entry["new_value"] = c["new_value"]
                entry["events"].append({**self._change_entry(e, site), "change": c})
        changes = []
        for entry in touched.values():
            entry["net_change"] = entry["old_value"] != entry["new_value"]
            changes.append(entry)
        return {"participant_id": str(current.id), "from": iso(from_), "to": iso(to), "changes": changes,
                "events": len({(ev["record_id"], ev["version"]) for c in changes for ev in c["events"]})}

    def casebook_steps(self: Any, actor: Actor, participant_id: Any, *, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """The events one by one, each with the state of the record it changed just after it (paged)."""
        if offset < 0 or not 1 <= limit <= 500:
            raise InvalidInput.one("limit", "offset >= 0 and limit 1..500")
        current = self._casebook_participant(actor, participant_id)
        events = self.casebook_events(current)
        states: dict[UUID, Any] = {}
        steps = []
        now = dt.datetime.now(dt.timezone.utc)
        for n, e in enumerate(events[: offset + limit]):
            states[e.originator_id] = state = e.mutate(states.get(e.originator_id))
            if n < offset:
                continue
            steps.append({"step": n, "event": self._change_entry(e, current.site), "state_after": _state_view(state, now)})
        next_offset = offset + limit if offset + limit < len(events) else None
        return {"participant_id": str(current.id), "total": len(events), "offset": offset, "limit": limit,
                "next_offset": next_offset, "steps": steps}


def _state_view(state: Any, now: dt.datetime) -> dict[str, Any]:
    if isinstance(state, Participant):
        return {"record_type": "participant", **participant_view(state)}
    if isinstance(state, Visit):
        view = visit_view(state)
        acr, mrss = score_items(state.items)
        return {"record_type": "visit", **view, "scores": {"acr_eular": acr, "mrss": mrss}}
    if isinstance(state, AdverseEvent):
        return {"record_type": "adverse_event", **adverse_event_view(state, now)}
    return {"record_type": "other", "id": str(getattr(state, "id", ""))}


def _plain(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def describe_invalidation(broken_by: dict[str, Any] | None, invalidated_at: Any = None,
                          change: dict[str, Any] | None = None) -> str:
    """Which change broke a signature, in words (R30): the event type, the item or field, who and when,
    and why; ``change`` is the history entry of the breaking event when the casebook has it."""
    if not broken_by:
        return "unsigned since a later change"
    what = f"{broken_by.get('type') or 'a change'} (version {broken_by.get('version')})"
    record_type = broken_by.get("record_type") or "record"
    field = broken_by.get("item_code") or broken_by.get("field")
    parts = [f"unsigned since {what} of this {record_type.replace('_', ' ')}"]
    if field:
        label = item_label(field) if record_type == "visit" else field_label(record_type, field)
        parts.append(f"changed {label} ({field})")
        c = next((c for c in (change or {}).get("changes") or [] if c.get("field") == field), None)
        if c is not None:
            parts[-1] += f" from {_plain(c.get('old_value'))} to {_plain(c.get('new_value'))}"
    elif change and change.get("changes"):
        labels = ", ".join(c.get("label") or c["field"] for c in change["changes"])
        parts.append(f"changed {labels}")
    if change is not None:
        actor = change.get("actor") or {}
        parts.append(f"by {actor.get('full_name')} ({actor.get('role')}, site {actor.get('site')})")
        when = change.get("recorded_at")
    else:
        when = broken_by.get("recorded_at") or (iso(invalidated_at) if isinstance(invalidated_at, dt.datetime) else invalidated_at)
    if when:
        parts.append(f"at {when} UTC" if not str(when).endswith(("Z", "+00:00")) else f"at {when}")
    text = " ".join(parts)
    if change is not None and change.get("reason"):
        text += f"; reason: {change['reason']}"
    return text


def _signatures(record: Any, by_version: dict[tuple[str, int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Signature manifestations on a record, when the record keeps signatures (R27); an invalidated one
    says in words which change broke it (``invalidated_text``, R30)."""
    result = []
    for s in getattr(record, "signatures", None) or []:
        signer = s.get("signer") or {}
        signed_at = s.get("signed_at")
        broken = s.get("invalidated_by")
        change = None
        if broken and by_version is not None:
            change = by_version.get((str(broken.get("record_id") or getattr(record, "id", "")), broken.get("version")))
        result.append({
            "signature_id": s.get("signature_id"), "record_type": s.get("record_type") or record_kind(record),
            "record_id": str(getattr(record, "id", "")), "printed_name": signer.get("full_name"),
            "role": signer.get("role"), "meaning": s.get("meaning"), "legal_statement": s.get("legal_statement"),
            "signed_at": iso(signed_at) if isinstance(signed_at, dt.datetime) else signed_at,
            "valid": s.get("valid", True), "invalidated_by": s.get("invalidated_by"),
            "invalidated_text": None if s.get("valid", True) else describe_invalidation(broken, s.get("invalidated_at"), change),
        })
    return result
