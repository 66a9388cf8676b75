"""The audit stamp every event carries: who (as they were then), why, and from where.

The recorded time is the event's own ``timestamp`` (server UTC, set when the event is made);
nothing here trusts a client for who or when.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput

SOURCES = frozenset({"api", "cli", "system", "import", "web"})

#: Coded reasons for change (R5). Free text is always required beside the code.
REASON_CODES = frozenset(
    {
        "transcription_error",
        "data_entry_error",
        "source_document_updated",
        "query_response",
        "late_information",
        "protocol_clarification",
        "withdrawal",
        "administrative",
        "other",
    }
)

# Placeholder text that says nothing about why (R5).
_PLACEHOLDERS = re.compile(
    r"^(n/?a|na|none|null|nil|test|tbd|todo|x+|-+|\.+|\?+|asdf|qwerty|reason|change|changed|"
    r"correction|corrected|update|updated|edit|edited|fix|fixed|ok|no reason)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Actor:
    """Who acted, as they were at that moment (R3)."""

    user_id: str
    username: str
    full_name: str
    role: str
    site: str

    def as_dict(self) -> dict[str, str]:
        # spelt out: dataclasses.asdict deep-copies field by field, a cost on every audited event
        return {"user_id": self.user_id, "username": self.username, "full_name": self.full_name,
                "role": self.role, "site": self.site}


SYSTEM_ACTOR = Actor(
    user_id="system", username="system", full_name="trialaudit system", role="system", site="*"
)


def validate_reason(reason: Any, field: str = "reason") -> str:
    """A reason for change: non-blank, not a placeholder (R5). Returns it stripped."""
    if reason is None or not isinstance(reason, str) or not reason.strip():
        raise InvalidInput.one(field, "a reason for the change is required and must not be blank")
    text = " ".join(reason.split())
    if _PLACEHOLDERS.match(text) or len(text) < 4:
        raise InvalidInput.one(
            field, f"'{text}' does not say why; give the reason for the change in words"
        )
    if len(text) > 2000:
        raise InvalidInput.one(field, "the reason is longer than 2000 characters")
    return text


def make_stamp(
    actor: Actor,
    *,
    reason: str | None = None,
    reason_code: str | None = None,
    source: str = "api",
    query_id: str | None = None,
    reason_required: bool = False,
) -> dict[str, Any]:
    """Build the audit stamp for one event. Refuses a missing actor or a missing reason."""
    if not isinstance(actor, Actor) or not actor.user_id or not actor.role:
        raise ValueError("an event cannot be made without an actor")
    if reason_required or reason is not None:
        reason = validate_reason(reason)
    if reason_code is not None and reason_code not in REASON_CODES:
        raise InvalidInput.one(
            "reason_code", f"unknown reason code; use one of {sorted(REASON_CODES)}"
        )
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    return {
        "actor": actor.as_dict(),
        "reason": reason,
        "reason_code": reason_code if reason is not None else None,
        "source": source,
        "query_id": query_id,
    }


def change(field: str, old: Any, new: Any) -> dict[str, Any]:
    return {"field": field, "old_value": old, "new_value": new}


class AuditedAggregate(Aggregate):
    """Base of every aggregate: each event carries ``audit`` and the ``changes`` it makes."""

    class Event(Aggregate.Event):
        audit: dict[str, Any]
        changes: list[dict[str, Any]]

        def __post_init__(self) -> None:
            super().__post_init__()
            actor = (self.audit or {}).get("actor") if isinstance(self.audit, dict) else None
            if not actor or not actor.get("user_id") or not actor.get("role"):
                raise ValueError(f"{type(self).__name__}: an event cannot be made without an actor")

    def _record(self, event_class: type, stamp: dict[str, Any], changes: list, **fields: Any) -> None:
        """Trigger one audited event (no-op changes are refused by callers)."""
        self.trigger_event(event_class, audit=stamp, changes=changes, **fields)


# The library gives every aggregate class a nested ``Created`` event, and each subclass would then need
# its own explicit topic for it. Each aggregate here declares its own creation event instead.
del AuditedAggregate.Created


class AuditedCreated(AuditedAggregate.Event, Aggregate.Created):
    """Base of every aggregate's first event."""


def event_type(event: Any) -> str:
    return type(event).__name__


def id_text(value: UUID | str) -> str:
    return str(value)
