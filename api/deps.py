"""Request dependencies: the services and the authenticated actor."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.container import Services
from api.schemas import Instant
from domain.audit import Actor
from domain.errors import AuthenticationFailed
from infrastructure.tokens import TokenError

_bearer = HTTPBearer(auto_error=False, description="A token from POST /auth/token")


# Dependencies are `async def`: a sync dependency costs a hop to the thread pool on every request,
# which on the audited write path cost more CPU than the command itself (see bench/).


async def services(request: Request) -> Services:
    return request.app.state.services


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The authenticated user as they are now: deactivation, a new role or site bite at once (the
    account is re-read whenever any account changed, see TrialApplication.actor_for)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("a bearer token is required; get one at POST /auth/token")
    svc: Services = request.app.state.services
    try:
        user_id = svc.tokens.verify(credentials.credentials)
    except TokenError as e:
        raise AuthenticationFailed(str(e)) from None
    if svc.settings.is_postgres:  # a network round trip: never on the event loop
        return await run_in_threadpool(svc.app.actor_for, user_id)
    # SQLite: the actor kept since the last account change, or a local indexed read: cheaper than a hop to a thread
    return svc.app.actor_for(user_id)


ServicesDep = Annotated[Services, Depends(services)]
ActorDep = Annotated[Actor, Depends(current_actor)]


def as_of_param(
    as_of: Annotated[
        Instant | None,
        Query(description="An ISO 8601 instant with its zone: the state as recorded at that instant"),
    ] = None,
) -> dt.datetime | None:
    return as_of  # naive and out-of-range instants are refused by api.schemas.Instant (422 naming as_of)


AsOfDep = Annotated[dt.datetime | None, Depends(as_of_param)]
