"""Background export jobs (R15: a whole-trail export runs as a job, not a blocking request).

A job writes the bytes of an export to a file under ``data_dir/exports`` in a thread of its own,
keeping a small JSON status file beside it (state, bytes, rows, SHA-256 of the file, error), so any
API worker on the machine can report on it and serve the finished file. What is exported, and who
may export it, is decided by the application before the job starts (and recorded on the trail).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from infrastructure.files import open_private, private_dir

JOB_ID = re.compile(r"[0-9a-f]{24}")


class TooManyJobs(Exception):
    """The owner already has as many export jobs running as allowed."""

    def __init__(self, running: int, limit: int):
        self.running, self.limit = running, limit
        super().__init__(f"{running} export jobs of yours are running (at most {limit} at once); "
                         "wait for one to finish")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    return True


class ExportJobs:
    """Export files are written under a temporary name and renamed when complete (F.23), 0600 in a 0700
    directory (E.17); an owner has at most ``max_running_per_owner`` jobs running, and finished jobs are
    removed ``retention`` after they finish (E.16)."""

    def __init__(self, directory: Path, *, max_running_per_owner: int = 3,
                 retention: dt.timedelta = dt.timedelta(hours=24)):
        self.directory = Path(directory)
        self.max_running_per_owner = max_running_per_owner
        self.retention = retention
        self._lock = threading.Lock()
        self._purged_at = 0.0

    def _status_path(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise KeyError(job_id)  # never a path: only ids this class made (24 hex digits)
        return self.directory / f"{job_id}.json"

    def _write_status(self, status: dict[str, Any]) -> None:
        path = self._status_path(status["id"])
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
        with open_private(tmp) as f:
            f.write(json.dumps(status).encode())
        os.replace(tmp, path)  # readers never see a half-written status

    def _jobs(self) -> list[dict[str, Any]]:
        jobs = []
        for path in self.directory.glob("*.json"):
            try:
                jobs.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return jobs

    def running(self, owner: str) -> int:
        """How many of ``owner``'s jobs are running (a job whose process died is marked failed)."""
        count = 0
        for job in self._jobs():
            if job.get("owner") != owner or job.get("state") != "running":
                continue
            if job.get("host") == os.uname().nodename and not _alive(job.get("pid")):
                job.update(state="failed", error="interrupted: the server process stopped", finished_at=_now())
                self._write_status(job)
                continue
            count += 1
        return count

    def check_capacity(self, owner: str) -> None:
        """Raise TooManyJobs when ``owner`` may not start another job now (call before recording one)."""
        running = self.running(owner)
        if running >= self.max_running_per_owner:
            raise TooManyJobs(running, self.max_running_per_owner)

    def purge(self, now: dt.datetime | None = None) -> int:
        """Remove the files of jobs finished more than ``retention`` ago; return how many jobs went."""
        now = now or dt.datetime.now(dt.timezone.utc)
        removed = 0
        for job in self._jobs():
            finished = job.get("finished_at")
            if job.get("state") == "running" or not finished or now - _parse(finished) < self.retention:
                continue
            job_id = job.get("id", "")
            if not JOB_ID.fullmatch(str(job_id)):
                continue
            for path in (self.data_path(job_id), self.directory / f"{job_id}.data.tmp", self._status_path(job_id)):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            removed += 1
        return removed

    def start(self, owner: str, kind: str, filename: str, chunks: Iterable[bytes],
              on_error: Callable[[BaseException], None] | None = None) -> dict[str, Any]:
        """Run ``chunks`` to a file in the background; return the job's status."""
        private_dir(self.directory)
        self._purged_at = 0.0
        self._maybe_purge()
        with self._lock:
            self.check_capacity(owner)
            job_id = secrets.token_hex(12)
            status = {"id": job_id, "owner": owner, "kind": kind, "filename": filename, "state": "running",
                      "bytes": 0, "sha256": None, "created_at": _now(), "finished_at": None, "error": None,
                      "pid": os.getpid(), "host": os.uname().nodename}
            self._write_status(status)
        data_path = self.data_path(job_id)
        partial = self.directory / f"{job_id}.data.tmp"

        def run() -> None:
            digest = hashlib.sha256()
            try:
                with open_private(partial) as out:
                    for chunk in chunks:
                        out.write(chunk)
                        digest.update(chunk)
                        status["bytes"] += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, data_path)  # the file exists under its name only once complete
                status.update(state="done", sha256=digest.hexdigest(), finished_at=_now())
            except BaseException as e:  # the job reports what went wrong; the API stays up
                try:
                    partial.unlink()
                except FileNotFoundError:
                    pass
                status.update(state="failed", error=f"{type(e).__name__}: {e}", finished_at=_now())
                if on_error:
                    on_error(e)
            self._write_status(status)

        threading.Thread(target=run, name=f"export-{job_id}", daemon=True).start()
        return dict(status)

    def _maybe_purge(self) -> None:
        """Purge at most once a minute per process, also when nobody starts a new export."""
        import time

        if time.monotonic() - self._purged_at >= 60:
            self._purged_at = time.monotonic()
            if self.directory.exists():
                self.purge()

    def status(self, job_id: str) -> dict[str, Any]:
        self._maybe_purge()
        try:
            return json.loads(self._status_path(job_id).read_text())
        except (FileNotFoundError, KeyError, ValueError):
            raise KeyError(job_id) from None

    def data_path(self, job_id: str) -> Path:
        return self._status_path(job_id).with_suffix(".data")

    def wait(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """For tests and the CLI: poll until the job is no longer running."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status["state"] != "running" or time.monotonic() > deadline:
                return status
            time.sleep(0.02)
