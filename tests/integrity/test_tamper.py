"""The tamper campaign (R10, R36): an attacker with database access drops the append-only triggers
and flips a byte, deletes, inserts, reorders, or rewrites an event together with its leaf (and
even every tree node). `trialaudit verify` detects every case and names the first bad leaf; the
last case is caught by the signed heads. A head kept outside the database catches truncation.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from typer.testing import CliRunner

from api.cli import cli
from application import merkle as M


class Attacker:
    """Raw SQL on the store, as someone holding the database owner's credentials."""

    def __init__(self, integrity):
        self.log = integrity.log
        self.sql = integrity.log.sql
        self.p = self.sql.p

    def run(self, statement: str, params=()):
        with self.log.datastore.transaction(commit=True) as curs:
            curs.execute(statement, params)
            try:
                return curs.fetchall()
            except Exception:
                return []

    def drop_triggers(self) -> None:
        if self.sql.pg:
            schema = self.log.datastore.schema
            rows = self.run(
                "SELECT DISTINCT trigger_name, event_object_table FROM information_schema.triggers WHERE trigger_schema = %s",
                (schema,),
            )
            rows += self.run(
                "SELECT tgname AS trigger_name, c.relname AS event_object_table FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND NOT t.tgisinternal", (schema,),
            )
            for r in {(r["trigger_name"], r["event_object_table"]) for r in rows}:
                self.run(f'DROP TRIGGER IF EXISTS "{r[0]}" ON "{schema}"."{r[1]}"')
        else:
            for r in self.run("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
                self.run(f"DROP TRIGGER {r['name']}")

    def notification_ids(self) -> list[int]:
        return [nid for nid, _ in self.log.scan_events(0, 100_000)]

    def event(self, nid: int) -> dict:
        s = self.sql
        rows = self.run(
            f"SELECT originator_id, originator_version, topic, state FROM {s.events} WHERE {s.nid} = {self.p}", (nid,)
        )
        return dict(rows[0])

    def set_event(self, nid: int, **values) -> None:
        cols = ", ".join(f"{k} = {self.p}" for k in values)
        self.run(f"UPDATE {self.sql.events} SET {cols} WHERE {self.sql.nid} = {self.p}", (*values.values(), nid))


def run_verify(*args: str):
    result = CliRunner().invoke(cli, ["verify", *args])
    match = re.search(r"first bad leaf index (\d+)", result.output)
    return result, (int(match.group(1)) if match else None)


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.fixture(autouse=True, params=["in-process", "helper process"])
def leaf_hasher_process(request, monkeypatch, store_url):
    """Every case twice on SQLite: leaves recomputed in-process, and by the helper process that
    `trialaudit verify` starts for big logs (forced here by a threshold of 0 events)."""
    from infrastructure.merkle_store import MerkleLog

    if request.param == "helper process" and not store_url.startswith("sqlite"):
        pytest.skip("the helper process reads SQLite stores only")
    monkeypatch.setattr(MerkleLog, "helper_min_events", 0 if request.param == "helper process" else None)


@pytest.fixture
def populated(integrity, randomised_participant, cli_env):
    for _ in range(3):
        randomised_participant()
    result, bad = run_verify()
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and bad is None
    attacker = Attacker(integrity)
    attacker.drop_triggers()
    return attacker


def test_untouched_log_verifies(populated, integrity):
    """R36: the intact log verifies (exit 0) after the triggers are merely dropped."""
    assert run_verify()[0].exit_code == 0


def test_one_bit_flip_in_state_is_named(populated):
    """R36: flipping one bit of one stored event fails verify, naming exactly that leaf."""
    nids = populated.notification_ids()
    k = len(nids) // 2
    ev = populated.event(nids[k])
    populated.set_event(nids[k], state=flipped(bytes(ev["state"]), 10))
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == k, result.output
    assert "was changed" in result.output


@pytest.mark.parametrize("column", ["originator_version", "topic"])
def test_change_to_any_column_is_named(populated, column):
    """R36: the leaf covers every stored column, not only the state."""
    nids = populated.notification_ids()
    k = 4
    ev = populated.event(nids[k])
    new = ev["originator_version"] + 1000 if column == "originator_version" else ev["topic"] + "X"
    populated.set_event(nids[k], **{column: new})
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == k, result.output


def test_unframeable_event_is_named_not_a_crash(populated):
    """R36: a version no frame can hold (negative) is reported at its leaf; verify does not crash."""
    nids = populated.notification_ids()
    k = 5
    populated.set_event(nids[k], originator_version=-7)
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == k, result.output
    assert "no longer form an event" in result.output


def test_leaf_hashes_resplit_across_rows_are_named(populated, integrity):
    """R36: two adjacent leaf hashes rewritten as 31 + 33 bytes keep their concatenation; the page
    comparison must not accept them (the stored leaves no longer give the proofs)."""
    s, p = populated.sql, populated.p
    k = 4
    leaves = integrity.log.scan_leaves(k - 1, 2)
    a, b = bytes(leaves[0][2]), bytes(leaves[1][2])
    populated.run(f"UPDATE {s.leaves} SET leaf_hash = {p} WHERE leaf_index = {p}", (a[:-1], k))
    populated.run(f"UPDATE {s.leaves} SET leaf_hash = {p} WHERE leaf_index = {p}", (a[-1:] + b, k + 1))
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == k, result.output


def test_deleted_event_is_named(populated):
    """R36: deleting an event names the leaf that sealed it."""
    nids = populated.notification_ids()
    k = 6
    populated.run(f"DELETE FROM {populated.sql.events} WHERE {populated.sql.nid} = {populated.p}", (nids[k],))
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == k, result.output


def test_inserted_event_is_named(populated, integrity):
    """R36: an event inserted without a leaf (at the end, where new ids go) is named by its position."""
    s, p = populated.sql, populated.p
    n = len(populated.notification_ids())
    ev = populated.event(populated.notification_ids()[2])
    version = ev["originator_version"] + 500
    populated.run(
        f"INSERT INTO {s.events} (originator_id, originator_version, topic, state) VALUES ({p},{p},{p},{p})",
        (ev["originator_id"], version, ev["topic"], bytes(ev["state"])),
    )
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == n, result.output
    assert "inserted" in result.output


def test_reordered_events_are_named(populated):
    """R36: swapping two events' contents between positions names the earlier position."""
    nids = populated.notification_ids()
    a, b = 3, 9
    ea, eb = populated.event(nids[a]), populated.event(nids[b])
    populated.set_event(nids[a], originator_version=-1)  # step aside from the primary key
    populated.set_event(nids[b], **ea)
    populated.set_event(nids[a], **eb)
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == a, result.output


def _single_event_transaction(integrity) -> int:
    """A leaf k sealed alone in its transaction: heads exist at sizes k and k + 1."""
    sizes = {h.tree_size for h in integrity.log.heads()}
    return next(k for k in sorted(sizes) if k + 1 in sizes and k > 0)


def _rewrite_event_and_leaf(attacker, integrity, k: int, rebuild_nodes: bool) -> None:
    s, p = attacker.sql, attacker.p
    nid = attacker.notification_ids()[k]
    ev = attacker.event(nid)
    state = bytes(ev["state"]).replace(b'"', b"'", 1) if b'"' in bytes(ev["state"]) else flipped(bytes(ev["state"]), 0)
    attacker.set_event(nid, state=state)
    frame = M.frame_event(_oid(ev["originator_id"]), ev["originator_version"], ev["topic"], state)
    (stored,) = attacker.run(f"SELECT leaf_data FROM {s.leaves} WHERE leaf_index = {p}", (k,))
    _, subject, leaf_nid = M.parse_leaf_v1(bytes(stored["leaf_data"]))  # the attacker keeps the subject
    data = M.leaf_v1(hashlib.sha256(frame).digest(), subject, leaf_nid)
    attacker.run(f"UPDATE {s.leaves} SET leaf_hash = {p}, leaf_data = {p} WHERE leaf_index = {p}",
                 (M.leaf_hash(data), data, k))
    if rebuild_nodes:  # the thorough attacker recomputes the whole stored tree
        tree = M.MemoryTree(h for _, _, h in integrity.log.scan_leaves(-1, 100_000))
        attacker.run(f"DELETE FROM {s.nodes}")
        for (level, index), h in tree.nodes.items():
            if level > 0:
                attacker.run(f"INSERT INTO {s.nodes} (node_id, hash) VALUES ({p},{p})", (M.post_order_position(level, index), h))


def _oid(value) -> bytes:
    from infrastructure.merkle_store import originator_bytes

    return originator_bytes(value)


def test_event_rewritten_with_its_leaf_is_caught_by_the_tree(populated, integrity):
    """R36: rewriting an event and its leaf hash leaves the stored tree nodes inconsistent."""
    k = _single_event_transaction(integrity)
    _rewrite_event_and_leaf(populated, integrity, k, rebuild_nodes=False)
    report = integrity.verify()
    first = report.first_bad
    assert first is not None and first.first <= k < first.last
    result, bad = run_verify()
    assert result.exit_code == 1 and bad is not None and bad <= k, result.output


def test_event_rewritten_with_its_leaf_and_tree_is_caught_by_the_signed_head(populated, integrity):
    """R36: with leaf and every node rewritten, only the signed heads disagree, and they name the leaf."""
    k = _single_event_transaction(integrity)
    _rewrite_event_and_leaf(populated, integrity, k, rebuild_nodes=True)
    report = integrity.verify()
    assert [f.message for f in report.findings if "signed head" not in f.message] == []
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == k, result.output
    assert "signed head" in result.output


def test_truncation_with_heads_deleted_is_caught_by_a_head_kept_outside(populated, integrity, tmp_path):
    """R36: deleting the newest events, leaves, nodes and heads passes the in-database checks,
    but a signed head checkpointed outside the database (`trialaudit head --out`) catches it."""
    runner = CliRunner()
    kept = tmp_path / "kept-head.json"
    assert runner.invoke(cli, ["head", "--out", str(kept)]).exit_code == 0
    populated.drop_triggers()  # every command's set-up re-creates them
    size = json.loads(kept.read_text())["tree_size"]
    # cut where a transaction ended (a head covers it): a cut inside one leaves uncovered leaves, a finding
    cut = max(h.tree_size for h in integrity.log.heads() if h.tree_size <= size - 3)
    s, p = populated.sql, populated.p
    nids = populated.notification_ids()
    populated.run(f"DELETE FROM {s.events} WHERE {s.nid} >= {p}", (nids[cut],))
    populated.run(f"DELETE FROM {s.leaves} WHERE leaf_index >= {p}", (cut,))
    populated.run(f"DELETE FROM {s.heads} WHERE tree_size > {p}", (cut,))
    tree = M.MemoryTree(h for _, _, h in integrity.log.scan_leaves(-1, 100_000))
    keep = {M.post_order_position(level, index) for (level, index) in tree.nodes if level > 0}
    for node_id, _ in integrity.log.nodes_between(-1, 10**12):
        if node_id not in keep:
            populated.run(f"DELETE FROM {s.nodes} WHERE node_id = {p}", (node_id,))
    assert run_verify()[0].exit_code == 0  # consistent inside the database...
    result, bad = run_verify("--head", str(kept))
    assert result.exit_code == 1 and bad == cut, result.output  # ...but not with the head held outside
