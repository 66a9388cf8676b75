"""Every read model the application keeps. Add a projection here to have it set up, followed and rebuilt."""

from __future__ import annotations

from application.audit_index import AuditIndex
from application.participant_list import ParticipantList
from application.projections import Projection
from application.query_projection import QueryListing
from application.safety_projection import AdverseEventListing, SafetyObligations
from application.scores_projection import VisitScores


def all_projections() -> list[Projection]:
    return [ParticipantList(), VisitScores(), AdverseEventListing(), SafetyObligations(), AuditIndex(), QueryListing()]
