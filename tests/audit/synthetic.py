"""Synthetic aggregates of other shapes (a visit with items, an adverse event with a CDASH record), to show
the audit index is generic over event types: it learns participant, site and clinical date from attributes."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import uuid4

from domain.audit import Actor, AuditedAggregate, AuditedCreated, change, make_stamp


class SyntheticVisit(AuditedAggregate):
    TOPIC = "tests.audit.SyntheticVisit"

    class VisitOpened(AuditedCreated):
        TOPIC = "tests.audit.SyntheticVisit.VisitOpened"
        participant_id: str
        site: str
        code: str

    class VisitHeld(AuditedAggregate.Event):
        TOPIC = "tests.audit.SyntheticVisit.VisitHeld"
        visit_date: str

        def apply(self, v: Any) -> None:
            v.visit_date = self.visit_date

    class ItemEntered(AuditedAggregate.Event):
        TOPIC = "tests.audit.SyntheticVisit.ItemEntered"
        item_code: str
        value: Any

        def apply(self, v: Any) -> None:
            v.items = {**v.items, self.item_code: self.value}

    def __init__(self, participant_id: str, site: str, code: str):
        self.participant_id = participant_id
        self.site = site
        self.code = code
        self.visit_date: str | None = None
        self.items: dict[str, Any] = {}

    @classmethod
    def open(cls, participant_id: str, site: str, actor: Actor, at: dt.datetime, code: str = "BL") -> "SyntheticVisit":
        return cls._create(cls.VisitOpened, id=uuid4(), participant_id=participant_id, site=site, code=code,
                           audit=make_stamp(actor), changes=[], timestamp=at)

    def held(self, visit_date: str, actor: Actor, at: dt.datetime) -> None:
        self.trigger_event(self.VisitHeld, visit_date=visit_date, audit=make_stamp(actor),
                           changes=[change("visit_date", self.visit_date, visit_date)], timestamp=at)

    def enter(self, item: str, value: Any, actor: Actor, at: dt.datetime, reason: str | None = None,
              query_id: str | None = None) -> None:
        old = self.items.get(item)
        self.trigger_event(
            self.ItemEntered, item_code=item, value=value, timestamp=at,
            audit=make_stamp(actor, reason=reason, query_id=query_id, reason_required=item in self.items),
            changes=[change(item, old, value)],
        )


class SyntheticAE(AuditedAggregate):
    TOPIC = "tests.audit.SyntheticAE"

    class Reported(AuditedCreated):
        TOPIC = "tests.audit.SyntheticAE.Reported"
        participant_id: str
        record: dict[str, Any]

    class Corrected(AuditedAggregate.Event):
        TOPIC = "tests.audit.SyntheticAE.Corrected"
        field: str
        new_value: Any

        def apply(self, ae: Any) -> None:
            ae.record = {**ae.record, self.field: self.new_value}

    def __init__(self, participant_id: str, record: dict[str, Any]):
        self.participant_id = participant_id
        self.record = dict(record)

    @classmethod
    def report(cls, participant_id: str, record: dict[str, Any], actor: Actor, at: dt.datetime) -> "SyntheticAE":
        return cls._create(cls.Reported, id=uuid4(), participant_id=participant_id, record=record,
                           audit=make_stamp(actor), changes=[change(k, None, v) for k, v in record.items()],
                           timestamp=at)

    def correct(self, field: str, value: Any, actor: Actor, at: dt.datetime, reason: str) -> None:
        self.trigger_event(self.Corrected, field=field, new_value=value, timestamp=at,
                           audit=make_stamp(actor, reason=reason, reason_required=True),
                           changes=[change(field, self.record.get(field), value)])


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
