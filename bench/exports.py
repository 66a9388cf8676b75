"""Benchmark: whole-study ODM export rate and memory, and the casebook ``as_of`` latency (issue 5 targets).

* ODM export: ``OdmExports.study`` (what ``GET /exports/odm`` and ``trialaudit export odm`` run) drained
  to /dev/null, in events of the log per second, against the raw notification-log read rate measured in
  the same run; target >= 20,000 events/s. Peak Python memory of a second run under tracemalloc
  (the export spools to a temporary file, so it stays flat as the log grows); target <= 200 MB.
* Casebook: ``casebook(as_of=...)`` (``GET /participants/{id}/casebook?as_of=``) p50/p99 over random
  participants and instants, against ``get_participant``; target <= 50 ms.

The store is written by the synthetic-trial generator (application.demo). ``run(args)`` returns rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
import tracemalloc
from typing import Any

from application.exports import OdmExports
from bench.projections import demo_store, percentile, raw_read_rate


def _drain(chunks) -> int:
    return sum(len(c) for c in chunks)


def run(args: Any = None) -> list[dict[str, Any]]:
    participants = getattr(args, "participants", None) or 200
    queries = getattr(args, "queries", None) or 200
    rows: list[dict[str, Any]] = []
    with demo_store(participants, "trialaudit-bench-") as svc:
        app = svc.app
        insp = app.actor_for(str(app.user_by_name("demo.datamanager").id))
        exports = OdmExports(app, svc.integrity.log)
        raw_read_rate(app, 2000)
        events, raw_rate = raw_read_rate(app, 2000)
        t0 = time.perf_counter()
        size = _drain(exports.study(insp, source="system"))
        seconds = time.perf_counter() - t0
        rate = events / seconds
        rows.append({
            "name": f"whole-study ODM export, SQLite ({events:,} events, {size / 1e6:.1f} MB of XML)",
            "figure": round(rate), "unit": "events/s",
            "baseline": "raw notification-log read (same pages, no decoding)", "baseline_figure": round(raw_rate),
            "ratio": round(rate / raw_rate, 3), "target": ">= 20,000 events/s",
        })
        tracemalloc.start()
        _drain(exports.study(insp, source="system"))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append({
            "name": f"whole-study ODM export peak Python memory ({events:,} events)",
            "figure": round(peak / 1e6, 1), "unit": "MB", "baseline": "size of the XML written",
            "baseline_figure": round(size / 1e6, 1), "ratio": round(peak / size, 3), "target": "<= 200 MB",
        })

        ids = [r["id"] for r in app.list_participants(insp) if r["arm"]]
        rng = random.Random(1)
        now = dt.datetime.now(dt.timezone.utc)
        sample = [(rng.choice(ids), now - dt.timedelta(seconds=rng.uniform(0, 5))) for _ in range(queries)]

        def timed(fn) -> list[float]:
            out = []
            for pid, when in sample:
                t = time.perf_counter()
                fn(pid, when)
                out.append((time.perf_counter() - t) * 1000)
            return out

        base = timed(lambda pid, when: app.get_participant(insp, pid))
        cb = timed(lambda pid, when: app.casebook(insp, pid, as_of=when))
        p99, base_p99 = percentile(cb, 99), percentile(base, 99)
        rows.append({
            "name": f"casebook as_of p99 ({events:,} events, {queries} queries; p50 {statistics.median(cb):.2f} ms)",
            "figure": round(p99, 2), "unit": "ms", "baseline": "get_participant p99 (aggregate read)",
            "baseline_figure": round(base_p99, 2), "ratio": round(p99 / base_p99, 2) if base_p99 else None,
            "target": "<= 50 ms",
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=None)
    parser.add_argument("--queries", type=int, default=200)
    for row in run(parser.parse_args()):
        print(row)


if __name__ == "__main__":
    main()
