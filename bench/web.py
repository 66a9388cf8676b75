"""Issue 16: the inspector's pages, server time per page at the demo's size (and at 1,000,000 events).

Each page is requested in process through the whole ASGI app (``TestClient``: routing, the session
cookie's token check, the application service, the template, the page's own audit event), so the time
is the server's, without a network. Pages: a participant's trail (newest first, 100 events), time
travel (the casebook as recorded at a random instant of the past year, with what changed since), and the
audit search (site + item prefix, 100 rows). Baseline: ``GET /participants/{id}`` of the JSON API
through the same app. Targets (p95): <= 300 ms at the demo's size (30 participants, what ``make run``
loads), <= 1 s with a million events (``--million --million-store DIR``: the store bench/million.py
writes, or writes it the same way when it is not there: minutes).
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from pathlib import Path
from typing import Any

from bench.result import check, row

TITLE = "issue 16: web pages' p95 server time (trail, time travel, audit search)"
ORDER = 90
PASSWORD = "demo-password-not-secret"


def add_arguments(parser) -> None:
    parser.add_argument("--web-requests", type=int, default=100, help="requests per page (bench/web.py)")
    parser.add_argument("--web-participants", type=int, default=30, help="demo participants (bench/web.py)")


def _p(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def measure(svc: Any, requests: int, seed: int = 16) -> dict[str, list[float]]:
    """Per page, the milliseconds of each request, signed in as the demo inspector."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = svc.app
    inspector = app.actor_for(str(app.user_by_name("demo.inspector").id))
    ids = [r["id"] for r in app.list_participants(inspector) if r["arm"]]
    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    times: dict[str, list[float]] = {"trail": [], "time travel": [], "audit search": [], "api": []}
    with TestClient(create_app(svc)) as client:
        form = client.get("/ui/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        r = client.post("/ui/login", data={"csrf_token": csrf, "username": "demo.inspector", "password": PASSWORD,
                                           "next": "/ui/participants"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        token = client.cookies.get("trialaudit_session")
        bearer = {"Authorization": f"Bearer {token}"}
        pages = {
            "trail": lambda pid: f"/ui/participants/{pid}",
            "time travel": lambda pid: f"/ui/participants/{pid}/casebook?as_of="
                                       f"{(now - dt.timedelta(days=rng.uniform(0, 365))).isoformat().replace('+00:00', 'Z')}",
            "audit search": lambda pid: "/ui/audit?site=MINSK&item=mrss.*",
        }
        for _ in range(3):  # warm the templates and caches
            for make in pages.values():
                client.get(make(ids[0]))
        for _ in range(requests):
            pid = rng.choice(ids)
            for name, make in pages.items():
                url = make(pid)
                t0 = time.perf_counter()
                r = client.get(url)
                times[name].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (url, r.status_code)
            t0 = time.perf_counter()
            client.get(f"/participants/{pid}", headers=bearer)
            times["api"].append((time.perf_counter() - t0) * 1000)
    return times


def rows_for(times: dict[str, list[float]], events: int, limit_ms: float, where: str) -> list[dict[str, Any]]:
    base = _p(times["api"], 95)
    out = []
    for name in ("trail", "time travel", "audit search"):
        p95 = _p(times[name], 95)
        out.append(row("web", f"web page: {name}, p95 server time ({events:,} events{where})", round(p95, 1), "ms p95",
                       p50_ms=round(_p(times[name], 50), 2), p99_ms=round(_p(times[name], 99), 2),
                       baseline="GET /participants/{id} (JSON) p95", baseline_figure=round(base, 2),
                       checks=[check("p95", p95, "<=", limit_ms, " ms")]))
    return out


def run(args: Any = None) -> list[dict[str, Any]]:
    from bench.projections import demo_store

    requests = getattr(args, "web_requests", None) or 100
    participants = getattr(args, "web_participants", None) or 30
    rows = []
    with demo_store(participants, "trialaudit-bench-web-") as svc:
        events = svc.app.recorder.max_notification_id()
        rows += rows_for(measure(svc, requests), events, 300, "")
    if getattr(args, "million", False) and getattr(args, "million_store", None):
        rows += _million(args, requests)
    return rows


def _million(args: Any, requests: int) -> list[dict[str, Any]]:
    """The same pages over the store bench/million.py writes (reused when there; written as it does when not)."""
    from bench.million import open_million_store

    svc = open_million_store(args, Path(args.million_store))
    try:
        t0 = time.perf_counter()
        svc.projections.catch_up()
        print(f"  read models caught up in {time.perf_counter() - t0:.0f} s")
        events = svc.app.recorder.max_notification_id() or 0
        where = ", PostgreSQL" if getattr(args, "store", "sqlite") == "postgres" else ", SQLite"
        return rows_for(measure(svc, min(requests, 50)), events, 1000, where)
    finally:
        svc.close()


if __name__ == "__main__":
    for r in run():
        print(r)
