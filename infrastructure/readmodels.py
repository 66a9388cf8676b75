"""Read-model storage: a SQLite file beside the event store, or the PostgreSQL schema itself.

Read models are derived data that can be rebuilt from the events at any time, so the SQLite file
uses synchronous=NORMAL: after a power loss it may lose its last batches, and it is consistent
(rows and position commit together), so it simply re-reads them. The event store itself stays at
synchronous=FULL.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from infrastructure.filelock import ProcessLock
from infrastructure.files import private_dir, private_sqlite, private_umask
from infrastructure.store import parse_database_url, postgres_conninfo

#: WAL pages between automatic checkpoints during a rebuild (64 MiB of 4 KiB pages; SQLite's default is 1000)
BULK_CHECKPOINT_PAGES = 16384
TRACKING_DDL = "CREATE TABLE IF NOT EXISTS projection_tracking (name TEXT PRIMARY KEY, position BIGINT NOT NULL)"


def views_path(events_path: str) -> str:
    p = Path(events_path)
    return str(p.with_name(p.stem + "-views" + (p.suffix or ".db")))


class _PgCursor:
    def __init__(self, cur):
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cur.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])

    def fetchone(self):
        return self._cur.fetchone()

    def fetchall(self):
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class _Tracking:
    """The projection positions, the same SQL on both stores (``?`` becomes ``%s`` on PostgreSQL)."""

    def ensure_tracking(self, name: str) -> None:
        with self.transaction() as cur:  # type: ignore[attr-defined]
            cur.execute("INSERT INTO projection_tracking (name, position) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (name,))

    def positions(self) -> dict[str, int]:
        """Every projection's position, in one query (a wait for the read models asks often)."""
        return {r["name"]: r["position"] for r in self.query("SELECT name, position FROM projection_tracking")}  # type: ignore[attr-defined]

    def advance(self, cursor, name: str, old: int, new: int) -> bool:
        """Compare-and-set: False when another worker moved the position first."""
        cursor.execute("UPDATE projection_tracking SET position = ? WHERE name = ? AND position = ?", (new, name, old))
        return cursor.rowcount == 1


#: seconds between background checkpoints of the read models' WAL while it is being written
CHECKPOINT_INTERVAL = 0.5


