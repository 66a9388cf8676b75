"""A lean way in for the busiest audited commands, beside (not instead of) their FastAPI routes.

FastAPI's general machinery (routing through included routers, the dependency solver, the
request and exit stacks) cost more CPU per audited correction than the command itself. For the
commands listed in ``create_app`` this ASGI middleware does only what those routes need, with
the route's own pieces: it matches the route's path template, reads the JSON body, resolves the
bearer token with ``api.deps.current_actor``, validates the body with the route's own pydantic
model, and calls the route's own endpoint function in a thread pool of ``settings.threads``
threads of its own (``app.state.command_threads``, made by the app's lifespan). Errors raised by the
endpoint or by the authentication go to the app's own exception handlers, so they answer exactly
as through the route.

Anything that is not the plain case goes through FastAPI as before, with the body it sent: a
body that is not a JSON object, a content type other than JSON, a body that fails validation
(FastAPI answers the 422 with every field path), a request without a bearer token, a repeated
Content-Type or Authorization header, or any dependency override. The route stays the contract: OpenAPI, schemathesis and every other client
see it unchanged, and what the middleware does for a request is what the route would have done.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.params import Depends as DependsParam
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import compile_path, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import _bearer, current_actor, services


@dataclass(frozen=True)
class FastCommand:
    """One route served by the middleware: its method, path template and endpoint function. The
    endpoint must return a ``Response`` (``api.responses.json_response``): the middleware does not
    shape a return value by the route's ``response_model``."""

    method: str
    path: str
    endpoint: Callable[..., Response]

    @classmethod
    def of(cls, router: Any, endpoint: Callable[..., Response]) -> FastCommand:
        """The route of ``router`` whose endpoint is ``endpoint``, with its declared method and path."""
        routes = [r for r in router.routes if getattr(r, "endpoint", None) is endpoint]
        if len(routes) != 1 or len(routes[0].methods) != 1:
            raise TypeError(f"{endpoint.__qualname__}: expected exactly one route with one method")
        (method,) = routes[0].methods
        return cls(method, routes[0].path, endpoint)


@dataclass(frozen=True)
class _Plan:
    method: str
    regex: re.Pattern[str]
    endpoint: Callable[..., Response]
    body_name: str
    body_model: type[BaseModel]
    actor_name: str
    services_name: str
    path_names: tuple[str, ...]


def plan(command: FastCommand) -> _Plan:
    """Check that the endpoint has exactly the shape the middleware serves; fail at start-up if not."""
    regex, _, convertors = compile_path(command.path)
    path_names = tuple(convertors)
    hints = typing.get_type_hints(command.endpoint, include_extras=True)
    body_name = actor_name = services_name = None
    body_model: type[BaseModel] | None = None
    for name in inspect.signature(command.endpoint).parameters:
        hint = hints.get(name)
        depends = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, DependsParam)]
        if name in path_names:
            if hint is not str or type(convertors[name]).__name__ != "StringConvertor":
                raise TypeError(f"{command.path}: path parameter {name} must be a plain str")
        elif depends and depends[0].dependency is current_actor:
            actor_name = name
        elif depends and depends[0].dependency is services:
            services_name = name
        elif isinstance(hint, type) and issubclass(hint, BaseModel) and body_name is None:
            body_name, body_model = name, hint
        else:
            raise TypeError(f"{command.path}: the fast path cannot resolve parameter {name!r} ({hint!r})")
    if body_name is None or actor_name is None or services_name is None:
        raise TypeError(f"{command.path}: the fast path needs a JSON body model, the actor and the services")
    return _Plan(command.method, regex, command.endpoint, body_name, body_model, actor_name, services_name, path_names)


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


class FastCommands:
    """ASGI middleware (inside the app's error middleware, outside its routing)."""

    def __init__(self, app: ASGIApp, commands: Sequence[FastCommand]):
        self.app = app
        self.plans = [plan(c) for c in commands]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            for p in self.plans:
                if p.method == method:
                    match = p.regex.match(get_route_path(scope))
                    if match:
                        await self._serve(p, match.groupdict(), scope, receive, send)
                        return
        await self.app(scope, receive, send)

    async def _serve(self, p: _Plan, path_params: dict[str, str], scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app")
        content_type = authorization = None
        repeated = False
        for key, value in scope["headers"]:
            if key == b"content-type":
                repeated = repeated or content_type is not None
                content_type = value
            elif key == b"authorization":
                repeated = repeated or authorization is not None
                authorization = value
        if (app is None or getattr(app, "dependency_overrides", None) or not _is_json(content_type)
                or authorization is None or repeated):
            await self.app(scope, receive, send)
            return
        body, disconnected = await _read_body(receive)
        replay = _replay(body, disconnected, receive)
        if disconnected:
            await self.app(scope, replay, send)
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            await self.app(scope, replay, send)  # FastAPI says what is wrong with it
            return
        request = Request(scope, replay, send)
        try:
            actor = await current_actor(request, await _bearer(request))
        except Exception as exc:
            await (await _error_response(app, request, exc))(scope, replay, send)
            return
        try:
            model = p.body_model.model_validate(data)
        except ValidationError:
            await self.app(scope, replay, send)  # the 422 with every field path, from FastAPI
            return
        kwargs: dict[str, Any] = {**path_params, p.body_name: model, p.actor_name: actor,
                                  p.services_name: app.state.services}
        try:
            threads = getattr(app.state, "command_threads", None)
            if threads is None:
                response = await run_in_threadpool(p.endpoint, **kwargs)
            else:  # a plain executor: about 30 us less CPU per hop than anyio's worker threads
                call = functools.partial(contextvars.copy_context().run, p.endpoint, **kwargs)
                response = await asyncio.get_running_loop().run_in_executor(threads, call)
            if not isinstance(response, Response):  # its response_model would shape it: not served here
                raise TypeError(f"{p.endpoint.__qualname__} must return a Response to be served by the fast path")
        except Exception as exc:
            response = await _error_response(app, request, exc)
        await response(scope, replay, send)


async def _error_response(app: Any, request: Request, exc: Exception) -> Response:
    """What the app's exception handler answers for ``exc``; re-raised when it has none, so that the
    error middleware answers 500 as it would through the route."""
    handler = _handler_for(app, exc)
    if handler is None:
        raise exc
    if inspect.iscoroutinefunction(handler):
        return await handler(request, exc)
    return await run_in_threadpool(handler, request, exc)


def _handler_for(app: Any, exc: Exception) -> Callable | None:
    """The app's exception handler for ``exc``, looked up as Starlette's ExceptionMiddleware does."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers and cls is not Exception:
            return handlers[cls]
    return None


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """A receive that hands the body read here to whoever reads it next, then defers to the server."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if disconnected:
        pending.append({"type": "http.disconnect"})

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
