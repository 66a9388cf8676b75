"""Issue 3 and 5 targets at 1,000,000 events (run with ``--million``; skipped otherwise, it takes minutes).

One store is written by the synthetic-trial generator until the log holds about a million events, then:
one participant's whole audit trail p99 (<= 20 ms), a filtered audit page p99 (<= 50 ms), a casebook
``as_of`` p99 (<= 50 ms), the scores query p99 (<= 10 ms), and the whole-study ODM export rate
(>= 20,000 events/s) and peak Python memory (<= 200 MB), each beside ``get_participant`` or the raw
notification-log read in the same run. ``--million-store DIR`` keeps (or reuses) the store; with
``--store postgres`` the store is the schema ``bench_million`` on that server, always kept and reused
(DIR, if given, holds its keys).
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from api.container import build, setup_store
from application.demo import generate
from application.exports import OdmExports
from bench._stores import postgres_base_url
from bench.projections import _settings, percentile, raw_read_rate
from bench.result import check, row

TITLE = "issue 3 and 5 latency targets with 1,000,000 events in the store (--million)"
EVENTS_PER_PARTICIPANT = 190


def add_arguments(parser) -> None:
    parser.add_argument("--million", action="store_true", help="run bench/million.py (minutes)")
    parser.add_argument("--million-events", type=int, default=1_000_000)
    parser.add_argument("--million-store", default=None, help="directory to keep or reuse the big store")


def _timed(fn, inputs) -> list[float]:
    out = []
    for x in inputs:
        t = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _latency(name: str, values: list[float], base: list[float], limit: float) -> dict[str, Any]:
    p99, b99 = percentile(values, 99), percentile(base, 99)
    return row("million", name, round(p99, 2), "ms p99", p50_ms=statistics.median(values), p99_ms=p99,
               baseline="get_participant p99 (aggregate read)", baseline_figure=round(b99, 2),
               checks=[check("p99", p99, "<=", limit, " ms")])


#: the PostgreSQL schema of the big store: kept between runs, like --million-store on SQLite, because
#: writing a million events takes a quarter of an hour (drop it with DROP SCHEMA bench_million CASCADE)
POSTGRES_SCHEMA = "bench_million"


def _postgres_settings(settings: Any, base_url: str) -> Any:
    from infrastructure.store import prepare_postgres

    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}schema={POSTGRES_SCHEMA}"
    prepare_postgres(url)
    return settings.model_copy(update={"database_url": url})


def open_million_store(args: Any, directory: Path) -> Any:
    """The services over the million-event store in ``directory`` (or the PostgreSQL schema with --store
    postgres), writing the synthetic trial into it first when it holds fewer than 90 % of the events wanted."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = _settings(directory)
    if getattr(args, "store", "sqlite") == "postgres":
        settings = _postgres_settings(settings, getattr(args, "postgres_url", None) or postgres_base_url())
    setup_store(settings)
    svc = build(settings, follow=False)
    wanted = getattr(args, "million_events", 1_000_000)
    if (svc.app.recorder.max_notification_id() or 0) < wanted * 0.9:
        t0 = time.perf_counter()
        generate(svc.app, participants=wanted // EVENTS_PER_PARTICIPANT + 1, seed=2022)
        print(f"  wrote {svc.app.recorder.max_notification_id():,} events in {time.perf_counter() - t0:.0f} s")
    return svc


def run(args: Any = None) -> list[dict[str, Any]]:
    if not getattr(args, "million", False):
        return []
    wanted = getattr(args, "million_events", 1_000_000)
    keep = getattr(args, "million_store", None)
    with tempfile.TemporaryDirectory(prefix="trialaudit-bench-million-") as tmp:
        store = getattr(args, "store", "sqlite")
        svc = open_million_store(args, Path(keep or tmp))
        try:
            app = svc.app
            t0 = time.perf_counter()
            svc.projections.catch_up()
            print(f"  read models caught up in {time.perf_counter() - t0:.0f} s")
            if store == "postgres":  # what autovacuum does after a bulk load, so the planner knows the tables
                with svc.projections.store.transaction() as cur:
                    cur.execute("ANALYZE")
            events = app.recorder.max_notification_id()
            dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
            ids = [r["id"] for r in app.list_participants(dm) if r["arm"]]
            rng = random.Random(7)
            sample = [rng.choice(ids) for _ in range(300)]
            base = _timed(lambda pid: app.get_participant(dm, pid), sample)
            rows = [
                _latency(f"one participant's whole audit trail ({events:,} events)",
                         _timed(lambda pid: app.audit_events(dm, participant=pid, limit=1000), sample), base, 20),
                _latency(f"filtered audit page, site + item prefix, 100 rows ({events:,} events)",
                         _timed(lambda pid: app.audit_events(dm, site="MINSK", item="mrss.*", limit=100), sample), base, 50),
                _latency(f"scores query ({events:,} events)",
                         _timed(lambda pid: app.participant_scores(dm, pid), sample), base, 10),
            ]
            now = dt.datetime.now(dt.timezone.utc)
            rows.append(_latency(f"casebook as_of ({events:,} events)",
                                 _timed(lambda pid: app.casebook(dm, pid, as_of=now - dt.timedelta(days=rng.uniform(0, 300))),
                                        sample[:100]), base, 50))
            exports = OdmExports(app, svc.integrity.log)
            _, raw_rate = raw_read_rate(app, 2000)
            t0 = time.perf_counter()
            size = sum(len(c) for c in exports.study(dm, source="system"))
            rate = events / (time.perf_counter() - t0)
            tracemalloc.start()
            sum(len(c) for c in exports.study(dm, source="system"))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append(row("million", f"whole-study ODM export ({events:,} events, {size / 1e6:.0f} MB)",
                            round(rate), "events/s", baseline="raw notification-log read", baseline_figure=round(raw_rate),
                            checks=[check("events/s", rate, ">=", 20_000)]))
            rows.append(row("million", f"whole-study ODM export peak Python memory ({events:,} events)",
                            round(peak / 1e6, 1), "MB", checks=[check("peak", peak / 1e6, "<=", 200, " MB")]))
            for r in rows:
                r["name"] = f"{r['name']}, {'PostgreSQL' if store == 'postgres' else 'SQLite'}"
            return rows
        finally:
            svc.close()
