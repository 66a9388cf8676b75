from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import ActorDep, AsOfDep, ServicesDep
from api.responses import json_response
from api.schemas import (
    PROBLEMS,
    Consent,
    Correction,
    Eligibility,
    HistoryEntry,
    ParticipantOut,
    ParticipantResult,
    ParticipantSummary,
    Randomisation,
    ScreenParticipant,
    Withdrawal,
)

router = APIRouter(prefix="/participants", tags=["participants"], responses={k: PROBLEMS[k] for k in (401, 403, 404, 422)})


@router.post("", status_code=201, response_model=ParticipantResult, responses={409: PROBLEMS[409]})
def screen(body: ScreenParticipant, actor: ActorDep, svc: ServicesDep):
    """Screen a participant: screening number (unique in the trial), site, sex, birth year. No names."""
    return json_response(svc.app.screen_participant(actor, **body.model_dump()), 201)


@router.get("", response_model=list[ParticipantSummary])
def list_participants(
    actor: ActorDep,
    svc: ServicesDep,
    site: Annotated[str | None, Query(max_length=40, description="Only this site (site-bound users see only their own)")] = None,
    status: Annotated[
        Literal["screened", "eligible", "screen_failed", "randomised", "withdrawn"] | None, Query()
    ] = None,
):
    """The participants you may see, from the participant-list read model."""
    return svc.app.list_participants(actor, site=site, status=status)


@router.get("/{participant_id}", response_model=ParticipantOut)
def get(participant_id: str, actor: ActorDep, svc: ServicesDep, as_of: AsOfDep):
    """The current state, or with `as_of` the state as recorded at that instant."""
    return json_response(svc.app.get_participant(actor, participant_id, as_of=as_of))


@router.post("/{participant_id}/eligibility", response_model=ParticipantResult, responses={409: PROBLEMS[409]})
def eligibility(participant_id: str, body: Eligibility, actor: ActorDep, svc: ServicesDep):
    """Answer all ten registry criteria; eligible iff every inclusion holds and no exclusion does."""
    return json_response(svc.app.assess_eligibility(
        actor, participant_id, inclusion=body.inclusion, exclusion=body.exclusion, reason=body.reason,
        expected_version=body.expected_version,
    ))


@router.post("/{participant_id}/consent", response_model=ParticipantResult, responses={409: PROBLEMS[409]})
def consent(participant_id: str, body: Consent, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.record_consent(
        actor, participant_id, consent_version=body.consent_version, signed_on=body.signed_on.isoformat(),
        expected_version=body.expected_version,
    ))


@router.post("/{participant_id}/randomisation", response_model=ParticipantResult, responses={409: PROBLEMS[409]})
def randomise(participant_id: str, actor: ActorDep, svc: ServicesDep, body: Randomisation | None = None):
    """Allocate the next slot of the site's concealed permuted-block sequence (409 unless eligible and consented)."""
    return json_response(svc.app.randomise(actor, participant_id, expected_version=body.expected_version if body else None))


@router.post("/{participant_id}/withdrawal", response_model=ParticipantResult, responses={409: PROBLEMS[409]})
def withdraw(participant_id: str, body: Withdrawal, actor: ActorDep, svc: ServicesDep):
    return json_response(svc.app.withdraw(actor, participant_id, reason=body.reason, expected_version=body.expected_version))


@router.post("/{participant_id}/corrections", response_model=ParticipantResult, responses={409: PROBLEMS[409]})
def correct(participant_id: str, body: Correction, actor: ActorDep, svc: ServicesDep):
    """Correct one recorded field; old and new values and the (mandatory) reason are kept."""
    return json_response(svc.app.correct_participant(
        actor, participant_id, field=body.field, new_value=body.new_value, reason=body.reason,
        reason_code=body.reason_code, query_id=body.query_id, expected_version=body.expected_version,
    ))


@router.get("/{participant_id}/history", response_model=list[HistoryEntry])
def history(participant_id: str, actor: ActorDep, svc: ServicesDep):
    """Every event of the participant, oldest first: who, when, old -> new, and why."""
    return json_response(svc.app.participant_history(actor, participant_id))
