"""The Participant aggregate: screening, eligibility, consent, randomisation, withdrawal, corrections.

No names or other direct identifiers are kept: a screening number unique in the trial, the site,
sex and birth year.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from domain.audit import AuditedAggregate, AuditedCreated, change, validate_reason
from domain.errors import Conflict, InvalidInput
from domain.trial import (
    ARMS,
    EXCLUSION_CODES,
    INCLUSION_CODES,
    SEXES,
    assess_eligibility,
    trial_uuid,
)

SCREENING_NUMBER_MAX = 40


def validate_screening_number(value: Any, field: str = "screening_number") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput.one(field, "a screening number is required")
    value = value.strip()
    if len(value) > SCREENING_NUMBER_MAX or not all(c.isalnum() or c in "-_/." for c in value):
        raise InvalidInput.one(
            field, "use up to 40 letters, digits and - _ / . (no names or other identifiers)"
        )
    return value


def validate_sex(value: Any, field: str = "sex") -> str:
    if value not in SEXES:
        raise InvalidInput.one(field, f"must be one of {', '.join(SEXES)} (CDISC SEX)")
    return value


def validate_birth_year(value: Any, this_year: int, field: str = "birth_year") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput.one(field, "must be a whole year, e.g. 1970")
    if not 1900 <= value <= this_year:
        raise InvalidInput.one(field, f"must be between 1900 and {this_year}")
    return value


def validate_date(value: Any, field: str, latest: dt.date) -> str:
    """An ISO 8601 calendar date (YYYY-MM-DD), not in the future. Returned as text."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.date.fromisoformat(value)
        except ValueError:
            raise InvalidInput.one(field, "must be a date as YYYY-MM-DD") from None
    else:
        raise InvalidInput.one(field, "must be a date as YYYY-MM-DD")
    if parsed > latest:
        raise InvalidInput.one(field, "must not be in the future")
    return parsed.isoformat()


def validate_consent_version(value: Any, field: str = "consent_version") -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 100:
        raise InvalidInput.one(field, "the version of the consent form signed is required (≤ 100 characters)")
    return value.strip()


class ScreeningNumberClaim(AuditedAggregate):
    """Makes a screening number unique in the trial: its id is derived from the number."""

    TOPIC = "trialaudit.ScreeningNumberClaim"

    @staticmethod
    def id_for(screening_number: str):
        return trial_uuid("screening-number", screening_number.upper())

    class ScreeningNumberClaimed(AuditedCreated):
        TOPIC = "trialaudit.ScreeningNumberClaim.ScreeningNumberClaimed"
        screening_number: str
        participant_id: str

    class ScreeningNumberReleased(AuditedAggregate.Event):
        TOPIC = "trialaudit.ScreeningNumberClaim.ScreeningNumberReleased"

        def apply(self, aggregate: Any) -> None:
            aggregate.participant_id = None

    class ScreeningNumberReclaimed(AuditedAggregate.Event):
        TOPIC = "trialaudit.ScreeningNumberClaim.ScreeningNumberReclaimed"
        participant_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.participant_id = self.participant_id

    def __init__(self, screening_number: str, participant_id: str):
        self.screening_number = screening_number
        self.participant_id: str | None = participant_id

    @classmethod
    def claim(cls, screening_number: str, participant_id: str, stamp: dict) -> "ScreeningNumberClaim":
        return cls._create(
            cls.ScreeningNumberClaimed,
            id=cls.id_for(screening_number),
            screening_number=screening_number,
            participant_id=participant_id,
            audit=stamp,
            changes=[change("participant_id", None, participant_id)],
        )

    def release(self, stamp: dict) -> None:
        self._record(
            self.ScreeningNumberReleased, stamp, [change("participant_id", self.participant_id, None)]
        )

    def reclaim(self, participant_id: str, stamp: dict) -> None:
        if self.participant_id is not None:
            raise Conflict(f"screening number {self.screening_number} is already in use in this trial")
        self._record(
            self.ScreeningNumberReclaimed,
            stamp,
            [change("participant_id", None, participant_id)],
            participant_id=participant_id,
        )


