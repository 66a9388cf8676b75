"""A lock shared by the processes of one machine (fcntl.flock on a file beside the SQLite store).

SQLite serialises writers across processes, but a process that finds the database busy sleeps and
retries (1, 2, 5, 10 ... 100 ms), which showed up as 300 ms p99 with two API workers. A blocking
flock wakes the next writer the moment the lock is released.
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from collections.abc import Iterator


class ProcessLock:
    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._open_lock = threading.Lock()

    def _descriptor(self) -> int:
        with self._open_lock:
            if self._fd is None or os.getpid() != self._pid:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            return self._fd

    @contextmanager
    def hold(self, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock (threads of one process must serialise among themselves)."""
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
