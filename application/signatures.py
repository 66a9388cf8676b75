"""Electronic signatures (R27-R31), mixed into TrialApplication.

Signing a visit, an adverse event or a whole casebook always re-enters the password (R28): a wrong
one is refused and recorded on the account as ``SignatureAuthenticationFailed``, counting towards
lockout like a failed login (R24). Signing is enabled for a user only after an administrator has
recorded how their identity was verified and the user has acknowledged accountability (R31).
Verification recomputes the content hash from the stored events (R29).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError

from application.views import iso, lock_view, signature_view
from domain import access
from domain.adverse_event import AdverseEvent
from domain.audit import Actor, make_stamp
from domain.casebook import Casebook
from domain.errors import AuthenticationFailed, Conflict, NotFound, PermissionDenied
from domain.participant import Participant
from domain.signature import (
    ACCOUNTABILITY_STATEMENT,
    HASH_ALGORITHM,
    LEGAL_STATEMENTS,
    SignatureEnablement,
    validate_meaning,
    verify,
)
from domain.user import User
from domain.visit import Visit

NOT_ENABLED = (
    "signing is not enabled for this account yet (R31): an administrator records how your identity was verified "
    "(POST /users/{id}/signature-enablement), then you acknowledge accountability for your electronic signature "
    "(POST /me/signature-acknowledgement)"
)


def fold(events: Iterable[Any]) -> Any:
    state = None
    for event in events:
        state = event.mutate(state)
    return state


def participant_content(p: Participant) -> dict[str, Any]:
    """The participant's own fields in a casebook signature."""
    return {"screening_number": p.screening_number, "site": p.site, "sex": p.sex, "birth_year": p.birth_year,
            "inclusion": p.inclusion, "exclusion": p.exclusion, "eligible": p.eligible,
            "consent_version": p.consent_version, "consent_signed_on": p.consent_signed_on, "arm": p.arm,
            "withdrawal_reason": p.withdrawal_reason}


