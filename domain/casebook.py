"""A participant's casebook: the participant-level lock and the casebook signature (R27-R30, R34).

The casebook is the participant's whole record: their own fields, every visit and every adverse event.
Its signature hashes that content with a manifest of the version of each record in it (the
``version`` of the signed content, R29). A later change to any of those records invalidates it in the
same save as the change (the application adds this aggregate to that save, R30).
"""

from __future__ import annotations

from typing import Any

from domain.audit import AuditedAggregate, AuditedCreated
from domain.lock import Lockable, RecordLocked, RecordUnlocked
from domain.signature import RecordSigned, Signable, SignatureInvalidated
from domain.trial import trial_uuid


class Casebook(Signable, Lockable, AuditedAggregate):
    TOPIC = "trialaudit.Casebook"
    RECORD_TYPE = "casebook"
    LOCK_SCOPE = "participant"
    signature_events = ("CasebookSigned", "CasebookSignatureInvalidated")
    lock_events = ("ParticipantLocked", "ParticipantUnlocked")

    @staticmethod
    def id_for(participant_id: Any):
        return trial_uuid("casebook", str(participant_id))

    class CasebookOpened(AuditedCreated):
        TOPIC = "trialaudit.Casebook.CasebookOpened"
        participant_id: str
        site: str

    class CasebookSigned(RecordSigned):
        """An investigator signed the participant's whole casebook (R27-R29)."""

        TOPIC = "trialaudit.Casebook.CasebookSigned"

    class CasebookSignatureInvalidated(SignatureInvalidated):
        TOPIC = "trialaudit.Casebook.CasebookSignatureInvalidated"

    class ParticipantLocked(RecordLocked):
        TOPIC = "trialaudit.Casebook.ParticipantLocked"

    class ParticipantUnlocked(RecordUnlocked):
        TOPIC = "trialaudit.Casebook.ParticipantUnlocked"

    def __init__(self, participant_id: str, site: str):
        self.participant_id = participant_id
        self.site = site
        self.signatures: list[dict[str, Any]] = []
        self.lock: dict[str, Any] | None = None

    @classmethod
    def open(cls, participant_id: str, site: str, stamp: dict) -> "Casebook":
        return cls._create(cls.CasebookOpened, id=cls.id_for(participant_id), participant_id=str(participant_id),
                           site=site, audit=stamp, changes=[])

    def lock_label(self) -> str:
        return f"participant {self.participant_id}"
