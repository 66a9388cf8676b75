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

_bearer = HTTPBearer(auto_error=False, description="A token from POST /auth/token")


# Dependencies are `async def`: a sync dependency costs a hop to the thread pool on every request,
# which on the audited write path cost more CPU than the command itself (see bench/).


async def services(request: Request) -> Services:
    return request.app.state.services


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The authenticated user as they are now, through the one check of a token shared by every front
    end (application.sessions.SessionService.authenticate_token): an open session (idle timeout,
    absolute end, logout, revocation), and deactivation or a lockout biting at once."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("a bearer token is required; get one at POST /auth/token")
    svc: Services = request.app.state.services
    if svc.settings.is_postgres:  # network round trips: never on the event loop
        return await run_in_threadpool(svc.tokens.authenticate_token, credentials.credentials)
    # SQLite: the session row is a local indexed read and the actor is kept since the last account
    # change: cheaper than a hop to a thread
    return svc.tokens.authenticate_token(credentials.credentials)


async def bearer_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("a bearer token is required; get one at POST /auth/token")
    return credentials.credentials


ServicesDep = Annotated[Services, Depends(services)]
ActorDep = Annotated[Actor, Depends(current_actor)]
TokenDep = Annotated[str, Depends(bearer_token)]


def as_of_param(
    as_of: Annotated[
        Instant | None,
        Query(description="An ISO 8601 instant with its zone: the state as recorded at that instant"),
    ] = None,
) -> dt.datetime | None:
    return as_of  # naive and out-of-range instants are refused by api.schemas.Instant (422 naming as_of)


AsOfDep = Annotated[dt.datetime | None, Depends(as_of_param)]
