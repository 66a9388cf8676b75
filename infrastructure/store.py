"""The event store on SQLite (embedded default) or PostgreSQL (production), append-only in the database.

Both recorders
- refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the event table with triggers (R10), and
- call ``_seal`` inside the very transaction that stores events, with the table's write lock held,
  so that whatever is derived from the log in that hook (the Merkle log) can never fork or lag.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from eventsourcing.persistence import (
    ConnectionPoolClosedError,
    ConnectionUnavailableError,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteFactory,
)
import psycopg
from psycopg.sql import SQL, Identifier

from infrastructure.changecount import ChangeCounter
from infrastructure.filelock import ProcessLock
from infrastructure.files import private_dir, private_sqlite, private_umask

APP_NAME = "trialaudit"


class StoreConfigError(ValueError):
    pass


# --------------------------------------------------------------------------- SQLite
class _LifoDeque(deque):
    """The pool's deque, taken from the end connections are returned to."""

    def popleft(self) -> Any:  # the library's pool takes connections with popleft()
        return self.pop()


class DurableSQLiteConnectionPool(SQLiteConnectionPool):
    """Every connection uses synchronous=FULL: an acknowledged commit survives power loss.

    The library's pool queues every caller behind one semaphore, so in WAL mode readers wait while
    a writer waits for the write lock (and its fsync). WAL lets readers run beside the writer, so
    here readers take a connection directly and only writers queue, on the writer lock.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # In WAL mode a connection discards its whole page cache at the start of a read when another
        # connection has committed since its last one. The library hands out the connection idle the
        # longest (the coldest); this pool hands out the one returned last, whose cache is the warmest
        # (the participant read and the lock lookups of a command then usually share one).
        self._pool = _LifoDeque(self._pool)

    def get_connection(self, timeout: float | None = None, is_writer: bool | None = None):
        if self.is_sqlite_memory_mode:
            return super().get_connection(timeout=timeout, is_writer=is_writer)
        if self._closed:
            raise ConnectionPoolClosedError
        timeout = self.pool_timeout if timeout is None else timeout
        started = time.time()
        if is_writer is True:
            if not self._writer_lock.acquire(timeout=timeout):
                raise ConnectionUnavailableError("Timed out waiting for return of writer")
            self._num_writers += 1
        elif is_writer is False:
            with self._no_readers:
                self._num_readers += 1
        try:
            conn = self._get_connection(timeout=self._time_remaining(timeout, started))
        except BaseException:
            if is_writer is True:
                self._num_writers -= 1
                self._writer_lock.release()
            elif is_writer is False:
                with self._no_readers:
                    self._num_readers -= 1
            raise
        conn.is_writer = is_writer
        return conn

    def _create_connection(self):
        conn = self._connect()
        if not self.is_sqlite_memory_mode:
            conn._sqlite_conn.execute("PRAGMA synchronous=FULL")
        conn._sqlite_conn.execute("PRAGMA busy_timeout=10000")
        return conn


    #: Prepared statements kept per connection. The library connects with ``cached_statements=True``,
    #: which is a cache of ONE statement: every command then re-compiled each of its statements
    #: (BEGIN, SAVEPOINT, INSERT, RELEASE, the Merkle log's) on every call, 5-25 us apiece.
    STATEMENT_CACHE = 256

    def _connect(self) -> SQLiteConnection:
        """As the library's _create_connection, with a statement cache."""
        on_disk = not self.is_sqlite_memory_mode
        try:
            # a new store file (and its -wal and -shm, which SQLite makes with its mode) is 0600 (E.17)
            with private_umask() if on_disk and not Path(self.db_name).exists() else contextlib.nullcontext():
                c = sqlite3.connect(database=self.db_name, uri=True, check_same_thread=False, isolation_level=None,
                                    cached_statements=self.STATEMENT_CACHE, timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT)
        except (sqlite3.Error, TypeError) as e:
            raise InterfaceError(e) from e
        if on_disk and not self.is_journal_mode_wal:
            mode = c.execute("PRAGMA journal_mode;").fetchone()[0]
            if mode.lower() != "wal":
                c.execute("PRAGMA journal_mode=WAL;")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        if on_disk:
            private_sqlite(self.db_name)  # also a store made by older code
        c.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=c, max_age=self.max_age)


