"""Reading the audit trail is itself on the trail (R11, R15), and so is a reviewer's sign-off (R18).

Each retrieval (a page of ``GET /audit/events``, an item history, a review report) is one
``AuditTrailAccess`` aggregate created by ``AuditTrailRetrieved``; an export is one aggregate that
starts with ``AuditTrailExportStarted`` and, once the last row has been streamed, gets
``AuditTrailExportCompleted`` with the row count (an export cut short keeps its start, visibly).
A review sign-off is one ``AuditReview`` aggregate. Their ``site`` is the site the reader was
confined to (``*`` for readers of every site), so a site sees the retrievals made within its walls.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from domain.audit import AuditedAggregate, AuditedCreated, change, validate_reason
from domain.errors import InvalidInput

#: the retrieval and review events, by class name (what ``GET /audit/events?type=`` takes)
ACCESS_EVENT_TYPES = ("AuditTrailRetrieved", "AuditTrailExportStarted", "AuditTrailExportCompleted")


class AuditTrailAccess(AuditedAggregate):
    TOPIC = "trialaudit.AuditTrailAccess"

    class AuditTrailRetrieved(AuditedCreated):
        """A reader saw part of the trail: which view, with which filters, how many rows."""

        TOPIC = "trialaudit.AuditTrailAccess.AuditTrailRetrieved"
        view: str
        filters: dict[str, Any]
        format: str
        rows: int
        site: str

    class AuditTrailExportStarted(AuditedCreated):
        TOPIC = "trialaudit.AuditTrailAccess.AuditTrailExportStarted"
        view: str
        filters: dict[str, Any]
        format: str
        up_to_position: int
        site: str

    class AuditTrailExportCompleted(AuditedAggregate.Event):
        TOPIC = "trialaudit.AuditTrailAccess.AuditTrailExportCompleted"
        rows: int

        def apply(self, aggregate: Any) -> None:
            aggregate.rows = self.rows

    def __init__(self, view: str, filters: dict[str, Any], format: str, site: str, rows: int | None = None,
                 up_to_position: int | None = None):
        self.view = view
        self.filters = dict(filters)
        self.format = format
        self.site = site
        self.rows = rows
        self.up_to_position = up_to_position

    @classmethod
    def retrieved(cls, *, view: str, filters: dict[str, Any], format: str, rows: int, site: str,
                  stamp: dict) -> "AuditTrailAccess":
        return cls._create(
            cls.AuditTrailRetrieved, id=uuid4(), view=view, filters=_clean(filters), format=format, rows=rows,
            site=site, audit=stamp, changes=[],
        )

    @classmethod
    def export_started(cls, *, view: str, filters: dict[str, Any], format: str, up_to_position: int, site: str,
                       stamp: dict) -> "AuditTrailAccess":
        return cls._create(
            cls.AuditTrailExportStarted, id=uuid4(), view=view, filters=_clean(filters), format=format,
            up_to_position=up_to_position, site=site, audit=stamp, changes=[],
        )

    def export_completed(self, rows: int, stamp: dict) -> None:
        self._record(self.AuditTrailExportCompleted, stamp, [], rows=rows)


class AuditReview(AuditedAggregate):
    """A reviewer's sign-off of one audit-trail review report over a period (R18)."""

    TOPIC = "trialaudit.AuditReview"

    class AuditReviewSignedOff(AuditedCreated):
        TOPIC = "trialaudit.AuditReview.AuditReviewSignedOff"
        kind: str
        period_from: str
        period_to: str
        comment: str
        site: str
        rows: int
        report_sha256: str

    def __init__(self, kind: str, period_from: str, period_to: str, comment: str, site: str, rows: int,
                 report_sha256: str):
        self.kind = kind
        self.period_from = period_from
        self.period_to = period_to
        self.comment = comment
        self.site = site
        self.rows = rows
        self.report_sha256 = report_sha256

    @classmethod
    def sign_off(cls, *, kind: str, period_from: str, period_to: str, comment: Any, site: str, rows: int,
                 report_sha256: str, stamp: dict) -> "AuditReview":
        if period_to < period_from:
            raise InvalidInput.one("period_to", "the period ends before it starts")
        text = validate_reason(comment, "comment")
        return cls._create(
            cls.AuditReviewSignedOff, id=uuid4(), kind=kind, period_from=period_from, period_to=period_to,
            comment=text, site=site, rows=rows, report_sha256=report_sha256, audit=stamp,
            changes=[change(f"review.{kind}", None, "signed_off")],
        )


def _clean(filters: dict[str, Any]) -> dict[str, Any]:
    """Only the filters actually used, as JSON-friendly text."""
    return {k: (v if isinstance(v, (bool, int)) else str(v)) for k, v in filters.items() if v is not None}
