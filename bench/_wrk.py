"""Driving wrk (the C load generator) and reading the figures its Lua ``done()`` prints."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def wrk_path() -> str:
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk (the load generator) is not installed: apt-get install wrk")
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    first_errors: list[str]
    wrk_cpu_seconds: float
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= int(s) <= 299)

    @property
    def errors(self) -> int:
        """Non-2xx responses plus socket errors (connect, read, write, timeout)."""
        return (self.requests - self.ok) + sum(
            self.socket_errors.get(k, 0) for k in ("connect", "read", "write", "timeout")
        )

    @property
    def rate(self) -> float:
        """Successful (2xx) commands per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def wrk_cpu_share(self) -> float:
        """wrk's CPU time over wall time: well below 1 means the load generator was not the bottleneck."""
        return self.wrk_cpu_seconds / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str,
    script: Path,
    script_args: list[str],
    *,
    connections: int,
    threads: int,
    duration: float,
    timeout_s: float = 10,
) -> WrkResult:
    threads = max(1, min(threads, connections))
    cmd = [
        wrk_path(), "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
        "--timeout", f"{int(timeout_s)}s", "-s", str(script), url, "--", *script_args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}) after {wall:.1f} s:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(line[len("BENCH_JSON ") :])
    lat = data["latency_us"]
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        p999_ms=lat["p999"] / 1000,
        mean_ms=lat["mean"] / 1000,
        max_ms=lat["max"] / 1000,
        statuses=data["statuses"],
        socket_errors=data["errors"],
        first_errors=data["first_errors"],
        wrk_cpu_seconds=cpu,
        raw=data,
    )
