"""Request and response models of the HTTP API (separate from the domain events)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictInt, TypeAdapter, WithJsonSchema
from pydantic import ValidationError as _ValidationError

from domain.audit import REASON_CODES
from domain.trial import EXCLUSION_CODES, INCLUSION_CODES, ROLES, SEXES

ReasonCode = Literal[tuple(sorted(REASON_CODES))]  # type: ignore[valid-type]


# --------------------------------------------------------------------------- instants (E.13)
# One parser for every instant a client sends (as_of, at, from, to, aware_at, report ranges; query or
# body): an ISO 8601 date-time with its zone that is representable in UTC. `9999-12-31T23:59:59-14:00`
# is valid ISO 8601 but lies past year 9999 once converted to UTC; it answers 422 naming the field.
_DATETIME = TypeAdapter(dt.datetime)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
NAIVE = "give an instant with its zone, e.g. 2026-03-12T00:00:00Z"


def utc_instant(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; ValueError for a naive time or one outside years 1..9999 once in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(NAIVE)
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError("out of range: the instant falls outside years 1..9999 once converted to UTC") from None


def _parse_instant(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return utc_instant(value)
    if isinstance(value, str) and _DAY.fullmatch(value.strip()):
        raise ValueError(NAIVE)
    try:
        parsed = _DATETIME.validate_python(value)
    except _ValidationError:
        raise ValueError("not an ISO 8601 date-time with its zone, e.g. 2026-03-12T00:00:00Z") from None
    return utc_instant(parsed)


def _parse_instant_or_day(value: Any) -> dt.datetime | dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DAY.fullmatch(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not a calendar date (YYYY-MM-DD)") from None
    return _parse_instant(value)


Instant = Annotated[
    dt.datetime, PlainValidator(_parse_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "ISO 8601 instant with its zone"}),
]
"""An ISO 8601 instant with its zone, returned in UTC; naive or out-of-range instants are a 422."""

InstantOrDay = Annotated[
    dt.datetime | dt.date, PlainValidator(_parse_instant_or_day),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}],
                    "description": "ISO 8601 instant with its zone, or a plain date: that whole day in UTC"}),
]
"""A filter bound: an instant (as ``Instant``), or a plain date meaning that UTC calendar day (a
``from`` day starts at its 00:00 UTC, a ``to`` day includes the whole day)."""


class Command(BaseModel):
    """Commands refuse unknown fields: who and when are never taken from the client (R1)."""

    model_config = ConfigDict(extra="forbid")
    expected_version: int | None = Field(
        default=None, ge=1, description="The version you last read; a stale one answers 409 and changes nothing"
    )


class ScreenParticipant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    screening_number: str = Field(min_length=1, max_length=40, examples=["SCR-001"])
    site: str = Field(min_length=1, max_length=40, examples=["MINSK"])
    sex: Literal[tuple(SEXES)] = Field(description="CDISC SEX: F, M or U")  # type: ignore[valid-type]
    birth_year: int = Field(ge=1900, le=2100)


class Eligibility(Command):
    inclusion: dict[Literal[INCLUSION_CODES], bool]  # type: ignore[valid-type]
    exclusion: dict[Literal[EXCLUSION_CODES], bool]  # type: ignore[valid-type]
    reason: str | None = Field(default=None, max_length=2000, description="Required when eligibility is reassessed")


class Consent(Command):
    consent_version: str = Field(min_length=1, max_length=100)
    signed_on: dt.date


class Randomisation(Command):
    pass


class Withdrawal(Command):
    reason: str = Field(max_length=2000)


class Correction(Command):
    field: str = Field(min_length=1, max_length=100, examples=["birth_year"])
    new_value: Any = Field(description="The corrected value, of the field's type")
    reason: str = Field(max_length=2000, description="Why the value changes (mandatory, R5)")
    reason_code: ReasonCode | None = None  # type: ignore[valid-type]
    query_id: str | None = Field(default=None, max_length=100, description="The data query this answers (R7)")


class Actor(BaseModel):
    user_id: str
    username: str
    full_name: str
    role: str
    site: str


class Change(BaseModel):
    field: str
    old_value: Any = None
    new_value: Any = None


class HistoryEntry(BaseModel):
    version: int
    type: str
    recorded_at: str = Field(description="Server UTC time, ISO 8601 with zone")
    actor: Actor
    reason: str | None
    reason_code: str | None = None
    source: str | None = None
    query_id: str | None = None
    changes: list[Change]


class EligibilityAnswers(BaseModel):
    inclusion: dict[str, bool]
    exclusion: dict[str, bool]


class ParticipantOut(BaseModel):
    id: str
    screening_number: str
    site: str
    sex: str
    birth_year: int
    status: str
    eligible: bool | None
    eligibility: EligibilityAnswers | None
    consent_version: str | None
    consent_signed_on: str | None
    arm: str | None
    allocation_slot: int | None
    randomised_at: str | None
    withdrawal_reason: str | None
    created_at: str
    modified_at: str
    version: int


class ParticipantSummary(BaseModel):
    id: str
    screening_number: str
    site: str
    sex: str | None
    birth_year: int | None
    status: str
    arm: str | None
    eligible: bool | None
    version: int
    modified_at: str


class ParticipantResult(ParticipantOut):
    notification_id: int
    changes: list[Change] | None = None


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=2, max_length=63)
    full_name: str = Field(min_length=1, max_length=200)
    role: Literal[ROLES]  # type: ignore[valid-type]
    site: str = Field(min_length=1, max_length=40)
    password: str = Field(max_length=1000, description="One-time: the user must choose their own at first login")


class RoleChange(Command):
    role: Literal[ROLES]  # type: ignore[valid-type]
    reason: str = Field(max_length=2000)


class SiteChange(Command):
    site: str = Field(min_length=1, max_length=40)
    reason: str = Field(max_length=2000)


class AccountChange(Command):
    reason: str = Field(max_length=2000)


class PasswordChange(BaseModel):
    """Your own password (``current_password`` required), or an administrator's reset of another
    account's (``reason`` required; the password is one-time: the user must choose their own)."""

    model_config = ConfigDict(extra="forbid")
    new_password: str = Field(max_length=1000)
    current_password: str | None = Field(default=None, max_length=1000, description="Required for your own password")
    reason: str | None = Field(default=None, max_length=2000, description="Required for a reset by an administrator")


class OwnPasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    current_password: str = Field(max_length=1000)
    new_password: str = Field(max_length=1000)


class UserOut(BaseModel):
    id: str
    username: str
    full_name: str
    role: str
    site: str
    active: bool
    locked: bool
    password_change_required: bool = Field(
        default=False, description="The password was set by an administrator: the user must choose their own")
    created_at: str
    version: int


class UserResult(UserOut):
    notification_id: int


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = None


PROBLEMS = {
    401: {"model": Problem, "description": "No valid bearer token"},
    403: {"model": Problem, "description": "The role or site does not allow this"},
    404: {"model": Problem, "description": "Not found"},
    409: {"model": Problem, "description": "Conflict with the current state or a stale expected_version"},
    422: {"model": Problem, "description": "Invalid input; `errors` lists each bad field by its path"},
}


# --------------------------------------------------------------------------- visits, items, scores
class VisitHeld(Command):
    date: dt.date = Field(description="The calendar date the visit was held (at the site); out of window records a protocol deviation")
    reason: str | None = Field(default=None, max_length=2000, description="Required when the date is changed (R5)")
    reason_code: ReasonCode | None = None  # type: ignore[valid-type]
    query_id: str | None = Field(default=None, max_length=100, description="The data query this answers (R7)")


class UnscheduledVisit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date: dt.date | None = Field(default=None, description="The date held, if it already took place")
    reason: str | None = Field(default=None, max_length=2000, description="Why the unscheduled visit took place")


