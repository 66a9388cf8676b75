"""Benchmark: projection rebuild rate and the scores query latency (issue 3 targets).

* Rebuild: drop every read model and rebuild it from event 1 (SQLite), in events of the log per second
  of the whole ``engine.rebuild()`` (all read models; an event that two projections use counts once,
  so the figure is comparable with the baseline), against the raw notification-log read rate measured
  in the same run (``recorder.select_notifications`` pages of the same size, no decoding): target
  >= 20,000 events/s and >= 0.5 x the raw rate.
* Its floor: SQLite alone storing the rows the audit index's rebuild made (``executemany`` into a new file
  with the read models' settings, then the indexes a rebuild defers), with no projection work, against
  the same raw rate: what any rebuild of this audit index costs before it computes anything.
* Scores query: ``participant_scores`` (what ``GET /participants/{id}/scores`` runs) p50/p99 over
  random participants, against ``get_participant`` in the same run: target p99 <= 10 ms; ``--big``
  fills the store to 1,000,000 events first.

The store is written by the synthetic-trial generator (application.demo), so the events are the
real ones. ``run(args)`` returns rows for the harness's table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api.container import build, setup_store
from application.demo import generate
from application.projections import deferred_indexes
from infrastructure.readmodels import SQLiteReadModels
from infrastructure.settings import Settings

EVENTS_PER_PARTICIPANT = 190  # about what the demo writes per randomised participant


def _settings(directory: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{directory}/bench.db", data_dir=directory, demo=False,
        sites={"MINSK": "Europe/Minsk", "GOMEL": "Europe/Minsk"},
        argon2_memory_kib=1024, argon2_time_cost=1, argon2_parallelism=1,
    )


@contextmanager
def demo_store(participants: int, prefix: str = "trialaudit-bench-") -> Iterator[Any]:
    """Services over a fresh SQLite store holding the seeded synthetic trial, read models caught up."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        settings = _settings(Path(tmp))
        setup_store(settings)
        svc = build(settings, follow=False)
        try:
            generate(svc.app, participants=participants, seed=2022)
            svc.projections.catch_up()
            yield svc
        finally:
            svc.close()


def raw_read_rate(app: Any, page: int) -> tuple[int, float]:
    """Every notification of the log, in pages, without decoding: (count, events/s)."""
    start, count = 0, 0
    t0 = time.perf_counter()
    while True:
        rows = app.recorder.select_notifications(start=start, limit=page, inclusive_of_start=False)
        count += len(rows)
        if len(rows) < page:
            break
        start = rows[-1].id
    return count, count / (time.perf_counter() - t0)


def audit_write_floor(engine: Any, directory: Path) -> tuple[int, float, float]:
    """What SQLite alone takes to store the audit index the rebuild just made: its two big tables'
    rows (already made, so no projection work is timed) inserted in pages with ``executemany`` into a
    new file with the read models' settings, then the indexes a rebuild defers (pure C).
    (events, seconds inserting, seconds indexing)"""
    audit = engine.projections["audit_index"]
    tables = {t: engine.store.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("audit_events", "audit_changes")}
    store = SQLiteReadModels(str(directory / "floor-views.db"))
    later = deferred_indexes(audit)
    page = engine.batch_size
    try:
        with store.bulk():
            with store.transaction() as cur:
                for statement in audit.create_statements():
                    if statement.lstrip().upper().startswith("CREATE TABLE"):
                        cur.execute(statement)
            t0 = time.perf_counter()
            for table, rows in tables.items():
                columns = list(rows[0])
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                values = [tuple(r.values()) for r in rows]
                for start in range(0, len(values), page):
                    with store.transaction() as cur:
                        cur.executemany(sql, values[start : start + page])
            t1 = time.perf_counter()
            with store.transaction() as cur:
                for statement in later:
                    if " audit_events " in statement or " audit_changes " in statement:
                        cur.execute(statement)
            t2 = time.perf_counter()
    finally:
        store.close()
    return len(tables["audit_events"]), t1 - t0, t2 - t1


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(args: Any = None) -> list[dict[str, Any]]:
    participants = getattr(args, "participants", None) or (
        1_000_000 // EVENTS_PER_PARTICIPANT + 1 if getattr(args, "big", False) else 400)
    queries = getattr(args, "queries", None) or 1000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="trialaudit-bench-") as tmp:
        settings = _settings(Path(tmp))
        setup_store(settings)
        svc = build(settings, follow=False)
        try:
            summary = generate(svc.app, participants=participants, seed=2022)
            engine = svc.projections
            engine.catch_up()
            # warm the OS cache equally for both measurements
            raw_read_rate(svc.app, engine.batch_size)
            events, raw_rate = raw_read_rate(svc.app, engine.batch_size)
            t0 = time.perf_counter()
            processed = engine.rebuild()
            seconds = time.perf_counter() - t0
            assert processed == events, (processed, events)
            rate = events / seconds
            rows.append({
                "name": f"projection rebuild, SQLite ({events:,} events in the log, all read models, {seconds:.2f} s)",
                "figure": round(rate), "unit": "events/s",
                "baseline": "raw notification-log read (same pages, no decoding)", "baseline_figure": round(raw_rate),
                "ratio": round(rate / raw_rate, 3), "target": ">= 20,000 events/s and ratio >= 0.5",
            })

            floor_events, inserting, indexing = audit_write_floor(engine, Path(tmp))
            floor_seconds = inserting + indexing
            rows.append({
                "name": f"  floor: SQLite alone storing the audit index's rows ({inserting:.2f} s) and building its"
                        f" indexes ({indexing:.2f} s), no projection work",
                "figure": round(floor_events / floor_seconds), "unit": "events/s",
                "baseline": "raw notification-log read", "baseline_figure": round(raw_rate),
                "ratio": round(floor_events / floor_seconds / raw_rate, 3), "target": None,
            })

            app = svc.app
            dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
            ids = [r["id"] for r in app.list_participants(dm)]
            rng = random.Random(1)
            sample = [rng.choice(ids) for _ in range(queries)]

            def timed(fn) -> list[float]:
                out = []
                for pid in sample:
                    t = time.perf_counter()
                    fn(pid)
                    out.append((time.perf_counter() - t) * 1000)
                return out

            base = timed(lambda pid: app.get_participant(dm, pid))
            scores = timed(lambda pid: app.participant_scores(dm, pid))
            p99, base_p99 = percentile(scores, 99), percentile(base, 99)
            rows.append({
                "name": f"scores query p99 ({events:,} events, {queries} queries; p50 {statistics.median(scores):.2f} ms)",
                "figure": round(p99, 2), "unit": "ms",
                "baseline": "get_participant p99 (aggregate read)", "baseline_figure": round(base_p99, 2),
                "ratio": round(p99 / base_p99, 2) if base_p99 else None,
                "target": "<= 10 ms at 1,000,000 events",
            })
            rows.append({
                "name": f"demo generation ({summary.participants:,} participants)",
                "figure": round(summary.events / summary.seconds), "unit": "events/s",
                "baseline": None, "baseline_figure": None, "ratio": None, "target": None,
            })
        finally:
            svc.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=None)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--big", action="store_true", help="fill the store to 1,000,000 events first")
    for row in run(parser.parse_args()):
        print(row)


if __name__ == "__main__":
    main()
