"""The primary-outcome table (a): ACR/EULAR 2013 and mRSS change per arm at month 12."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ActorDep, ServicesDep
from api.schemas import PROBLEMS, PrimaryOutcome

router = APIRouter(prefix="/outcomes", tags=["outcomes"], responses={k: PROBLEMS[k] for k in (401, 403, 422)})


@router.get("/primary", response_model=PrimaryOutcome)
def primary(
    actor: ActorDep,
    svc: ServicesDep,
    site: Annotated[str | None, Query(max_length=40, description="Only this site (site-bound users see only their own)")] = None,
):
    """Per arm at M12: n, mean, SD, median and IQR of the ACR/EULAR total and of the mRSS change from
    baseline; how many are classified, indeterminate or not applicable."""
    return svc.app.primary_outcome(actor, site=site)
