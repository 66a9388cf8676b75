"""Sealing, heads, proofs and verification on SQLite and PostgreSQL (R36)."""

from __future__ import annotations

import base64
import uuid

import pytest
from eventsourcing.persistence import StoredEvent

from application import merkle as M
from application.integrity import SignedHead
from infrastructure.signing import verify_signature


def test_every_stored_event_is_a_leaf_in_order(services, randomised_participant, integrity):
    """R36: each stored event becomes a leaf in the storing transaction, indices from 0 without gaps."""
    randomised_participant()
    randomised_participant()
    log = integrity.log
    n = log.event_count()
    assert n > 5 and log.tree_size() == n
    leaves = [leaf for start in range(0, n, 7) for leaf in log.leaves(start, 7)]
    assert [leaf.leaf_index for leaf in leaves] == list(range(n))
    notifications = [nid for nid, _ in log.scan_events(0, 10_000)]
    assert [leaf.notification_id for leaf in leaves] == notifications
    for leaf in leaves:
        assert M.leaf_hash(leaf.leaf_data) == leaf.leaf_hash
    report = integrity.verify()
    assert report.ok, report.findings
    assert report.leaves == n and report.root_hash == M.root_of([leaf.leaf_hash for leaf in leaves])


def test_head_is_signed_and_proofs_verify(services, randomised_participant, integrity):
    """R36: a signed head over the whole log; every inclusion and consistency proof checks against it."""
    randomised_participant()
    early = integrity.sign_head()
    randomised_participant()
    head = integrity.head()
    assert head.tree_size == integrity.log.tree_size() > early.tree_size
    assert verify_signature(head.public_key, head.signature, M.tree_head_bytes(head.tree_size, head.timestamp_ms, head.root_hash))
    assert integrity.head() == head  # unchanged log: the same head, not a new signature
    for leaf in integrity.log.leaves(0, 1000):
        proof = integrity.inclusion_proof(leaf.leaf_index, head.tree_size)
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
        assert M.verify_inclusion(leaf.leaf_index, head.tree_size, leaf.leaf_hash, path, head.root_hash)
    proof = [bytes.fromhex(p) for p in integrity.consistency_proof(early.tree_size, head.tree_size)["proof"]]
    assert M.verify_consistency(early.tree_size, head.tree_size, early.root_hash, head.root_hash, proof)
    assert SignedHead.from_json(head.to_json()) == head


def test_heads_are_signed_in_the_storing_transaction_at_intervals(store_url, make_settings):
    """R36: with a zero interval every transaction leaves a signed head equal to the tree it sealed."""
    from api.cli import cli_actor
    from api.container import build, setup_store

    settings = make_settings(store_url, head_interval_seconds=0)
    setup_store(settings)
    svc = build(settings)
    try:
        for name in ("alice", "bobby", "carol"):
            svc.app.register_user(cli_actor(), username=name, full_name=name.title(), role="monitor", site="MINSK",
                                  password="correct horse battery staple", source="cli")
        heads = svc.integrity.log.heads()
        assert [h.tree_size for h in heads][-3:] == [1, 2, 3]
        assert all(svc.integrity.check_head(h) is None for h in heads)
        assert svc.integrity.verify().ok
    finally:
        svc.close()


def test_merkle_tables_refuse_update_and_delete(services, randomised_participant, integrity):
    """R10: the integrity tables are append-only in the database, like the events."""
    randomised_participant()
    # a node is stored for every 2**STORED_LEVEL leaves: write that many, so the node table has rows
    oid = uuid.uuid4()
    services.app.recorder.insert_events([
        StoredEvent(originator_id=oid, originator_version=v, topic="domain.participant:Participant.ConsentRecorded",
                    state=b'{"v":%d}' % v)
        for v in range(1, 2**M.STORED_LEVEL + 1)
    ])
    integrity.sign_head()
    sql = integrity.log.sql
    assert integrity.log.nodes_between(-1, 10**12), "the test needs stored nodes"
    for statement in (
        f"UPDATE {sql.leaves} SET leaf_hash = leaf_hash",
        f"DELETE FROM {sql.leaves}",
        f"UPDATE {sql.nodes} SET hash = hash",
        f"DELETE FROM {sql.heads}",
    ):
        with pytest.raises(Exception, match="append-only"):
            with integrity.log.datastore.transaction(commit=True) as curs:
                curs.execute(statement)


def test_api_endpoints(client, login, randomised_participant, integrity):
    """R36: the contract endpoints, bearer token required, problem+json on bad input."""
    pid, _ = randomised_participant()
    assert client.get("/integrity/head").status_code == 401
    headers = login("insp", "inspector")
    head = client.get("/integrity/head", headers=headers).json()
    assert set(head) >= {"tree_size", "root_hash", "timestamp", "signature", "public_key"}
    size, root = head["tree_size"], bytes.fromhex(head["root_hash"])
    signed = SignedHead.from_json(head)
    assert verify_signature(base64.b64decode(head["public_key"]), base64.b64decode(head["signature"]), signed.signed_bytes())
    leaves = client.get("/integrity/leaves", params={"start": 0, "limit": size}, headers=headers).json()
    assert [x["leaf_index"] for x in leaves] == list(range(size))
    for x in leaves:
        data = base64.b64decode(x["leaf_data"])
        assert M.leaf_hash(data).hex() == x["leaf_hash"]
        r = client.get("/integrity/proofs/inclusion", params={"leaf_index": x["leaf_index"], "tree_size": size}, headers=headers)
        body = r.json()
        assert body["leaf_hash"] == x["leaf_hash"]
        assert M.verify_inclusion(x["leaf_index"], size, bytes.fromhex(body["leaf_hash"]), [bytes.fromhex(p) for p in body["audit_path"]], root)
    r = client.get("/integrity/proofs/consistency", params={"first": 3, "second": size}, headers=headers)
    proof = [bytes.fromhex(p) for p in r.json()["proof"]]
    root3 = M.root_of([bytes.fromhex(x["leaf_hash"]) for x in leaves[:3]])
    assert M.verify_consistency(3, size, root3, root, proof)
    bad = client.get("/integrity/proofs/inclusion", params={"leaf_index": size, "tree_size": size}, headers=headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert client.get("/integrity/proofs/consistency", params={"first": size + 1, "second": size}, headers=headers).status_code == 422
    assert client.get("/integrity/leaves", params={"start": 0, "limit": 0}, headers=headers).status_code == 422
