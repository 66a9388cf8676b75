"""Visit, item and score commands and queries, mixed into TrialApplication.

Writers: investigators and coordinators of the participant's site. Readers: those, monitors of the
site, data managers and inspectors. Administrators see no clinical data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError

from application.scores import assemble, describe, score_items
from application.scores_projection import row_view
from application.views import event_view, iso, lock_view, sdv_view, signature_view
from domain import access
from domain.audit import SYSTEM_ACTOR, Actor, make_stamp
from domain.errors import Conflict, InvalidInput
from domain.participant import Participant
from domain.schedule import (
    ANCHOR_RULE,
    INFUSION,
    PRIMARY_ENDPOINT,
    RULE_BY_CODE,
    VISIT_CODES,
    VISIT_LABELS,
    reanchored,
    schedule_for,
)
from domain.trial import ARM_TREG, ARMS
from domain.visit import Visit, parse_date, validate_item_code, visit_status

OUTCOME_RULE = (
    "primary outcome (a) at M12 per arm: ACR/EULAR 2013 total (rule acr_eular_2013/category-maxima-v1) and "
    "mRSS change from baseline (M12 - BL); n, mean, SD (n-1), median, quartiles (inclusive method); "
    "participants without a score at M12 are not imputed"
)


def _blank_to_none(reason: Any) -> Any:
    return None if isinstance(reason, str) and not reason.strip() else reason


def visit_view(v: Visit) -> dict[str, Any]:
    return {
        "id": str(v.id),
        "participant_id": v.participant_id,
        "site": v.site,
        "arm": v.arm,
        "code": v.code,
        "label": v.label,
        "target_date": v.target_date,
        "window_start": v.window_start,
        "window_end": v.window_end,
        "anchor_rule": v.anchor_rule,
        "held_on": v.held_on,
        "status": v.status,
        "items": dict(sorted(v.items.items())),
        "cleared_items": sorted(v.cleared - set(v.items)),
        "deviations": [
            {**d, "recorded_at": iso(d["recorded_at"]), "current": d["actual_date"] == v.held_on} for d in v.deviations
        ],
        "signatures": [signature_view(s) for s in v.signatures],
        "lock": lock_view(v.lock),
        "sdv": sdv_view(v.sdv),
        "created_at": iso(v.created_on),
        "modified_at": iso(v.modified_on),
        "version": v.version,
    }


_VALUE_EVENTS = (Visit.ItemRecorded, Visit.ItemCorrected, Visit.ItemCleared)


def item_history_entries(events: Any, item_code: str) -> list[dict[str, Any]]:
    """One visit's events -> the history of one item: values and verification marks, each as what it is."""
    result: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None  # the entry of the item's current value
    for e in events:
        if getattr(e, "item_code", None) != item_code:
            continue
        entry = event_view(e)
        entry["item_code"] = item_code
        if isinstance(e, _VALUE_EVENTS):
            cleared = isinstance(e, Visit.ItemCleared)
            entry.update({"kind": "value", "old_value": getattr(e, "old_value", None),
                          "new_value": None if cleared else e.value, "cleared": cleared, "verification": None})
            current = entry
        elif isinstance(e, Visit.ItemVerified):
            by = entry["actor"]
            entry.update({"kind": "verification", "verified_value": e.value})
            if current is not None:
                current["verification"] = {"verified_by": by, "verified_at": entry["recorded_at"],
                                           "version": e.originator_version, "reset_by_version": None}
        elif isinstance(e, Visit.ItemVerificationReset):
            entry.update({"kind": "verification_reset", "verified_value": e.verified_value,
                          "reset_by_version": e.changed_by_version})
            for earlier in reversed(result):
                if earlier["kind"] == "value" and earlier["verification"] is not None:
                    if earlier["verification"]["reset_by_version"] is None:
                        earlier["verification"]["reset_by_version"] = e.changed_by_version
                    break
        else:
            continue
        result.append(entry)
    return result


