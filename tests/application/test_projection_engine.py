"""The projection engine's single pass and rebuild: each event decoded once for all projections,
positions moved together in the batch's transaction, a lost compare-and-set rolled back and re-read,
the indexes a rebuild defers built again, and a rebuild that dies half-way repaired."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from contextlib import contextmanager

import pytest

from api.container import build, setup_store
from application.demo import generate
from application.projections import deferred_indexes
from application.scores_projection import ITEM_EVENTS

TODAY = dt.date(2026, 3, 1)


@pytest.fixture
def trial(store_url, make_settings):
    """A small synthetic trial, read models caught up; the engine reads the log in pages of 97."""
    settings = make_settings(store_url)
    setup_store(settings)
    svc = build(settings, follow=False)
    generate(svc.app, participants=3, seed=5, today=TODAY)
    svc.projections.batch_size = 97
    svc.projections.catch_up()
    yield svc
    svc.close()


def index_names(svc) -> set[str]:
    store = svc.projections.store
    if store.dialect == "sqlite":
        rows = store.query("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        return {r["name"] for r in rows}
    rows = store.query("SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()")
    return {r["name"] for r in rows if not r["name"].endswith("_pkey")}


def test_rebuild_is_one_pass_that_moves_every_position_in_the_batch_transaction(trial, monkeypatch):
    engine, app = trial.projections, trial.app
    live, indexes = engine.dump(), index_names(trial)
    head = app.recorder.max_notification_id()
    decoded: list[int] = []
    to_domain_event = app.mapper.to_domain_event
    monkeypatch.setattr(app.mapper, "to_domain_event", lambda n: decoded.append(n.id) or to_domain_event(n))
    advanced: dict[int, list[str]] = defaultdict(list)
    advance, transaction, transactions = engine.store.advance, engine.store.transaction, [0]

    @contextmanager
    def numbered():
        transactions[0] += 1
        with transaction() as cur:
            yield cur

    def spy(cur, name, old, new):
        moved = advance(cur, name, old, new)  # (the statement that begins the transaction, if none did)
        advanced[transactions[0]].append(name)
        # inside the batch: the deferred indexes do not exist yet, the lookup ones do
        assert "audit_events_participant" not in index_names(trial)
        assert "visit_scores_participant" in index_names(trial)
        return moved

    monkeypatch.setattr(engine.store, "advance", spy)
    monkeypatch.setattr(engine.store, "transaction", numbered)
    progress: list[tuple[int, int]] = []
    processed = engine.rebuild(progress=lambda done, total: progress.append((done, total)))

    ids = [n.id for n in app.recorder.select_notifications(start=0, limit=head + 1, inclusive_of_start=False)]
    assert processed == len(ids)
    # each event decoded into an object at most once, and only for a projection that needs one: the
    # audit index (every event) and the visit scores' items are read from the stored state
    assert len(decoded) == len(set(decoded)) and set(decoded) < set(ids)
    others = {t for p in engine.projections.values() if p.name != "audit_index" for t in p.topics}
    topics = {n.id: n.topic for n in app.recorder.select_notifications(start=0, limit=head + 1, inclusive_of_start=False)}
    assert {topics[i] for i in decoded} <= others - {cls.TOPIC for cls in ITEM_EVENTS}
    assert len(advanced) == -(-len(ids) // engine.batch_size)  # one transaction per page
    assert all(sorted(names) == sorted(engine.projections) for names in advanced.values()), dict(advanced)
    assert progress[-1] == (head, head) and [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert engine.positions() == {name: head for name in engine.projections}
    assert engine.dump() == live
    assert index_names(trial) == indexes


def test_rebuild_defers_and_then_recreates_every_index(trial):
    before = index_names(trial)
    deferred = {s.split()[5] for p in trial.projections.projections.values() for s in deferred_indexes(p)}
    assert "audit_changes_aggregate_field" in deferred and "visit_scores_participant" not in deferred
    assert deferred <= before
    trial.projections.rebuild()
    assert index_names(trial) == before


def test_a_lost_compare_and_set_rolls_back_the_pass_and_the_rest_catch_up_alone(trial, make_settings, store_url, monkeypatch):
    """Another worker moves one projection while this one holds a page: the whole batch rolls back,
    the others go on without it until they reach its position, and no event is applied twice."""
    engine, app = trial.projections, trial.app
    live = engine.dump()
    head = app.recorder.max_notification_id()
    other = build(make_settings(store_url), follow=False)
    other.projections.batch_size = 150
    # the engine reads the log as rows where the store has that (SQLite), else as notifications
    read = "select_notification_rows" if hasattr(app.recorder, "select_notification_rows") else "select_notifications"
    select = getattr(app.recorder, read)
    starts: list[int] = []

    def select_then_other_worker(*args, **kwargs):
        page = select(*args, **kwargs)
        starts.append(kwargs["start"])
        if len(starts) == 2:  # the second page of the pass: another worker catches participant_list up
            other.projections._catch_up_all(["participant_list"], None)
        return page

    lost = []
    advance = engine.store.advance

    def spy(cur, name, old, new):
        ok = advance(cur, name, old, new)
        if not ok:
            lost.append((name, old))
        return ok

    monkeypatch.setattr(app.recorder, read, select_then_other_worker)
    monkeypatch.setattr(engine.store, "advance", spy)
    try:
        engine.rebuild()
    finally:
        other.close()
    assert starts[1] > 0 and lost == [("participant_list", starts[1])]
    assert engine.positions() == {name: head for name in engine.projections}
    assert engine.dump() == live  # a second application of any event would differ (or break a key)


def test_a_rebuild_that_fails_half_way_is_consistent_and_catches_up(trial, monkeypatch):
    engine = trial.projections
    live, indexes = engine.dump(), index_names(trial)
    audit = engine.projections["audit_index"]
    process, calls = audit.process_recorded, []  # (the audit index reads stored state)

    def failing(recorded, cur):
        calls.append(recorded.id)
        if len(calls) == 250:
            raise RuntimeError("disk full")
        process(recorded, cur)

    monkeypatch.setattr(audit, "process_recorded", failing)
    with pytest.raises(RuntimeError):
        engine.rebuild()
    monkeypatch.setattr(audit, "process_recorded", process)
    assert index_names(trial) == indexes  # built on the way out
    assert 0 < engine.positions()["audit_index"] < trial.app.recorder.max_notification_id()
    engine.catch_up()  # live mode: reads what the committed batches wrote
    assert engine.dump() == live


def test_a_rebuild_killed_before_its_indexes_is_repaired_by_setup(trial, make_settings, store_url, monkeypatch):
    engine = trial.projections
    live, indexes = engine.dump(), index_names(trial)

    def killed() -> None:  # as if the process died: nothing built, nothing forgotten
        engine._bulk, engine._deferred = {}, []

    monkeypatch.setattr(engine, "_leave_bulk", killed)
    engine.rebuild()
    assert "audit_events_participant" not in index_names(trial)
    setup_store(make_settings(store_url))  # what every start runs
    assert index_names(trial) == indexes
    assert engine.dump() == live


def test_a_helper_process_rebuilds_the_audit_index_beside_the_others(trial):
    engine = trial.projections
    if engine.spawn_helper is None:
        pytest.skip("no fork here")
    live, indexes = engine.dump(), index_names(trial)
    head = trial.app.recorder.max_notification_id()
    engine.parallel_min_events = 0  # however short the log
    spawned = []
    spawn = engine.spawn_helper
    engine.spawn_helper = lambda names, deferred, size: spawned.append(names) or spawn(names, deferred, size)
    progress: list[tuple[int, int]] = []
    processed = engine.rebuild(progress=lambda done, total: progress.append((done, total)))
    assert spawned == [["audit_index"]]
    assert processed == len(trial.app.recorder.select_notifications(start=0, limit=head + 1, inclusive_of_start=False))
    assert progress[-1] == (head, head)
    assert engine.positions() == {name: head for name in engine.projections}
    assert engine.dump() == live
    assert index_names(trial) == indexes


def test_a_failing_helper_fails_the_rebuild_and_catch_up_repairs_it(trial, monkeypatch):
    engine = trial.projections
    if engine.spawn_helper is None:
        pytest.skip("no fork here")
    live, indexes = engine.dump(), index_names(trial)
    engine.parallel_min_events = 0
    audit = type(engine.projections["audit_index"])
    process, calls = audit.process_recorded, []

    def failing(self, recorded, cur):  # inherited by the forked helper
        calls.append(recorded.id)
        if len(calls) == 250:
            raise RuntimeError("disk full")
        process(self, recorded, cur)

    monkeypatch.setattr(audit, "process_recorded", failing)
    with pytest.raises(RuntimeError, match="helper process failed: RuntimeError: disk full"):
        engine.rebuild()
    monkeypatch.setattr(audit, "process_recorded", process)
    head = trial.app.recorder.max_notification_id()
    positions = engine.positions()
    assert 0 < positions["audit_index"] < head and positions["visit_scores"] == head
    assert index_names(trial) == indexes
    engine.catch_up()
    assert engine.dump() == live


def test_a_rebuild_that_lets_go_of_visit_items_reads_them_back_and_equals_live(trial, monkeypatch):
    """The visit scores keep the items of only the visits written last during a rebuild (bounded memory);
    a visit written again after that is read back from visit_items. With room for one visit, nearly
    every batch reads some back, and the rebuilt read model still equals the live one."""
    from application import scores_projection

    engine = trial.projections
    live = engine.dump()
    monkeypatch.setattr(scores_projection, "ITEMS_KEPT", 1)
    read_back: list[str] = []
    items_in_table = scores_projection._items_in_table
    monkeypatch.setattr(scores_projection, "_items_in_table",
                        lambda vids, cur: read_back.extend(vids) or items_in_table(vids, cur))
    engine.batch_size = 40  # a visit's items span batches
    engine.rebuild()
    assert read_back  # the path was taken
    assert engine.dump() == live
