"""RFC 9457 problem details for every error, with the field path of every bad input."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PasswordChangeRequired,
    PermissionDenied,
    StaleVersion,
    TooManyAttempts,
)
from infrastructure.export_jobs import TooManyJobs
from infrastructure.store import STORAGE_ERRORS, is_disk_full

PROBLEM = "application/problem+json"

STATUS = {
    InvalidInput: 422,
    StaleVersion: 409,
    Conflict: 409,
    NotFound: 404,
    PermissionDenied: 403,
    AuthenticationFailed: 401,
    TooManyAttempts: 429,
}
SLUG = {422: "invalid-input", 409: "conflict", 404: "not-found", 403: "forbidden", 401: "unauthenticated",
        400: "bad-request", 413: "payload-too-large", 429: "too-many-requests", 500: "internal-error",
        503: "storage-full"}


def problem(status: int, title: str, detail: str, instance: str, *, slug: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": f"/problems/{slug or SLUG.get(status, 'error')}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})} or None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _path(loc: Any) -> str:
    return ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [
            {"path": _path(e["loc"]), "loc": list(e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
        return problem(422, "Invalid input", detail, request.url.path, errors=errors)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidInput):
            prefix = "query" if request.method == "GET" else "body"
            extra["errors"] = [
                {"path": _path((prefix, *path)), "loc": [prefix, *path], "message": msg, "type": "value_error"}
                for path, msg in exc.errors
            ]
            detail = "; ".join(f"{e['path']}: {e['message']}" for e in extra["errors"])
        else:
            detail = exc.detail
        if isinstance(exc, StaleVersion):
            extra["current_version"] = exc.actual
        if isinstance(exc, TooManyAttempts):
            extra["headers"] = {"Retry-After": str(exc.retry_after)}
            extra["retry_after"] = exc.retry_after
        if isinstance(exc, PasswordChangeRequired):
            extra["slug"] = "password-change-required"
        return problem(status, exc.title, detail, request.url.path, **extra)

    async def _storage(request: Request, exc: Exception):
        """A full disk or quota is a 503 saying so, not a 500 (F.21): nothing was written, and reads go
        on working. A storage error that is also a domain error (the sealer's refusal to extend a log
        that ends in uncovered leaves) is answered as that. Any other goes on to the 500 below."""
        if isinstance(exc, DomainError):
            return await _domain(request, exc)
        if is_disk_full(exc):
            return problem(503, "Storage full",
                           "the store cannot take more data (disk or quota full); nothing was changed. "
                           "Reading still works; try the change again once space is freed",
                           request.url.path, headers={"Retry-After": "60"})
        raise exc

    @app.exception_handler(TooManyJobs)
    async def _too_many_jobs(request: Request, exc: TooManyJobs):
        return problem(429, "Too many export jobs", str(exc), request.url.path, headers={"Retry-After": "10"},
                       running=exc.running, limit=exc.limit)

    for storage_error in STORAGE_ERRORS:
        app.add_exception_handler(storage_error, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        """Anything unforeseen, answered by the outermost error middleware as problem+json with the
        security headers (it sits outside the middleware that adds them); the client learns nothing
        more than that (the traceback goes to the server's log)."""
        from api.guards import DOCS_PATHS, security_headers

        docs = request.url.path.startswith(DOCS_PATHS)
        if is_disk_full(exc):
            return problem(503, "Storage full", "the store cannot take more data (disk or quota full)",
                           request.url.path, headers={**security_headers(docs), "Retry-After": "60"})
        return problem(500, "Internal server error", "the server failed to answer this request; it is logged",
                       request.url.path, headers=security_headers(docs))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail), str(exc.detail), request.url.path)
