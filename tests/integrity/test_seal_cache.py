"""The recorder's in-memory frontier, batch sealing and the verifier's bulk paths (R36, R10).

Sealing keeps the tree's right edge in memory; it must still be gap-free and equal to a tree built
from the stored events when other recorders (other processes) append to the same store, when a
transaction rolls back, and when a group-committed batch loses one of its commands.
"""

from __future__ import annotations

import os
import sqlite3
import uuid

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from api.container import build, setup_store
from application import merkle as M
from infrastructure import leaf_hasher
from infrastructure.merkle_store import MerkleLog, frame
from infrastructure.store import _PendingWrite

TOPIC = "domain.participant:Participant.ConsentRecorded"


def _events(n: int = 2, oid: uuid.UUID | None = None, first_version: int = 1) -> list[StoredEvent]:
    oid = oid or uuid.uuid4()
    return [
        StoredEvent(originator_id=oid, originator_version=first_version + k, topic=TOPIC,
                    state=b'{"k":%d,"r":"%s"}' % (k, os.urandom(4).hex().encode()))
        for k in range(n)
    ]


def _assert_log_is_the_events(svc) -> None:
    """Leaves 0..n-1 without gaps, one per stored event in order, and the stored tree is theirs."""
    log = svc.integrity.log
    events = log.scan_events(0, 100_000)
    leaves = log.scan_leaves(-1, 100_000)
    assert [lf[0] for lf in leaves] == list(range(len(events)))
    assert [lf[1] for lf in leaves] == [nid for nid, _ in events]
    assert [lf[2] for lf in leaves] == [M.leaf_hash(data) for _, data in events]
    tree = M.MemoryTree(lf[2] for lf in leaves)
    stored = dict(log.nodes_between(-1, 10**12))
    assert stored == {M.post_order_position(lvl, i): h for (lvl, i), h in tree.nodes.items() if lvl >= M.STORED_LEVEL}
    report = svc.integrity.verify()
    assert report.ok, report.findings
    assert report.root_hash == tree.root()


@pytest.fixture
def two_processes(store_url, make_settings):
    """Two independently built service sets on one store, as two server processes."""
    settings = make_settings(store_url, head_interval_seconds=3600)
    setup_store(settings)
    a, b = build(settings, follow=False), build(settings, follow=False)
    yield a, b
    a.close()
    b.close()


def test_another_recorder_appending_makes_the_cache_reload(two_processes):
    """R36: a recorder whose cached frontier went stale (another process appended) reloads it in the
    storing transaction, so leaves stay gap-free and nodes stay those of the stored events."""
    a, b = two_processes
    ra, rb = a.app.recorder, b.app.recorder
    ra.insert_events(_events(3))
    assert ra._frontier_cache[0].size == a.integrity.log.tree_size()
    rb.insert_events(_events(2))
    rb.insert_events(_events(1))
    stale = ra._frontier_cache[0].size
    loads = []
    original = ra._load_frontier
    ra._load_frontier = lambda curs, size: loads.append(size) or original(curs, size)
    ra.insert_events(_events(2))
    assert loads == [a.integrity.log.tree_size() - 2] and loads[0] != stale
    ra.insert_events(_events(2))  # the reloaded frontier is cached again: no second load
    assert len(loads) == 1
    _assert_log_is_the_events(a)


def test_failed_transaction_leaves_no_leaves_and_drops_the_cache(two_processes):
    """R36: sealed rows roll back with their transaction; the cache must not stay advanced past
    the stored log, and the next seal continues from what is stored (no gap, no fork)."""
    a, _ = two_processes
    recorder = a.app.recorder
    recorder.insert_events(_events(2))
    size = a.integrity.log.tree_size()
    seal = recorder._seal

    def seal_then_fail(curs, stored_events, ids):
        seal(curs, stored_events, ids)
        assert recorder._frontier_cache[0].size == size + len(stored_events)  # advanced in the transaction
        raise sqlite3.OperationalError("disk I/O error (simulated, after sealing)")

    recorder._seal = seal_then_fail
    with pytest.raises(Exception):
        recorder.insert_events(_events(3))
    del recorder._seal
    assert recorder._frontier_cache is None
    assert a.integrity.log.tree_size() == size == a.integrity.log.event_count()
    recorder.insert_events(_events(2))
    assert a.integrity.log.tree_size() == size + 2
    _assert_log_is_the_events(a)


