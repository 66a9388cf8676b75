"""``trialaudit serve`` in a subprocess, exactly as users start it, stopped reliably afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process (Linux), for "was it CPU-bound?"."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """``cpu_seconds`` of a process plus its live descendants (Linux; a worker that exited is not counted)."""
    total = cpu_seconds(pid)
    if total is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += tree_cpu_seconds(int(child)) or 0.0
    return total


class Server:
    """Runs ``python -m api.cli serve`` (the ``trialaudit serve`` entry point: set-up, then uvicorn with
    uvloop/httptools when installed, one process) with ``env`` added to the environment."""

    def __init__(self, env: dict[str, str], workdir: Path, *, args: list[str] | None = None,
                 command: list[str] | None = None, pythonpath: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PYTHONPATH": pythonpath or _pythonpath()}
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        self.args = args or []
        #: Another server command (experiments: other uvicorn options); {port} is filled in.
        self.command = command
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        if self.command:
            cmd = [c.format(port=self.port, python=sys.executable) for c in self.command]
        else:
            cmd = [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=self.env, cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        """CPU time of the server and its worker processes (uvicorn's supervisor does little itself)."""
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL to the process group if it lingers."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _pythonpath() -> str:
    current = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(REPO), current) if p)
