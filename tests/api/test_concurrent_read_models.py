"""Issue 13 F.20: API workers catching up the same read models, and a rebuild while the server runs.

A real ``trialaudit serve --workers 2`` (two processes over one store) under mixed reads and writes:
reads of the read models (participant list, audit trail, AE listing) must never answer 5xx, and
``trialaudit projections rebuild`` run beside the server must succeed, on both stores.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench._server import Server
from bench.crash import PASSWORD, Workload, add_users, cli, store_env

USERS = ["load0", "load1", "load2", "load3"]


def _serve(store_url: str, tmp_path: Path, users: list[str] = USERS) -> tuple[dict[str, str], Server]:
    env = store_env(store_url, tmp_path / "keys")
    assert cli(env, tmp_path, "setup").returncode == 0
    add_users(env, tmp_path, users)
    return env, Server({**env, "TRIALAUDIT_WORKERS": "2"}, tmp_path, args=["--workers", "2"])


def _errors(load: Workload) -> list[str]:
    return [f"{o.kind} {o.status}: {o.detail}" for o in load.outcomes if o.status >= 500 or o.status == 0]


def test_two_workers_under_mixed_load_answer_no_5xx(store_url, tmp_path):
    users = [*USERS, "load4", "load5"]  # reads on one worker while the other catches up after a write
    env, server = _serve(store_url, tmp_path, users)
    with server:
        load = Workload(server.url, users)
        load.start()
        time.sleep(10)
        load.stop()
    counts = load.counts()
    assert counts["reads_2xx"] > 50 and counts["writes_2xx"] > 50, counts
    assert _errors(load) == [], counts


def test_a_rebuild_while_the_server_runs_succeeds_and_reads_stay_2xx(store_url, tmp_path):
    env, server = _serve(store_url, tmp_path)
    with server:
        load = Workload(server.url, USERS)
        load.start()
        time.sleep(2)
        rebuilds = [cli(env, tmp_path, "projections", "rebuild") for _ in range(3)]
        time.sleep(1)
        load.stop()
        # the rebuilt read models are complete: every acknowledged participant is listed
        with httpx.Client(base_url=server.url, timeout=30) as client:
            token = client.post("/auth/token", data={"username": USERS[0], "password": PASSWORD}).json()["access_token"]
            listed = {p["id"] for p in client.get("/participants", headers={"Authorization": f"Bearer {token}"}).json()}
    assert [r.returncode for r in rebuilds] == [0, 0, 0], [r.stdout[-500:] + r.stderr[-2000:] for r in rebuilds]
    assert set(load.acknowledged) <= listed
    assert _errors(load) == [], load.counts()
