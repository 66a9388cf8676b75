"""The read models' SQLite WAL is checkpointed in the background, never by a reader's catch-up (R15:
audit retrieval stays fast at a million events; the rows themselves are unchanged)."""

from __future__ import annotations

import time

from infrastructure.readmodels import SQLiteReadModels


def test_commits_leave_the_checkpoint_to_a_background_thread(tmp_path):
    path = str(tmp_path / "x-views.db")
    store = SQLiteReadModels(path)
    try:
        with store.transaction() as cur:
            cur.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, pad TEXT)")
        # the connections that commit never checkpoint themselves
        assert store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for start in range(0, 3000, 100):
            with store.transaction() as cur:
                cur.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 2000) for i in range(start, start + 100)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                store.checkpoints and store.checkpoints[-1][0] == store.checkpoints[-1][1] > 0):
            time.sleep(0.05)
        frames, copied = store.checkpoints[-1]
        assert frames == copied > 0, "the background checkpoint copied every committed page into the file"
        assert store.query("SELECT COUNT(*) AS n FROM t")[0]["n"] == 3000
        thread = store._checkpointer
        assert thread is not None and thread.name == "views-checkpoint"
    finally:
        store.close()
    assert not thread.is_alive(), "close() stops the checkpointer"


def test_bulk_rebuild_still_checkpoints_in_line_and_restores_the_setting(tmp_path):
    store = SQLiteReadModels(str(tmp_path / "y-views.db"))
    try:
        with store.bulk():
            assert store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] > 1000
        assert store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        store.close()


def test_no_checkpoint_runs_while_the_store_is_quiet_so_a_fork_inherits_no_sqlite_mutex(tmp_path):
    """The rebuild forks its helper inside ``quiet()``: a checkpoint asked for meanwhile waits until
    after the fork (a helper forked mid-checkpoint hung in its first sqlite3.connect)."""
    store = SQLiteReadModels(str(tmp_path / "z-views.db"))
    try:
        with store.transaction() as cur:
            cur.execute("CREATE TABLE t (i INTEGER PRIMARY KEY)")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not store.checkpoints:
            time.sleep(0.02)
        done = len(store.checkpoints)
        with store.quiet():
            with store.transaction() as cur:
                cur.execute("INSERT INTO t VALUES (1)")
            time.sleep(0.8)  # longer than the checkpointer's interval
            assert len(store.checkpoints) == done, "no checkpoint while quiet"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(store.checkpoints) == done:
            time.sleep(0.02)
        assert len(store.checkpoints) > done, "the checkpoint asked for meanwhile runs afterwards"
    finally:
        store.close()


def test_the_rebuild_forks_its_helper_while_the_read_models_are_quiet(store_url, make_settings):
    from api.container import build, setup_store
    from application.demo import generate

    settings = make_settings(store_url)
    setup_store(settings)
    svc = build(settings, follow=False)
    try:
        generate(svc.app, participants=1, seed=5)
        engine = svc.projections
        engine.parallel_min_events = 0
        spawn, quiet = engine.spawn_helper, []

        def spy(*args):
            lock = getattr(engine.store, "_in_sqlite", None)
            quiet.append(lock is None or lock.locked())
            return spawn(*args)

        engine.spawn_helper = spy if spawn is not None else None
        engine.rebuild()
        assert spawn is None or quiet == [True]
    finally:
        svc.close()
