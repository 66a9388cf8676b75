"""The event store's SQLite WAL is checkpointed by a background thread, not by the group-committed
batch that crosses SQLite's threshold while it holds the store's write lock (issue 2: that batch, and
every worker waiting for the lock, waited for the checkpoint's fsyncs). A large automatic checkpoint
stays as a safety net, so the WAL cannot grow without bound when that thread is not running; no
stored event is lost either way."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid

import pytest

from api.cli import cli_actor
from api.container import build, setup_store
from domain.audit import make_stamp
from domain.participant import Participant
from infrastructure import store as store_module
from infrastructure.walcheckpoint import SAFETY_PAGES, WalCheckpointer


def _screen_many(app, n: int, prefix: str) -> None:
    for start in range(0, n, 50):
        app.save(*[
            Participant.screen(participant_id=uuid.uuid4(), screening_number=f"{prefix}-{i:05d}", site="MINSK",
                               sex="F", birth_year=1970, stamp=make_stamp(cli_actor(), source="cli"))
            for i in range(start, min(n, start + 50))
        ])


def _events(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]


@pytest.fixture
def db(tmp_path, make_settings):
    path = str(tmp_path / "trialaudit.db")
    settings = make_settings(f"sqlite:///{path}")
    setup_store(settings)
    return path, settings


def test_commits_leave_the_checkpoint_to_a_background_thread(db):
    path, settings = db
    svc = build(settings, follow=False)
    pool = svc.app.recorder.datastore.pool
    try:
        checkpointer = pool.checkpointer
        assert isinstance(checkpointer, WalCheckpointer)
        with svc.app.recorder.datastore.get_connection(commit=False) as conn:
            # the committing connections keep only the safety net, far above SQLite's 1,000 pages
            assert conn._sqlite_conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_PAGES > 1000
        _screen_many(svc.app, 1500, "C")
        assert checkpointer.running and checkpointer._thread.name == "events-checkpoint"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                checkpointer.checkpoints and checkpointer.checkpoints[-1][0] == checkpointer.checkpoints[-1][1] > 0):
            time.sleep(0.05)
        frames, copied = checkpointer.checkpoints[-1]
        assert frames == copied > 0, "the background checkpoint copied every committed page into the file"
        report = svc.integrity.verify()
        assert report.first_bad is None and report.events == 1500
    finally:
        svc.close()
    assert not checkpointer.running, "closing the store stops its checkpointer"
    assert _events(path) == 1500


def test_without_the_thread_the_safety_net_still_bounds_the_wal(db, monkeypatch):
    path, settings = db
    monkeypatch.setattr(store_module, "SAFETY_PAGES", 64)
    monkeypatch.setattr(WalCheckpointer, "written", lambda self: None)  # as if the thread had died
    svc = build(settings, follow=False)
    try:
        assert not svc.app.recorder.datastore.pool.checkpointer.running
        _screen_many(svc.app, 1500, "S")
        # without any checkpoint the WAL would hold every page written since the store was opened
        # (several MB here); the committing connection checkpointed it at 64 pages and it restarted
        assert os.path.getsize(path + "-wal") < 1_000_000
    finally:
        svc.close()
    assert _events(path) == 1500


def test_a_checkpointer_restarts_after_its_thread_ended(tmp_path):
    path = str(tmp_path / "w.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (i INTEGER)")
    checkpointer = WalCheckpointer(path, interval=0.01)
    try:
        checkpointer.written()
        first = checkpointer._thread
        first.join(timeout=0)  # still running
        checkpointer._closing.set()
        checkpointer._due.set()
        first.join(timeout=5)
        assert not first.is_alive()
        checkpointer._closing.clear()
        checkpointer.written()  # the next commit starts a new one
        assert checkpointer.running and checkpointer._thread is not first
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not checkpointer.runs:
            time.sleep(0.01)
        assert checkpointer.runs
    finally:
        checkpointer.close()
    assert not checkpointer.running
    checkpointer.written()  # after close(): no new thread
    assert not checkpointer.running
