"""Electronic signatures (R27-R31): what a signature binds to, and how it is broken.

A signature is an event of the signed record's own aggregate (a visit, an adverse event, a casebook),
so that a later change to the signed content and the ``SignatureInvalidated`` it causes are saved in
the same transaction: atomic and audited (R30).

The signed content hash (R29) is SHA-256 over the canonical JSON of
``{"record_type", "record_id", "version", "content"}``: keys sorted, no whitespace (separators ``,``
and ``:``), UTF-8 without ASCII escaping. ``version`` is the record's version when it was signed
(the signature event itself is the next version); ``content`` is the record's clinical content
(a visit: its items and the date held; an AE: its CDASH fields and whether it was deleted; a
casebook: the participant's fields and every visit and AE of the participant). The record id and
version are inside the hash, so a signature moved to another record never verifies.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from domain.audit import Actor, AuditedAggregate, AuditedCreated, change
from domain.errors import Conflict, InvalidInput
from domain.trial import trial_uuid

HASH_ALGORITHM = "sha256/canonical-json-v1"

#: The meanings a signature can carry (11.50(a)(3)) and the legal statement shown with each (R27).
LEGAL_STATEMENTS: dict[str, str] = {
    "authorship": (
        "I am the author of this record. By my electronic signature I attest that the data recorded are "
        "accurate, complete and attributable to me."
    ),
    "review": (
        "I have reviewed this record. By my electronic signature I attest that I have reviewed the data "
        "as recorded."
    ),
    "approval": (
        "I approve this record. By my electronic signature, the legally binding equivalent of my handwritten "
        "signature, I attest that the data are accurate and complete to the best of my knowledge."
    ),
}
MEANINGS = tuple(LEGAL_STATEMENTS)

#: What a user acknowledges before they can sign (R31; 21 CFR 11.100(c), 11.10(j)).
ACCOUNTABILITY_STATEMENT = (
    "I understand that my electronic signature in this system is the legally binding equivalent of my "
    "handwritten signature, that I am accountable and responsible for actions initiated under it, and "
    "that I must not share my password with anyone."
)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def content_hash(record_type: str, record_id: str, version: Any, content: Any) -> str:
    """The hex SHA-256 of the canonical signed content (R29)."""
    payload = {"record_type": record_type, "record_id": str(record_id), "version": version, "content": content}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def validate_meaning(meaning: Any) -> str:
    if meaning not in LEGAL_STATEMENTS:
        raise InvalidInput.one("meaning", f"must be one of {', '.join(MEANINGS)}")
    return meaning


# --------------------------------------------------------------------------- events (subclassed per aggregate)
class RecordSigned(AuditedAggregate.Event):
    """The manifestation (printed name, role, meaning, legal statement; the time is the event's) and what
    was signed: record id, version and the hash of its canonical content (R27, R29)."""

    signature_id: str
    meaning: str
    legal_statement: str
    signer: dict[str, Any]
    record_type: str
    record_id: str
    record_version: Any
    content_hash: str
    hash_algorithm: str

    def apply(self, aggregate: Any) -> None:
        aggregate.signatures = [*aggregate.signatures, {
            "signature_id": self.signature_id, "meaning": self.meaning, "legal_statement": self.legal_statement,
            "signer": dict(self.signer), "signed_at": self.timestamp, "record_type": self.record_type,
            "record_id": self.record_id, "record_version": self.record_version, "content_hash": self.content_hash,
            "hash_algorithm": self.hash_algorithm, "event_version": self.originator_version,
            "valid": True, "invalidated_by": None, "invalidated_at": None,
        }]


class SignatureInvalidated(AuditedAggregate.Event):
    """A change to signed content broke a signature: it names the event that broke it (R30)."""

    signature_id: str
    broken_by: dict[str, Any]

    def apply(self, aggregate: Any) -> None:
        aggregate.signatures = [
            {**s, "valid": False, "invalidated_by": dict(self.broken_by), "invalidated_at": self.timestamp}
            if s["signature_id"] == self.signature_id else s
            for s in aggregate.signatures
        ]


class Signable:
    """Mixin of an audited aggregate whose content can be signed. The aggregate names its own event
    subclasses (``signature_events``) and says what its signed content is."""

    RECORD_TYPE: ClassVar[str]
    #: names of the aggregate's own (signed, invalidated) event classes
    signature_events: ClassVar[tuple[str, str]]
    #: class-level default, so that states kept before signatures existed still load
    signatures: list[dict[str, Any]] = []

    def signed_content(self) -> Any:
        """The clinical content a signature covers; every signable aggregate defines its own."""
        raise TypeError(f"{type(self).__name__} must define signed_content() to be signable")

    def signing_problems(self) -> list[str]:
        """Why the record cannot be signed yet (R25: no signing of incomplete forms)."""
        return []

    @property
    def valid_signatures(self) -> list[dict[str, Any]]:
        return [s for s in self.signatures if s["valid"]]

    def sign(self, signer: Actor, meaning: Any, stamp: dict, signature_id: str, *,
             content: Any = None, version: Any = None) -> dict[str, Any]:
        meaning = validate_meaning(meaning)
        problems = self.signing_problems()
        if problems:
            raise Conflict(f"this {self.RECORD_TYPE} cannot be signed yet: {'; '.join(problems)}")
        content = self.signed_content() if content is None else content
        version = self.version if version is None else version  # type: ignore[attr-defined]
        for s in self.valid_signatures:
            # a valid signature means the content has not changed since: signing it again adds nothing
            if s["signer"]["user_id"] == signer.user_id and s["meaning"] == meaning:
                raise Conflict(f"you have already signed this {self.RECORD_TYPE} with the meaning '{meaning}'")
        signer_view = {k: v for k, v in signer.as_dict().items()}
        digest = content_hash(self.RECORD_TYPE, str(self.id), version, content)  # type: ignore[attr-defined]
        manifestation = {"signature_id": signature_id, "signer": signer.full_name, "role": signer.role,
                         "meaning": meaning, "legal_statement": LEGAL_STATEMENTS[meaning], "content_hash": digest}
        self._record(getattr(self, self.signature_events[0]), stamp, [change("signatures", None, manifestation)],  # type: ignore[attr-defined]
                     signature_id=signature_id, meaning=meaning, legal_statement=LEGAL_STATEMENTS[meaning],
                     signer=signer_view, record_type=self.RECORD_TYPE, record_id=str(self.id),  # type: ignore[attr-defined]
                     record_version=version, content_hash=digest, hash_algorithm=HASH_ALGORITHM)
        return self.signatures[-1]

    def invalidate_signatures(self, broken_by: dict[str, Any], stamp: dict) -> int:
        """Invalidate every valid signature, naming the event that broke it. Returns how many."""
        valid = self.valid_signatures
        what = f"{broken_by.get('type')} (version {broken_by.get('version')})"
        if broken_by.get("record_type") and broken_by.get("record_type") != self.RECORD_TYPE:
            what = f"{broken_by['record_type']} {broken_by.get('record_label') or broken_by.get('record_id')}: {what}"
        system_stamp = {**stamp, "reason": f"signed content changed: unsigned since {what}", "reason_code": None}
        for s in valid:
            self._record(getattr(self, self.signature_events[1]), system_stamp,  # type: ignore[attr-defined]
                         [change(f"signatures.{s['signature_id']}.valid", True, False)],
                         signature_id=s["signature_id"], broken_by=broken_by)
        return len(valid)


def verify(signature: dict[str, Any], record_type: str, record_id: str, content_at_version: Any) -> bool:
    """Recompute the hash of the record's content at the signed version (R29). A signature copied to
    another record, or content that differs from what was signed, does not verify."""
    return content_hash(record_type, str(record_id), signature["record_version"], content_at_version) == signature[
        "content_hash"] and signature["record_id"] == str(record_id) and signature["record_type"] == record_type


# --------------------------------------------------------------------------- who may sign (R31)
class SignatureEnablement(AuditedAggregate):
    """Signing is enabled for a user once an administrator has recorded how their identity was verified
    and the user has acknowledged accountability for their signature (R31; 11.100(b), 11.10(j))."""

    TOPIC = "trialaudit.SignatureEnablement"

    @staticmethod
    def id_for(user_id: str):
        return trial_uuid("signature-enablement", str(user_id))

    class SignerIdentityVerified(AuditedCreated):
        TOPIC = "trialaudit.SignatureEnablement.SignerIdentityVerified"
        user_id: str
        method: str
        evidence: str

    class SignatureAccountabilityAcknowledged(AuditedAggregate.Event):
        TOPIC = "trialaudit.SignatureEnablement.SignatureAccountabilityAcknowledged"
        statement: str

        def apply(self, e: Any) -> None:
            e.acknowledged_at = self.timestamp
            e.statement = self.statement

    def __init__(self, user_id: str, method: str, evidence: str):
        self.user_id = user_id
        self.method = method
        self.evidence = evidence
        self.acknowledged_at = None
        self.statement: str | None = None

    @property
    def enabled(self) -> bool:
        return self.acknowledged_at is not None

    @classmethod
    def verify_identity(cls, *, user_id: str, method: Any, evidence: Any, stamp: dict) -> "SignatureEnablement":
        errors = []
        for name, value in (("method", method), ("evidence", evidence)):
            if not isinstance(value, str) or len(value.strip()) < 4 or len(value) > 500:
                errors.append(((name,), "say in words (4 to 500 characters) how the identity was verified"))
        if errors:
            raise InvalidInput(errors)
        method, evidence = " ".join(method.split()), " ".join(evidence.split())
        return cls._create(
            cls.SignerIdentityVerified, id=cls.id_for(user_id), user_id=str(user_id), method=method, evidence=evidence,
            audit=stamp, changes=[change("identity_verified", None, {"method": method, "evidence": evidence})],
        )

    def acknowledge(self, statement: Any, stamp: dict) -> None:
        if self.enabled:
            raise Conflict("you have already acknowledged accountability for your electronic signature")
        if not isinstance(statement, str) or " ".join(statement.split()) != ACCOUNTABILITY_STATEMENT:
            raise InvalidInput.one("statement", "repeat the accountability statement exactly as given by "
                                   "GET /me/signature-acknowledgement")
        self._record(self.SignatureAccountabilityAcknowledged, stamp,
                     [change("accountability_acknowledged", None, ACCOUNTABILITY_STATEMENT)],
                     statement=ACCOUNTABILITY_STATEMENT)