class ItemValue(Command):
    value: StrictBool | StrictInt | None = Field(
        description="ACR/EULAR finding: true (present), false (absent) or null (unknown). "
        "mRSS site: an integer 0..3; null clears it."
    )
    reason: str | None = Field(default=None, max_length=2000, description="Required for any change after the first entry (R5)")
    reason_code: ReasonCode | None = None  # type: ignore[valid-type]
    query_id: str | None = Field(default=None, max_length=100, description="The data query this change answers (R7)")
    clear: bool = Field(default=False, description="Clear the item (a tombstone event; the old value stays in the history, R8). Needs a reason.")


class ItemResult(BaseModel):
    visit_id: str
    item_code: str
    value: bool | int | None
    recorded: bool
    changed: bool
    version: int
    notification_id: int


class VisitSummary(BaseModel):
    id: str
    code: str
    label: str
    target_date: str | None
    window_start: str | None
    window_end: str | None
    held_on: str | None
    status: str
    deviations: int
    version: int


class Deviation(BaseModel):
    kind: str
    description: str
    target_date: str | None
    window_start: str | None
    window_end: str | None
    actual_date: str
    days_outside: int
    recorded_at: str
    version: int
    current: bool = Field(description="False once the visit date was corrected away from the date it concerns")


class SignatureOut(BaseModel):
    """A signature with its manifestation (R27) and whether it still holds (R30)."""

    signature_id: str
    signer: str = Field(description="The signer's printed name")
    signer_user_id: str
    signer_username: str
    signer_role: str
    meaning: str = Field(description="authorship, review or approval")
    legal_statement: str
    signed_at: str = Field(description="UTC, ISO 8601 with zone")
    record_type: str
    record_id: str
    record_version: Any = Field(description="The record's version when signed (a casebook: each record's version)")
    content_hash: str = Field(description="Hex SHA-256 of the canonical signed content (docs/design.md: Signatures)")
    hash_algorithm: str
    valid: bool
    invalidated_by: dict[str, Any] | None = Field(description="The event that broke the signature (R30)")
    invalidated_at: str | None
    status: str = Field(description="'valid' or 'unsigned since <event>'")
    manifestation: str


class LockedBy(BaseModel):
    user_id: str
    username: str
    full_name: str
    role: str
    site: str


class LockOut(BaseModel):
    scope: str
    locked_at: str
    reason: str | None
    locked_by: LockedBy


class SdvFlag(BaseModel):
    value: Any
    verified_at: str
    verified_by: dict[str, str]


class VisitOut(BaseModel):
    id: str
    participant_id: str
    site: str
    arm: str
    code: str
    label: str
    target_date: str | None
    window_start: str | None
    window_end: str | None
    anchor_rule: str
    held_on: str | None
    status: str
    items: dict[str, bool | int | None]
    cleared_items: list[str]
    deviations: list[Deviation]
    signatures: list[SignatureOut] = []
    lock: LockOut | None = None
    sdv: dict[str, SdvFlag] = {}
    created_at: str
    modified_at: str
    version: int


class VisitResult(VisitOut):
    notification_id: int
    changed: bool | None = None


class ItemVerificationMark(BaseModel):
    verified_by: Actor
    verified_at: str
    version: int = Field(description="Version of the ItemVerified event")
    reset_by_version: int | None = Field(description="Version of the change that reset the mark, null while it holds")


class ItemHistoryEntry(HistoryEntry):
    """``kind`` "value": a value the item had (old -> new); "verification": a monitor verified
    ``verified_value`` (SDV, R35); "verification_reset": the mark was reset by change ``reset_by_version``."""

    item_code: str
    kind: Literal["value", "verification", "verification_reset"]
    old_value: bool | int | None = Field(default=None, description="Only on value entries")
    new_value: bool | int | None = Field(default=None, description="Only on value entries")
    cleared: bool | None = Field(default=None, description="Only on value entries")
    verification: ItemVerificationMark | None = Field(default=None, description="On value entries: the SDV mark of this value")
    verified_value: bool | int | None = Field(default=None, description="On verification entries: the value verified")
    reset_by_version: int | None = Field(default=None, description="On verification_reset entries")


