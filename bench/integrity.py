"""Integrity benchmark: verification throughput, sealing overhead, proof latency (issue 6 targets).

Rows: {"name", "figure", "unit", "baseline"}. Run alone: python -m bench.integrity [--leaves N].
"""

from __future__ import annotations

from bench.result import check, row
import argparse
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent

TOPIC = "domain.participant:Participant.ConsentRecorded"


def _state(i: int) -> bytes:
    return (b'{"consent_version":"ICF v1.0","signed_on":{"_type_":"date_iso","_data_":"2026-01-05"},"stamp":{"actor":'
            + b'{"user_id":"%032x","full_name":"Investigator Person","role":"investigator","site":"MINSK"},' % i
            + b'"recorded_at":"2026-03-12T10:00:00.000000+00:00","reason":"entered from the source document"}}').ljust(300, b" ")


def _services(url: str, data_dir: Path, **overrides: Any):
    from api.container import build, setup_store
    from infrastructure.settings import Settings

    settings = Settings(database_url=url, data_dir=data_dir, demo=False, **overrides)
    setup_store(settings)
    return build(settings, follow=False)


def _fill(recorder, n: int, per_tx: int) -> None:
    for start in range(0, n, per_tx):
        recorder.insert_events([
            StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic=TOPIC, state=_state(i))
            for i in range(start, min(n, start + per_tx))
        ])


def sha256_rate(size: int = 300, n: int = 300_000) -> float:
    message = os.urandom(size)
    started = time.perf_counter()
    for _ in range(n):
        hashlib.sha256(message).digest()
    return n / (time.perf_counter() - started)


def command_rate(url: str, data_dir: Path, topic: str | None, n: int) -> float:
    """Per-command writes (2 events per transaction, as a typical audited command) through a recorder."""
    from infrastructure import store
    from eventsourcing.persistence import InfrastructureFactory

    env = store.eventsourcing_env(url, create_table=True, recorder_topic=topic)
    factory = InfrastructureFactory.construct(env=__import__("eventsourcing.utils", fromlist=["Environment"]).Environment("trialaudit", env))
    recorder = factory.application_recorder()
    recorder.create_table()
    started = time.perf_counter()
    for i in range(n):
        oid = uuid.uuid4()
        recorder.insert_events([
            StoredEvent(originator_id=oid, originator_version=1, topic=TOPIC, state=_state(i)),
            StoredEvent(originator_id=oid, originator_version=2, topic=TOPIC, state=_state(i + 1)),
        ])
    rate = n / (time.perf_counter() - started)
    factory.close()
    return rate


def run(args: Any = None) -> list[dict[str, Any]]:
    leaves = getattr(args, "leaves", None) or 1_000_000
    commands = getattr(args, "commands", None) or 2000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        # sealing overhead on the audited write path (SQLite, durable: synchronous=FULL)
        from infrastructure import store

        # alternate short rounds, so that disk and neighbour noise hits both alike; take the medians
        plain_rates, sealed_rates = [], []
        for r in range(5):
            plain_rates.append(command_rate(f"sqlite:///{tmp}/plain{r}.db", tmp_path,
                                            f"{store.__name__}:AppendOnlySQLiteRecorder", commands // 5))
            sealed_rates.append(command_rate(f"sqlite:///{tmp}/sealed{r}.db", tmp_path, None, commands // 5))
        plain, sealed = statistics.median(plain_rates), statistics.median(sealed_rates)
        rows.append(row("integrity", "integrity: audited writes with sealing (SQLite, 2 events/tx)", round(sealed), "tx/s",
                        baseline="the same writes without sealing", baseline_figure=round(plain),
                        checks=[check("ratio", sealed / plain, ">=", 0.9)],
                        notes=f"sealing costs {100 * (1 - sealed / plain):.1f}% of the write rate (target <= 10%)"))
        # a big log for verification and proofs
        svc = _services(f"sqlite:///{tmp}/big.db", tmp_path / "keys")
        try:
            started = time.perf_counter()
            _fill(svc.app.recorder, leaves, 5000)
            fill = time.perf_counter() - started
            rows.append(row("integrity", f"integrity: seal {leaves:,} events in bulk (5000/tx)", round(leaves / fill),
                            "events/s"))
            svc.integrity.sign_head()
            report = svc.integrity.verify()
            assert report.ok, report.findings
            rows.append(row("integrity", f"integrity: verify {leaves:,} events (SQLite)", round(report.rate), "events/s",
                            baseline="SHA-256 of 300-byte messages, same run", baseline_figure=round(sha256_rate()),
                            checks=[check("events/s", report.rate, ">=", 200_000)]))
            integrity = svc.integrity
            size = integrity.log.tree_size()
            import random

            rnd = random.Random(1)
            times = []
            for _ in range(2000):
                index = rnd.randrange(size)
                t0 = time.perf_counter()
                integrity.inclusion_proof(index, size)
                times.append(time.perf_counter() - t0)
            p99 = 1000 * _p99(times)
            rows.append(row("integrity", f"integrity: inclusion proof p99 at {size:,} leaves", round(p99, 3), "ms",
                            p50_ms=1000 * statistics.median(times), p99_ms=p99, checks=[check("p99", p99, "<=", 5, " ms")]))
            times = []
            for _ in range(2000):
                first = rnd.randrange(1, size)
                t0 = time.perf_counter()
                integrity.consistency_proof(first, size)
                times.append(time.perf_counter() - t0)
            p99 = 1000 * _p99(times)
            rows.append(row("integrity", f"integrity: consistency proof p99 at {size:,} leaves", round(p99, 3), "ms",
                            p50_ms=1000 * statistics.median(times), p99_ms=p99, checks=[check("p99", p99, "<=", 5, " ms")]))
        finally:
            svc.close()
    return rows


def _p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--commands", type=int, default=2000)
    for row in run(parser.parse_args()):
        print(row)
