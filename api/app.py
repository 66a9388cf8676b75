"""The FastAPI application."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from api import errors
from api.container import Services, build
from api.fastpath import FastCommand, FastCommands
from api import web
from api.guards import RequestGuard, SecurityHeaders
from api.routers import (
    adverse_events,
    audit,
    auth,
    casebook,
    exports,
    integrity,
    locks,
    outcomes,
    participants,
    queries,
    safety,
    signatures,
    study,
    users,
    visits,
)

ROUTERS = [
    auth.router,
    participants.router,
    users.router,
    visits.router,
    outcomes.router,
    adverse_events.router,
    safety.router,
    integrity.router,
    audit.router,
    casebook.router,
    exports.router,
    signatures.router,
    queries.router,
    locks.router,
    study.router,
]


def create_app(services: Services | None = None) -> FastAPI:
    """Build the API. Without ``services``, they are built from the environment at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = services is None
        app.state.services = services or build()
        # Fewer threads than anyio's default 40: past a handful, threads only contend for the GIL
        # (the SQLite group commit still gathers every waiting command into one COMMIT).
        anyio.to_thread.current_default_thread_limiter().total_tokens = app.state.services.settings.threads
        # The fast path's commands run in a plain executor of the same size (api/fastpath.py).
        app.state.command_threads = ThreadPoolExecutor(app.state.services.settings.threads, thread_name_prefix="command")
        try:
            yield
        finally:
            app.state.command_threads.shutdown(wait=True)
            app.state.command_threads = None
            if owned:
                app.state.services.close()

    app = FastAPI(
        title="trialaudit",
        version="0.1.0",
        summary="Event-sourced, regulatory-grade audit trail for NCT05214014",
        lifespan=lifespan,
        docs_url=None,  # /docs is served offline by api.web (the default page loads from a CDN)
        redoc_url=None,
    )
    if services is not None:
        app.state.services = services
    errors.install(app)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    for router in ROUTERS:
        app.include_router(router)
    web.install(app)  # the inspector's workspace under /ui/, and /docs
    # The audited commands sent most often take the lean way in (api/fastpath.py); their routes
    # above remain the contract and serve every request that is not the plain case.
    app.add_middleware(FastCommands, commands=FAST_COMMANDS)
    # Outside the fast path (added later = further out): the body limit and the text rule apply to every
    # request, then every response gets the security headers (api/guards.py).
    app.add_middleware(RequestGuard)
    app.add_middleware(SecurityHeaders)
    return app


FAST_COMMANDS = [
    FastCommand.of(participants.router, participants.correct),
    FastCommand.of(adverse_events.router, adverse_events.correct),
]