class DurableSQLiteFactory(SQLiteFactory):
    def __init__(self, env):
        super().__init__(env)
        old = self.datastore.pool
        self.datastore.pool = DurableSQLiteConnectionPool(
            db_name=old.db_name, lock_timeout=old.lock_timeout or 10, pool_size=16, max_overflow=48, pool_timeout=30
        )


class _PendingWrite:
    __slots__ = ("stored_events", "kwargs", "done", "result", "error")

    def __init__(self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]):
        self.stored_events = stored_events
        self.kwargs = kwargs
        self.done = False
        self.result: Sequence[int] | None = None
        self.error: BaseException | None = None


def _persistence_error(e: sqlite3.Error) -> Exception:
    if isinstance(e, sqlite3.IntegrityError):
        return IntegrityError(e)
    if isinstance(e, sqlite3.OperationalError):
        return OperationalError(e)
    return DatabaseError(e)


class AppendOnlySQLiteRecorder(SQLiteApplicationRecorder):
    """Append-only, and commits concurrent writes together (group commit).

    With synchronous=FULL every COMMIT waits for an fsync (about 1 ms on the machines here), which
    caps one-transaction-per-command at the disk's sync rate. Commands that arrive while a commit
    is in flight (in this process or, through the cross-process lock, in another) are queued; the
    next leader writes all of them in ONE transaction and seals the events together (``_seal``, once
    per transaction). If one of them fails (a conflict), that transaction is rolled back and the
    batch written again with each command in its own SAVEPOINT, so the conflict refuses only that
    command. Every caller returns only after the COMMIT that contains its events is durable, so no
    acknowledged write is lost; if the transaction fails as a whole, every command of the batch gets
    the error.
    """

    def __init__(self, datastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self._queue: deque[_PendingWrite] = deque()
        self._queue_lock = threading.Lock()
        self._leader_lock = threading.Lock()
        db_name = datastore.pool.db_name
        self._process_lock = None if datastore.pool.is_sqlite_memory_mode else ProcessLock(db_name + ".write-lock")
        self._counters: dict[tuple[str, ...], ChangeCounter] = {}

    def count_changes(self, *topic_prefixes: str) -> ChangeCounter | None:
        """A counter, shared by every process using this database file, of the committed writes that
        store an event whose topic starts with one of ``topic_prefixes`` (None for an in-memory
        database, whose one process has nothing to share). Every writer of such events must ask for
        it, so that its writes count: the application does so when it starts."""
        if self._process_lock is None:
            return None
        counter = self._counters.get(topic_prefixes)
        if counter is None:
            name = "+".join("".join(c if c.isalnum() else "-" for c in p).strip("-") for p in topic_prefixes)
            counter = self._counters[topic_prefixes] = ChangeCounter(f"{self.datastore.pool.db_name}.changes.{name}")
        return counter

    def _watched(self, batch: list[_PendingWrite]) -> list[ChangeCounter]:
        return [
            counter for prefixes, counter in self._counters.items()
            if any(e.topic.startswith(prefixes) for pending in batch for e in pending.stored_events)
        ]

    def construct_create_table_statements(self) -> list[str]:
        table = self.events_table_name
        return [
            *super().construct_create_table_statements(),
            f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_update BEFORE UPDATE ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: UPDATE refused'); END",
            f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_delete BEFORE DELETE ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: DELETE refused'); END",
        ]

    # ------------------------------------------------------------------ reads
    # The library wraps every read in BEGIN ... ROLLBACK. Each read here is ONE SELECT, and in
    # autocommit mode one statement already reads one consistent snapshot of the database, so the
    # two extra statements only cost time: about 50 of the 65 microseconds of a fast-forward read
    # that finds nothing new, and a command makes three such reads (its user, its participant, the
    # lock holders). The in-memory store keeps the library's path (its pool interlocks readers and
    # writers).
    def _select(self, statement: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            with self.datastore.get_connection(commit=False) as conn:
                cursor = conn._sqlite_conn.execute(statement, params)
                try:
                    return cursor.fetchall()
                finally:
                    cursor.close()
        except sqlite3.Error as e:
            raise _persistence_error(e) from e

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        if self.datastore.pool.is_sqlite_memory_mode:
            return super().select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
        statement = self.select_events_statement
        params: list[Any] = [key]
        if gt is not None:
            statement += "AND originator_version>? "
            params.append(gt)
        if lte is not None:
            statement += "AND originator_version<=? "
            params.append(lte)
        statement += "ORDER BY originator_version DESC " if desc else "ORDER BY originator_version ASC "
        if limit is not None:
            statement += "LIMIT ? "
            params.append(limit)
        rows = self._select(statement, params)
        if not rows:
            return []
        oid = self.convert_originator_id(rows[0]["originator_id"])  # every row has the same id
        return [
            StoredEvent(originator_id=oid, originator_version=row["originator_version"], topic=row["topic"], state=row["state"])
            for row in rows
        ]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        if self.datastore.pool.is_sqlite_memory_mode:
            return super().select_notifications(start, limit, stop, topics, inclusive_of_start=inclusive_of_start)
        where, params = self._notifications_where(start, stop, topics, inclusive_of_start, limit)
        rows = self._select(f"SELECT rowid, * FROM {self.events_table_name} {where}ORDER BY rowid LIMIT ?", params)
        convert = self.convert_originator_id
        return [
            Notification(id=row["rowid"], originator_id=convert(row["originator_id"]),
                         originator_version=row["originator_version"], topic=row["topic"], state=row["state"])
            for row in rows
        ]

    @staticmethod
    def _notifications_where(start: int | None, stop: int | None, topics: Sequence[str], inclusive_of_start: bool,
                             limit: int) -> tuple[str, list[Any]]:
        """The WHERE clause of a page of the log, and its parameters with the LIMIT's last."""
        clauses: list[str] = []
        params: list[Any] = []
        if start is not None:
            clauses.append("rowid>=?" if inclusive_of_start else "rowid>?")
            params.append(start)
        if stop is not None:
            clauses.append("rowid<=?")
            params.append(stop)
        if topics:
            clauses.append(f"topic IN ({','.join('?' * len(topics))})")
            params.extend(topics)
        params.append(limit)
        return (f"WHERE {' AND '.join(clauses)} " if clauses else ""), params

    def select_notification_rows(
        self, *, start: int, limit: int, stop: int | None = None, topics: Sequence[str] = ()
    ) -> Sequence[tuple[int, str, int, str, bytes]]:
        """The notifications after ``start`` as plain tuples (id, originator id as stored, version,
        topic, state): what a projection rebuild reads, without a Notification and a UUID per row
        (about a quarter of the time of reading the log that way, at 77k events)."""
        if self.datastore.pool.is_sqlite_memory_mode:
            return [(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                    for n in self.select_notifications(start, limit, stop, topics, inclusive_of_start=False)]
        where, params = self._notifications_where(start, stop, topics, False, limit)
        statement = (f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name}"
                     f" {where}ORDER BY rowid LIMIT ?")
        try:
            with self.datastore.get_connection(commit=False) as conn:
                cursor = conn._sqlite_conn.cursor()
                cursor.row_factory = None
                try:
                    return cursor.execute(statement, params).fetchall()
                finally:
                    cursor.close()
        except sqlite3.Error as e:
            raise _persistence_error(e) from e

    def max_notification_id(self) -> int:
        if self.datastore.pool.is_sqlite_memory_mode:
            return super().max_notification_id()
        return self._select(self.select_max_notification_id_statement, ())[0][0]

    def originators_with_events(self, originator_ids: Sequence[Any]) -> set[Any]:
        """Which of these aggregates have any stored event: one indexed read for several ids."""
        if not originator_ids:
            return set()
        keys = {(i.hex if isinstance(i, UUID) else str(i)): i for i in originator_ids}
        statement = (
            f"SELECT DISTINCT originator_id FROM {self.events_table_name} "
            f"WHERE originator_id IN ({','.join('?' * len(keys))})"
        )
        if self.datastore.pool.is_sqlite_memory_mode:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(statement, list(keys))
                return {keys[row["originator_id"]] for row in curs.fetchall()}
        return {keys[row["originator_id"]] for row in self._select(statement, list(keys))}

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if self.datastore.pool.is_sqlite_memory_mode:
            try:
                with self.datastore.transaction(commit=True) as curs:
                    ids = self._insert_events(curs, stored_events, **kwargs)
                    self._seal(curs, stored_events, ids or [])
                    return ids
            except BaseException:
                self._seal_rolled_back()
                raise
        pending = _PendingWrite(stored_events, kwargs)
        with self._queue_lock:
            self._queue.append(pending)
        with self._leader_lock:
            if not pending.done:
                self._commit_queued()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _take_queue(self) -> list[_PendingWrite]:
        with self._queue_lock:
            batch = list(self._queue)
            self._queue.clear()
        return batch

    def _commit_queued(self) -> None:
        """As leader: commit every queued write in one transaction.

        The queue is taken only once the store's cross-process write lock is held, so the writes
        that arrive while another process commits (an fsync each) join this commit instead of
        waiting for the next one: fewer commits, each carrying more commands."""
        batch: list[_PendingWrite] = []
        try:
            with self._process_lock.hold():
                batch = self._take_queue()
                self._commit_batch(batch)  # marks every write of the batch done, with its result or error
        except BaseException as e:
            if not batch:  # the lock could not be taken: nothing was written; refuse what is queued
                batch = self._take_queue()
            for pending in batch:
                if not pending.done:
                    pending.error, pending.result, pending.done = e, None, True

    def _commit_batch(self, batch: list[_PendingWrite]) -> None:
        counters = self._watched(batch) if self._counters else []
        try:
            with self._counting(counters), self.datastore.get_connection(commit=True) as conn:
                sqlite_conn = conn._sqlite_conn
                curs = conn.cursor()
                try:
                    curs.execute("BEGIN IMMEDIATE")
                    if not self._write_together(curs, sqlite_conn, batch):
                        curs.execute("BEGIN IMMEDIATE")
                        self._write_each(curs, batch)
                    sqlite_conn.commit()
                except BaseException:
                    try:
                        sqlite_conn.rollback()
                    finally:
                        self._seal_rolled_back()
                    raise
                finally:
                    curs.sqlite_cursor.close()
        except sqlite3.Error as e:
            error: BaseException = _persistence_error(e)
            for pending in batch:
                pending.error, pending.result = error, None
        except BaseException as e:
            for pending in batch:
                pending.error, pending.result = e, None
        finally:
            for pending in batch:
                pending.done = True

    def _write_together(self, curs: Any, sqlite_conn: sqlite3.Connection, batch: list[_PendingWrite]) -> bool:
        """Write every command of the batch in the open transaction. On a database error (usually a
        conflict: another command took the same aggregate version) roll the whole transaction back and
        return False, for ``_write_each`` to find which command failed.

        Every statement here gives up the GIL and must win it back from the process's other threads
        while this process holds the store's cross-process write lock; a SAVEPOINT and a RELEASE
        around each command, as ``_write_each`` has, made the lock's hold (and so every process's
        wait) longer for a conflict that almost never happens."""
        results = []
        stored: list[StoredEvent] = []
        stored_ids: list[int] = []
        try:
            for pending in batch:
                ids = self._insert_events(curs, pending.stored_events, **pending.kwargs)
                results.append(ids)
                stored += pending.stored_events
                stored_ids += ids or []
            # the batch's events sealed together: one pass over the tree, one INSERT each
            self._seal(curs, stored, stored_ids)
        except sqlite3.Error:
            try:
                sqlite_conn.rollback()
            finally:
                self._seal_rolled_back()
            return False
        for pending, ids in zip(batch, results):
            pending.result = ids
        return True

    def _write_each(self, curs: Any, batch: list[_PendingWrite]) -> None:
        """Each command in a SAVEPOINT of its own: a failing one is rolled back alone and refused."""
        stored: list[StoredEvent] = []
        stored_ids: list[int] = []
        for pending in batch:
            curs.execute("SAVEPOINT command")
            try:
                ids = self._insert_events(curs, pending.stored_events, **pending.kwargs)
            except sqlite3.Error as e:
                curs.execute("ROLLBACK TO command")
                curs.execute("RELEASE command")
                pending.error = _persistence_error(e)
            else:
                curs.execute("RELEASE command")
                pending.result = ids
                stored += pending.stored_events
                stored_ids += ids or []
        # the events the batch keeps, sealed together (the caller rolls back and resets on failure)
        self._seal(curs, stored, stored_ids)

    @staticmethod
    @contextmanager
    def _counting(counters: list[ChangeCounter]) -> Iterator[None]:
        """Around a transaction that stores watched events: readers see no generation until it ends."""
        for counter in counters:
            counter.begin()
        try:
            yield
        finally:
            for counter in counters:
                counter.end()

    def _seal(self, curs: Any, stored_events: Sequence[StoredEvent], notification_ids: Sequence[int]) -> None:
        """Extension point, called in the storing transaction (the Merkle log overrides it)."""

    def _seal_rolled_back(self) -> None:
        """Called when sealed rows were rolled back: forget any state cached from them."""


# --------------------------------------------------------------------------- PostgreSQL
class _SealFailed(BaseException):
    """Carries an error of ``_seal`` out of the library's ``except Exception`` (see below)."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


class AppendOnlyPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        function = Identifier(f"{self.events_table_name}_refuse_change")
        self.sql_create_statements += [
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'the audit trail is append-only: % refused on %', TG_OP, TG_TABLE_NAME "
                "USING ERRCODE = 'insufficient_privilege'; END $$"
            ).format(schema=schema, function=function),
            SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {schema}.{table} "
                "FOR EACH ROW EXECUTE FUNCTION {schema}.{function}()"
            ).format(
                trigger=Identifier(f"{self.events_table_name}_append_only"),
                schema=schema,
                table=table,
                function=function,
            ),
            SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE TRUNCATE ON {schema}.{table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{function}()"
            ).format(
                trigger=Identifier(f"{self.events_table_name}_no_truncate"),
                schema=schema,
                table=table,
                function=function,
            ),
        ]

    def originators_with_events(self, originator_ids: Sequence[Any]) -> set[Any]:
        """Which of these aggregates have any stored event: one round trip for several ids."""
        if not originator_ids:
            return set()
        keys = {str(i): i for i in originator_ids}
        statement = SQL("SELECT DISTINCT originator_id FROM {}.{} WHERE originator_id = ANY(%s)").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (list(originator_ids),))
            return {keys[str(row["originator_id"])] for row in curs.fetchall()}

    def _fetch_ids_after_insert_events(self, curs, stored_events, **kwargs):
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        try:
            self._seal(curs, stored_events, ids or [])
        except Exception as e:
            # The library catches Exception here, leaves its transaction block normally (so COMMITs
            # the events, unsealed or half sealed) and only then re-raises. Escape as a BaseException
            # so the block rolls back; insert_events turns it back into the error.
            raise _SealFailed(e) from e
        return ids

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        try:
            return super().insert_events(stored_events, **kwargs)
        except _SealFailed as failed:
            self._seal_rolled_back()
            raise failed.error from failed.error.__cause__
        except BaseException:
            self._seal_rolled_back()  # whatever was sealed in the failed transaction was rolled back with it
            raise

    def _seal(self, curs: Any, stored_events: Sequence[StoredEvent], notification_ids: Sequence[int]) -> None:
        """Extension point, called in the storing transaction (the Merkle log overrides it)."""

    def _seal_rolled_back(self) -> None:
        """Called when the storing transaction failed: forget any state cached from what it sealed."""


# --------------------------------------------------------------------------- configuration
# The recorders that also seal every event into the Merkle log (infrastructure/merkle_store.py).
SQLITE_RECORDER_TOPIC = "infrastructure.merkle_store:MerkleSQLiteRecorder"
POSTGRES_RECORDER_TOPIC = "infrastructure.merkle_store:MerklePostgresRecorder"


def parse_database_url(url: str) -> dict[str, Any]:
    """Split a database URL into its parts. Raises StoreConfigError with what to do next."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise StoreConfigError("sqlite URL needs a path, e.g. sqlite:///./var/trialaudit.db")
        return {"kind": "sqlite", "path": path}
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlparse(url)
        query = parse_qs(parts.query)
        dbname = (parts.path or "/").lstrip("/")
        if not dbname:
            raise StoreConfigError("postgresql URL needs a database name, e.g. postgresql://postgres@127.0.0.1:5432/test")
        return {
            "kind": "postgres",
            "host": parts.hostname or "127.0.0.1",
            "port": str(parts.port or 5432),
            "user": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or ""),
            "dbname": dbname,
            "schema": query.get("schema", ["public"])[0],
        }
    raise StoreConfigError(
        f"unsupported TRIALAUDIT_DATABASE_URL {url!r}: use sqlite:///path/to/file.db or "
        "postgresql://user@host:port/dbname"
    )


def eventsourcing_env(url: str, *, create_table: bool, pool_size: int = 8, recorder_topic: str | None = None) -> dict[str, str]:
    """The eventsourcing settings for the store at ``url``."""
    parts = parse_database_url(url)
    env = {
        "CREATE_TABLE": "y" if create_table else "n",
        "TRANSCODER_TOPIC": "infrastructure.transcoder:OrjsonDecodingTranscoder",
    }
    if parts["kind"] == "sqlite":
        if parts["path"] != ":memory:" and "mode=memory" not in parts["path"]:
            private_dir(Path(parts["path"]).parent)  # 0700 when created here
        env.update(
            PERSISTENCE_MODULE=f"{__name__}:DurableSQLiteFactory",
            SQLITE_DBNAME=parts["path"],
            SQLITE_LOCK_TIMEOUT="10",
            APPLICATION_RECORDER_TOPIC=recorder_topic or SQLITE_RECORDER_TOPIC,
        )
    else:
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=parts["dbname"],
            POSTGRES_HOST=parts["host"],
            POSTGRES_PORT=parts["port"],
            POSTGRES_USER=parts["user"],
            POSTGRES_PASSWORD=parts["password"],
            POSTGRES_SCHEMA=parts["schema"],
            POSTGRES_POOL_SIZE=str(pool_size),
            POSTGRES_MAX_OVERFLOW=str(pool_size),
            POSTGRES_LOCK_TIMEOUT="10",
            POSTGRES_PRE_PING="y",
            APPLICATION_RECORDER_TOPIC=recorder_topic or POSTGRES_RECORDER_TOPIC,
        )
    return env