class Participant(AuditedAggregate):
    TOPIC = "trialaudit.Participant"

    class ParticipantScreened(AuditedCreated):
        TOPIC = "trialaudit.Participant.ParticipantScreened"
        screening_number: str
        site: str
        sex: str
        birth_year: int

    class EligibilityAssessed(AuditedAggregate.Event):
        TOPIC = "trialaudit.Participant.EligibilityAssessed"
        inclusion: dict[str, bool]
        exclusion: dict[str, bool]
        eligible: bool

        def apply(self, p: Any) -> None:
            p.inclusion = dict(self.inclusion)
            p.exclusion = dict(self.exclusion)
            p.eligible = self.eligible

    class ConsentRecorded(AuditedAggregate.Event):
        TOPIC = "trialaudit.Participant.ConsentRecorded"
        consent_version: str
        signed_on: str

        def apply(self, p: Any) -> None:
            p.consent_version = self.consent_version
            p.consent_signed_on = self.signed_on

    class ParticipantRandomised(AuditedAggregate.Event):
        TOPIC = "trialaudit.Participant.ParticipantRandomised"
        arm: str
        allocation_slot: int
        stratum: str
        rule: str

        def apply(self, p: Any) -> None:
            p.arm = self.arm
            p.allocation_slot = self.allocation_slot
            p.randomised_on = self.timestamp

    class ParticipantWithdrawn(AuditedAggregate.Event):
        TOPIC = "trialaudit.Participant.ParticipantWithdrawn"
        reason_text: str

        def apply(self, p: Any) -> None:
            p.withdrawal_reason = self.reason_text

    class FieldCorrected(AuditedAggregate.Event):
        """One recorded field corrected: old and new values and the reason are kept (R5, R6)."""

        TOPIC = "trialaudit.Participant.FieldCorrected"
        field: str
        old_value: Any
        new_value: Any

        def apply(self, p: Any) -> None:
            p._set_field(self.field, self.new_value)

    def __init__(self, screening_number: str, site: str, sex: str, birth_year: int):
        self.screening_number = screening_number
        self.site = site
        self.sex = sex
        self.birth_year = birth_year
        self.inclusion: dict[str, bool] | None = None
        self.exclusion: dict[str, bool] | None = None
        self.eligible: bool | None = None
        self.consent_version: str | None = None
        self.consent_signed_on: str | None = None
        self.arm: str | None = None
        self.allocation_slot: int | None = None
        self.randomised_on: dt.datetime | None = None
        self.withdrawal_reason: str | None = None

    #: Attributes that hold a mutable value: copied by ``__deepcopy__``, every other one is immutable.
    _MUTABLE = ("inclusion", "exclusion")

    def __deepcopy__(self, memo: dict[int, Any]) -> "Participant":
        """The copy the repository makes of the cached participant for every command, without the
        generic deepcopy's walk: every attribute is immutable (str, int, bool, None, datetime, UUID)
        except the answer dicts (of bools, copied) and the pending events (a new list of frozen events),
        so a command that fails never leaves its changes in the cache (tests/unit/test_domain_participant.py)."""
        clone = object.__new__(type(self))
        state = self.__dict__.copy()
        for name in self._MUTABLE:
            value = state.get(name)
            if value is not None:
                state[name] = dict(value)
        state["_pending_events"] = list(state["_pending_events"])
        clone.__dict__.update(state)
        memo[id(self)] = clone
        return clone

    # ----------------------------------------------------------------- derived state
    @property
    def status(self) -> str:
        return participant_status(withdrawn=self.withdrawal_reason is not None, arm=self.arm, eligible=self.eligible)

    @property
    def consented(self) -> bool:
        return self.consent_signed_on is not None

    # ----------------------------------------------------------------- commands
    @classmethod
    def screen(
        cls, *, participant_id, screening_number: Any, site: str, sex: Any, birth_year: Any, stamp: dict
    ) -> "Participant":
        this_year = cls.ParticipantScreened.create_timestamp().year
        errors = []
        for fn in (
            lambda: validate_screening_number(screening_number),
            lambda: validate_sex(sex),
            lambda: validate_birth_year(birth_year, this_year),
        ):
            try:
                fn()
            except InvalidInput as e:
                errors.extend(e.errors)
        if errors:
            raise InvalidInput(errors)
        number = validate_screening_number(screening_number)
        return cls._create(
            cls.ParticipantScreened,
            id=participant_id,
            screening_number=number,
            site=site,
            sex=sex,
            birth_year=birth_year,
            audit=stamp,
            changes=[
                change("screening_number", None, number),
                change("site", None, site),
                change("sex", None, sex),
                change("birth_year", None, birth_year),
            ],
        )

    def _require_active(self, what: str) -> None:
        if self.withdrawal_reason is not None:
            raise Conflict(f"the participant has withdrawn; {what} is no longer possible")

    def assess_eligibility(self, inclusion: Any, exclusion: Any, stamp: dict) -> None:
        self._require_active("an eligibility assessment")
        if self.arm is not None:
            raise Conflict(
                "the participant is already randomised; correct individual criteria with a reason instead"
            )
        eligible, errors = assess_eligibility(inclusion, exclusion)
        if errors:
            raise InvalidInput(errors)
        if self.eligible is not None and not isinstance(stamp.get("reason"), str):
            raise InvalidInput.one("reason", "eligibility was already assessed; a reassessment needs a reason")
        changes = [
            change(f"eligibility.inclusion.{c}", (self.inclusion or {}).get(c), inclusion[c])
            for c in INCLUSION_CODES
            if (self.inclusion or {}).get(c) != inclusion[c]
        ] + [
            change(f"eligibility.exclusion.{c}", (self.exclusion or {}).get(c), exclusion[c])
            for c in EXCLUSION_CODES
            if (self.exclusion or {}).get(c) != exclusion[c]
        ]
        if self.eligible != eligible:
            changes.append(change("eligible", self.eligible, eligible))
        self._record(
            self.EligibilityAssessed,
            stamp,
            changes,
            inclusion={c: inclusion[c] for c in INCLUSION_CODES},
            exclusion={c: exclusion[c] for c in EXCLUSION_CODES},
            eligible=eligible,
        )

    def record_consent(self, consent_version: Any, signed_on: Any, stamp: dict, today: dt.date) -> None:
        self._require_active("recording consent")
        if self.consented:
            raise Conflict("consent is already recorded; correct consent_version or consent_signed_on with a reason")
        errors = []
        try:
            consent_version = validate_consent_version(consent_version)
        except InvalidInput as e:
            errors.extend(e.errors)
        try:
            signed_on = validate_date(signed_on, "signed_on", today)
        except InvalidInput as e:
            errors.extend(e.errors)
        if errors:
            raise InvalidInput(errors)
        self._record(
            self.ConsentRecorded,
            stamp,
            [change("consent_version", None, consent_version), change("consent_signed_on", None, signed_on)],
            consent_version=consent_version,
            signed_on=signed_on,
        )

    def check_can_randomise(self) -> None:
        self._require_active("randomisation")
        if self.arm is not None:
            raise Conflict("the participant is already randomised")
        problems = []
        if self.eligible is None:
            problems.append("eligibility has not been assessed")
        elif not self.eligible:
            problems.append("the participant is not eligible")
        if not self.consented:
            problems.append("consent has not been recorded")
        if problems:
            raise Conflict("cannot randomise: " + " and ".join(problems))

    def randomise(self, arm: str, slot: int, stratum: str, rule: str, stamp: dict) -> None:
        self.check_can_randomise()
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}")
        self._record(
            self.ParticipantRandomised,
            stamp,
            [change("arm", None, arm), change("allocation_slot", None, slot)],
            arm=arm,
            allocation_slot=slot,
            stratum=stratum,
            rule=rule,
        )

    def withdraw(self, reason: Any, stamp: dict) -> None:
        if self.withdrawal_reason is not None:
            raise Conflict("the participant has already withdrawn")
        text = validate_reason(reason, "reason")
        self._record(
            self.ParticipantWithdrawn,
            stamp,
            [change("status", self.status, "withdrawn"), change("withdrawal_reason", None, text)],
            reason_text=text,
        )

    # ----------------------------------------------------------------- corrections
    CORRECTABLE = (
        "screening_number",
        "sex",
        "birth_year",
        "consent_version",
        "consent_signed_on",
        "withdrawal_reason",
        *(f"eligibility.inclusion.{c}" for c in INCLUSION_CODES),
        *(f"eligibility.exclusion.{c}" for c in EXCLUSION_CODES),
    )
    NOT_CORRECTABLE = {
        "id": "the id is assigned by the system",
        "site": "a participant's site is not corrected; transfer between sites is a separate procedure",
        "status": "the status follows from the recorded events",
        "arm": "an allocation is never changed",
        "allocation_slot": "an allocation is never changed",
        "eligible": "eligibility follows from the criteria; correct a criterion instead",
        "version": "the version is assigned by the system",
    }

    def current_value(self, field: str) -> Any:
        if field.startswith("eligibility."):
            _, group, code = field.split(".", 2)
            answers = self.inclusion if group == "inclusion" else self.exclusion
            return None if answers is None else answers.get(code)
        return getattr(self, field)

    def _set_field(self, field: str, value: Any) -> None:
        if field.startswith("eligibility."):
            _, group, code = field.split(".", 2)
            answers = dict(self.inclusion if group == "inclusion" else self.exclusion)
            answers[code] = value
            setattr(self, group, answers)
            self.eligible = all(self.inclusion[c] for c in INCLUSION_CODES) and not any(
                self.exclusion[c] for c in EXCLUSION_CODES
            )
        else:
            setattr(self, field, value)

    def validate_correction(self, field: Any, new_value: Any, today: dt.date) -> Any:
        if not isinstance(field, str) or field not in self.CORRECTABLE:
            why = self.NOT_CORRECTABLE.get(field) if isinstance(field, str) else None
            raise InvalidInput.one(
                "field", why or f"unknown field; correctable fields: {', '.join(self.CORRECTABLE)}"
            )
        if self.current_value(field) is None:
            raise Conflict(f"{field} has not been recorded yet; record it before correcting it")
        if field == "screening_number":
            new_value = validate_screening_number(new_value, "new_value")
        elif field == "sex":
            new_value = validate_sex(new_value, "new_value")
        elif field == "birth_year":
            new_value = validate_birth_year(new_value, today.year, "new_value")
        elif field == "consent_version":
            new_value = validate_consent_version(new_value, "new_value")
        elif field == "consent_signed_on":
            new_value = validate_date(new_value, "new_value", today)
        elif field == "withdrawal_reason":
            new_value = validate_reason(new_value, "new_value")
        elif not isinstance(new_value, bool):
            raise InvalidInput.one("new_value", "an eligibility criterion is true or false")
        if new_value == self.current_value(field):
            raise InvalidInput.one("new_value", f"{field} already has this value; nothing to correct")
        return new_value

    def correct(self, field: str, new_value: Any, stamp: dict, today: dt.date) -> list[dict]:
        """Correct one field; the stamp must carry a reason (R5). Returns the changes made."""
        if not stamp.get("reason"):
            raise InvalidInput.one("reason", "a reason for the change is required and must not be blank")
        new_value = self.validate_correction(field, new_value, today)
        old_value = self.current_value(field)
        changes = [change(field, old_value, new_value)]
        if field.startswith("eligibility."):
            before = self.eligible
            probe_inc, probe_exc = dict(self.inclusion), dict(self.exclusion)
            (probe_inc if ".inclusion." in field else probe_exc)[field.rsplit(".", 1)[1]] = new_value
            after, _ = assess_eligibility(probe_inc, probe_exc)
            if after != before:
                changes.append(change("eligible", before, after))
        self._record(self.FieldCorrected, stamp, changes, field=field, old_value=old_value, new_value=new_value)
        return changes


def participant_status(*, withdrawn: bool, arm: str | None, eligible: bool | None) -> str:
    """The one status rule of a participant, used by the aggregate and by its read model."""
    if withdrawn:
        return "withdrawn"
    if arm:
        return "randomised"
    if eligible is None:
        return "screened"
    return "eligible" if eligible else "screen_failed"
