"""Request and response models of the adverse-event and safety endpoints (docs/contract.md "Adverse events").

Field names are the CDASH names of docs/domain.md §3 in lower case. The cross-field rules are the
domain's (domain.safety); these models only check each field's shape and code list.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Change, Command, Correction, ReasonCode, SignatureOut
from api.schemas import Instant as AwareDatetime  # the shared instant parser: zone required, in range (E.13)
from domain.safety import ACTIONS, AESI_CATEGORIES, CAUSALITY, CTCAE_VERSIONS, EXPECTEDNESS, GRADES, OUTCOMES, REPORT_KINDS, RECIPIENTS

NY = Literal["Y", "N"]
Grade = Literal[GRADES] | Annotated[int, Field(ge=1, le=5)]  # type: ignore[valid-type]
Causality = Literal[CAUSALITY]  # type: ignore[valid-type]
Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]
Action = Literal[ACTIONS]  # type: ignore[valid-type]
Aesi = Literal[AESI_CATEGORIES]  # type: ignore[valid-type]
Expectedness = Literal[EXPECTEDNESS]  # type: ignore[valid-type]
PARTIAL_DATE = r"^\d{4}(-\d{2}(-\d{2})?)?$"
PartialDate = Annotated[str, Field(pattern=PARTIAL_DATE, examples=["2026-03-12", "2026-03", "2026"],
                                   description="ISO 8601 date, complete or partial (YYYY, YYYY-MM, YYYY-MM-DD)")]


class ReportAdverseEvent(BaseModel):
    """A new AE. AESER = Y exactly when a seriousness flag is Y; AESDTH = Y exactly when AEOUT = FATAL;
    grade 5 only with FATAL; resolved and fatal outcomes need AEENDAT, ongoing ones forbid it; Group 2
    relatedness to the product and action taken are NOT APPLICABLE."""

    model_config = ConfigDict(extra="forbid")
    aeterm: str = Field(min_length=1, max_length=200, description="Reported term (verbatim)", examples=["Pneumonia"])
    aestdat: PartialDate
    aeendat: PartialDate | None = None
    aetoxgr: Grade = Field(description="CTCAE v5.0 grade, '1'..'5'")  # type: ignore[valid-type]
    ctcae_version: Literal[CTCAE_VERSIONS] = "5.0"  # type: ignore[valid-type]
    aeser: NY = Field(description="Serious event (Y exactly when a seriousness criterion is Y)")
    aesdth: NY = Field(description="Results in death")
    aeslife: NY = Field(description="Life-threatening")
    aeshosp: NY = Field(description="Requires or prolongs hospitalisation")
    aesdisab: NY = Field(description="Persistent or significant disability / incapacity")
    aescong: NY = Field(description="Congenital anomaly / birth defect")
    aesmie: NY = Field(description="Other important medical event")
    aerel_treg: Causality = Field(description="Causality to the Treg product; NOT APPLICABLE in Group 2")  # type: ignore[valid-type]
    aerel_proc: Causality = Field(description="Causality to study procedures (blood collection / leukapheresis)")  # type: ignore[valid-type]
    aeexp: Expectedness | None = Field(default=None, description="Expectedness against the RSI; null = not yet assessed")  # type: ignore[valid-type]
    rsi_version: str | None = Field(default=None, max_length=100, description="The RSI version expectedness was judged against")
    aeout: Outcome  # type: ignore[valid-type]
    aeacn: Action = Field(description="Action taken with study treatment (CDISC ACN)")  # type: ignore[valid-type]
    aesi_category: Aesi | None = Field(default=None, description="Adverse event of special interest (docs/domain.md §4)")  # type: ignore[valid-type]
    aware_at: AwareDatetime = Field(description="When the site became aware: an instant with its zone; the reporting clocks start here")


class AdverseEventCorrection(Correction):
    aware_at: AwareDatetime | None = Field(
        default=None, description="When the site learnt the corrected facts (starts any new reporting clock; default now)"
    )


class FollowUp(Command):
    changes: dict[str, Any] = Field(description="Field name -> new value; all applied together, one event per field",
                                    examples=[{"aeout": "RECOVERED/RESOLVED", "aeendat": "2026-03-20"}])
    reason: str = Field(max_length=2000)
    reason_code: ReasonCode | None = None  # type: ignore[valid-type]
    aware_at: AwareDatetime | None = Field(default=None, description="When the site learnt the new facts (default now)")


class SafetyReport(Command):
    recipient: Literal[RECIPIENTS]  # type: ignore[valid-type]
    kind: Literal[tuple(REPORT_KINDS)] = Field(description="The obligation the report meets")  # type: ignore[valid-type]
    reported_at: AwareDatetime
    reference: str | None = Field(default=None, max_length=200, description="e.g. the SAE form or CIOMS I reference")


class SponsorAssessment(Command):
    causality: Causality = Field(description="The sponsor's causality to the Treg product; kept beside the investigator's, "  # type: ignore[valid-type]
                                             "which it can never downgrade (EU CTR Annex III)")
    reason: str | None = Field(default=None, max_length=2000, description="Required when the sponsor revises its opinion")
    aware_at: AwareDatetime | None = Field(default=None, description="When the sponsor reached the opinion (default now)")


class AdverseEventDeletion(Command):
    reason: str = Field(max_length=2000)


class Classification(BaseModel):
    serious: bool
    related_to_treg: bool
    related_to_procedure: bool
    unexpected: bool
    fatal: bool
    life_threatening: bool
    aesi: bool
    susar: bool
    rule: str


class Obligation(BaseModel):
    obligation: int
    kind: str
    recipient: str
    label: str
    trigger: str
    started_at: str
    due_at: str
    reported_at: str | None
    reference: str | None
    late: bool
    state: Literal["open", "overdue", "reported", "cancelled"]


class AdverseEventFields(BaseModel):
    aeterm: str
    aestdat: str
    aeendat: str | None
    aetoxgr: str
    ctcae_version: str
    aeser: str
    aesdth: str
    aeslife: str
    aeshosp: str
    aesdisab: str
    aescong: str
    aesmie: str
    aerel_treg: str
    aerel_proc: str
    aeexp: str | None
    rsi_version: str | None
    aeout: str
    aeacn: str
    aesi_category: str | None
    aware_at: str
    aerel_treg_sponsor: str | None = Field(default=None, description="The sponsor's causality opinion, if given")


class AdverseEventOut(AdverseEventFields):
    id: str
    participant_id: str
    site: str
    arm: str | None
    classification: Classification
    obligations: list[Obligation]
    deleted: bool
    signatures: list[SignatureOut] = []
    created_at: str
    modified_at: str
    version: int


class ReportMade(BaseModel):
    obligation: int
    kind: str
    recipient: str
    due_at: str
    reported_at: str
    late: bool


class AdverseEventResult(AdverseEventOut):
    notification_id: int
    changes: list[Change] | None = None
    report: ReportMade | None = None


class AdverseEventListingRow(AdverseEventFields):
    id: str
    participant_id: str
    site: str
    arm: str | None
    deleted: bool
    version: int
    recorded_at: str
    modified_at: str


class Counts(BaseModel):
    participants: int
    events: int


class ArmSafety(BaseModel):
    arm: str
    label: str
    participants: int = Field(description="Participants allocated to the arm (in the site filter)")
    participants_with_ae: int
    events: int
    participants_by_worst_grade: dict[str, int]
    events_by_grade: dict[str, int]
    serious: Counts
    fatal: Counts
    related_to_treg: Counts
    related_to_procedure: Counts
    susar: Counts
    aesi: Counts
    aesi_by_category: dict[str, Counts]


class SafetySummary(BaseModel):
    rule: str
    site: str | None
    arms: list[ArmSafety]


class DueReport(BaseModel):
    adverse_event_id: str
    obligation: int
    participant_id: str
    site: str
    arm: str | None
    aeterm: str
    kind: str
    recipient: str
    label: str
    trigger: str
    started_at: str
    due_at: str
    evaluated_at: str
    overdue: bool
    overdue_by: str | None = Field(description="ISO 8601 duration past the deadline, e.g. P1DT6H")
    overdue_seconds: int
    due_in: str | None = Field(description="ISO 8601 duration left before the deadline")
