"""Benchmark: what the boundary middleware (api/guards.py: RequestGuard + SecurityHeaders) adds to a request.

A correction-sized JSON POST (the hot path's shape) is driven through the two middlewares around a trivial
ASGI app, in process, and through the trivial app alone; the figure is the difference per request (best of
7 runs of 20,000). Target: <= 50 us, i.e. a few per cent of an audited correction over HTTP at most.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from api.guards import RequestGuard, SecurityHeaders

ORDER = 90
BODY = b'{"field":"birth_year","new_value":1971,"reason":"transcription error; see clinic note","expected_version":5}'
SCOPE = {"type": "http", "method": "POST", "path": "/participants/x/corrections", "query_string": b"",
         "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode()),
                     (b"authorization", b"Bearer abc")]}
TARGET_US = 50.0


async def _inner(scope, receive, send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _measure(runs: int = 7, n: int = 20000) -> dict[str, float]:
    async def receive():
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message) -> None:
        pass

    apps = {"bare": _inner, "guarded": SecurityHeaders(RequestGuard(_inner, max_body_bytes=1 << 20))}
    best = {k: float("inf") for k in apps}
    for _ in range(runs):
        for label, app in apps.items():
            t = time.perf_counter()
            for _ in range(n):
                await app(SCOPE, receive, send)
            best[label] = min(best[label], (time.perf_counter() - t) / n * 1e6)
    return best


def run(args: Any = None) -> list[dict[str, Any]]:
    best = asyncio.run(_measure())
    overhead = best["guarded"] - best["bare"]
    return [{
        "name": "boundary middleware (body limit, text rule, security headers) on a correction-sized POST",
        "figure": round(overhead, 2), "unit": "us/request",
        "baseline": "the same request to a bare ASGI app", "baseline_figure": round(best["bare"], 2),
        "ratio": round(best["guarded"] / best["bare"], 2), "target": f"<= {TARGET_US:g} us/request",
        "passed": overhead <= TARGET_US,
    }]
