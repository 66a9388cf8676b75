"""Timing helpers: percentiles and timed loops, single and multi-threaded."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


@dataclass
class Timing:
    """The outcome of a timed loop: operations, errors, wall time and per-operation latencies (seconds)."""

    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def ms(self, p: float) -> float | None:
        v = percentile(sorted(self.latencies), p)
        return None if v is None else v * 1000

    @classmethod
    def merge(cls, parts: list[Timing]) -> Timing:
        """Several timed runs of the same thing as one."""
        total = cls()
        for r in parts:
            total.ops += r.ops
            total.errors += r.errors
            total.seconds += r.seconds
            total.latencies.extend(r.latencies)
            total.first_error = total.first_error or r.first_error
        return total

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        pick = lambda p: None if not lat else percentile(lat, p) * 1000  # noqa: E731
        return {"ops": self.ops, "errors": self.errors, "seconds": self.seconds, "rate": self.rate,
                "p50_ms": pick(50), "p99_ms": pick(99), "max_ms": lat[-1] * 1000 if lat else None}


def timed_threads(
    make_worker: Callable[[int], Callable[[int], None]], threads: int, duration: float
) -> Timing:
    """Run ``threads`` workers for ``duration`` seconds. ``make_worker(t)`` returns ``op(i)``, called with
    i = 0, 1, 2, ... until the deadline; each call is one timed operation. Workers are built before the
    clock starts. An exception counts as an error (the first one is kept)."""
    ops = [make_worker(t) for t in range(threads)]
    results = [Timing() for _ in range(threads)]
    start_gate = threading.Barrier(threads + 1)
    stop = threading.Event()

    def loop(t: int) -> None:
        op, res, clock = ops[t], results[t], time.perf_counter
        lat = res.latencies
        start_gate.wait()
        i = 0
        while not stop.is_set():
            t0 = clock()
            try:
                op(i)
            except Exception as e:  # noqa: BLE001 - counted and reported
                res.errors += 1
                if res.first_error is None:
                    res.first_error = f"{type(e).__name__}: {e}"
            else:
                lat.append(clock() - t0)
                res.ops += 1
            i += 1

    workers = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    start_gate.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for w in workers:
        w.join()
    total = Timing(seconds=time.perf_counter() - t0)
    for r in results:
        total.ops += r.ops
        total.errors += r.errors
        total.latencies.extend(r.latencies)
        total.first_error = total.first_error or r.first_error
    return total
