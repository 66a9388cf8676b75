"""Request and response models of the signature, query, lock and SDV endpoints (docs/contract.md
"Signatures, queries, locks")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Command, LockOut, ReasonCode, SdvFlag, SignatureOut
from domain.query import STATES
from domain.signature import MEANINGS

Meaning = Literal[MEANINGS]  # type: ignore[valid-type]
QueryState = Literal[STATES]  # type: ignore[valid-type]


# --------------------------------------------------------------------------- signatures
class SignRequest(Command):
    meaning: Meaning = Field(description="authorship, review or approval (the legal statement follows from it)")  # type: ignore[valid-type]
    password: str = Field(max_length=1000, description="Your password, re-entered: every signing re-authenticates (R28)")


class CasebookSignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meaning: Meaning  # type: ignore[valid-type]
    password: str = Field(max_length=1000)


class SignatureResult(SignatureOut):
    version: int = Field(description="The signed record's (or casebook's) version after the signature")
    notification_id: int


class SignatureCheck(SignatureOut):
    hash_verified: bool = Field(description="The hash recomputed from the stored events at the signed version matches")
    content_unchanged: bool = Field(description="The current content still hashes to the signed value")


class IdentityVerification(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str = Field(min_length=4, max_length=500, examples=["government photo ID checked in person"])
    evidence: str = Field(min_length=4, max_length=500, examples=["passport seen by the site administrator"])


class Acknowledgement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    statement: str = Field(max_length=2000, description="The accountability statement, exactly as "
                                                         "GET /me/signature-acknowledgement gives it")


class IdentityVerificationOut(BaseModel):
    method: str
    evidence: str
    recorded_at: str


class EnablementOut(BaseModel):
    user_id: str
    identity_verified: bool
    identity_verification: IdentityVerificationOut | None
    accountability_acknowledged: bool
    acknowledged_at: str | None
    statement: str
    enabled: bool


class EnablementResult(EnablementOut):
    notification_id: int


class CasebookOut(BaseModel):
    participant_id: str
    site: str
    lock: LockOut | None
    study_lock: LockOut | None
    signatures: list[SignatureOut]
    version: int


class ReviewRow(BaseModel):
    record_type: str
    record_id: str
    participant_id: str
    site: str | None
    version: int
    type: str
    recorded_at: str
    actor: dict[str, str]
    reason: str | None
    query_id: str | None
    changes: list[dict[str, Any]]
    after: list[str] = Field(description="'signature' and/or 'lock'")
    signatures_broken: list[dict[str, Any]]
    after_unlock: list[dict[str, Any]]


# --------------------------------------------------------------------------- queries
class OpenQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visit_id: str = Field(max_length=100)
    item_code: str = Field(max_length=100, examples=["mrss.fingers_right"])
    text: str = Field(max_length=4000)


class QueryCorrection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any = Field(default=None, description="The corrected value of the queried item")
    clear: bool = False
    reason: str | None = Field(default=None, max_length=2000, description="Defaults to the answer's text")
    reason_code: ReasonCode | None = Field(default=None, description="Defaults to query_response")  # type: ignore[valid-type]


class AnswerQuery(Command):
    text: str = Field(max_length=4000)
    correction: QueryCorrection | None = Field(default=None, description="A correction of the queried item, saved "
                                               "with the answer and citing the query (R7)")


class CloseQuery(Command):
    text: str | None = Field(default=None, max_length=4000)


class ReopenQuery(Command):
    text: str = Field(max_length=4000)


class CancelQuery(Command):
    reason: str = Field(max_length=2000)


class QueryMessage(BaseModel):
    kind: str
    text: str | None
    version: int
    at: str
    by: dict[str, str]
    correction: dict[str, Any] | None = None


class QueryOut(BaseModel):
    id: str
    state: QueryState  # type: ignore[valid-type]
    odm_state: str
    site: str
    participant_id: str
    visit_id: str
    visit_code: str
    item_code: str
    value_at_opening: Any
    text: str
    messages: list[QueryMessage]
    created_at: str
    modified_at: str
    version: int


class QueryResult(QueryOut):
    notification_id: int


class QueryRow(BaseModel):
    id: str
    site: str
    participant_id: str
    visit_id: str
    visit_code: str
    item_code: str
    state: QueryState  # type: ignore[valid-type]
    odm_state: str
    text: str
    opened_by: str
    opened_at: str
    version: int
    modified_at: str


# --------------------------------------------------------------------------- locks, SDV
class LockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)


class UnlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=2000, description="Why the data are unlocked (mandatory, R25)")


class LockResult(BaseModel):
    scope: str
    id: str | None
    locked: bool
    lock: LockOut | None
    version: int
    notification_id: int


class SdvResult(BaseModel):
    visit_id: str
    item_code: str
    value: Any
    sdv: SdvFlag
    changed: bool
    version: int
    notification_id: int
