"""Safety read models: the AE listing (one row per AE, the source of the per-arm safety summary) and
the reporting obligations with their deadlines, so that "what is late" never replays aggregates.

Both are rebuildable from event 1 and must then equal the live rows (tests/application/test_adverse_events.py).
"""

from __future__ import annotations

from typing import Any

from application.projections import Projection, ViewCursor
from application.views import iso
from domain.adverse_event import AdverseEvent
from domain.safety import FIELDS, SPONSOR_CAUSALITY

_AE_EVENTS = (
    AdverseEvent.AdverseEventReported,
    AdverseEvent.FollowUpRecorded,
    AdverseEvent.FieldCorrected,
    AdverseEvent.ReportingClockStarted,
    AdverseEvent.ReportingClockRescheduled,
    AdverseEvent.ReportSubmitted,
    AdverseEvent.AdverseEventDeleted,
    AdverseEvent.SponsorCausalityAssessed,
)


class AdverseEventListing(Projection):
    name = "ae_listing"
    topics = tuple(cls.TOPIC for cls in _AE_EVENTS)

    def create_statements(self) -> list[str]:
        columns = ", ".join(f"{f} TEXT" for f in FIELDS)
        return [
            "CREATE TABLE IF NOT EXISTS ae_listing ("
            " id TEXT PRIMARY KEY, participant_id TEXT NOT NULL, site TEXT NOT NULL, arm TEXT,"
            f" {columns}, {SPONSOR_CAUSALITY} TEXT, deleted BOOLEAN NOT NULL, version BIGINT NOT NULL,"
            " recorded_at TEXT NOT NULL, modified_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS ae_listing_participant ON ae_listing (participant_id, aestdat)",
            "CREATE INDEX IF NOT EXISTS ae_listing_site ON ae_listing (site, arm)",
        ]

    def tables(self) -> list[str]:
        return ["ae_listing"]

    def process(self, event: Any, notification_id: int, cur: ViewCursor) -> None:
        ae_id = str(event.originator_id)
        if isinstance(event, AdverseEvent.AdverseEventReported):
            names = ("id", "participant_id", "site", "arm", *FIELDS, "deleted", "version", "recorded_at", "modified_at")
            values = (ae_id, event.participant_id, event.site, event.arm, *(event.record.get(f) for f in FIELDS),
                      False, event.originator_version, iso(event.timestamp), iso(event.timestamp))
            cur.execute(f"INSERT INTO ae_listing ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)
            return
        sets: dict[str, Any] = {}
        if isinstance(event, (AdverseEvent.FollowUpRecorded, AdverseEvent.FieldCorrected)):
            sets[event.field] = event.new_value
        if isinstance(event, AdverseEvent.SponsorCausalityAssessed):
            sets[SPONSOR_CAUSALITY] = event.causality
        if isinstance(event, AdverseEvent.AdverseEventDeleted):
            sets["deleted"] = True
        sets["version"] = event.originator_version
        sets["modified_at"] = iso(event.timestamp)
        cur.execute(f"UPDATE ae_listing SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?", (*sets.values(), ae_id))


class SafetyObligations(Projection):
    """One row per reporting obligation: due time, whether and when it was met, whether cancelled."""

    name = "safety_obligations"
    topics = tuple(cls.TOPIC for cls in _AE_EVENTS)

    def create_statements(self) -> list[str]:
        return [
            # where each AE belongs, so that an obligation row carries its participant, site and arm
            "CREATE TABLE IF NOT EXISTS safety_obligation_aes ("
            " ae_id TEXT PRIMARY KEY, participant_id TEXT NOT NULL, site TEXT NOT NULL, arm TEXT, aeterm TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS safety_obligations ("
            " ae_id TEXT NOT NULL, obligation BIGINT NOT NULL, participant_id TEXT NOT NULL, site TEXT NOT NULL,"
            " arm TEXT, aeterm TEXT NOT NULL, kind TEXT NOT NULL, recipient TEXT NOT NULL, trigger TEXT NOT NULL,"
            " started_at TEXT NOT NULL, due_at TEXT NOT NULL, reported_at TEXT, reference TEXT, late BOOLEAN,"
            " cancelled BOOLEAN NOT NULL, PRIMARY KEY (ae_id, obligation))",
            "CREATE INDEX IF NOT EXISTS safety_obligations_due ON safety_obligations (reported_at, cancelled, due_at)",
        ]

    def tables(self) -> list[str]:
        return ["safety_obligations", "safety_obligation_aes"]

    def process(self, event: Any, notification_id: int, cur: ViewCursor) -> None:
        ae_id = str(event.originator_id)
        if isinstance(event, AdverseEvent.AdverseEventReported):
            cur.execute(
                "INSERT INTO safety_obligation_aes (ae_id, participant_id, site, arm, aeterm) VALUES (?, ?, ?, ?, ?)",
                (ae_id, event.participant_id, event.site, event.arm, event.record["aeterm"]),
            )
        elif isinstance(event, (AdverseEvent.FollowUpRecorded, AdverseEvent.FieldCorrected)):
            if event.field == "aeterm":
                cur.execute("UPDATE safety_obligation_aes SET aeterm = ? WHERE ae_id = ?", (event.new_value, ae_id))
                cur.execute("UPDATE safety_obligations SET aeterm = ? WHERE ae_id = ?", (event.new_value, ae_id))
        elif isinstance(event, AdverseEvent.ReportingClockStarted):
            cur.execute("SELECT participant_id, site, arm, aeterm FROM safety_obligation_aes WHERE ae_id = ?", (ae_id,))
            participant_id, site, arm, aeterm = cur.fetchone()
            cur.execute(
                "INSERT INTO safety_obligations (ae_id, obligation, participant_id, site, arm, aeterm, kind, recipient,"
                " trigger, started_at, due_at, cancelled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ae_id, event.obligation, participant_id, site, arm, aeterm, event.kind, event.recipient,
                 event.trigger, event.started_at, event.due_at, False),
            )
        elif isinstance(event, AdverseEvent.ReportingClockRescheduled):
            cur.execute(
                "SELECT reported_at FROM safety_obligations WHERE ae_id = ? AND obligation = ?", (ae_id, event.obligation)
            )
            (reported_at,) = cur.fetchone()
            cur.execute(
                "UPDATE safety_obligations SET started_at = ?, due_at = ?, late = ? WHERE ae_id = ? AND obligation = ?",
                (event.started_at, event.due_at, None if reported_at is None else reported_at > event.due_at,
                 ae_id, event.obligation),
            )
        elif isinstance(event, AdverseEvent.ReportSubmitted):
            cur.execute(
                "UPDATE safety_obligations SET reported_at = ?, reference = ?, late = ? WHERE ae_id = ? AND obligation = ?",
                (event.reported_at, event.reference, event.late, ae_id, event.obligation),
            )
        elif isinstance(event, AdverseEvent.AdverseEventDeleted):
            cur.execute(
                "UPDATE safety_obligations SET cancelled = ? WHERE ae_id = ? AND reported_at IS NULL", (True, ae_id)
            )
