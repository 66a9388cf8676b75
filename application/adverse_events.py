"""Adverse-event commands and safety queries, mixed into TrialApplication.

Commands take the actor explicitly, check the access policy against the participant's site (R23),
and save the AE's events, including any reporting clock they start, in one transaction (R1).
Safety listings read the projections of application.safety_projection, never replay aggregates.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from application.views import event_view, iso, signature_view
from domain import access
from domain.access import is_site_bound
from domain.adverse_event import AdverseEvent
from domain.audit import Actor, make_stamp
from domain.errors import Conflict, InvalidInput
from domain.participant import Participant
from domain.safety import (
    AESI_CATEGORIES,
    FIELDS,
    GRADES,
    REPORT_LABELS,
    RULES_VERSION,
    SPONSOR_CAUSALITY,
    ReportingRules,
    classify,
    iso_duration,
    is_related,
    lateness,
    parse_instant,
)
from domain.trial import ARM_LABELS, ARM_TREG, ARMS

NOT_ALLOCATED = "not_allocated"


def _instant_param(value: Any, field: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except (ValueError, TypeError):
        raise InvalidInput.one(field, "must be an ISO 8601 instant with its zone (a time without zone is refused)") from None


def adverse_event_view(ae: AdverseEvent, now: dt.datetime | None = None) -> dict[str, Any]:
    c = classify(ae.record)
    obligations = []
    for _, ob in sorted(ae.obligations.items()):
        state = "reported" if ob["reported_at"] else "open"
        if ob["reported_at"]:
            late = ob["reported_at"] > ob["due_at"]
        else:
            late = now is not None and lateness(ob["due_at"], now) is not None
            state = "cancelled" if ae.deleted else ("overdue" if late else "open")
        obligations.append({**{k: v for k, v in ob.items() if k != "anchored_to_awareness"},
                            "label": REPORT_LABELS[ob["kind"]], "late": late, "state": state})
    return {
        "id": str(ae.id),
        "participant_id": ae.participant_id,
        "site": ae.site,
        "arm": ae.arm,
        **{f: ae.record.get(f) for f in FIELDS},
        SPONSOR_CAUSALITY: ae.record.get(SPONSOR_CAUSALITY),
        "classification": {
            "serious": c.serious, "related_to_treg": c.related, "related_to_procedure": is_related(ae.record.get("aerel_proc")),
            "unexpected": c.unexpected, "fatal": c.fatal, "life_threatening": c.life_threatening, "aesi": c.aesi,
            "susar": c.susar, "rule": RULES_VERSION,
        },
        "obligations": obligations,
        "deleted": ae.deleted,
        "signatures": [signature_view(s) for s in ae.signatures],
        "created_at": iso(ae.created_on),
        "modified_at": iso(ae.modified_on),
        "version": ae.version,
    }


class AdverseEventCommands:
    """Mixin of TrialApplication (it relies on its ``_get``, ``_save``, ``_check_version``,
    ``_participant_for`` and ``read_models``)."""

    #: deadlines; the composition root sets them from the settings (TRIALAUDIT_*)
    reporting_rules: ReportingRules = ReportingRules()

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def _ae_for(self, actor: Actor, ae_id: Any, action: str) -> AdverseEvent:
        access.require(actor, action)
        ae = self._get(AdverseEvent, ae_id, "adverse event")  # type: ignore[attr-defined]
        access.require(actor, action, ae.site)
        return ae

    def _ae_result(self, ae: AdverseEvent, notification_id: int, **extra: Any) -> dict[str, Any]:
        return {**adverse_event_view(ae, self._now()), "notification_id": notification_id, **extra}

    # ------------------------------------------------------------------ commands
    def report_adverse_event(
        self, actor: Actor, participant_id: Any, *, values: Mapping[str, Any], source: str = "api"
    ) -> dict[str, Any]:
        """Report an AE of a participant at the actor's site (R1, R23); AE collection runs from consent."""
        participant: Participant = self._participant_for(actor, participant_id, "ae.write")  # type: ignore[attr-defined]
        if not participant.consented:
            raise Conflict("adverse events are collected from consent on; record the participant's consent first")
        ae = AdverseEvent.report(
            ae_id=uuid4(), participant_id=str(participant.id), site=participant.site, arm=participant.arm,
            values=values, stamp=make_stamp(actor, source=source), now=self._now(), rules=self.reporting_rules,
        )
        return self._ae_result(ae, self._save(ae))  # type: ignore[attr-defined]

    def correct_adverse_event(
        self, actor: Actor, ae_id: Any, *, field: Any, new_value: Any, reason: Any, reason_code: Any = None,
        query_id: Any = None, aware_at: Any = None, expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        """Correct one wrongly recorded field with a reason (R5, R6, R7); may start a reporting clock."""
        stamp = make_stamp(actor, reason=reason, reason_code=reason_code, query_id=query_id, source=source, reason_required=True)
        if not isinstance(field, str) or field not in FIELDS:
            raise InvalidInput.one("field", f"unknown or not correctable field; correctable fields: {', '.join(FIELDS)}")
        return self._revise(actor, ae_id, {field: new_value}, stamp, "correction", aware_at, expected_version,
                            lambda f: ("new_value",) if f == field else (f,))

    def follow_up_adverse_event(
        self, actor: Actor, ae_id: Any, *, changes: Mapping[str, Any], reason: Any, reason_code: Any = None,
        aware_at: Any = None, expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        """New information on one or more fields at once (e.g. AEOUT and AEENDAT); one event per field (R6)."""
        stamp = make_stamp(actor, reason=reason, reason_code=reason_code, source=source, reason_required=True)
        if not isinstance(changes, Mapping):
            raise InvalidInput.one("changes", "an object of field name to new value")
        return self._revise(actor, ae_id, dict(changes), stamp, "follow_up", aware_at, expected_version,
                            lambda f: ("changes", f))

    def _revise(self, actor, ae_id, values, stamp, kind, aware_at, expected_version, path) -> dict[str, Any]:
        aware = _instant_param(aware_at, "aware_at")
        ae = self._ae_for(actor, ae_id, "ae.write")
        self._check_version(ae, expected_version)  # type: ignore[attr-defined]
        self.check_cited_query(stamp.get("query_id"), record_type="adverse_event", record_id=ae.id,  # type: ignore[attr-defined]
                               fields=list(values))
        made = ae.revise(values, stamp, kind=kind, aware_of_new_facts_at=aware, now=self._now(),
                         rules=self.reporting_rules, path=path)
        return self._ae_result(ae, self._save(ae), changes=made)  # type: ignore[attr-defined]

    def record_safety_report(
        self, actor: Actor, ae_id: Any, *, recipient: Any, kind: Any, reported_at: Any, reference: Any = None,
        expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        """Record a report made to the sponsor or the authority; it meets the oldest open obligation (R11)."""
        action = "ae.report_to_authority" if recipient == "authority" else "ae.report_to_sponsor"
        ae = self._ae_for(actor, ae_id, action)
        self._check_version(ae, expected_version)  # type: ignore[attr-defined]
        met = ae.record_report(recipient=recipient, kind=kind, reported_at=reported_at, reference=reference,
                               stamp=make_stamp(actor, source=source), now=self._now())
        met.pop("anchored_to_awareness", None)
        return self._ae_result(ae, self._save(ae), report=met)  # type: ignore[attr-defined]

    def assess_causality_by_sponsor(
        self, actor: Actor, ae_id: Any, *, causality: Any, reason: Any = None, aware_at: Any = None,
        expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        """The sponsor's causality opinion, kept beside the investigator's; it cannot downgrade it (EU CTR Annex III)."""
        aware = _instant_param(aware_at, "aware_at")
        ae = self._ae_for(actor, ae_id, "ae.sponsor_assess")
        self._check_version(ae, expected_version)  # type: ignore[attr-defined]
        stamp = make_stamp(actor, reason=reason, source=source,
                           reason_required=ae.record.get(SPONSOR_CAUSALITY) is not None)
        made = ae.assess_causality_by_sponsor(causality, stamp, aware_of_new_facts_at=aware or self._now(),
                                              rules=self.reporting_rules)
        return self._ae_result(ae, self._save(ae), changes=made)  # type: ignore[attr-defined]

    def delete_adverse_event(
        self, actor: Actor, ae_id: Any, *, reason: Any, expected_version: int | None = None, source: str = "api"
    ) -> dict[str, Any]:
        """Entered in error: a tombstone with a reason (R8); its open reporting obligations are cancelled."""
        stamp = make_stamp(actor, reason=reason, source=source, reason_required=True)
        ae = self._ae_for(actor, ae_id, "ae.write")
        self._check_version(ae, expected_version)  # type: ignore[attr-defined]
        ae.delete(stamp)
        return self._ae_result(ae, self._save(ae))  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ queries
    def get_adverse_event(self, actor: Actor, ae_id: Any) -> dict[str, Any]:
        return adverse_event_view(self._ae_for(actor, ae_id, "ae.read"), self._now())

    def adverse_event_history(self, actor: Actor, ae_id: Any) -> list[dict[str, Any]]:
        ae = self._ae_for(actor, ae_id, "ae.read")
        return [event_view(e) for e in self.events.get(ae.id)]  # type: ignore[attr-defined]

    def list_adverse_events(self, actor: Actor, participant_id: Any) -> list[dict[str, Any]]:
        """The AE listing of one participant, from the read model (oldest onset first)."""
        participant = self._participant_for(actor, participant_id, "ae.read")  # type: ignore[attr-defined]
        self.read_models.wait_for()  # type: ignore[attr-defined]
        rows = self.read_models.store.query(  # type: ignore[attr-defined]
            "SELECT * FROM ae_listing WHERE participant_id = ? ORDER BY aestdat, recorded_at, id", (str(participant.id),)
        )
        return [_listing_row(r) for r in rows]

    def _safety_site(self, actor: Actor, site: str | None) -> str | None:
        access.require(actor, "safety.read")
        if is_site_bound(actor):
            if site not in (None, actor.site):
                access.require(actor, "safety.read", site)
            return actor.site
        return site

    def safety_summary(self, actor: Actor, *, site: str | None = None) -> dict[str, Any]:
        """Primary outcome (b) per arm: participants with at least one AE, by worst grade, serious,
        related to the product or a procedure, AESI; events counted beside participants."""
        site = self._safety_site(actor, site)
        self.read_models.wait_for()  # type: ignore[attr-defined]
        store = self.read_models.store  # type: ignore[attr-defined]
        where, params = ("WHERE site = ?", [site]) if site else ("", [])
        rows = store.query(f"SELECT * FROM ae_listing {where}", params)
        counts = store.query(
            f"SELECT arm, COUNT(*) AS n FROM participant_list {where + (' AND' if where else 'WHERE')} arm IS NOT NULL GROUP BY arm",
            params,
        )
        return summarise(rows, {r["arm"]: r["n"] for r in counts}, site)

    def safety_obligations(
        self, actor: Actor, *, at: dt.datetime | None = None, overdue_only: bool = False,
        within: dt.timedelta | None = None, site: str | None = None,
    ) -> list[dict[str, Any]]:
        """Open reporting obligations from the read model, with lateness against ``at`` (default now)."""
        site = self._safety_site(actor, site)
        if at is not None and at.tzinfo is None:
            raise InvalidInput.one("at", "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
        at = (at or self._now()).astimezone(dt.timezone.utc)
        self.read_models.wait_for()  # type: ignore[attr-defined]
        sql = "SELECT * FROM safety_obligations WHERE reported_at IS NULL AND cancelled = ?"
        params: list[Any] = [False]
        if overdue_only:
            sql += " AND due_at < ?"
            params.append(iso(at))
        elif within is not None:
            sql += " AND due_at <= ?"
            params.append(iso(at + within))
        if site:
            sql += " AND site = ?"
            params.append(site)
        rows = self.read_models.store.query(sql + " ORDER BY due_at, ae_id, obligation", params)  # type: ignore[attr-defined]
        result = []
        for r in rows:
            late = lateness(r["due_at"], at)
            left = parse_instant(r["due_at"]) - at
            result.append({
                "adverse_event_id": r["ae_id"], "obligation": r["obligation"], "participant_id": r["participant_id"],
                "site": r["site"], "arm": r["arm"], "aeterm": r["aeterm"], "kind": r["kind"], "recipient": r["recipient"],
                "label": REPORT_LABELS[r["kind"]], "trigger": r["trigger"], "started_at": r["started_at"], "due_at": r["due_at"],
                "evaluated_at": iso(at), "overdue": late is not None,
                "overdue_by": iso_duration(late) if late else None,
                "overdue_seconds": int(late.total_seconds()) if late else 0,
                "due_in": None if late else iso_duration(left),
            })
        return result


def _listing_row(r: dict[str, Any]) -> dict[str, Any]:
    row = {k: r[k] for k in ("id", "participant_id", "site", "arm", *FIELDS, SPONSOR_CAUSALITY, "version", "recorded_at", "modified_at")}
    row["deleted"] = bool(r["deleted"])
    return row


def summarise(rows: list[dict[str, Any]], randomised: dict[str, int], site: str | None) -> dict[str, Any]:
    """Per arm (and not yet allocated): participant counts with events counted beside them."""

    def empty(arm: str) -> dict[str, Any]:
        return {
            "arm": arm, "label": ARM_LABELS.get(arm, "consented, not allocated"),
            "participants": randomised.get(arm, 0), "participants_with_ae": 0, "events": 0,
            "participants_by_worst_grade": {g: 0 for g in GRADES}, "events_by_grade": {g: 0 for g in GRADES},
            **{k: {"participants": 0, "events": 0} for k in
               ("serious", "fatal", "related_to_treg", "related_to_procedure", "susar", "aesi")},
            "aesi_by_category": {c: {"participants": 0, "events": 0} for c in AESI_CATEGORIES},
        }

    arms = {arm: empty(arm) for arm in ARMS}
    per_participant: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["deleted"]:
            continue
        arm = r["arm"] or NOT_ALLOCATED
        out = arms.setdefault(arm, empty(arm))
        c = classify(r)
        out["events"] += 1
        out["events_by_grade"][r["aetoxgr"]] += 1
        p = per_participant.setdefault((arm, r["participant_id"]), {"grade": "0", "flags": set(), "aesi": set()})
        p["grade"] = max(p["grade"], r["aetoxgr"])
        flags = {
            "serious": c.serious, "fatal": c.fatal, "related_to_treg": c.related,
            "related_to_procedure": is_related(r["aerel_proc"]), "susar": c.susar, "aesi": c.aesi,
        }
        for key, on in flags.items():
            if on:
                out[key]["events"] += 1
                p["flags"].add(key)
        if r["aesi_category"]:
            out["aesi_by_category"][r["aesi_category"]]["events"] += 1
            p["aesi"].add(r["aesi_category"])
    for (arm, _), p in per_participant.items():
        out = arms[arm]
        out["participants_with_ae"] += 1
        out["participants_by_worst_grade"][p["grade"]] += 1
        for key in p["flags"]:
            out[key]["participants"] += 1
        for category in p["aesi"]:
            out["aesi_by_category"][category]["participants"] += 1
    return {"rule": RULES_VERSION, "site": site, "arms": list(arms.values())}


# --------------------------------------------------------------------------- synthetic trial
_MILD = [
    ("Headache", None, False), ("Nasopharyngitis", "infection", True), ("Fatigue", None, False),
    ("Nausea", None, False), ("Digital ulcer", "ssc_worsening", True), ("Arthralgia", None, False),
]


def demo_adverse_events(
    app: Any, actor: Actor, participant_id: str, arm: str | None, rng: random.Random, start_date: dt.date,
    *, serious: bool | None = None,
) -> list[str]:
    """Write plausible AEs for one participant through the application's commands (for `trialaudit demo`).

    ``serious=True`` forces one SAE with a sponsor report made in time and one grade correction
    with a reason; ``None`` draws it (about one participant in six). Returns the AE ids.
    """
    now = dt.datetime.now(dt.timezone.utc)
    today = now.date()
    treg = arm == ARM_TREG
    ids: list[str] = []

    def day(offset: int) -> dt.date:
        return min(start_date + dt.timedelta(days=offset), today)

    def aware(d: dt.date, hours: int) -> dt.datetime:
        return min(dt.datetime.combine(d, dt.time(9), dt.timezone.utc) + dt.timedelta(hours=hours), now)

    def base(term: str, onset: dt.date, grade: str) -> dict[str, Any]:
        return {
            "aeterm": term, "aestdat": onset.isoformat(), "aeendat": None, "aetoxgr": grade,
            "aeser": "N", **{f: "N" for f in ("aesdth", "aeslife", "aeshosp", "aesdisab", "aescong", "aesmie")},
            "aerel_treg": "NOT APPLICABLE", "aerel_proc": "NOT RELATED", "aeout": "RECOVERED/RESOLVED",
            "aeacn": "NOT APPLICABLE", "aesi_category": None, "aware_at": aware(onset, 2),
        }

    if treg and rng.random() < 0.5:  # an infusion-related reaction on Day 0
        onset = day(21)
        values = base("Infusion related reaction: fever and chills", onset, "1")
        values.update(aerel_treg=rng.choice(["PROBABLE", "POSSIBLE"]), aesi_category="infusion_related_reaction",
                      aeendat=day(22).isoformat(), aeexp="EXPECTED", rsi_version="IB v1.0 RSI")
        ids.append(_report_with_aesi_notice(app, actor, participant_id, values, rng))
    for _ in range(rng.randint(0, 2)):
        term, aesi, ongoing = rng.choice(_MILD)
        onset = day(rng.randint(25, 200))
        values = base(term, onset, rng.choice(["1", "1", "2"]))
        values["aesi_category"] = aesi
        if treg:
            values["aerel_treg"] = rng.choice(["UNLIKELY", "NOT RELATED", "POSSIBLE"])
        if ongoing and rng.random() < 0.5:
            values["aeout"] = "RECOVERING/RESOLVING"
        else:
            values["aeendat"] = day((onset - start_date).days + rng.randint(1, 14)).isoformat()
        ids.append(_report_with_aesi_notice(app, actor, participant_id, values, rng))
    if serious or (serious is None and rng.random() < 0.17):
        onset = day(rng.randint(30, 120))
        values = base("Pneumonia", onset, "3")
        values.update(aeser="Y", aeshosp="Y", aesi_category="infection", aeout="RECOVERING/RESOLVING",
                      aware_at=aware(onset, 4))
        if treg:
            values.update(aerel_treg="POSSIBLE", aeexp="UNEXPECTED", rsi_version="IB v1.0 RSI")
        sae = app.report_adverse_event(actor, participant_id, values=values, source="system")
        ids.append(sae["id"])
        reported = min(values["aware_at"] + dt.timedelta(hours=rng.randint(2, 20)), now)
        for kind in ("sae_initial", "aesi_initial"):
            app.record_safety_report(actor, sae["id"], recipient="sponsor", kind=kind, reported_at=reported,
                                     reference=f"SAE form {sae['id'][:8]}", source="system")
        app.correct_adverse_event(actor, sae["id"], field="aetoxgr", new_value="4",
                                  reason="source document shows ICU admission with non-invasive ventilation",
                                  reason_code="source_document_updated", source="system")
        if treg and rng.random() < 0.5:  # the sponsor's expedited SUSAR report, in time
            app.record_safety_report(actor, sae["id"], recipient="authority", kind="susar_15_day",
                                     reported_at=min(reported + dt.timedelta(days=rng.randint(3, 12)), now),
                                     reference="CIOMS I form", source="system")
    return ids


def _report_with_aesi_notice(app: Any, actor: Actor, participant_id: str, values: dict, rng: random.Random) -> str:
    ae = app.report_adverse_event(actor, participant_id, values=values, source="system")
    if values.get("aesi_category"):
        app.record_safety_report(actor, ae["id"], recipient="sponsor", kind="aesi_initial",
                                 reported_at=min(values["aware_at"] + dt.timedelta(hours=rng.randint(1, 20)),
                                                 dt.datetime.now(dt.timezone.utc)),
                                 source="system")
    return ae["id"]