class SQLiteReadModels(_Tracking):
    """Read models in a SQLite file. Its WAL is checkpointed by a background thread, not by the
    connection that happens to commit past 1,000 pages (SQLite's automatic checkpoint): that
    connection is usually a query catching up one event for a reader, which then waited for the
    checkpoint's copy and fsync (p99 of a participant's trail 21 ms instead of 5 ms at 1,000,000
    events). A rebuild (``bulk``) still checkpoints in line, and counts it."""

    dialect = "sqlite"

    def __init__(self, path: str):
        self.path = path
        private_dir(Path(path).parent)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._process_lock = ProcessLock(path + ".lock")
        self._checkpoint_due = threading.Event()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._checkpointer_lock = threading.Lock()
        self._in_sqlite = threading.Lock()  # held by the checkpointer thread while it calls SQLite
        #: the last background checkpoints: (frames in the WAL, frames copied into the file)
        self.checkpoints: list[tuple[int, int]] = []
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(TRACKING_DDL)

    def _open(self) -> sqlite3.Connection:
        with private_umask() if not Path(self.path).exists() else nullcontext():
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        private_sqlite(self.path)  # the read-model file and its WAL/SHM: 0600 (E.17)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        return conn

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            self._all.append(conn)
        return conn

    def _written(self) -> None:
        """A transaction committed: have the WAL checkpointed soon, off this thread."""
        if self._checkpointer is None or not self._checkpointer.is_alive():
            with self._checkpointer_lock:
                if self._closing.is_set():
                    return
                if self._checkpointer is None or not self._checkpointer.is_alive():
                    self._checkpointer = threading.Thread(
                        target=self._checkpoint_loop, name="views-checkpoint", daemon=True)
                    self._checkpointer.start()
        self._checkpoint_due.set()

    def _checkpoint_loop(self) -> None:
        with self._in_sqlite:
            conn = self._open()
        try:
            while not self._closing.is_set():
                self._checkpoint_due.wait()
                if self._closing.is_set():
                    break
                self._checkpoint_due.clear()
                try:
                    # PASSIVE: copies what no reader still needs, blocks neither readers nor writers
                    with self._in_sqlite:
                        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints.append((frames, copied))
                    del self.checkpoints[:-10]
                except sqlite3.Error:
                    pass  # busy or closing: the next commit asks again
                self._closing.wait(CHECKPOINT_INTERVAL)  # the WAL grows at most this long between
        finally:
            with self._in_sqlite:
                conn.close()

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No background thread of this store is inside SQLite meanwhile: a process forked now (the
        rebuild helper) does not inherit a mutex that SQLite held in that thread. Forked during a
        checkpoint, the helper hung for good in its first ``sqlite3.connect`` (the file-locking
        mutex that opening a database takes was the checkpoint's, and no thread of the child would
        ever release it)."""
        with self._in_sqlite:
            yield

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        with self._write_lock:
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()
            finally:
                cur.close()
        self._written()

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """For a rebuild: a long series of big transactions on this thread's connection.

        The WAL is checkpointed every 64 MiB instead of every 4 MiB (a page that every batch touches
        is copied into the file once per checkpoint, not once per batch), and once at the end, so the
        cost is counted in the rebuild.

        secure_delete is FAST instead of the ON this SQLite is built with: dropping the old tables
        then frees their pages instead of writing zeros over each (2 s and 120 MB of WAL at 77k
        events). Deleted content is still zeroed in the pages that are written anyway, and every
        row of a read model is a copy of the append-only event store beside it, which keeps it all."""
        conn = self._connection()
        (checkpoint,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        (secure_delete,) = conn.execute("PRAGMA secure_delete").fetchone()
        conn.execute(f"PRAGMA wal_autocheckpoint={BULK_CHECKPOINT_PAGES}")
        conn.execute("PRAGMA secure_delete=FAST")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint)}")
            conn.execute(f"PRAGMA secure_delete={int(secure_delete)}")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def exclusive(self, blocking: bool = True):
        """Serialise catching up across the processes sharing this file (others skip or wait)."""
        return self._process_lock.hold(blocking)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._connection().execute(sql, tuple(params))
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def position(self, name: str) -> int:
        row = self._connection().execute("SELECT position FROM projection_tracking WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        self._closing.set()
        self._checkpoint_due.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        for conn in self._all:
            try:
                conn.close()
            except Exception:
                pass
        self._all.clear()


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


class PostgresReadModels(_Tracking):
    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 4):
        from psycopg_pool import ConnectionPool

        schema = parse_database_url(url)["schema"]
        self._conninfo = postgres_conninfo(url)
        # the advisory lock of this schema's read models: (a constant, the schema's CRC-32), both int4
        self._lock_key = (_signed32(0x7472_6961), _signed32(zlib.crc32(f"{schema}:read-models".encode())))
        self._lock_conn: Any = None
        self._lock_guard = threading.Lock()  # threads of one process wait here, not on the server
        self._held = threading.local()
        self.pool = ConnectionPool(
            postgres_conninfo(url),
            min_size=1,
            max_size=max(2, pool_size),
            # autocommit: a query is one round trip (no BEGIN/COMMIT around it); transaction() still
            # opens a real transaction for the rows and the position together
            kwargs={"options": f"-c search_path={schema}", "autocommit": True},
            open=True,
        )
        with self.pool.connection() as conn:
            conn.execute(TRACKING_DDL)

    def bulk(self):
        """For a rebuild: nothing to change on PostgreSQL."""
        return nullcontext()

    def quiet(self):
        """Before a fork: no background thread of this store to hold back (its pool's connections are
        never used by the child, which opens its own)."""
        return nullcontext()

    @contextmanager
    def exclusive(self, blocking: bool = True) -> Iterator[bool]:
        """Serialise catching up (and rebuilding) across the processes sharing this schema, as the
        file lock does on SQLite: a session-level advisory lock, held on a connection of its own.

        Compare-and-set of the positions alone was not enough: two workers applying the same page
        both wrote its rows before either moved the position, so the loser failed on a unique key
        or a deadlock (a 500 to its reader) instead of rolling back quietly, and a rebuild beside a
        running server failed the same way. Not ``blocking``: yield False at once when another
        process holds it. The lock goes with its connection, so a worker killed while holding it
        releases it. Re-entrant within a thread."""
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield True
            finally:
                self._held.depth -= 1
            return
        with self._lock_guard:
            conn = self._lock_connection()
            try:
                if blocking:
                    conn.execute("SELECT pg_advisory_lock(%s, %s)", self._lock_key)
                    acquired = True
                else:
                    (acquired,) = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", self._lock_key).fetchone()
            except Exception:
                self._drop_lock_connection()
                raise
            if not acquired:
                yield False
                return
            self._held.depth = 1
            try:
                yield True
            finally:
                self._held.depth = 0
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", self._lock_key)
                except Exception:  # the connection broke: the server released the lock with it
                    self._drop_lock_connection()

    def _lock_connection(self):
        import psycopg

        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.broken:
            self._lock_conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._lock_conn

    def _drop_lock_connection(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.close()
            except Exception:
                pass
        self._lock_conn = None

    @contextmanager
    def transaction(self) -> Iterator[_PgCursor]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield _PgCursor(cur)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def position(self, name: str) -> int:
        rows = self.query("SELECT position FROM projection_tracking WHERE name = ?", (name,))
        return rows[0]["position"] if rows else 0

    def close(self) -> None:
        self._drop_lock_connection()
        self.pool.close()


def open_read_models(url: str, pool_size: int = 4):
    parts = parse_database_url(url)
    if parts["kind"] == "sqlite":
        return SQLiteReadModels(views_path(parts["path"]))
    return PostgresReadModels(url, pool_size)
