"""Locks (R25, R34): a visit, a participant's casebook, or the whole study. Locked data takes no entry,
correction or signature; only a data manager unlocks, and always with a reason.

The lock events are subclassed by each aggregate that can be locked (``Visit``, ``Casebook``,
``StudyLock``) with its own pinned topic.
"""

from __future__ import annotations

from typing import Any, ClassVar

from domain.audit import AuditedAggregate, AuditedCreated, change
from domain.errors import Conflict, InvalidInput, Locked
from domain.trial import trial_uuid


class RecordLocked(AuditedAggregate.Event):
    scope: str

    def apply(self, aggregate: Any) -> None:
        aggregate.lock = {"scope": self.scope, "locked_by": dict(self.audit["actor"]), "locked_at": self.timestamp,
                          "reason": self.audit.get("reason"), "version": self.originator_version}


class RecordUnlocked(AuditedAggregate.Event):
    scope: str

    def apply(self, aggregate: Any) -> None:
        aggregate.lock = None


class Lockable:
    """Mixin of an aggregate that can be locked; it names its own ``LOCKED``/``UNLOCKED`` subclasses."""

    LOCK_SCOPE: ClassVar[str]
    #: names of the aggregate's own (locked, unlocked) event classes (lower case: the metaclass leaves it alone)
    lock_events: ClassVar[tuple[str, str]]
    #: class-level default, so that states kept before locks existed still load
    lock: dict[str, Any] | None = None

    def lock_label(self) -> str:
        return f"this {self.LOCK_SCOPE}"

    def lock_record(self, stamp: dict) -> None:
        if self.lock is not None:
            raise Conflict(f"{self.lock_label()} is already locked")
        self._record(getattr(self, self.lock_events[0]), stamp, [change("locked", False, True)], scope=self.LOCK_SCOPE)  # type: ignore[attr-defined]

    def unlock_record(self, stamp: dict) -> None:
        if not isinstance(stamp.get("reason"), str):
            raise InvalidInput.one("reason", "unlocking needs a reason (R25)")
        if self.lock is None:
            raise Conflict(f"{self.lock_label()} is not locked")
        self._record(getattr(self, self.lock_events[1]), stamp, [change("locked", True, False)], scope=self.LOCK_SCOPE)  # type: ignore[attr-defined]

    def refuse_if_locked(self, what: str) -> None:
        if self.lock is not None:
            raise Locked(locked_message(self.lock_label(), self.lock, what))


def locked_message(label: str, lock: dict[str, Any], what: str) -> str:
    by = lock["locked_by"]
    at = lock["locked_at"]
    when = at.isoformat() if hasattr(at, "isoformat") else str(at)
    because = f" ({lock['reason']})" if lock.get("reason") else ""
    return (f"{label} is locked: locked by {by['full_name']} ({by['role']}) at {when}{because}. "
            f"No {what} is possible until a data manager unlocks it with a reason (R34).")


class StudyLock(Lockable, AuditedAggregate):
    """The study-level lock (e.g. before final analysis or unblinding): one aggregate for the trial."""

    TOPIC = "trialaudit.StudyLock"
    LOCK_SCOPE = "study"

    @staticmethod
    def id_for():
        return trial_uuid("study-lock")

    class StudyLockRegisterOpened(AuditedCreated):
        TOPIC = "trialaudit.StudyLock.StudyLockRegisterOpened"

    class StudyLocked(RecordLocked):
        TOPIC = "trialaudit.StudyLock.StudyLocked"

    class StudyUnlocked(RecordUnlocked):
        TOPIC = "trialaudit.StudyLock.StudyUnlocked"

    lock_events = ("StudyLocked", "StudyUnlocked")

    def __init__(self) -> None:
        self.lock = None

    def lock_label(self) -> str:
        return "the study"

    @classmethod
    def open_register(cls, stamp: dict) -> "StudyLock":
        return cls._create(cls.StudyLockRegisterOpened, id=cls.id_for(), audit=stamp, changes=[])
