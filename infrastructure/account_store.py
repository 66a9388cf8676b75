"""What an account needs besides its events: the current password hash, the sessions, the login throttle.

Kept in tables of their own in the event store's database (same SQLite file, same PostgreSQL schema),
outside the event log: they are never sealed into the Merkle log, never in `/integrity/leaves`, a
bundle or an export. The log keeps the audited facts (a password was set, by whom, when; logins,
failed logins); these tables keep only what must change or be forgotten:

- ``account_credentials``: one row per account, its CURRENT argon2id hash (no history);
- ``account_sessions``: one row per issued token (keyed by its ``jti``): when it was issued, last seen,
  its absolute end, and whether it was revoked. Every API worker on the database reads the same rows,
  so a logout or a revocation on one worker holds on all of them;
- ``login_throttle``: failed-login counters per client address and per username, per window.

SQL lives here (the dependency rule); the application sees the ``AccountStore`` port.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg.sql import SQL, Identifier

from infrastructure.changecount import ChangeCounter
from infrastructure.filelock import ProcessLock


class SQLAccountStore:
    """The account tables over the recorder's own connection pool (SQLite or PostgreSQL)."""

    TABLES = ("account_credentials", "account_sessions", "login_throttle")

    def __init__(self, recorder: Any, postgres_cache_seconds: float = 1.0):
        self._recorder = recorder
        #: PostgreSQL: how long a session row read here is believed (revocations made in this process
        #: clear it at once; those of other workers hold here within this time)
        self.postgres_cache_seconds = postgres_cache_seconds
        self._datastore = recorder.datastore
        self._postgres = hasattr(self._datastore, "schema")  # the SQLite datastore has none
        self._tables = {name: self._qualified(name) for name in self.TABLES}
        # SQLite file: a session row read here is kept while no revocation has been committed anywhere
        # (a generation shared through a memory-mapped file, as for the accounts: changecount.py), so
        # the usual request reads no row at all. PostgreSQL (other machines may revoke): kept for
        # ``postgres_cache_seconds`` at most.
        self._revocations: ChangeCounter | None = None
        self._sessions: dict[str, tuple[int, dict[str, Any]]] = {}
        pool = self._datastore.pool
        if not self._postgres and not pool.is_sqlite_memory_mode:
            self._revocations = ChangeCounter(f"{pool.db_name}.changes.sessions")
            self._revoke_lock = ProcessLock(f"{pool.db_name}.sessions-lock")
            self._revoke_thread_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    def _qualified(self, name: str) -> str:
        if self._postgres:
            return SQL("{}.{}").format(Identifier(self._datastore.schema), Identifier(name)).as_string(None)
        return name

    def _sql(self, statement: str) -> str:
        statement = statement.format(**self._tables)
        return statement.replace("?", "%s") if self._postgres else statement

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction (SQLite: BEGIN IMMEDIATE, so a read-then-write never deadlocks)."""
        if self._postgres:
            with self._datastore.transaction(commit=True) as curs:
                yield curs
            return
        with self._datastore.get_connection(commit=True) as conn:
            sqlite_conn: sqlite3.Connection = conn._sqlite_conn
            sqlite_conn.execute("BEGIN IMMEDIATE")
            try:
                yield sqlite_conn
                sqlite_conn.commit()
            except BaseException:
                if sqlite_conn.in_transaction:  # never hand a connection back mid-transaction
                    sqlite_conn.rollback()
                raise

    def _read(self, statement: str, params: Sequence[Any]) -> list[Any]:
        if self._postgres:  # the pool's connections are autocommit: one statement, one round trip
            with self._datastore.get_connection() as conn:
                return conn.execute(self._sql(statement), params).fetchall()
        return self._recorder._select(self._sql(statement), params)

    def _execute(self, conn: Any, statement: str, params: Sequence[Any]) -> Any:
        return conn.execute(self._sql(statement), params)

    def create_tables(self) -> None:
        statements = [
            "CREATE TABLE IF NOT EXISTS {account_credentials} (user_id TEXT PRIMARY KEY, "
            "password_hash TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {account_sessions} (jti TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
            "issued_at DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL, "
            "expires_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)",
            "CREATE INDEX IF NOT EXISTS account_sessions_user ON {account_sessions} (user_id)",
            "CREATE TABLE IF NOT EXISTS {login_throttle} (key TEXT PRIMARY KEY, "
            "window_start DOUBLE PRECISION NOT NULL, failures INTEGER NOT NULL, detail TEXT NOT NULL)",
        ]
        with self._write() as conn:
            for statement in statements:
                self._execute(conn, statement, ())

    # ------------------------------------------------------------------ credentials
    def password_hash(self, user_id: str) -> str | None:
        rows = self._read("SELECT password_hash FROM {account_credentials} WHERE user_id = ?", (str(user_id),))
        return rows[0]["password_hash"] if rows else None

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace the account's hash: only the current one is kept."""
        with self._write() as conn:
            self._execute(
                conn,
                "INSERT INTO {account_credentials} (user_id, password_hash, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, "
                "updated_at = excluded.updated_at",
                (str(user_id), password_hash, time.time()),
            )

    def credential_user_ids(self) -> set[str]:
        return {row["user_id"] for row in self._read("SELECT user_id FROM {account_credentials}", ())}

    # ------------------------------------------------------------------ sessions
    def open_session(self, jti: str, user_id: str, issued_at: float, expires_at: float) -> None:
        with self._write() as conn:
            self._execute(
                conn,
                "INSERT INTO {account_sessions} (jti, user_id, issued_at, last_seen, expires_at) VALUES (?, ?, ?, ?, ?)",
                (jti, str(user_id), issued_at, issued_at, expires_at),
            )

    def session(self, jti: str, fresh: bool = False) -> dict[str, Any] | None:
        """The session row (a copy). ``fresh``: read it, whatever is kept (e.g. before calling it idle:
        another worker may have seen it since)."""
        counter = self._revocations
        if self._postgres:
            generation = -int(time.monotonic() / self.postgres_cache_seconds) if self.postgres_cache_seconds > 0 else None
            current = lambda: generation  # noqa: E731 - a time slot stands for the generation
        else:
            generation = counter.generation() if counter is not None else None
            current = counter.generation if counter is not None else (lambda: None)
        if generation is not None and not fresh:
            hit = self._sessions.get(jti)
            if hit is not None and hit[0] == generation:
                return dict(hit[1])
        rows = self._read(
            "SELECT jti, user_id, issued_at, last_seen, expires_at, revoked_at FROM {account_sessions} WHERE jti = ?",
            (jti,),
        )
        row = dict(rows[0]) if rows else None
        if row is not None and generation is not None and current() == generation:
            if len(self._sessions) >= 10_000:
                self._sessions.clear()
            self._sessions[jti] = (generation, row)
        return dict(row) if row is not None else None

    def touch_session(self, jti: str, now: float) -> None:
        with self._write() as conn:
            self._execute(
                conn,
                "UPDATE {account_sessions} SET last_seen = ? WHERE jti = ? AND last_seen < ? AND revoked_at IS NULL",
                (now, jti, now),
            )
        hit = self._sessions.get(jti)
        if hit is not None and hit[1]["last_seen"] < now:
            hit[1]["last_seen"] = now

    @contextmanager
    def _revoking(self) -> Iterator[None]:
        """Around a revocation: every worker's kept session rows are stale once it has committed."""
        if self._revocations is None:
            try:
                yield
            finally:
                self._sessions.clear()
            return
        with self._revoke_thread_lock, self._revoke_lock.hold():
            self._revocations.begin()
            try:
                yield
            finally:
                self._revocations.end()
                self._sessions.clear()

    def revoke_session(self, jti: str, now: float) -> None:
        with self._revoking(), self._write() as conn:
            self._execute(
                conn, "UPDATE {account_sessions} SET revoked_at = ? WHERE jti = ? AND revoked_at IS NULL", (now, jti)
            )

    def revoke_user_sessions(self, user_id: str, now: float) -> int:
        with self._revoking(), self._write() as conn:
            cursor = self._execute(
                conn,
                "UPDATE {account_sessions} SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (now, str(user_id)),
            )
            count = cursor.rowcount
            # sessions past their absolute end are of no use to anyone: forget them
            self._execute(conn, "DELETE FROM {account_sessions} WHERE expires_at < ?", (now - 86400,))
            return count

    # ------------------------------------------------------------------ login throttle
    def throttle_count(self, key: str, now: float, window: float) -> tuple[int, float]:
        """Failures of ``key`` in its current window, and when that window ends."""
        rows = self._read("SELECT window_start, failures FROM {login_throttle} WHERE key = ?", (key,))
        if not rows or rows[0]["window_start"] + window <= now:
            return 0, now + window
        return rows[0]["failures"], rows[0]["window_start"] + window

    def count_failure(
        self, key: str, now: float, window: float, note: str | None = None
    ) -> tuple[int, dict[str, Any] | None]:
        """Count one failure of ``key``; return the count in the current window and, when this failure
        opened a new window, what the previous window held (start, failures, notes) if anything."""
        with self._write() as conn:
            row = self._execute(
                conn, "SELECT window_start, failures, detail FROM {login_throttle} WHERE key = ?", (key,)
            ).fetchone()
            previous = None
            if row is None or row["window_start"] + window <= now:
                if row is not None:
                    previous = {"window_start": row["window_start"], "failures": row["failures"],
                                "notes": json.loads(row["detail"])}
                notes = [note] if note else []
                self._execute(
                    conn,
                    "INSERT INTO {login_throttle} (key, window_start, failures, detail) VALUES (?, ?, 1, ?) "
                    "ON CONFLICT (key) DO UPDATE SET window_start = excluded.window_start, failures = 1, "
                    "detail = excluded.detail",
                    (key, now, json.dumps(notes)),
                )
                # keys idle for a long time are forgotten (the log keeps the audited summary)
                self._execute(conn, "DELETE FROM {login_throttle} WHERE window_start < ?", (now - 30 * window,))
                return 1, previous
            notes = json.loads(row["detail"])
            if note and note not in notes and len(notes) < 20:
                notes.append(note)
            self._execute(
                conn, "UPDATE {login_throttle} SET failures = failures + 1, detail = ? WHERE key = ?",
                (json.dumps(notes), key),
            )
            return row["failures"] + 1, None

    def reset_throttle(self, key: str) -> None:
        with self._write() as conn:
            self._execute(conn, "DELETE FROM {login_throttle} WHERE key = ?", (key,))
