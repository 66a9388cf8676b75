"""Checkpoints a SQLite database's WAL in a background thread, instead of in the commit that crosses
SQLite's automatic threshold (1,000 pages).

An automatic checkpoint runs inside the COMMIT of whichever connection crosses the threshold: that
connection copies the WAL into the database file and, with synchronous=FULL, waits for the fsyncs of
both. For the event store that commit is a group-committed batch held under the store's
cross-process write lock, so every command of the batch, and every command of the other workers
waiting for the lock, waited for the checkpoint too (the p99.9 of the HTTP benchmark).

Here the connections that commit keep only a large automatic checkpoint as a safety net
(``SAFETY_PAGES``: if this thread is not running, the WAL still cannot grow without bound), and one
thread per process runs a PASSIVE checkpoint at most every ``interval`` seconds while commits come
in. PASSIVE copies what no reader still needs and never blocks or waits for readers or writers;
the WAL is restarted from its beginning by the first commit after a checkpoint that copied all of it.
The checkpoint changes only where committed pages live, not whether they are durable: each COMMIT
still waits for its own fsync of the WAL (synchronous=FULL), and the checkpoint fsyncs the WAL
before it copies and the database file before the WAL is reused.
"""

from __future__ import annotations

import sqlite3
import threading

#: WAL pages at which a committing connection still checkpoints itself (64 MiB of 4 KiB pages):
#: the safety net for when no background checkpoint has run for a long time
SAFETY_PAGES = 16384

#: seconds between background checkpoints while commits come in
INTERVAL = 0.5


class WalCheckpointer:
    """One background checkpointer for one database file, in this process (started by the first
    ``written()``, again after a fork or if it died)."""

    def __init__(self, path: str, *, interval: float = INTERVAL, synchronous: str = "FULL",
                 name: str = "wal-checkpoint"):
        self.path = path
        self.interval = interval
        self.synchronous = synchronous
        self.name = name
        self._due = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: the last background checkpoints: (frames in the WAL, frames copied into the file)
        self.checkpoints: list[tuple[int, int]] = []
        #: how many background checkpoints ran (or found the checkpoint lock taken)
        self.runs = 0

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def written(self) -> None:
        """A transaction committed: have the WAL checkpointed soon, off the caller's thread."""
        if not self.running:
            with self._lock:
                if self._closing.is_set():
                    return
                if not self.running:
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()
        self._due.set()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        return conn

    def _loop(self) -> None:
        conn = self._open()
        try:
            while not self._closing.is_set():
                self._due.wait()
                if self._closing.is_set():
                    break
                self._due.clear()
                self.checkpoint(conn)
                self._closing.wait(self.interval)  # the WAL grows at most this long between checkpoints
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            # PASSIVE: copies what no reader still needs; blocks neither readers nor writers
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return  # another checkpoint in progress, or closing: the next commit asks again
        finally:
            self.runs += 1
        self.checkpoints.append((frames, copied))
        del self.checkpoints[:-10]

    def close(self) -> None:
        with self._lock:
            self._closing.set()
        self._due.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