def test_group_commit_seals_the_batch_once_without_the_failed_command(sqlite_url, make_settings):
    """R36, R10: a group-committed batch is sealed in one pass after its commands ran; a command
    rolled back to its savepoint (a version conflict) gets no leaf, the others get gap-free leaves."""
    settings = make_settings(sqlite_url, head_interval_seconds=0)
    setup_store(settings)
    svc = build(settings, follow=False)
    try:
        recorder = svc.app.recorder
        taken = uuid.uuid4()
        recorder.insert_events(_events(1, taken))
        calls = []
        seal = recorder._seal
        recorder._seal = lambda curs, events, ids: calls.append(list(ids)) or seal(curs, events, ids)
        good1, conflict, good2 = _events(2), _events(1, taken), _events(3)
        batch = [_PendingWrite(good1, {}), _PendingWrite(conflict, {}), _PendingWrite(good2, {})]
        recorder._commit_batch(batch)
        assert isinstance(batch[1].error, IntegrityError) and batch[0].error is None and batch[2].error is None
        assert len(calls) == 1 and calls[0] == [*batch[0].result, *batch[2].result]
        assert svc.integrity.log.tree_size() == 1 + 2 + 3
        assert svc.integrity.log.heads()[-1].tree_size == 6  # one head for the batch, over all of it
        _assert_log_is_the_events(svc)
    finally:
        svc.close()


def test_the_leaf_hasher_agrees_with_the_leaf_definition():
    """R36: the verifier's bulk leaf hashes (both forms) are M.leaf_hash of the framed stored columns,
    and a row that no longer frames (negative version, id that is no UUID) gets None, not a hash."""
    oid = uuid.uuid4()
    state = b'{"a": 1}'
    want = M.leaf_hash(frame(oid, 7, TOPIC, state))
    sqlite_row = (1, oid.hex.encode(), 7, TOPIC.encode(), state)
    assert leaf_hasher.leaf_hashes([sqlite_row]) == [want]
    assert leaf_hasher.leaf_hashes([(1, oid, 7, TOPIC.encode(), state)], uuid_ids=True) == [want]
    assert leaf_hasher.leaf_hashes([(1, str(oid).encode(), 7, TOPIC.encode(), state)]) == [want]  # 36-char form
    bad = [(2, oid.hex.encode(), -1, TOPIC.encode(), state), (3, b"not a uuid at all, not even close", 1, b"t", state),
           (4, oid.hex[:30].encode() + b"  ", 1, b"t", state)]
    assert leaf_hasher.leaf_hashes([sqlite_row, *bad]) == [want, None, None, None]


@pytest.mark.parametrize("helper", [False, True], ids=["in-process", "helper process"])
def test_leaf_hash_pages_are_the_same_in_the_helper_process(services, randomised_participant, monkeypatch, helper):
    """R36: the pages the verifier compares are the same whether a helper process computed them."""
    for _ in range(3):
        randomised_participant()
    log = services.integrity.log
    if helper and log.sql.pg:
        pytest.skip("the helper process reads SQLite stores only")
    monkeypatch.setattr(MerkleLog, "helper_min_events", 0 if helper else None)
    assert log._use_helper(0) is helper
    pages = list(log.leaf_hash_pages(0, 7))
    events = log.scan_events(0, 100_000)
    assert [nid for nids, _ in pages for nid in nids] == [nid for nid, _ in events]
    assert b"".join(h for _, h in pages) == b"".join(M.leaf_hash(data) for _, data in events)
    assert all(len(nids) == 7 for nids, _ in pages[:-1]) and len(pages[-1][0]) < 7
