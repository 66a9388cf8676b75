"""An export of clinical data is itself on the audit trail (R11): who exported what, when.

One ``ExportRecord`` aggregate per export. It is recorded before the first byte leaves the system,
with the position in the event log the export is cut at, so the file can be tied to its record.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.audit import AuditedAggregate, AuditedCreated, change


class ExportRecord(AuditedAggregate):
    TOPIC = "trialaudit.ExportRecord"

    class ExportRecorded(AuditedCreated):
        TOPIC = "trialaudit.ExportRecord.ExportRecorded"
        format: str
        scope: str
        participant_id: str | None
        site: str | None
        file_oid: str
        up_to_notification_id: int
        as_of: str | None

    def __init__(self, format: str, scope: str, participant_id: str | None, site: str | None, file_oid: str,
                 up_to_notification_id: int, as_of: str | None):
        self.format = format
        self.scope = scope
        self.participant_id = participant_id
        self.site = site
        self.file_oid = file_oid
        self.up_to_notification_id = up_to_notification_id
        self.as_of = as_of

    @classmethod
    def record(cls, *, export_id: UUID, stamp: dict[str, Any], format: str, scope: str, participant_id: str | None,
               site: str | None, file_oid: str, up_to_notification_id: int, as_of: str | None) -> "ExportRecord":
        return cls._create(
            cls.ExportRecorded, id=export_id, format=format, scope=scope, participant_id=participant_id, site=site,
            file_oid=file_oid, up_to_notification_id=up_to_notification_id, as_of=as_of, audit=stamp,
            changes=[change("export", None, f"{format}:{scope}:{participant_id or site or 'all'}")],
        )
