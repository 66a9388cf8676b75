"""Read models that follow the event log: exactly once, rebuildable from event 1.

A ``Projection`` turns events into rows. The ``ProjectionEngine`` pulls the notification log from
the event store, hands each event to the projections that want its topic, and writes the rows and
the projection's new position in ONE read-model transaction. The position only moves by
compare-and-set, so two workers (API processes, `trialaudit projections run`) following the same
log never apply an event twice: the loser rolls back and re-reads.

Works the same on SQLite (pulled after each write and by a background thread) and PostgreSQL
(several processes share one database). Queries that must see a write just made call
``wait_for(notification_id)``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol


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

    def close(self) -> None: ...


class PositionMoved(Exception):
    """Another worker advanced the projection first; this batch is rolled back and re-read."""


class Projection(ABC):
    #: unique name; prefix of the projection's tables and its tracking row
    name: ClassVar[str]
    #: topics of the events it needs; empty means every event
    topics: ClassVar[tuple[str, ...]] = ()

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

    def begin_batch(self) -> None:
        """Called before each batch (optional): forget any state kept from a batch that was rolled back."""

    def flush(self, cursor: ViewCursor) -> None:
        """Called once per batch, inside its transaction, before the position moves (optional): write
        what ``process`` deferred, e.g. a score recomputed once per visit instead of once per item."""


Progress = Callable[[int, int], None]


class ProjectionEngine:
    def __init__(self, app: Any, store: ReadModelStore, projections: Sequence[Projection], *, batch_size: int = 5000):
        self.app = app
        self.store = store
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.inline = True  # this process may catch up itself (False: wait for another process)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        with self.store.transaction() as cur:
            for projection in self.projections.values():
                for statement in projection.create_statements():
                    cur.execute(statement)
        for name in self.projections:
            self.store.ensure_tracking(name)

    def positions(self, names: Sequence[str] | None = None) -> dict[str, int]:
        stored = self.store.positions()
        return {name: stored.get(name, 0) for name in names or self.projections}

    # ------------------------------------------------------------------ following the log
    def catch_up(self, names: Sequence[str] | None = None, progress: Progress | None = None, *, blocking: bool = True) -> int:
        """Process everything recorded so far. Returns how many events were applied.

        Not ``blocking``: if another process is catching up the same read models, leave it to them."""
        with self._lock, self.store.exclusive(blocking) as acquired:
            return self._catch_up_all(names, progress) if acquired else 0

    def _catch_up_all(self, names: Sequence[str] | None, progress: Progress | None) -> int:
        head = self.app.recorder.max_notification_id() or 0
        applied = 0
        for name in names or list(self.projections):
            applied += self._catch_up_one(self.projections[name], head, progress)
        return applied

    def _catch_up_one(self, projection: Projection, head: int, progress: Progress | None) -> int:
        applied = 0
        while True:
            start = self.store.position(projection.name)
            if start >= head:
                return applied
            notifications = self.app.recorder.select_notifications(
                start=start, stop=head, limit=self.batch_size, topics=projection.topics, inclusive_of_start=False
            )
            # With a topic filter, a short page means nothing more up to head is relevant.
            end = notifications[-1].id if len(notifications) == self.batch_size else head
            try:
                projection.begin_batch()
                with self.store.transaction() as cur:
                    for n in notifications:
                        projection.process(self.app.mapper.to_domain_event(n), n.id, cur)
                    projection.flush(cur)
                    if not self.store.advance(cur, projection.name, start, end):
                        raise PositionMoved(projection.name)
            except PositionMoved:
                continue  # another worker took this batch; re-read from its position
            applied += len(notifications)
            if progress:
                progress(end, head)

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
        """Drop the projections' tables and rebuild them from event 1."""
        names = list(names or self.projections)
        with self._lock, self.store.exclusive(True):
            with self.store.transaction() as cur:
                for name in names:
                    for table in self.projections[name].tables():
                        cur.execute(f"DROP TABLE IF EXISTS {table}")
                    for statement in self.projections[name].create_statements():
                        cur.execute(statement)
                    cur.execute("UPDATE projection_tracking SET position = 0 WHERE name = ?", (name,))
            return self._catch_up_all(names, progress)

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
