"""``trialaudit serve``: the workers split the connections evenly (keep-alive connections stay where
they were accepted) and freeze their start-up objects out of the full garbage collections (issue 2)."""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from uvicorn import Config

from api.serving import AppServer, ConnectionCounts

REPO = Path(__file__).resolve().parents[2]


def test_connection_counts_are_shared_through_the_file():
    counts = ConnectionCounts.create(3)
    try:
        other = pickle.loads(pickle.dumps(counts))  # as a worker process gets it: the path, not the map
        assert other.path == counts.path and other.workers == 3
        counts.set(0, 5)
        other.set(1, 2)
        other.set(2, 7)
        assert counts.get(1) == 2 and other.get(0) == 5
        assert counts.fewest_elsewhere(0) == 2
        assert counts.fewest_elsewhere(1) == 5
        other.close()
    finally:
        counts.remove()
    assert not os.path.exists(counts.path)


def test_the_server_freezes_what_start_up_allocated():
    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    config = Config(app, lifespan="off")
    config.load()
    server = AppServer(config)
    server.lifespan = config.lifespan_class(config)  # as uvicorn's serve() sets it up
    before = gc.get_freeze_count()
    try:
        asyncio.run(server.startup(sockets=[]))
        assert server.started
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


def _children(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _established_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """Server-side ESTABLISHED connections on ``port`` held by each of ``pids`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    held = {}
    for pid in pids:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    n += 1
        except OSError:
            continue
        held[pid] = n
    return held


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_workers_split_the_connections_evenly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRIALAUDIT_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
           "TRIALAUDIT_DATA_DIR": str(tmp_path / "keys"), "TRIALAUDIT_DEMO": "0"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    clients = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            # both workers accepting (until then, the one that is takes every connection)
            if (tmp_path / "server.log").read_text().count("accepting connections") == 2:
                break
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        workers = [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
        # as wrk does: the connections opened in a burst, then kept open and used
        for _ in range(8):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        for c in clients:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        for c in clients:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
        held = _established_by_pid(port, workers)
        assert sorted(held.values()) == [4, 4], held
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()