class VisitCommands:
    """Mixin for TrialApplication: relies on its _get, _save, _check_version, repository, events, read_models."""

    manufacturing_days: int = RULE_BY_CODE[INFUSION].offset

    # ------------------------------------------------------------------ plumbing
    def _visit_for(self: Any, actor: Actor, visit_id: Any, action: str) -> Visit:
        access.require(actor, action)
        visit = self._get(Visit, visit_id, "visit")
        access.require(actor, action, visit.site)
        return visit

    def _site_date(self: Any, site: str, instant: dt.datetime) -> dt.date:
        """The calendar date at the site of a recorded instant (UTC when the site's zone is unknown)."""
        zone = self.sites.get(site)
        return instant.astimezone(ZoneInfo(zone)).date() if zone else instant.astimezone(dt.timezone.utc).date()

    def _site_today(self: Any, site: str) -> dt.date:
        return self._site_date(site, dt.datetime.now(dt.timezone.utc))

    def plan_visits(self: Any, participant: Participant, stamp: dict) -> list[Visit]:
        """The scheduled visits of a participant just randomised (saved with the randomisation)."""
        randomised_on = self._site_date(participant.site, participant.randomised_on)
        return [
            Visit.schedule(participant_id=str(participant.id), site=participant.site, arm=participant.arm,
                           plan=plan, randomised_on=randomised_on, stamp=stamp)
            for plan in schedule_for(participant.arm, randomised_on, self.manufacturing_days)
        ]

    def _visit_result(self: Any, visit: Visit, notification_id: int, **extra: Any) -> dict[str, Any]:
        return {**visit_view(visit), "notification_id": notification_id, **extra}

    # ------------------------------------------------------------------ commands
    def record_visit_held(
        self: Any, actor: Actor, visit_id: Any, *, date: Any, reason: Any = None, reason_code: Any = None,
        query_id: Any = None, expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        """Record the date a visit was held (a change needs a reason). Out of window: a protocol deviation,
        not a refusal. A Group 1 infusion re-anchors the Day-0-based visits not yet held."""
        visit = self._visit_for(actor, visit_id, "visit.write")
        self._check_version(visit, expected_version)
        held_on = parse_date(date, "date", self._site_today(visit.site))
        self.check_cited_query(query_id, record_type="visit", record_id=visit.id, fields="held_on")
        stamp = make_stamp(actor, reason=_blank_to_none(reason), reason_code=reason_code, query_id=query_id, source=source)
        deviation_stamp = make_stamp(actor, source=source)
        if not visit.hold(held_on, stamp, deviation_stamp):
            return self._visit_result(visit, 0, changed=False)
        return self._visit_result(visit, self._save(visit, *self._after_hold(visit, held_on)), changed=True)

    def _after_hold(self: Any, visit: Visit, held_on: dt.date) -> list[Visit]:
        """A Group 1 infusion is Day 0: re-anchor the visits that follow it (saved with the infusion)."""
        if visit.code != INFUSION or visit.arm != ARM_TREG:
            return []
        return self._reanchor(visit, held_on, make_stamp(
            SYSTEM_ACTOR, source="system", reason=f"Day 0 is the infusion date {held_on.isoformat()} ({ANCHOR_RULE})"))

    def _reanchor(self: Any, infusion: Visit, day0: dt.date, stamp: dict) -> list[Visit]:
        randomised_on = dt.date.fromisoformat(infusion.randomised_on)
        moved = []
        for code, rule in RULE_BY_CODE.items():
            if rule.base != "D":
                continue
            try:
                other = self.repository.get(Visit.id_for(infusion.participant_id, code))
            except AggregateNotFoundError:
                continue
            plan = reanchored(code, randomised_on, day0)
            if plan is not None and other.reschedule(plan, day0, stamp):
                moved.append(other)
        return moved

    def add_unscheduled_visit(
        self: Any, actor: Actor, participant_id: Any, *, date: Any = None, reason: Any = None, source: str = "api",
    ) -> dict[str, Any]:
        access.require(actor, "visit.write")
        participant = self._get(Participant, participant_id, "participant")
        access.require(actor, "visit.write", participant.site)
        if participant.arm is None:
            raise Conflict("visits exist once the participant is randomised")
        stamp = make_stamp(actor, reason=_blank_to_none(reason), source=source)
        visit = Visit.unscheduled(
            visit_id=uuid4(), participant_id=str(participant.id), site=participant.site, arm=participant.arm,
            randomised_on=self._site_date(participant.site, participant.randomised_on), stamp=stamp,
        )
        if date is not None:
            visit.hold(parse_date(date, "date", self._site_today(visit.site)), make_stamp(actor, source=source),
                       make_stamp(actor, source=source))
        return self._visit_result(visit, self._save(visit), changed=True)

    def record_item(
        self: Any, actor: Actor, visit_id: Any, item_code: Any, *, value: Any, reason: Any = None,
        reason_code: Any = None, query_id: Any = None, clear: bool = False, expected_version: int | None = None,
        source: str = "api",
    ) -> dict[str, Any]:
        """One item: first entry, change (reason needed, R5), or clear (reason needed, R8). One event (R6)."""
        visit = self._visit_for(actor, visit_id, "visit.write")
        validate_item_code(item_code)
        self._check_version(visit, expected_version)
        self.check_cited_query(query_id, record_type="visit", record_id=visit.id, fields=item_code)
        stamp = make_stamp(actor, reason=_blank_to_none(reason), reason_code=reason_code, query_id=query_id, source=source)
        changed = visit.set_item(item_code, value, stamp, clear=clear)
        notification_id = self._save(visit) if changed else 0
        return {"visit_id": str(visit.id), "item_code": item_code, "value": visit.items.get(item_code),
                "recorded": item_code in visit.items, "changed": changed, "version": visit.version,
                "notification_id": notification_id}

    def record_items(
        self: Any, actor: Actor, visit_id: Any, items: Mapping[str, Any], *, held_on: Any = None, reason: Any = None,
        reason_code: Any = None, query_id: Any = None, expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        """A CRF page: several items (and optionally the visit date) in one transaction, still one event per
        item. All or nothing: one invalid value refuses the page."""
        visit = self._visit_for(actor, visit_id, "visit.write")
        self._check_version(visit, expected_version)
        self.check_cited_query(query_id, record_type="visit", record_id=visit.id,
                               fields=[*items, *(["held_on"] if held_on is not None else [])])
        stamp = make_stamp(actor, reason=_blank_to_none(reason), reason_code=reason_code, query_id=query_id, source=source)
        others: list[Visit] = []
        if held_on is not None:
            held = parse_date(held_on, "held_on", self._site_today(visit.site))
            if visit.hold(held, stamp, make_stamp(actor, source=source)):
                others = self._after_hold(visit, held)
        errors = []
        for code, value in items.items():
            try:
                visit.set_item(code, value, stamp)
            except InvalidInput as e:
                errors.extend(((("items", str(code)) if p[:1] in (("value",), ("item_code",)) else p), m)
                              for p, m in e.errors)
        if errors:
            raise InvalidInput(errors)
        return self._visit_result(visit, self._save(visit, *others))

    # ------------------------------------------------------------------ queries
    def get_visit(self: Any, actor: Actor, visit_id: Any) -> dict[str, Any]:
        return visit_view(self._visit_for(actor, visit_id, "visit.read"))

    def visit_history(self: Any, actor: Actor, visit_id: Any) -> list[dict[str, Any]]:
        visit = self._visit_for(actor, visit_id, "visit.read")
        return [event_view(e) for e in self.events.get(visit.id)]

    def item_history(self: Any, actor: Actor, visit_id: Any, item_code: Any) -> list[dict[str, Any]]:
        """The item's history, oldest first (R13, R35): every value it has had (``kind`` "value": old -> new,
        who, when, why, any query) and every source-data verification mark as what it is (``kind``
        "verification": who verified which value, when; ``kind`` "verification_reset": the change that
        reset it). Each value entry also carries ``verification``: whether that value was verified, by
        whom, and which change reset the mark."""
        visit = self._visit_for(actor, visit_id, "visit.read")
        return item_history_entries(self.events.get(visit.id), validate_item_code(item_code))

    def _participant_rows(self: Any, actor: Actor, participant_id: Any) -> tuple[Participant, list[dict[str, Any]]]:
        access.require(actor, "visit.read")
        participant = self._get(Participant, participant_id, "participant")
        access.require(actor, "visit.read", participant.site)
        self.read_models.wait_for()
        rows = self.read_models.store.query("SELECT * FROM visit_scores WHERE participant_id = ?", (str(participant.id),))
        return participant, [row_view(r) for r in rows]

    def list_visits(self: Any, actor: Actor, participant_id: Any) -> list[dict[str, Any]]:
        _, rows = self._participant_rows(actor, participant_id)
        rows.sort(key=lambda r: (VISIT_CODES.index(r["code"]), r["held_on"] or "", r["visit_id"]))
        return [
            {"id": r["visit_id"], "code": r["code"], "label": VISIT_LABELS[r["code"]], "target_date": r["target_date"],
             "window_start": r["window_start"], "window_end": r["window_end"], "held_on": r["held_on"],
             "status": visit_status(r["held_on"], r["window_start"], r["window_end"], r["code"]),
             "deviations": r["deviations"], "version": r["version"]}
            for r in rows
        ]

    def participant_scores(self: Any, actor: Actor, participant_id: Any, *, as_of: dt.datetime | None = None) -> list[dict[str, Any]]:
        """One entry per visit with data; with ``as_of``, as recorded at that instant (R17)."""
        participant, rows = self._participant_rows(actor, participant_id)
        if as_of is None:
            visits = [{"visit_id": r["visit_id"], "visit_code": r["code"], "held_on": r["held_on"],
                       "target_date": r["target_date"], "acr_eular": r["acr_eular"], "mrss": r["mrss"]} for r in rows]
            return assemble(visits)
        if as_of.tzinfo is None:
            raise InvalidInput.one("as_of", "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
        visits = []
        for r in rows:
            state = None
            for event in self.events.get(UUID(r["visit_id"])):
                if event.timestamp > as_of:
                    break
                state = event.mutate(state)
            if state is None:
                continue
            acr, mrss = score_items(state.items)
            visits.append({"visit_id": r["visit_id"], "visit_code": state.code, "held_on": state.held_on,
                           "target_date": state.target_date, "acr_eular": acr, "mrss": mrss})
        return assemble(visits)

    def primary_outcome(self: Any, actor: Actor, *, site: str | None = None) -> dict[str, Any]:
        """The primary-outcome table (a) per arm at M12, from the read model."""
        access.require(actor, "outcome.read")
        if access.is_site_bound(actor):
            if site not in (None, actor.site):
                access.require(actor, "outcome.read", site)
            site = actor.site
        self.read_models.wait_for()
        sql = "SELECT arm, code, acr_total, acr_applicable, acr_meets, acr_indeterminate, mrss_total, acr_change, mrss_change FROM visit_scores WHERE code IN (?, ?)"
        params: list[Any] = ["BL", PRIMARY_ENDPOINT]
        if site is not None:
            sql += " AND site = ?"
            params.append(site)
        rows = self.read_models.store.query(sql, params)
        arms = []
        for arm in ARMS:
            bl = [r for r in rows if r["arm"] == arm and r["code"] == "BL"]
            m12 = [r for r in rows if r["arm"] == arm and r["code"] == PRIMARY_ENDPOINT]
            scored = [r for r in m12 if r["acr_total"] is not None]
            arms.append({
                "arm": arm,
                "randomised": len(bl),
                "m12_acr_eular_recorded": sum(1 for r in m12 if r["acr_applicable"] is not None),
                "acr_eular_total": describe([r["acr_total"] for r in scored]),
                "acr_eular_change": describe([r["acr_change"] for r in m12 if r["acr_change"] is not None]),
                "classified": sum(1 for r in scored if r["acr_meets"]),
                "indeterminate": sum(1 for r in scored if r["acr_indeterminate"]),
                "not_applicable": sum(1 for r in m12 if r["acr_applicable"] is not None and not r["acr_applicable"]),
                "mrss_m12_total": describe([r["mrss_total"] for r in m12 if r["mrss_total"] is not None]),
                "mrss_change": describe([r["mrss_change"] for r in m12 if r["mrss_change"] is not None]),
            })
        return {"visit_code": PRIMARY_ENDPOINT, "site": site, "arms": arms, "rule": OUTCOME_RULE,
                "as_of_notification": self.read_models.positions().get("visit_scores")}