def postgres_conninfo(url: str) -> str:
    p = parse_database_url(url)
    info = f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"
    if p["password"]:
        info += f" password={p['password']}"
    return info


def prepare_postgres(url: str) -> None:
    """Create the schema named in the URL (the library only creates tables)."""
    import psycopg

    p = parse_database_url(url)
    with psycopg.connect(postgres_conninfo(url), autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(p["schema"])))


class PostgresSetupLock:
    """Serialises set-up across processes, so workers starting together never race on DDL."""

    KEY = 0x7472_6961_6C61_7564 & 0x7FFF_FFFF_FFFF_FFFF  # "trialaud"

    def __init__(self, url: str):
        self.url = url
        self.conn = None

    def __enter__(self):
        import psycopg

        self.conn = psycopg.connect(postgres_conninfo(self.url), autocommit=True)
        self.conn.execute("SELECT pg_advisory_lock(%s)", (self.KEY,))
        return self

    def __exit__(self, *exc):
        try:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.KEY,))
        finally:
            self.conn.close()


#: what a store may raise when its disk is full (the eventsourcing library wraps the drivers' errors)
STORAGE_ERRORS: tuple[type[BaseException], ...] = (PersistenceError, sqlite3.Error, psycopg.Error, OSError)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it wraps: its cause, context, or an exception in its args, as the
    eventsourcing library wraps driver errors) says the store's disk or quota is full: SQLite's
    SQLITE_FULL ("database or disk is full"), PostgreSQL's disk_full (53100), or ENOSPC/EDQUOT."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sqlite3.Error) and (
            getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "database or disk is full" in str(e)
        ):
            return True
        if isinstance(e, psycopg.errors.DiskFull) or getattr(e, "sqlstate", None) == "53100":
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        pending.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        pending.extend((e.__cause__, e.__context__))
    return False


def stored_snapshots(recorder: Any) -> list[StoredEvent]:
    """Every row of the snapshot table of ``recorder`` (the application's snapshot recorder), for
    `trialaudit verify`: the library reads snapshots only by aggregate, and a row inserted for any
    aggregate must be seen too."""
    table = recorder.events_table_name
    schema = getattr(recorder.datastore, "schema", "")
    if schema and "." not in table:
        table = f'"{schema}"."{table}"'
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(f"SELECT originator_id, originator_version, topic, state FROM {table} "
                     "ORDER BY originator_id, originator_version")
        rows = curs.fetchall()
    out = []
    for row in rows:
        oid = row["originator_id"]
        out.append(StoredEvent(originator_id=oid if isinstance(oid, UUID) else UUID(str(oid)),
                               originator_version=int(row["originator_version"]), topic=row["topic"],
                               state=bytes(row["state"])))
    return out
