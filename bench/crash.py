"""Crash campaign: ``trialaudit serve --workers 2`` under a mixed read/write load, killed with SIGKILL.

    python -m bench.crash --store sqlite --cycles 20
    python -m bench.crash --store postgres --cycles 5        # TRIALAUDIT_TEST_POSTGRES_URL or --postgres-url

Each cycle starts the server (set-up and all, exactly as users do), drives HTTP load from several
threads (screenings, corrections; participant lists, audit trails, AE listings: reads that go through
the read models), kills the whole process group with SIGKILL at a random moment, restarts it, and
checks:

* every write the server acknowledged (2xx) is in the log after the restart: the participant exists
  and its version is at least the acknowledged one;
* no 5xx outside the kill window (a request still open when the server was killed may fail; any other
  5xx, and any 5xx during a phase without a kill, counts);
* ``trialaudit verify`` exits 0 with the server stopped.

The figures are printed at the end; the exit status is 1 if any check failed. ``Workload`` is also
used by the tests (tests/api/test_concurrent_read_models.py).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._server import Server, _pythonpath

PASSWORD = "crash campaign password 1"
#: argon2 parameters small enough for many logins (the production ones are tested elsewhere)
FAST_ARGON2 = {"TRIALAUDIT_ARGON2_MEMORY_KIB": "1024", "TRIALAUDIT_ARGON2_TIME_COST": "1",
               "TRIALAUDIT_ARGON2_PARALLELISM": "1"}
INCLUSION = {"ssc_clinical_diagnosis": True, "can_follow_procedures": True, "written_informed_consent": True}
EXCLUSION = {k: False for k in ("malignancy_last_5_years", "decompensated_disease", "chronic_infection_hiv_hbv_hcv_tb",
                                "pregnant_breastfeeding_or_no_contraception", "mental_disorder_or_dependence",
                                "unable_to_consent_or_comply", "other_risk_condition")}


def store_env(url: str, data_dir: Path) -> dict[str, str]:
    return {"TRIALAUDIT_DATABASE_URL": url, "TRIALAUDIT_DATA_DIR": str(data_dir), "TRIALAUDIT_DEMO": "0",
            "TRIALAUDIT_SITES": '{"MINSK": "Europe/Minsk"}', **FAST_ARGON2}


def cli(env: dict[str, str], workdir: Path, *args: str, stdin: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """``trialaudit ARGS`` in a subprocess with ``env`` added."""
    full = {**os.environ, **env, "PYTHONPATH": _pythonpath()}
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=full, cwd=workdir, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def add_users(env: dict[str, str], workdir: Path, names: list[str]) -> None:
    for name in names:
        r = cli(env, workdir, "users", "add", name, "--full-name", f"{name} Investigator", "--role", "investigator",
                "--site", "MINSK", stdin=PASSWORD + "\n")
        if r.returncode != 0:
            raise RuntimeError(f"users add {name}: {r.stdout}{r.stderr}")


@dataclass
class Outcome:
    kind: str
    status: int  # 0: no answer (connection refused or reset)
    started: float
    ended: float
    detail: str = ""


@dataclass
class Workload:
    """Mixed reads and writes over HTTP from ``threads`` threads, one user each, until stopped."""

    url: str
    users: list[str]
    write_share: float = 0.5
    outcomes: list[Outcome] = field(default_factory=list)
    #: participant id -> the highest version a 2xx write acknowledged
    acknowledged: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, args=(u, i), daemon=True) for i, u in enumerate(self.users)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _record(self, kind: str, started: float, response: httpx.Response | None, detail: str = "") -> None:
        status = response.status_code if response is not None else 0
        if response is not None and status >= 500:
            detail = response.text[:300]
        with self._lock:
            self.outcomes.append(Outcome(kind, status, started, time.monotonic(), detail))

    def _ack(self, body: dict) -> None:
        with self._lock:
            pid = body["id"]
            self.acknowledged[pid] = max(self.acknowledged.get(pid, 0), int(body["version"]))

    def _call(self, client: httpx.Client, kind: str, method: str, path: str, **kw) -> httpx.Response | None:
        started = time.monotonic()
        try:
            r = client.request(method, path, **kw)
        except httpx.HTTPError as e:
            self._record(kind, started, None, f"{type(e).__name__}: {e}")
            return None
        self._record(kind, started, r)
        return r

    def _login(self, client: httpx.Client, user: str) -> bool:
        r = self._call(client, "login", "POST", "/auth/token", data={"username": user, "password": PASSWORD})
        if r is None or r.status_code != 200:
            return False
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return True

    def _run(self, user: str, index: int) -> None:
        rng = random.Random(index * 7919 + int(time.time()))
        mine: list[str] = []
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                if "Authorization" not in client.headers and not self._login(client, user):
                    self._stop.wait(0.2)
                    continue
                r = self._step(client, rng, mine)
                if r is not None and r.status_code == 401:
                    client.headers.pop("Authorization", None)
                if r is None:
                    self._stop.wait(0.05)  # the server is down: do not spin

    def _step(self, client: httpx.Client, rng: random.Random, mine: list[str]) -> httpx.Response | None:
        if rng.random() < self.write_share or not mine:
            if not mine or rng.random() < 0.3:
                body = {"screening_number": f"C-{uuid.uuid4().hex[:10]}", "site": "MINSK", "sex": rng.choice("FM"),
                        "birth_year": rng.randint(1950, 2000)}
                r = self._call(client, "screen", "POST", "/participants", json=body)
                if r is not None and r.status_code == 201:
                    self._ack(r.json())
                    mine.append(r.json()["id"])
                return r
            pid = rng.choice(mine)
            body = {"field": "birth_year", "new_value": rng.randint(1950, 2000), "reason": "transcription error; see source"}
            r = self._call(client, "correct", "POST", f"/participants/{pid}/corrections", json=body)
            if r is not None and r.status_code == 200:
                self._ack(r.json())
            return r
        pid = rng.choice(mine)
        kind = rng.choice(("list", "trail", "ae_listing", "participant"))
        path = {"list": "/participants", "trail": f"/audit/events?participant={pid}",
                "ae_listing": f"/participants/{pid}/adverse-events", "participant": f"/participants/{pid}"}[kind]
        return self._call(client, kind, "GET", path)

    # ------------------------------------------------------------------ figures
    def server_errors(self, windows: list[tuple[float, float]] = ()) -> list[Outcome]:
        """The 5xx answers outside the ``windows`` (kill windows, monotonic seconds)."""
        return [o for o in self.outcomes if o.status >= 500
                and not any(a <= o.started <= b or a <= o.ended <= b or (o.started <= a and o.ended >= b)
                            for a, b in windows)]

    def counts(self) -> dict[str, int]:
        writes = [o for o in self.outcomes if o.kind in ("screen", "correct")]
        reads = [o for o in self.outcomes if o.kind in ("list", "trail", "ae_listing", "participant")]
        return {"writes": len(writes), "writes_2xx": sum(200 <= o.status < 300 for o in writes),
                "reads": len(reads), "reads_2xx": sum(200 <= o.status < 300 for o in reads),
                "5xx": sum(o.status >= 500 for o in self.outcomes),
                "no_answer": sum(o.status == 0 for o in self.outcomes),
                "other": dict(Counter(f"{o.kind} {o.status}" for o in self.outcomes
                                      if not 200 <= o.status < 300 and o.status and o.status < 500))}


def lost_writes(url: str, user: str, acknowledged: dict[str, int]) -> list[str]:
    """The acknowledged writes the restarted server does not have (participant missing or older)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/auth/token", data={"username": user, "password": PASSWORD})
        r.raise_for_status()
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        lost = []
        for pid, version in acknowledged.items():
            r = client.get(f"/participants/{pid}")
            if r.status_code != 200 or r.json()["version"] < version:
                lost.append(f"{pid} v{version}: {r.status_code} {r.text[:120]}")
        return lost


