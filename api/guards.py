"""ASGI middleware at the boundary of the API: response security headers, the request-body limit, and
one rule for the text a client may send (issue 13, E.13/E.14/E.16/E.17).

Written as plain ASGI middleware (a callable that wraps ``receive`` and ``send``), with no Starlette
internals:

* ``SecurityHeaders`` adds ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff``, a
  restrictive Content-Security-Policy (``default-src 'self'``, no inline script, ``frame-ancestors
  'none'``), ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer`` to every response that
  does not set its own. The interactive API docs (``/docs``, ``/redoc``) are served offline from the
  fastapi-offline package; they set styles at run time (and ReDoc starts a worker), which their policy allows.
* ``RequestGuard`` refuses a body larger than ``settings.max_body_bytes`` with 413 before reading it
  (its Content-Length), or as soon as the bytes received pass the limit (a chunked body). It then
  refuses, with 422 naming the field, any JSON string (key or value), form or query value that holds a
  lone surrogate (it cannot be stored as UTF-8) or a C0 control character other than tab and newline
  (free text is printable; a control character breaks XML archives and terminals).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from application.casebook_html import CSS as CASEBOOK_CSS

DEFAULT_MAX_BODY_BYTES = 1 << 20



def _style_hash(css: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"


#: The casebook HTML (application/casebook_html.py) carries its stylesheet inline, so that the saved
#: file is self-contained: that one stylesheet is allowed by its hash, no other inline style or script.
CSP = ("default-src 'self'; script-src 'self'; "
       f"style-src 'self' {_style_hash(CASEBOOK_CSS)}; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: /docs and /redoc (Swagger UI and ReDoc, served by trialaudit from the fastapi-offline package, nothing
#: from a CDN): their scripts are same-origin files; both set styles at run time and ReDoc starts a worker.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self'; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")

HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
DOCS_HEADERS = [(k, DOCS_CSP.encode() if k == b"content-security-policy" else v) for k, v in HEADERS]


def security_headers(docs: bool = False) -> dict[str, str]:
    """The headers as a dict, for responses made outside the middleware (the 500 handler)."""
    return {k.decode(): v.decode() for k, v in (DOCS_HEADERS if docs else HEADERS)}


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = DOCS_HEADERS if scope.get("path", "").startswith(DOCS_PATHS) else HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                present = {k.lower() for k, _ in headers}
                message = {**message, "headers": [*headers, *(h for h in extra if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --------------------------------------------------------------------------- text
#: C0 controls other than tab (09) and newline (0A), and lone surrogates (never valid UTF-8)
BAD_TEXT = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff]")
CONTROL_MESSAGE = "control characters other than tab and newline are not allowed in text"
SURROGATE_MESSAGE = "a lone surrogate (e.g. \\ud800) is not a character and cannot be stored"


def text_problem(text: str) -> str | None:
    """Why ``text`` is refused, or None when it is acceptable free text."""
    found = BAD_TEXT.search(text)
    if found is None:
        return None
    return SURROGATE_MESSAGE if "\ud800" <= found.group() <= "\udfff" else CONTROL_MESSAGE


def bad_strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every (path, message) of a string in a decoded JSON document that ``text_problem`` refuses."""
    if isinstance(value, str):
        message = text_problem(value)
        if message:
            yield path, message
    elif isinstance(value, dict):
        for key, item in value.items():
            message = text_problem(key)
            if message:
                yield (*path, key.encode("utf-8", "backslashreplace").decode()), f"in a key: {message}"
            else:
                yield from bad_strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from bad_strings(item, (*path, i))


def _printable(path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    return tuple(p.encode("utf-8", "backslashreplace").decode() if isinstance(p, str) else p for p in path)


def _pairs_problems(pairs: list[tuple[str, str]], where: str) -> list[tuple[tuple[str | int, ...], str]]:
    found = []
    for name, value in pairs:
        message = text_problem(name) or text_problem(value)
        if message:
            found.append(((where, name), message))
    return found


def _media(content_type: bytes | None) -> bytes:
    return content_type.split(b";", 1)[0].strip().lower() if content_type else b""


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _limit(self, scope: Scope) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        settings = getattr(services, "settings", None)
        if settings is None:
            return DEFAULT_MAX_BODY_BYTES
        self.max_body_bytes = settings.max_body_bytes  # the settings of this app's services, kept
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if b"%0" in query or b"%1" in query or b"%ED" in query.upper():  # a percent-encoded control or surrogate
            problems = _pairs_problems(parse_qsl(query.decode("latin-1"), keep_blank_values=True,
                                                 errors="surrogateescape"), "query")
            if problems:
                await self._invalid(scope, problems, send)
                return
        limit = self._limit(scope)
        length = content_type = None
        chunked = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"content-type":
                content_type = value
            elif key == b"transfer-encoding":
                chunked = True
        if length is None and not chunked:  # no body at all (most GETs): nothing to count or check
            await self.app(scope, receive, send)
            return
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await self._problem(scope, send, 400, "Bad request", "Content-Length is not a number of bytes")
                return
            if declared > limit:  # refused before a byte of the body is read
                await self._too_large(scope, send, limit)
                return
        media = _media(content_type)
        if media == b"application/json" or media.endswith(b"+json") or media == b"application/x-www-form-urlencoded":
            await self._checked(scope, receive, send, limit, media)
            return
        if length is None:  # chunked: only the bytes received say how large it is
            await self._counted(scope, receive, send, limit)
        else:  # the server delivers no more than the Content-Length checked above
            await self.app(scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send, limit: int, media: bytes) -> None:
        """A JSON or form body: read (counting), its text checked, then handed on as it came."""
        chunks: list[bytes] = []
        size = 0
        disconnected = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if media == b"application/x-www-form-urlencoded":
            if b"%0" in body or b"%1" in body or b"%ED" in body.upper():
                problems = _pairs_problems(parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                                                     errors="surrogateescape"), "body")
        elif b"\\" in body:  # a control character or a surrogate can only come as an escape
            try:
                document = json.loads(body)
            except ValueError:
                document = None  # FastAPI says what is wrong with it
            problems = [(_printable(p), m) for p, m in bad_strings(document, ("body",))]
        if problems:
            await self._invalid(scope, problems, send)
            return
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        if disconnected:
            pending.append({"type": "http.disconnect"})

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Any other body streams through, counted: once past the limit, 413 answers (if nothing was sent
        yet), the app reads a disconnect, and whatever it answers after that is dropped."""
        size = 0
        started = refused = False

        async def counting() -> Message:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = True
                    if not started:
                        await self._too_large(scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def watching(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting, watching)

    @staticmethod
    async def _problem(scope: Scope, send: Send, status: int, title: str, detail: str, **extra: Any) -> None:
        response = errors.problem(status, title, detail, scope.get("path", ""), **extra)
        await response(scope, _no_body, send)

    async def _too_large(self, scope: Scope, send: Send, limit: int) -> None:
        await self._problem(scope, send, 413, "Request body too large",
                            f"the request body is limited to {limit} bytes", max_body_bytes=limit)

    async def _invalid(self, scope: Scope, problems: list[tuple[tuple[str | int, ...], str]], send: Send) -> None:
        listed = [{"path": ".".join(map(str, p)), "loc": list(p), "message": m, "type": "value_error"}
                  for p, m in problems]
        detail = "; ".join(f"{e['path']}: {e['message']}" for e in listed)
        await self._problem(scope, send, 422, "Invalid input", detail, errors=listed)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
