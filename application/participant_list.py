"""The participant list per site: a read model, so listing never replays aggregates."""

from __future__ import annotations

from typing import Any

from application.projections import Projection, ViewCursor
from application.views import iso
from domain.participant import Participant

COLUMNS = ("screening_number", "site", "sex", "birth_year", "arm", "eligible", "consent_signed_on")


class ParticipantList(Projection):
    name = "participant_list"
    topics = tuple(
        cls.TOPIC
        for cls in (
            Participant.ParticipantScreened,
            Participant.EligibilityAssessed,
            Participant.ConsentRecorded,
            Participant.ParticipantRandomised,
            Participant.ParticipantWithdrawn,
            Participant.FieldCorrected,
        )
    )

    def create_statements(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS participant_list ("
            " id TEXT PRIMARY KEY, screening_number TEXT NOT NULL, site TEXT NOT NULL, sex TEXT, birth_year BIGINT,"
            " arm TEXT, eligible BOOLEAN, consent_signed_on TEXT, withdrawn BOOLEAN NOT NULL,"
            " version BIGINT NOT NULL, modified_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS participant_list_site ON participant_list (site, screening_number)",
        ]

    def tables(self) -> list[str]:
        return ["participant_list"]

    def process(self, event: Any, notification_id: int, cur: ViewCursor) -> None:
        pid = str(event.originator_id)
        if isinstance(event, Participant.ParticipantScreened):
            cur.execute(
                "INSERT INTO participant_list (id, screening_number, site, sex, birth_year, withdrawn, version, modified_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (pid, event.screening_number, event.site, event.sex, event.birth_year, False,
                 event.originator_version, iso(event.timestamp)),
            )
            return
        sets: dict[str, Any] = {}
        for ch in event.changes:
            if ch["field"] in COLUMNS:
                sets[ch["field"]] = ch["new_value"]
        if isinstance(event, Participant.ParticipantWithdrawn):
            sets["withdrawn"] = True
        sets["version"] = event.originator_version
        sets["modified_at"] = iso(event.timestamp)
        assignments = ", ".join(f"{k} = ?" for k in sets)
        cur.execute(f"UPDATE participant_list SET {assignments} WHERE id = ?", (*sets.values(), pid))