def kill_server(server: Server) -> None:
    """SIGKILL to the server's whole process group (supervisor and workers), as a power cut would."""
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.proc.wait(timeout=30)
    server._log.close()


@dataclass
class CycleResult:
    cycle: int
    counts: dict[str, int]
    errors_outside_window: int
    lost: int
    verify_rc: int
    detail: list[str]


def campaign(url: str, workdir: Path, cycles: int, *, threads: int = 4, load_seconds: tuple[float, float] = (1.5, 4.0),
             seed: int = 1, out=print) -> list[CycleResult]:
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    env = store_env(url, workdir / "keys")
    users = [f"crash{i}" for i in range(threads)]
    r = cli(env, workdir, "setup")
    if r.returncode != 0:
        raise RuntimeError(f"setup: {r.stdout}{r.stderr}")
    add_users(env, workdir, users)
    acknowledged: dict[str, int] = {}
    results = []
    for cycle in range(1, cycles + 1):
        detail: list[str] = []
        with Server({**env, "TRIALAUDIT_WORKERS": "2"}, workdir, args=["--workers", "2"]) as server:
            lost = lost_writes(server.url, users[0], acknowledged)  # what earlier cycles acknowledged
            detail += [f"lost: {x}" for x in lost]
            load = Workload(server.url, users)
            load.start()
            time.sleep(rng.uniform(*load_seconds))
            killed_at = time.monotonic()
            kill_server(server)
            window_end = time.monotonic()
            load.stop()
        acknowledged.update({k: max(v, acknowledged.get(k, 0)) for k, v in load.acknowledged.items()})
        errors = load.server_errors([(killed_at - 0.05, window_end + 60)])
        detail += [f"5xx {o.kind}: {o.status} {o.detail}" for o in errors[:5]]
        verify = cli(env, workdir, "verify")
        if verify.returncode != 0:
            detail.append(f"verify exit {verify.returncode}: {verify.stdout[-400:]}{verify.stderr[-400:]}")
        result = CycleResult(cycle, load.counts(), len(errors), len(lost), verify.returncode, detail)
        results.append(result)
        out(f"cycle {cycle}: {result.counts} 5xx outside the kill window {len(errors)}, lost {len(lost)}, "
            f"verify exit {verify.returncode}" + "".join(f"\n    {d}" for d in detail))
    # after the last kill: one more start, to check what the last cycle acknowledged
    with Server({**env, "TRIALAUDIT_WORKERS": "2"}, workdir, args=["--workers", "2"]) as server:
        lost = lost_writes(server.url, users[0], acknowledged)
    if lost:
        results[-1].lost += len(lost)
        results[-1].detail += [f"lost: {x}" for x in lost]
    return results


