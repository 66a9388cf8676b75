"""Integrity benchmark: verification throughput, sealing overhead, proof latency (issue 6 targets).

Rows: {"name", "figure", "unit", "baseline"}. Run alone: python -m bench.integrity [--leaves N], or
python -m bench --only integrity [--integrity-leaves N] [--integrity-commands N].
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


def add_arguments(parser) -> None:
    g = parser.add_argument_group("integrity")
    g.add_argument("--integrity-leaves", type=int, default=None, help="events in the verified log (default 1,000,000)")
    g.add_argument("--integrity-commands", type=int, default=None,
                   help="sealed and unsealed commands each, written alternately (default 2000)")


def sha256_rate(size: int = 300, n: int = 300_000) -> float:
    message = os.urandom(size)
    started = time.perf_counter()
    for _ in range(n):
        hashlib.sha256(message).digest()
    return n / (time.perf_counter() - started)


def _recorder(url: str, topic: str | None):
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    from infrastructure import store

    env = store.eventsourcing_env(url, create_table=True, recorder_topic=topic)
    factory = InfrastructureFactory.construct(env=Environment("trialaudit", env))
    recorder = factory.application_recorder()
    recorder.create_table()
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute("PRAGMA synchronous")
        assert curs.fetchone()[0] == 2, "the sealing benchmark must run with synchronous=FULL, as users do"
    return factory, recorder


def sealing_rates(tmp: str, commands: int, block: int = 10) -> tuple[float, float]:
    """(unsealed tx/s, sealed tx/s): audited commands (2 events per transaction, each its own durable
    commit, one after another as one client's) into two stores, one sealing and one not.

    On a shared machine fsync latency drifts over seconds, far more than sealing costs, so runs one
    after the other (even alternating rounds) compare different disks. Here the two stores are
    written alternately, ``block`` commands at a time (order alternating AB BA ...), and each rate is
    commands over the summed time of its blocks: both see the same disk, and every WAL checkpoint
    (the sealed store writes more pages, so checkpoints more often) is counted where it falls.
    """
    from infrastructure import store

    stores = {
        "plain": _recorder(f"sqlite:///{tmp}/plain.db", f"{store.__name__}:AppendOnlySQLiteRecorder"),
        "sealed": _recorder(f"sqlite:///{tmp}/sealed.db", None),
    }
    events = []
    for i in range(commands):
        oid = uuid.uuid4()
        events.append([
            StoredEvent(originator_id=oid, originator_version=1, topic=TOPIC, state=_state(i)),
            StoredEvent(originator_id=oid, originator_version=2, topic=TOPIC, state=_state(i + 1)),
        ])
    spent = {"plain": 0.0, "sealed": 0.0}
    try:
        for k, start in enumerate(range(0, commands, block)):
            for kind in ("plain", "sealed") if k % 2 == 0 else ("sealed", "plain"):
                recorder = stores[kind][1]
                started = time.perf_counter()
                for pair in events[start : start + block]:
                    recorder.insert_events(pair)
                spent[kind] += time.perf_counter() - started
    finally:
        for factory, _ in stores.values():
            factory.close()
    return commands / spent["plain"], commands / spent["sealed"]


def _application(tmp: str, name: str, sealed: bool):
    """A TrialApplication on its own SQLite file, wired as the composition root wires it (the sealing
    recorder with a head signer attached), or on the same recorder without the Merkle log."""
    from application.trial import TrialApplication
    from infrastructure import store
    from infrastructure.merkle_store import attach_head_signer
    from infrastructure.passwords import Argon2Passwords
    from infrastructure.signing import load_signer

    topic = None if sealed else f"{store.__name__}:AppendOnlySQLiteRecorder"
    env = store.eventsourcing_env(f"sqlite:///{tmp}/{name}.db", create_table=True, recorder_topic=topic)
    app = TrialApplication(env, passwords=Argon2Passwords(1024, 1, 1), allocation_seed=b"bench" * 8,
                           sites={"MINSK": "Europe/Minsk"})
    if sealed:
        attach_head_signer(app.recorder, load_signer(None, Path(tmp) / name), 10.0)
    return app


def audited_command_rates(tmp: str, commands: int, block: int = 10) -> tuple[float, float]:
    """(unsealed, sealed) audited commands/s: birth-year corrections through the application, as
    ``POST /participants/{id}/corrections`` runs them (permission and version checks, the audit stamp,
    the event, the durable commit), one after another as one client's, into two stores: one sealing
    (leaf, nodes, heads every 10 s, as users get) and one not. The stores are written alternately,
    ``block`` commands at a time, for the reason ``sealing_rates`` gives. One client is the strict
    case: with concurrent clients a group commit seals many commands at once."""
    from api.cli import cli_actor

    work = {}
    for kind, sealed in (("plain", False), ("sealed", True)):
        app = _application(tmp, f"app-{kind}", sealed)
        user = app.register_user(cli_actor(), username="bench-inv", full_name="Bench Investigator", role="investigator",
                                 site="MINSK", password="benchmark password, long enough", source="cli")
        actor = app.actor_for(user["id"])
        ids = [app.screen_participant(actor, screening_number=f"SEAL-{i:05d}", site="MINSK", sex="F", birth_year=1970)["id"]
               for i in range(commands)]
        work[kind] = (app, actor, ids)
    spent = {"plain": 0.0, "sealed": 0.0}
    try:
        for k, start in enumerate(range(0, commands, block)):
            for kind in ("plain", "sealed") if k % 2 == 0 else ("sealed", "plain"):
                app, actor, ids = work[kind]
                started = time.perf_counter()
                for pid in ids[start : start + block]:
                    app.correct_participant(actor, pid, field="birth_year", new_value=1971, reason="transcription error")
                spent[kind] += time.perf_counter() - started
    finally:
        for app, _, _ in work.values():
            app.close()
    return commands / spent["plain"], commands / spent["sealed"]


def run(args: Any = None) -> list[dict[str, Any]]:
    leaves = getattr(args, "integrity_leaves", None) or getattr(args, "leaves", None) or 1_000_000
    commands = getattr(args, "integrity_commands", None) or getattr(args, "commands", None) or 2000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        # sealing overhead on the audited command rate (SQLite, durable: synchronous=FULL), the target
        plain, sealed = audited_command_rates(tmp, commands)
        ratio = sealed / plain
        rows.append(row("integrity", "integrity: audited commands with sealing (SQLite, 1 client)", round(sealed),
                        "commands/s", baseline="the same commands on a store without the Merkle log",
                        baseline_figure=round(plain), checks=[check("ratio", ratio, ">=", 0.9)],
                        notes=f"sealing costs {100 * (1 - ratio):.1f}% of the audited command rate ({commands} "
                              f"corrections each, the two stores written alternately 10 at a time; target <= 10%)"))
        # the storage alone, for reference: pre-encoded events straight into the recorder
        plain, sealed = sealing_rates(tmp, commands)
        ratio = sealed / plain
        rows.append(row("integrity", "integrity: recorder writes with sealing (SQLite, 2 events/tx, no application)",
                        round(sealed), "tx/s", baseline="the same writes without sealing", baseline_figure=round(plain),
                        notes=f"sealing costs {100 * (1 - ratio):.1f}% of the bare recorder's write rate, "
                              f"the strictest view (no command work to share the cost with)"))
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
    for result in run(parser.parse_args()):
        print(result)
