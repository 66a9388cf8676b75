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
        429: "too-many-attempts"}


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
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail), str(exc.detail), request.url.path)
