"""Data queries (R32): a question about one item, raised by a monitor or data manager, answered by the
site (possibly with a correction that cites the query, R7), then closed, reopened or cancelled.

States follow CDISC ODM 2.0 QueryStateType: open -> answered -> closed, with reopen (answered or closed
-> open) and cancel (open or answered -> cancelled). Every transition is one audited event.
"""

from __future__ import annotations

from typing import Any

from domain.audit import AuditedAggregate, AuditedCreated, change
from domain.errors import Conflict, InvalidInput

OPEN, ANSWERED, CLOSED, CANCELLED = "open", "answered", "closed", "cancelled"
STATES = (OPEN, ANSWERED, CLOSED, CANCELLED)
#: the ODM 2.0 QueryStateType value of each state
ODM_STATES = {OPEN: "Open", ANSWERED: "Answered", CLOSED: "Closed", CANCELLED: "Cancelled"}
#: (state, action) -> new state; anything else is refused (409)
TRANSITIONS = {
    (OPEN, "answer"): ANSWERED,
    (ANSWERED, "close"): CLOSED,
    (ANSWERED, "reopen"): OPEN,
    (CLOSED, "reopen"): OPEN,
    (OPEN, "cancel"): CANCELLED,
    (ANSWERED, "cancel"): CANCELLED,
}

_PAST = {"answer": "answered", "close": "closed", "reopen": "reopened", "cancel": "cancelled"}


def validate_text(text: Any, field: str = "text", required: bool = True) -> str | None:
    if text is None and not required:
        return None
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput.one(field, "the text is required and must not be blank")
    if len(text) > 4000:
        raise InvalidInput.one(field, "at most 4000 characters")
    return " ".join(text.split())


def next_state(state: str, action: str) -> str:
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == state)
        raise Conflict(
            f"a query that is {state} cannot be {_PAST.get(action, action)}"
            + (f"; it can be: {', '.join(allowed)}" if allowed else "; it is final")
        ) from None


class DataQuery(AuditedAggregate):
    TOPIC = "trialaudit.DataQuery"

    class QueryOpened(AuditedCreated):
        TOPIC = "trialaudit.DataQuery.QueryOpened"
        visit_id: str
        visit_code: str
        participant_id: str
        site: str
        item_code: str
        text: str
        value_at_opening: Any

        def apply(self, q: Any) -> None:
            q.messages = [{"kind": "open", "text": self.text, "version": self.originator_version,
                           "by": dict(self.audit["actor"]), "at": self.timestamp}]

    class QueryAnswered(AuditedAggregate.Event):
        """The site's answer; ``correction`` is the item change saved with it, if any (R7)."""

        TOPIC = "trialaudit.DataQuery.QueryAnswered"
        text: str
        correction: dict[str, Any] | None

        def apply(self, q: Any) -> None:
            q.state = ANSWERED
            q._message("answer", self)

    class QueryClosed(AuditedAggregate.Event):
        TOPIC = "trialaudit.DataQuery.QueryClosed"
        text: str | None

        def apply(self, q: Any) -> None:
            q.state = CLOSED
            q._message("close", self)

    class QueryReopened(AuditedAggregate.Event):
        TOPIC = "trialaudit.DataQuery.QueryReopened"
        text: str

        def apply(self, q: Any) -> None:
            q.state = OPEN
            q._message("reopen", self)

    class QueryCancelled(AuditedAggregate.Event):
        TOPIC = "trialaudit.DataQuery.QueryCancelled"
        text: str

        def apply(self, q: Any) -> None:
            q.state = CANCELLED
            q._message("cancel", self)

    def __init__(self, visit_id: str, visit_code: str, participant_id: str, site: str, item_code: str, text: str,
                 value_at_opening: Any):
        self.visit_id = visit_id
        self.visit_code = visit_code
        self.participant_id = participant_id
        self.site = site
        self.item_code = item_code
        self.value_at_opening = value_at_opening
        self.state = OPEN
        self.messages: list[dict[str, Any]] = []

    def _message(self, kind: str, event: Any) -> None:
        entry = {"kind": kind, "text": event.text, "version": event.originator_version,
                 "by": dict(event.audit["actor"]), "at": event.timestamp}
        if kind == "answer" and event.correction:
            entry["correction"] = dict(event.correction)
        self.messages = [*self.messages, entry]

    @classmethod
    def open(cls, *, query_id, visit_id: str, visit_code: str, participant_id: str, site: str, item_code: str,
             text: Any, value_at_opening: Any, stamp: dict) -> "DataQuery":
        text = validate_text(text)
        return cls._create(
            cls.QueryOpened, id=query_id, visit_id=str(visit_id), visit_code=visit_code,
            participant_id=str(participant_id), site=site, item_code=item_code, text=text,
            value_at_opening=value_at_opening, audit=stamp,
            changes=[change("state", None, OPEN), change("text", None, text)],
        )

    def answer(self, text: Any, stamp: dict, correction: dict[str, Any] | None = None) -> None:
        text = validate_text(text)
        new = next_state(self.state, "answer")
        changes = [change("state", self.state, new)]
        if correction:
            changes.append(change(correction["item_code"], correction["old_value"], correction["new_value"]))
        self._record(self.QueryAnswered, stamp, changes, text=text, correction=correction)

    def close(self, text: Any, stamp: dict) -> None:
        text = validate_text(text, required=False)
        self._record(self.QueryClosed, stamp, [change("state", self.state, next_state(self.state, "close"))], text=text)

    def reopen(self, text: Any, stamp: dict) -> None:
        text = validate_text(text)
        self._record(self.QueryReopened, stamp, [change("state", self.state, next_state(self.state, "reopen"))],
                     text=text)

    def cancel(self, text: Any, stamp: dict) -> None:
        text = validate_text(text, "reason")
        self._record(self.QueryCancelled, stamp, [change("state", self.state, next_state(self.state, "cancel"))],
                     text=text)
