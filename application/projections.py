"""Read models that follow the event log: exactly once, rebuildable from event 1.

A ``Projection`` turns events into rows. The ``ProjectionEngine`` pulls the notification log from
the event store, hands each event to the projections that want its topic, and writes the rows and
the projection's new position in ONE read-model transaction. The position only moves by
compare-and-set, so two workers (API processes, `trialaudit projections run`) following the same
log never apply an event twice: the loser rolls back and re-reads.

Projections at the same position share one pass: each page of the log is read and each event
decoded once for all of them, and all their rows and positions commit in the page's transaction
(one lost compare-and-set rolls all of it back). A rebuild starts them all at 0, so it is one pass,
in bulk mode (see ``ProjectionEngine.rebuild``).

Works the same on SQLite (pulled after each write and by a background thread) and PostgreSQL
(several processes share one database). Queries that must see a write just made call
``wait_for(notification_id)``.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol
from uuid import UUID

import orjson


class ViewCursor(Protocol):
    """A cursor inside a read-model transaction. SQL uses ``?`` placeholders on every store."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchone(self) -> tuple | None: ...

    def fetchall(self) -> list[tuple]: ...


class ReadModelStore(Protocol):
    """Where read models are kept (SQLite file or PostgreSQL schema); see infrastructure.readmodels."""

    dialect: str

    def transaction(self) -> AbstractContextManager[ViewCursor]: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def position(self, name: str) -> int: ...

    def positions(self) -> dict[str, int]: ...

    def advance(self, cursor: ViewCursor, name: str, old: int, new: int) -> bool: ...

    def ensure_tracking(self, name: str) -> None: ...

    def exclusive(self, blocking: bool = True) -> AbstractContextManager[bool]: ...

    def bulk(self) -> AbstractContextManager[None]: ...

    def quiet(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


_TYPE_KEY = b'"_type_"'


class Recorded:
    """One event of the log as the engine hands it to ``Projection.process_recorded``.

    ``fields()`` is the event's state as a dict, parsed once with orjson and nothing more: the
    recorded time stays the transcoded ``{"_type_": "datetime_iso", ...}`` object (read it with
    ``application.views.iso_recorded``), and a state holding any other transcoded value is decoded by
    the application's transcoder in full, so every value a projection reads is the one the domain
    event carries. ``event()`` is the domain event itself, decoded by the application's mapper on
    first use. ``originator_id`` is the id as the store keeps it (a UUID, or its hex on SQLite);
    ``aggregate_id`` is its canonical text, as ``str(event.originator_id)`` gives it.

    It is also what the mapper decodes (a stored event's four attributes), so the log is read as
    plain rows and an event becomes an object only for a projection that asks for one."""

    __slots__ = ("id", "originator_id", "originator_version", "topic", "state", "_mapper", "_fields", "_event")

    def __init__(self, row: Sequence[Any], mapper: Any):
        self.id, self.originator_id, self.originator_version, self.topic, self.state = row
        self._mapper = mapper
        self._fields: dict[str, Any] | None = None
        self._event: Any = None

    @property
    def aggregate_id(self) -> str:
        oid = self.originator_id
        if type(oid) is str and len(oid) == 32:  # the hex SQLite keeps: the UUID's text, without parsing
            return f"{oid[:8]}-{oid[8:12]}-{oid[12:16]}-{oid[16:20]}-{oid[20:]}"
        if isinstance(oid, UUID):  # PostgreSQL's
            return str(oid)
        return str(self.event().originator_id)

    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            mapper, data = self._mapper, self.state
            if mapper.cipher or mapper.compressor:
                self._fields = dict(vars(self.event()))
                return self._fields
            value = orjson.loads(data)
            typed = data.count(_TYPE_KEY)
            if typed and not (typed == 1 and type(value) is dict and type(value.get("timestamp")) is dict
                              and value["timestamp"].get("_type_") == "datetime_iso"):
                value = mapper.transcoder.decode(data)
            self._fields = value
        return self._fields

    def event(self) -> Any:
        if self._event is None:
            self._event = self._mapper.to_domain_event(self)
        return self._event


class PositionMoved(Exception):
    """Another worker advanced the projection first; this batch is rolled back and re-read."""


class Projection(ABC):
    #: unique name; prefix of the projection's tables and its tracking row
    name: ClassVar[str]
    #: topics of the events it needs; empty means every event
    topics: ClassVar[tuple[str, ...]] = ()
    #: ``process`` leaves the store alone (all writes wait for ``flush``), at least during a rebuild:
    #: such projections run first in a batch, so that its transaction begins as late as it can
    defers_store: ClassVar[bool] = False
    #: indexes that ``process`` or ``flush`` query through: built with the tables on a rebuild, not after
    lookup_indexes: ClassVar[frozenset[str]] = frozenset()
    #: the read-model store's dialect ("sqlite" or "postgres"), set by the engine before any statement
    dialect: str = "sqlite"

    def schema_version(self) -> int:
        """The version of the tables' layout on ``dialect``. When it differs from the version recorded
        with the tables (1 when none was), ``ProjectionEngine.setup`` drops them and rebuilds them from
        event 1: a change that cannot be made in place (a table's primary key) needs no migration."""
        return 1

    @abstractmethod
    def create_statements(self) -> list[str]:
        """CREATE TABLE/INDEX IF NOT EXISTS statements, portable between SQLite and PostgreSQL
        (use TEXT, BIGINT, DOUBLE PRECISION, BOOLEAN)."""

    @abstractmethod
    def tables(self) -> list[str]:
        """The tables it owns (dropped on rebuild)."""

    @abstractmethod
    def process(self, event: Any, notification_id: int, cursor: ViewCursor) -> None:
        """Apply one event to the rows, using ``cursor`` (inside the batch's transaction)."""

    def process_recorded(self, recorded: Recorded, cur: ViewCursor) -> None:
        """What the engine calls for each event. The default decodes the domain event for ``process``;
        a projection that reads a few values of nearly every event overrides it and reads them from
        ``recorded.fields()``, because decoding each event into an object costs more than its own work."""
        self.process(recorded.event(), recorded.id, cur)

    def begin_batch(self) -> None:
        """Called before each batch (optional): forget any state kept from a batch that was rolled back."""

    def flush(self, cursor: ViewCursor) -> None:
        """Called once per batch, inside its transaction, before the position moves (optional): write
        what ``process`` deferred, e.g. a score recomputed once per visit instead of once per item."""

    def begin_rebuild(self) -> None:
        """A rebuild from event 1 starts (optional). Until ``end_rebuild`` this engine alone writes the
        tables, every batch it processes commits, and the ``deferred_indexes`` do not exist: state may
        be kept in memory across batches instead of being read back from the rows."""

    def end_rebuild(self) -> None:
        """The rebuild ended or left bulk mode (optional): forget what was kept across batches."""


Progress = Callable[[int, int], None]


class _LazyTransaction:
    """A batch's transaction, begun at its first statement: what a projection computes before it
    touches the store (all of it, for the audit index during a rebuild) does not hold the write lock,
    so another process rebuilding other read models of the same file can write meanwhile. Every
    statement of the batch, reads included, still runs in the one transaction."""

    def __init__(self, store: ReadModelStore):
        self._store = store
        self._context: AbstractContextManager[ViewCursor] | None = None
        self._cursor: Any = None

    def __enter__(self) -> _LazyTransaction:
        return self

    def _begin(self) -> Any:
        if self._cursor is None:
            self._context = self._store.transaction()
            self._cursor = self._context.__enter__()
        return self._cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._begin().execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._begin().executemany(sql, rows)

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def __exit__(self, *exc: Any) -> bool | None:
        if self._context is None:
            return None
        return self._context.__exit__(*exc)

#: the ``schema_version`` each projection's tables were made with
VERSIONS_DDL = "CREATE TABLE IF NOT EXISTS projection_versions (name TEXT PRIMARY KEY, version BIGINT NOT NULL)"

_CREATE_INDEX = re.compile(r"\s*CREATE\s+INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)


def deferred_indexes(projection: Projection) -> list[str]:
    """The projection's CREATE INDEX statements that a rebuild runs after the rows are in: every plain
    (not UNIQUE, which is a constraint) index that is not one of its ``lookup_indexes``."""
    deferred = []
    for statement in projection.create_statements():
        match = _CREATE_INDEX.match(statement)
        if match and match.group(1) not in projection.lookup_indexes:
            deferred.append(statement)
    return deferred


class ProjectionEngine:
    def __init__(self, app: Any, store: ReadModelStore, projections: Sequence[Projection], *, batch_size: int = 5000,
                 parallel: Sequence[str] = (), parallel_min_events: int = 20_000):
        self.app = app
        self.store = store
        self.projections = {p.name: p for p in projections}
        for projection in projections:
            projection.dialect = getattr(store, "dialect", "sqlite")
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: during a rebuild: the projections still in bulk mode -> where this engine last left them
        self._bulk: dict[str, int] = {}
        self._deferred: list[str] = []
        self.inline = True  # this process may catch up itself (False: wait for another process)
        #: a rebuild of these (with others, of a log of at least ``parallel_min_events``) runs in a
        #: helper process on the other core, if the composition root set ``spawn_helper``
        self.parallel = tuple(parallel)
        self.parallel_min_events = parallel_min_events
        #: ``spawn_helper(names, deferred_indexes, batch_size)`` starts a process that runs
        #: ``rebuild_part`` with them on the same stores; its handle has ``wait(timeout) -> bool`` and
        #: ``result() -> int`` (which raises if the helper failed)
        self.spawn_helper: Callable[[list[str], list[str], int], Any] | None = None

    # ------------------------------------------------------------------ set-up
    def setup(self, progress: Progress | None = None) -> None:
        """Create every table and index that is missing (also repairs a rebuild that died before its indexes),
        and rebuild from event 1 the projections whose tables have an older layout (``schema_version``),
        reporting that rebuild's progress (nothing is reported when no layout is stale)."""
        with self.store.transaction() as cur:
            cur.execute(VERSIONS_DDL)
        with self._lock, self.store.exclusive(True):
            stale = self.stale_layouts()  # (their statements need not fit the old tables: made anew)
            with self.store.transaction() as cur:
                for name, projection in self.projections.items():
                    if name not in stale:
                        for statement in projection.create_statements():
                            cur.execute(statement)
                self._record_versions(cur, [name for name in self.projections if name not in stale])
            for name in self.projections:
                self.store.ensure_tracking(name)
            if stale:
                with self.store.bulk():
                    self._rebuild(stale, progress)

    def stale_layouts(self) -> list[str]:
        """The projections whose tables were made with another ``schema_version`` than the current one."""
        recorded = {r["name"]: r["version"] for r in self.store.query("SELECT name, version FROM projection_versions")}
        return [name for name, p in self.projections.items() if recorded.get(name, 1) != p.schema_version()]

    def _record_versions(self, cur: ViewCursor, names: Sequence[str]) -> None:
        for name in names:
            cur.execute("INSERT INTO projection_versions (name, version) VALUES (?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                        (name, self.projections[name].schema_version()))

    def positions(self, names: Sequence[str] | None = None) -> dict[str, int]:
        stored = self.store.positions()
        return {name: stored.get(name, 0) for name in names or self.projections}

    # ------------------------------------------------------------------ following the log
    def catch_up(self, names: Sequence[str] | None = None, progress: Progress | None = None, *, blocking: bool = True) -> int:
        """Process everything recorded so far. Returns how many events of the log were processed (an
        event handed to several projections in one pass counts once).

        Not ``blocking``: if another process is catching up the same read models, leave it to them."""
        with self._lock, self.store.exclusive(blocking) as acquired:
            return self._catch_up_all(names, progress) if acquired else 0

    def _catch_up_all(self, names: Sequence[str] | None, progress: Progress | None) -> int:
        """Projections at the same position go together: each page of the log is read and each event
        decoded once, for all of them. A group that lags runs alone up to the next position, where it
        joins the projections there (a rebuild, all at 0, is one pass)."""
        names = list(names or self.projections)
        head = self.app.recorder.max_notification_id() or 0
        processed = 0
        while True:
            positions = self.positions(names)  # one query, not one per projection
            if self._bulk and any(positions[n] != p for n, p in self._bulk.items() if n in positions):
                self._leave_bulk()  # another worker moved a position: what bulk mode remembers is stale
            behind = {name: p for name, p in positions.items() if p < head}
            if not behind:
                return processed
            start = min(behind.values())
            group = [self.projections[name] for name, p in behind.items() if p == start]
            stop = min((p for p in behind.values() if p > start), default=head)
            done = self._batch(group, start, stop)
            if done is None:
                continue  # another worker took this batch; re-read the positions
            processed, end = processed + done[0], done[1]
            if progress:
                progress(end, head)

    def _batch(self, group: Sequence[Projection], start: int, stop: int) -> tuple[int, int] | None:
        """One page of the log after ``start`` (up to ``stop``) through every projection of ``group``;
        their rows and their positions (compare-and-set, each from ``start`` to the page's end) commit
        in one transaction. None when a position had moved: all of it rolled back."""
        topics: tuple[str, ...] = ()
        if all(p.topics for p in group):
            topics = tuple(sorted({t for p in group for t in p.topics}))
        rows = self._read(start, stop, topics)
        # With a topic filter, a short page means nothing more up to stop is relevant.
        end = rows[-1][0] if len(rows) == self.batch_size else stop
        mapper = self.app.mapper
        routes: dict[str, list[list[Recorded]]] = {}  # topic -> the lists of the projections that want it
        # each event read once for all of them (and decoded at most once, by the first that needs it);
        # then projection by projection, those that leave the store alone until flush first, so that
        # the transaction (SQLite's write lock) begins as late as it can
        events: dict[str, list[Recorded]] = {p.name: [] for p in group}
        for row in rows:
            topic = row[3]
            targets = routes.get(topic)
            if targets is None:
                targets = routes[topic] = [events[p.name] for p in group if not p.topics or topic in p.topics]
            if targets:
                item = Recorded(row, mapper)
                for target in targets:
                    target.append(item)
        for projection in group:
            projection.begin_batch()
        try:
            with _LazyTransaction(self.store) as cur:
                for projection in sorted(group, key=lambda p: not p.defers_store):
                    process_recorded = projection.process_recorded
                    for recorded in events[projection.name]:
                        process_recorded(recorded, cur)
                for projection in group:
                    projection.flush(cur)
                    if not self.store.advance(cur, projection.name, start, end):
                        raise PositionMoved(projection.name)
        except BaseException as e:
            for projection in group:
                projection.begin_batch()
            if self._bulk:
                self._leave_bulk()  # the batch did not commit: what bulk mode remembers includes it
            if isinstance(e, PositionMoved):
                return None
            raise
        for projection in group:
            if projection.name in self._bulk:
                self._bulk[projection.name] = end
        return len(rows), end

    def _read(self, start: int, stop: int, topics: tuple[str, ...]) -> Sequence[Sequence[Any]]:
        """A page of the log as rows (id, originator id, version, topic, state): the recorder's
        ``select_notification_rows`` where it has one (SQLite: no object and no UUID per row), else
        its notifications."""
        recorder = self.app.recorder
        select_rows = getattr(recorder, "select_notification_rows", None)
        if select_rows is not None:
            return select_rows(start=start, stop=stop, limit=self.batch_size, topics=topics)
        return [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in recorder.select_notifications(
            start=start, stop=stop, limit=self.batch_size, topics=topics, inclusive_of_start=False)]

    def wait_for(self, notification_id: int | None = None, timeout: float = 10.0,
                 names: Sequence[str] | None = None) -> None:
        """Return once every projection (or those ``names``, the ones a query reads) has processed
        ``notification_id`` (default: the log's head)."""
        if notification_id is None:
            notification_id = self.app.recorder.max_notification_id() or 0
        deadline = time.monotonic() + timeout
        while True:
            if min(self.positions(names).values(), default=notification_id) >= notification_id:
                return
            if self.inline:
                self.catch_up(names)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the read models have not reached event {notification_id} within {timeout:.0f} s; "
                    "is `trialaudit projections run` running?"
                )
            time.sleep(0.02)

    # ------------------------------------------------------------------ rebuild
    def rebuild(self, names: Sequence[str] | None = None, progress: Progress | None = None) -> int:
        """Drop the projections' tables and rebuild them from event 1, in one pass over the log.
        Returns how many events of the log were processed.

        Bulk mode: the tables are created without their secondary indexes (``deferred_indexes``) and
        the indexes are built once at the end, which is far cheaper than keeping every b-tree up to
        date row by row; the projections may keep state in memory instead of reading their own rows
        back (``begin_rebuild``). Rows and positions still commit batch by batch, so a rebuild that
        dies half-way is consistent; ``setup`` (run at every start) or a new rebuild restores the
        missing indexes. Queries in this process wait on the engine lock meanwhile, and other
        processes on the SQLite file lock (their positions are behind, so they catch up first).

        With ``spawn_helper`` set, the ``parallel`` projections are rebuilt by a helper process at the
        same time (its own pass, its own positions, the same compare-and-set), the rest here."""
        with self._lock, self.store.exclusive(True), self.store.bulk():
            return self._rebuild(list(names or self.projections), progress)

    def _rebuild(self, names: list[str], progress: Progress | None) -> int:
        deferred: dict[str, list[str]] = {}
        with self.store.transaction() as cur:
            cur.execute(VERSIONS_DDL)
            self._record_versions(cur, names)  # the tables are made anew, in the current layout
            for name in names:
                projection = self.projections[name]
                for table in projection.tables():
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
                later = deferred[name] = deferred_indexes(projection)
                for statement in projection.create_statements():
                    if statement not in later:
                        cur.execute(statement)
                cur.execute("UPDATE projection_tracking SET position = 0 WHERE name = ?", (name,))
        head = self.app.recorder.max_notification_id() or 0
        offload = [name for name in names if name in self.parallel]
        if not (self.spawn_helper and offload and len(offload) < len(names) and head >= self.parallel_min_events):
            return self._rebuild_part(names, [s for name in names for s in deferred[name]], progress)
        with self.store.quiet():  # forked while no thread of this process is inside SQLite
            helper = self.spawn_helper(offload, [s for name in offload for s in deferred[name]], self.batch_size)
        own = [name for name in names if name not in offload]

        def report(done: int, total: int) -> None:
            if progress:
                progress(min([done, *(self.store.position(name) for name in offload)]), total)

        processed = 0
        try:
            processed = self._rebuild_part(own, [s for name in own for s in deferred[name]], report)
        finally:
            while not helper.wait(0.25):
                report(head, head)
            try:
                processed = max(processed, helper.result())
            except BaseException:
                # what the helper committed is consistent; make sure its tables have their indexes
                with self.store.transaction() as cur:
                    for name in offload:
                        for statement in deferred[name]:
                            cur.execute(statement)
                raise
        report(head, head)
        return processed

    def rebuild_part(self, names: Sequence[str], deferred: Sequence[str], batch_size: int | None = None) -> int:
        """In a helper process: the bulk pass of ``names``, whose tables the parent's ``rebuild`` has
        just emptied (it holds the exclusive lock for both), then their ``deferred`` indexes."""
        self.batch_size = batch_size or self.batch_size
        with self._lock, self.store.bulk():
            return self._rebuild_part(list(names), deferred, None)

    def _rebuild_part(self, names: list[str], deferred: Sequence[str], progress: Progress | None) -> int:
        """The bulk pass. The cyclic garbage collector pauses meanwhile: a rebuild makes millions of
        short-lived containers (decoded events) that reference counting frees, and each collection
        would also walk what bulk mode keeps; at 77k events it took about 13 % of the time."""
        self._deferred = list(deferred)
        self._bulk = {name: 0 for name in names}
        for name in names:
            self.projections[name].begin_rebuild()
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._catch_up_all(names, progress)
        finally:
            if collecting:
                gc.enable()
            self._leave_bulk()

    def _leave_bulk(self) -> None:
        """End bulk mode: the projections forget what they kept in memory and the deferred indexes
        are built (a lagging or concurrent catch-up then reads its rows back through them)."""
        for name in self._bulk:
            self.projections[name].end_rebuild()
        self._bulk = {}
        deferred, self._deferred = self._deferred, []
        if deferred:
            with self.store.transaction() as cur:
                for statement in deferred:
                    cur.execute(statement)

    def dump(self, names: Sequence[str] | None = None) -> dict[str, list[tuple]]:
        """Every row of every table, sorted: for comparing a rebuild with the live read model."""
        result = {}
        for name in names or list(self.projections):
            for table in self.projections[name].tables():
                rows = self.store.query(f"SELECT * FROM {table}")
                result[table] = sorted((tuple(r.items()) for r in rows), key=repr)
        return result

    # ------------------------------------------------------------------ background
    def notify(self, *_: Any) -> None:
        """A write was saved: wake the background catch-up."""
        self._wakeup.set()

    def start(self, interval: float = 0.5, gather: float = 0.05) -> None:
        """Follow the log in a background thread: woken by writes, it waits ``gather`` seconds so
        that one catch-up applies many events (queries catch up in-line, so they never wait for it)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self._wakeup.wait(interval)
                if self._stop.wait(gather):
                    break
                self._wakeup.clear()
                try:
                    self.catch_up(blocking=False)
                except Exception:  # keep following; the next query retries in-line and reports
                    time.sleep(interval)

        self._thread = threading.Thread(target=loop, name="projections", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def run_forever(self, interval: float = 0.2, stop: threading.Event | None = None) -> Iterator[int]:
        """Follow the log until stopped (for `trialaudit projections run`); yields events applied."""
        stop = stop or self._stop
        while not stop.is_set():
            yield self.catch_up()
            stop.wait(interval)
