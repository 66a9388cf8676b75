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
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ExportJobs:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _status_path(self, job_id: str) -> Path:
        if not job_id.isalnum():
            raise KeyError(job_id)
        return self.directory / f"{job_id}.json"

    def _write_status(self, status: dict[str, Any]) -> None:
        path = self._status_path(status["id"])
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, path)  # readers never see a half-written status

    def start(self, owner: str, kind: str, filename: str, chunks: Iterable[bytes],
              on_error: Callable[[BaseException], None] | None = None) -> dict[str, Any]:
        """Run ``chunks`` to a file in the background; return the job's status."""
        self.directory.mkdir(parents=True, exist_ok=True)
        job_id = secrets.token_hex(12)
        status = {"id": job_id, "owner": owner, "kind": kind, "filename": filename, "state": "running",
                  "bytes": 0, "sha256": None, "created_at": _now(), "finished_at": None, "error": None}
        self._write_status(status)
        data_path = self.directory / f"{job_id}.data"

        def run() -> None:
            digest = hashlib.sha256()
            try:
                with open(data_path, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                        digest.update(chunk)
                        status["bytes"] += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                status.update(state="done", sha256=digest.hexdigest(), finished_at=_now())
            except BaseException as e:  # the job reports what went wrong; the API stays up
                status.update(state="failed", error=f"{type(e).__name__}: {e}", finished_at=_now())
                if on_error:
                    on_error(e)
            self._write_status(status)

        threading.Thread(target=run, name=f"export-{job_id}", daemon=True).start()
        return dict(status)

    def status(self, job_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._status_path(job_id).read_text())
        except (FileNotFoundError, KeyError, ValueError):
            raise KeyError(job_id) from None

    def data_path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.data"

    def wait(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """For tests and the CLI: poll until the job is no longer running."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status["state"] != "running" or time.monotonic() > deadline:
                return status
            time.sleep(0.02)