def summary(results: list[CycleResult], acknowledged_total: int | None = None) -> str:
    writes = sum(r.counts["writes_2xx"] for r in results)
    reads = sum(r.counts["reads_2xx"] for r in results)
    return (f"{len(results)} kill -9 cycles: {writes} acknowledged writes, {reads} successful reads, "
            f"{sum(r.lost for r in results)} lost acknowledged writes, "
            f"{sum(r.errors_outside_window for r in results)} 5xx outside the kill window, "
            f"verify failed after {sum(r.verify_rc != 0 for r in results)} restarts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4, help="load threads (one user each)")
    parser.add_argument("--postgres-url", default=os.environ.get("TRIALAUDIT_TEST_POSTGRES_URL", ""),
                        help="a PostgreSQL database; a fresh schema of it is used and dropped")
    parser.add_argument("--workdir", type=Path, default=None, help="where the store and keys go (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="trialaudit-crash-"))
    schema = None
    if args.store == "sqlite":
        url = f"sqlite:///{workdir}/trialaudit.db"
    else:
        if not args.postgres_url:
            parser.error("--store postgres needs --postgres-url or TRIALAUDIT_TEST_POSTGRES_URL")
        schema = f"crash_{uuid.uuid4().hex[:10]}"
        url = f"{args.postgres_url}{'&' if '?' in args.postgres_url else '?'}schema={schema}"
    started = time.monotonic()
    try:
        results = campaign(url, workdir, args.cycles, threads=args.threads, seed=args.seed)
    finally:
        if schema:
            import psycopg

            from infrastructure.store import postgres_conninfo

            with psycopg.connect(postgres_conninfo(args.postgres_url), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"{args.store}: {summary(results)} ({time.monotonic() - started:.0f} s, store in {workdir})")
    bad = any(r.lost or r.errors_outside_window or r.verify_rc for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