class SignatureCommands:
    """Mixin of TrialApplication (relies on ``_get``, ``_save``, ``_save_quietly``, ``_visit_for``, ``_ae_for``,
    ``_participant_for``, ``_refuse_if_locked``, ``passwords``, ``max_failed_logins``, ``events``)."""

    # ------------------------------------------------------------------ enabling signatures (R31)
    def _enablement(self: Any, user_id: Any) -> SignatureEnablement | None:
        try:
            return self.repository.get(SignatureEnablement.id_for(str(user_id)))
        except AggregateNotFoundError:
            return None

    def verify_signer_identity(self: Any, actor: Actor, user_id: Any, *, method: Any, evidence: Any,
                               source: str = "api") -> dict[str, Any]:
        """An administrator records how a user's identity was verified (R31; 11.100(b))."""
        access.require(actor, "signature.enable")
        user = self._get(User, user_id, "user")
        if self._enablement(user.id) is not None:
            raise Conflict("this user's identity verification is already recorded")
        enablement = SignatureEnablement.verify_identity(user_id=str(user.id), method=method, evidence=evidence,
                                                         stamp=make_stamp(actor, source=source))
        return {**self._enablement_view(str(user.id), enablement), "notification_id": self._save(enablement)}

    def acknowledge_signature_accountability(self: Any, actor: Actor, *, statement: Any, source: str = "api") -> dict[str, Any]:
        """The user acknowledges that their electronic signature binds them (R31; 11.100(c), 11.10(j))."""
        enablement = self._enablement(actor.user_id)
        if enablement is None:
            raise Conflict("an administrator must first record how your identity was verified "
                           "(POST /users/{id}/signature-enablement)")
        enablement.acknowledge(statement, make_stamp(actor, source=source))
        return {**self._enablement_view(actor.user_id, enablement), "notification_id": self._save(enablement)}

    def signature_enablement(self: Any, actor: Actor, user_id: Any | None = None) -> dict[str, Any]:
        user_id = actor.user_id if user_id is None else str(user_id)
        if user_id != actor.user_id:
            access.require(actor, "user.read")
        self._get(User, user_id, "user")
        return self._enablement_view(user_id, self._enablement(user_id))

    @staticmethod
    def _enablement_view(user_id: str, e: SignatureEnablement | None) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "identity_verified": e is not None,
            "identity_verification": None if e is None else {"method": e.method, "evidence": e.evidence,
                                                               "recorded_at": iso(e.created_on)},
            "accountability_acknowledged": bool(e and e.enabled),
            "acknowledged_at": iso(e.acknowledged_at) if e and e.enabled else None,
            "statement": ACCOUNTABILITY_STATEMENT,
            "enabled": bool(e and e.enabled),
        }

    # ------------------------------------------------------------------ re-authentication (R28)
    def _reauthenticate(self: Any, actor: Actor, password: Any, record: str) -> None:
        user = self._get(User, actor.user_id, "user")
        if user.password_change_required:  # 21 CFR 11.300: a password an administrator set never signs
            raise PermissionDenied("signing is refused until you have chosen your own password "
                                   "(the current one was set by an administrator): POST /auth/password")
        if self.passwords.verify(self._password_hash(user), str(password or "")):
            return
        stamp = make_stamp(user.as_actor(), reason=f"wrong password re-entered to sign {record}")
        locked = user.signature_authentication_failed(stamp, self.max_failed_logins, record)
        self._save_quietly(user)
        if locked:
            raise AuthenticationFailed(f"incorrect password: nothing was signed, and the account is now locked after "
                                       f"{self.max_failed_logins} failed attempts")
        raise AuthenticationFailed("incorrect password: nothing was signed (the failed attempt is recorded)")

    def _prepare_signing(self: Any, actor: Actor, record: Any, meaning: Any, participant_id: str,
                         visit: Visit | None = None) -> str:
        validate_meaning(meaning)
        enablement = self._enablement(actor.user_id)
        if enablement is None or not enablement.enabled:
            raise Conflict(NOT_ENABLED)
        self._refuse_if_locked(participant_id, "signature", visit)
        problems = record.signing_problems()
        if problems:
            raise Conflict(f"this {record.RECORD_TYPE} cannot be signed yet (R25): {'; '.join(problems)}")
        return meaning

    def _signed(self: Any, record: Any, signature: dict[str, Any], notification_id: int) -> dict[str, Any]:
        return {**signature_view(signature), "version": record.version, "notification_id": notification_id}

    # ------------------------------------------------------------------ signing
    def sign_visit(self: Any, actor: Actor, visit_id: Any, *, meaning: Any, password: Any,
                   expected_version: int | None = None, source: str = "api") -> dict[str, Any]:
        """An investigator of the site signs the visit's data after re-entering the password (R27-R29)."""
        visit = self._visit_for(actor, visit_id, "signature.sign")
        self._check_version(visit, expected_version)
        self._prepare_signing(actor, visit, meaning, visit.participant_id, visit)
        self._reauthenticate(actor, password, f"visit {visit.code} ({visit.id})")
        signature = visit.sign(actor, meaning, make_stamp(actor, source=source), str(uuid4()))
        return self._signed(visit, signature, self._save(visit))

    def sign_adverse_event(self: Any, actor: Actor, ae_id: Any, *, meaning: Any, password: Any,
                           expected_version: int | None = None, source: str = "api") -> dict[str, Any]:
        ae = self._ae_for(actor, ae_id, "signature.sign")
        self._check_version(ae, expected_version)
        self._prepare_signing(actor, ae, meaning, ae.participant_id)
        self._reauthenticate(actor, password, f"adverse event {ae.id}")
        signature = ae.sign(actor, meaning, make_stamp(actor, source=source), str(uuid4()))
        return self._signed(ae, signature, self._save(ae))

    def _casebook_records(self: Any, participant: Participant) -> tuple[list[Visit], list[AdverseEvent]]:
        self.read_models.wait_for()
        store = self.read_models.store
        pid = str(participant.id)
        visit_ids = [r["visit_id"] for r in store.query("SELECT visit_id FROM visit_scores WHERE participant_id = ?", (pid,))]
        ae_ids = [r["id"] for r in store.query("SELECT id FROM ae_listing WHERE participant_id = ?", (pid,))]
        return ([self.repository.get(UUID(i)) for i in sorted(visit_ids)],
                [self.repository.get(UUID(i)) for i in sorted(ae_ids)])

    @staticmethod
    def casebook_content(participant: Participant, visits: list[Visit], aes: list[AdverseEvent]) -> tuple[dict, dict]:
        """(content, version manifest) of a casebook: every record of the participant (R29)."""
        content = {"participant": participant_content(participant),
                   "visits": {str(v.id): {"code": v.code, **v.signed_content()} for v in visits},
                   "adverse_events": {str(a.id): a.signed_content() for a in aes}}
        manifest = {"participant": participant.version, **{str(v.id): v.version for v in visits},
                    **{str(a.id): a.version for a in aes}}
        return content, manifest

    def sign_casebook(self: Any, actor: Actor, participant_id: Any, *, meaning: Any, password: Any,
                      source: str = "api") -> dict[str, Any]:
        """An investigator signs the participant's whole casebook (R27-R29)."""
        participant = self._participant_for(actor, participant_id, "signature.sign")
        stamp = make_stamp(actor, source=source)
        casebook = self._casebook(participant.id) or Casebook.open(str(participant.id), participant.site, stamp)
        self._prepare_signing(actor, casebook, meaning, str(participant.id))
        self._reauthenticate(actor, password, f"the casebook of participant {participant.id}")
        content, manifest = self.casebook_content(participant, *self._casebook_records(participant))
        signature = casebook.sign(actor, meaning, stamp, str(uuid4()), content=content, version=manifest)
        return self._signed(casebook, signature, self._save(casebook))

    # ------------------------------------------------------------------ reading and verifying
    def get_casebook(self: Any, actor: Actor, participant_id: Any) -> dict[str, Any]:
        """The casebook's lock and signatures, with the manifestation of each (R27)."""
        participant = self._participant_for(actor, participant_id, "participant.read")
        casebook = self._casebook(participant.id)
        study = self._study_lock()
        return {"participant_id": str(participant.id), "site": participant.site,
                "lock": lock_view(casebook.lock) if casebook else None,
                "study_lock": lock_view(study.lock) if study else None,
                "signatures": [signature_view(s) for s in casebook.signatures] if casebook else [],
                "version": casebook.version if casebook else 0}

    def _content_at(self: Any, record_type: str, record_id: str, version: Any) -> Any:
        if record_type == "visit":
            return fold(self.events.get(UUID(record_id), lte=version)).signed_content()
        if record_type == "adverse_event":
            return fold(self.events.get(UUID(record_id), lte=version)).signed_content()
        participant = fold(self.events.get(UUID(record_id), lte=version["participant"]))
        visits, aes = [], []
        for key, v in version.items():
            if key == "participant":
                continue
            record = fold(self.events.get(UUID(key), lte=v))
            (visits if isinstance(record, Visit) else aes).append(record)
        return self.casebook_content(participant, sorted(visits, key=lambda r: str(r.id)),
                                     sorted(aes, key=lambda r: str(r.id)))[0]

    def verify_signatures(self: Any, actor: Actor, record_type: str, record_id: Any) -> list[dict[str, Any]]:
        """Recompute each signature's hash from the stored events at the signed version (R29), and say
        whether the current content still matches it (R30)."""
        if record_type == "visit":
            record = self._visit_for(actor, record_id, "visit.read")
            holder_id, current = str(record.id), record.signed_content()
        elif record_type == "adverse_event":
            record = self._ae_for(actor, record_id, "ae.read")
            holder_id, current = str(record.id), record.signed_content()
        elif record_type == "casebook":
            participant = self._participant_for(actor, record_id, "participant.read")
            record = self._casebook(participant.id)
            if record is None:
                return []
            holder_id = str(participant.id)
            current = None
        else:
            raise NotFound(f"no signed record type {record_type!r}")
        result = []
        for s in record.signatures:
            content_id = holder_id if record_type != "casebook" else str(record.id)
            stored = self._content_at(record_type, holder_id, s["record_version"])
            if record_type == "casebook":
                now_content, manifest = self.casebook_content(participant, *self._casebook_records(participant))
                unchanged = verify(s, record_type, content_id, now_content)
            else:
                unchanged = verify(s, record_type, content_id, current)
            result.append({**signature_view(s), "hash_verified": verify(s, record_type, content_id, stored),
                           "content_unchanged": unchanged, "hash_algorithm": HASH_ALGORITHM})
        return result

    @staticmethod
    def signature_meanings() -> dict[str, str]:
        return dict(LEGAL_STATEMENTS)
