"""Benchmark: audit retrieval latency from the audit index (issue 5).

* One participant's whole trail (``audit_events(participant=..., limit=1000)``) p99, and
* one filtered page (``site=..., item=mrss.*, limit=100``) p99,

over random participants of a store written by the synthetic-trial generator, against
``get_participant`` (an aggregate read) in the same run. Each retrieval also records its own
audit event (R11), so the figures include that write. ``run(args)`` returns rows for the harness.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.projections import demo_store, percentile


def _p99(fn, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return percentile(times, 99), percentile(times, 50)


def run(args: Any = None) -> list[dict[str, Any]]:
    participants = getattr(args, "participants", None) or 200
    queries = getattr(args, "queries", None) or 300
    with demo_store(participants, "trialaudit-bench-audit-") as svc:
        app = svc.app
        events = app.recorder.max_notification_id()
        dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
        ids = [r["id"] for r in app.list_participants(dm)]
        rng = random.Random(5)
        base99, _ = _p99(lambda: app.get_participant(dm, rng.choice(ids)), queries)
        trail99, trail50 = _p99(lambda: app.audit_events(dm, participant=rng.choice(ids), limit=1000), queries)
        page99, page50 = _p99(lambda: app.audit_events(dm, site="MINSK", item="mrss.*", limit=100), queries)
    return [
        {"name": f"audit: one participant's whole trail p99 ({events:,} events; p50 {trail50:.2f} ms)",
         "figure": round(trail99, 2), "unit": "ms", "baseline": "get_participant p99 (aggregate read)",
         "baseline_figure": round(base99, 2), "ratio": round(trail99 / base99, 2), "target": "<= 20 ms"},
        {"name": f"audit: filtered page (site + item prefix, 100 rows) p99 (p50 {page50:.2f} ms)",
         "figure": round(page99, 2), "unit": "ms", "baseline": "get_participant p99 (aggregate read)",
         "baseline_figure": round(base99, 2), "ratio": round(page99 / base99, 2), "target": "<= 50 ms"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