class VisitScores(BaseModel):
    visit_id: str
    visit_code: str
    held_on: str | None
    target_date: str | None
    acr_eular: dict[str, Any] | None = Field(description="total_score, category_scores, meets_criteria, indeterminate, rule, change_from_baseline, ...")
    mrss: dict[str, Any] | None = Field(description="total (null until all 17 sites are scored), rule, change_from_baseline, ...")


class Describe(BaseModel):
    n: int
    mean: float | None
    sd: float | None
    median: float | None
    q1: float | None
    q3: float | None
    iqr: float | None


class ArmOutcome(BaseModel):
    arm: str
    randomised: int
    m12_acr_eular_recorded: int
    acr_eular_total: Describe
    acr_eular_change: Describe
    classified: int
    indeterminate: int
    not_applicable: int
    mrss_m12_total: Describe
    mrss_change: Describe


class PrimaryOutcome(BaseModel):
    visit_code: str
    site: str | None
    arms: list[ArmOutcome]
    rule: str
    as_of_notification: int | None


# ---------------------------------------------------------------------- audit trail (R13, R15, R18, R19)
class AuditEvent(BaseModel):
    position: int = Field(description="Global position in the event log (the notification id): the recorded order")
    aggregate_id: str
    aggregate_type: str
    version: int
    type: str = Field(description="The event's name, e.g. FieldCorrected")
    participant_id: str | None
    site: str | None
    recorded_at: str = Field(description="Server UTC time, ISO 8601 with zone")
    clinical_date: str | None = Field(description="The clinical date the event is about (visit, onset, consent), when known")
    actor: Actor
    reason: str | None
    reason_code: str | None = None
    source: str | None = None
    query_id: str | None = None
    changes: list[Change]


class AuditExportRequest(BaseModel):
    """What to export: the filters of GET /audit/events, and the format."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    format: Literal["csv", "jsonl"] = "csv"
    participant: str | None = Field(default=None, max_length=200)
    site: str | None = Field(default=None, max_length=200)
    user: str | None = Field(default=None, max_length=200)
    item: str | None = Field(default=None, max_length=200)
    from_: InstantOrDay | None = Field(default=None, alias="from")
    to: InstantOrDay | None = None
    type: str | None = Field(default=None, max_length=500)
    aggregate_type: str | None = Field(default=None, max_length=200)
    include_retrievals: bool = False
    order: Literal["asc", "desc"] = "asc"


class AuditExportJob(BaseModel):
    id: str
    kind: str
    filename: str
    state: Literal["running", "done", "failed"]
    bytes: int
    sha256: str | None = Field(description="SHA-256 of the finished file, for a certified copy")
    created_at: str
    finished_at: str | None
    error: str | None


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    order: Literal["asc", "desc"]
    limit: int


class AuditItemValue(BaseModel):
    position: int
    aggregate_id: str
    aggregate_type: str
    version: int
    type: str
    entry_no: int = Field(description="1 for the first entry of the item in its record, 2+ for each change after it")
    recorded_at: str = Field(description="UTC")
    recorded_at_local: str = Field(description="The same instant in the site's time zone, with its offset")
    time_zone: str
    clinical_date: str | None
    actor: Actor
    old_value: Any = None
    new_value: Any = None
    reason: str | None
    reason_code: str | None = None
    query_id: str | None = None
    source: str | None = None


class AuditItemHistory(BaseModel):
    participant_id: str
    item: str
    site: str | None
    time_zone: str
    values: list[AuditItemValue]


class AuditReport(BaseModel):
    kind: str
    parameters: dict[str, Any]
    count: int
    rows: list[dict[str, Any]]


class ReportSignOff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period_from: dt.date
    period_to: dt.date
    comment: str = Field(max_length=2000, description="What was reviewed and found (mandatory)")


class ReportSignOffResult(BaseModel):
    id: str
    kind: str
    period_from: str
    period_to: str
    comment: str
    site: str
    rows: int
    report_sha256: str = Field(description="SHA-256 of the report as it stood when signed off")
    signed_by: Actor
    signed_at: str
    notification_id: int
