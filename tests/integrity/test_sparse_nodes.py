"""The store keeps tree nodes of level >= M.STORED_LEVEL only, and SQLite finds a leaf by primary key
(R36). Proofs, frontier reloads, verification and per-aggregate leaves must be what they were when
every node and an index by notification id were stored, and stores written that way must still
verify, with their extra nodes checked.
"""

from __future__ import annotations

import random
import uuid

import pytest
from eventsourcing.persistence import StoredEvent

from api.container import build, setup_store
from application import merkle as M
from tests.integrity.test_tamper import Attacker

TOPIC = "domain.participant:Participant.ConsentRecorded"


def _append(recorder, n: int, rnd: random.Random) -> None:
    """n events in transactions of 1 to 5 events, on a few aggregates."""
    oids = [uuid.uuid4() for _ in range(7)]
    versions = dict.fromkeys(oids, 0)
    written = 0
    while written < n:
        k = min(n - written, rnd.randint(1, 5))
        oid = rnd.choice(oids)
        batch = []
        for _ in range(k):
            versions[oid] += 1
            batch.append(StoredEvent(originator_id=oid, originator_version=versions[oid], topic=TOPIC,
                                     state=b'{"v":%d,"r":%d}' % (versions[oid], rnd.getrandbits(32))))
        recorder.insert_events(batch)
        written += k


def _tree(integrity) -> M.MemoryTree:
    return M.MemoryTree(h for _, _, h in integrity.log.scan_leaves(-1, 100_000))


@pytest.fixture
def big(services, integrity):
    """A log of 700 leaves: two stored level-8 nodes, one level-9 node, and a ragged right edge."""
    _append(services.app.recorder, 700, random.Random(7))
    return integrity


def test_only_nodes_of_stored_levels_are_written(big):
    """R36: sealing writes a node row per 256 leaves, not per leaf."""
    stored = dict(big.log.nodes_between(-1, 10**12))
    tree = _tree(big)
    assert stored == {M.post_order_position(lvl, i): h for (lvl, i), h in tree.nodes.items() if lvl >= M.STORED_LEVEL}
    assert {M.node_at(p) for p in stored} == {(8, 0), (8, 1), (9, 0)}


def test_proofs_equal_those_of_a_full_tree(big):
    """R36: inclusion and consistency proofs, with the low nodes recomputed from leaves, are the RFC's."""
    tree = _tree(big)
    size = tree.size
    rnd = random.Random(3)
    for index in [0, 1, 255, 256, 511, 512, 699, *rnd.sample(range(size), 40)]:
        for n in {size, index + 1, max(index + 1, 300), max(index + 1, 513)}:
            got = big.inclusion_proof(index, n)
            assert got["leaf_hash"] == tree.nodes[(0, index)].hex()
            assert got["audit_path"] == [h.hex() for h in tree.inclusion_proof(index, n)], (index, n)
    for first, second in [(1, 700), (255, 256), (256, 700), (300, 513), (511, 512), *[
        tuple(sorted(rnd.sample(range(1, size + 1), 2))) for _ in range(40)
    ]]:
        assert big.consistency_proof(first, second)["proof"] == [h.hex() for h in tree.consistency_proof(first, second)]


def test_another_process_reloads_the_frontier_from_nodes_and_leaves(store_url, make_settings):
    """R36: a recorder that finds the log grown by another process rebuilds its right edge from the
    stored level-9 node and the leaves of the ragged edge, and goes on sealing the same tree."""
    settings = make_settings(store_url, head_interval_seconds=3600)
    setup_store(settings)
    a, b = build(settings, follow=False), build(settings, follow=False)
    try:
        rnd = random.Random(11)
        _append(a.app.recorder, 700, rnd)
        _append(b.app.recorder, 45, rnd)  # b reloads its frontier at size 700
        _append(a.app.recorder, 30, rnd)  # a reloads at 745
        tree = _tree(a.integrity)
        assert tree.size == 775
        report = a.integrity.verify()
        assert report.ok, report.findings
        assert report.root_hash == tree.root() == M.root_of([h for _, _, h in a.integrity.log.scan_leaves(-1, 10_000)])
    finally:
        a.close()
        b.close()


def test_a_missing_stored_node_is_named(big):
    """R36: a node of a stored level that is missing is a finding over its leaves."""
    attacker = Attacker(big)
    attacker.drop_triggers()
    s, p = attacker.sql, attacker.p
    attacker.run(f"DELETE FROM {s.nodes} WHERE node_id = {p}", (M.post_order_position(8, 1),))
    report = big.verify()
    assert not report.ok
    assert any("leaves 256..511" in f.message for f in report.findings), report.findings


def test_a_store_with_every_level_of_nodes_verifies_and_its_extra_nodes_are_checked(big, services):
    """R36: stores sealed before kept nodes of every level (and, on SQLite, an index by notification
    id). They verify as they are, set-up drops the index, and a rewritten low node is still caught."""
    attacker = Attacker(big)
    s, p = attacker.sql, attacker.p
    tree = _tree(big)
    for (level, index), h in sorted(tree.nodes.items()):
        if 0 < level < M.STORED_LEVEL:  # as the old sealer wrote them (INSERT is allowed)
            attacker.run(f"INSERT INTO {s.nodes} (node_id, hash) VALUES ({p},{p})", (M.post_order_position(level, index), h))
    if not s.pg:
        attacker.run(f"CREATE INDEX merkle_leaves_by_notification ON {s.leaves} (notification_id)")
    report = big.verify()
    assert report.ok, report.findings
    assert big.inclusion_proof(42, 700)["audit_path"] == [h.hex() for h in tree.inclusion_proof(42, 700)]
    if not s.pg:
        setup_store(services.settings)
        assert attacker.run("SELECT name FROM sqlite_master WHERE name = 'merkle_leaves_by_notification'") == []
    attacker.drop_triggers()
    attacker.run(f"UPDATE {s.nodes} SET hash = {p} WHERE node_id = {p}", (b"\x00" * 32, M.post_order_position(2, 30)))
    report = big.verify()
    assert any("leaves 120..123" in f.message for f in report.findings), report.findings


def test_leaves_of_an_aggregate_without_the_notification_index(services, randomised_participant, integrity):
    """R36: an aggregate's leaves, found by primary key; by bisection should rowids not line up."""
    pid, _ = randomised_participant()
    _append(services.app.recorder, 300, random.Random(5))
    pid2, _ = randomised_participant()
    log = integrity.log
    events = dict(log.scan_events(0, 100_000))
    by_nid = {nid: (index, h) for index, nid, h in log.scan_leaves(-1, 100_000)}
    for aggregate in (uuid.UUID(pid), uuid.UUID(pid2)):
        leaves = log.leaves_of(aggregate)
        assert leaves and all(M.unframe_event(leaf.event)[0] == aggregate.bytes for leaf in leaves)
        assert [leaf.leaf_index for leaf in leaves] == sorted(leaf.leaf_index for leaf in leaves)
        for leaf in leaves:
            assert (leaf.leaf_index, leaf.leaf_hash) == by_nid[leaf.notification_id]
            assert leaf.leaf_data == events[leaf.notification_id]
        if not log.sql.pg:
            log._first_nid = (log._first_nid or 0) + 3  # every guess misses: bisection finds them
            assert log.leaves_of(aggregate) == leaves
            log._first_nid = None
