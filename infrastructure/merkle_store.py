"""The RFC 9162 Merkle log in the event store: sealed in the storing transaction, read for proofs.

Tables (append-only, like the events: UPDATE and DELETE are refused by triggers):
- ``merkle_leaves(leaf_index, notification_id, leaf_hash)``: one row per stored event, leaf indices
  from 0 with no gaps (PostgreSQL notification ids have gaps; SQLite rowids need not start at 1).
- ``merkle_nodes(node_id, hash)``: every perfect subtree of level >= 8 (256 leaves and up), keyed
  by its post-order position (application/merkle.py), so a proof reads O(log n) rows and rehashes
  at most a few hundred leaf hashes (the nodes below level 8, from their leaves). Sealing writes a
  node row once per 256 events; a row per event (level >= 1, as stores before 2026-11-27 kept)
  cost a page write in most commits.
- ``merkle_heads(head_id, tree_size, root_hash, timestamp_ms, signature, public_key)``: signed heads.

Sealing (``_seal``) runs with the events table's write lock held (BEGIN IMMEDIATE on SQLite, the
EXCLUSIVE table lock on PostgreSQL), so tree sizes never race, and on SQLite once per group-committed
batch. The recorder keeps the tree's right edge (frontier) in memory and checks it against the
stored log in the same transaction by one indexed read of the last leaf (tree size and hash): if
another process appended meanwhile, the frontier is reloaded (O(log n) rows); a rolled-back
transaction drops it. Then it inserts the new leaves and the nodes they complete: O(1) amortised
per event. With a head signer attached, every sealing transaction signs a head over the log as it
leaves it and keeps it in its last leaf's row (``seal_ts``, ``seal_signature``: the *tail seal*, no
extra row), and once the last head in merkle_heads is ``head_interval_seconds`` old it stores one
there too. A sealer that must reload the frontier (the log changed under it) requires the stored tail
to be covered by a valid tail seal or head of our key, and refuses otherwise (UncoveredLeaves): a
forged event appended with a correct leaf is never built on nor signed over.

Leaves are of format 1 (application/merkle.py LEAF_V1_LAYOUT, kept in ``leaf_data``); stores written
by older code keep their old-format leaves (``leaf_data`` NULL: the leaf data is the event's frame).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
import subprocess
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any
from uuid import UUID

from binascii import unhexlify

import orjson
from eventsourcing.persistence import ProgrammingError, StoredEvent
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from application import merkle as M
from application.audit_index import participant_of, topic_aggregate_type
from domain.errors import Conflict
from application.integrity import Leaf, SignedHead, now_ms
from infrastructure import leaf_hasher
from infrastructure.leaf_hasher import frame_row, leaf_hashes, originator_bytes
from infrastructure.store import AppendOnlyPostgresRecorder, AppendOnlySQLiteRecorder

__all__ = ["MerkleLog", "MerkleSQLiteRecorder", "MerklePostgresRecorder", "attach_head_signer", "frame", "originator_bytes"]

LEAVES, NODES, HEADS, ALARMS = "merkle_leaves", "merkle_nodes", "merkle_heads", "merkle_alarms"
#: the key of the subject commitments, in the data directory (mode 0600), like signing.key
SUBJECT_KEY_FILE = "subject.key"
_first = itemgetter(0)
log = logging.getLogger(__name__)


def frame(originator_id: Any, version: int, topic: str, state: bytes) -> bytes:
    return M.frame_event(originator_bytes(originator_id), version, topic, state)


_LEAF_HEAD = struct.Struct(">c16sQI").pack  # 0x00 || the frame's header
_sha256 = hashlib.sha256


def _leaf_hash(originator: bytes, version: int, topic: bytes, state: bytes) -> bytes:
    """M.leaf_hash(frame(...)) without the intermediate frame (the sealing hot path)."""
    return _sha256(_LEAF_HEAD(b"\x00", originator, version, len(topic)) + topic + state).digest()


_UNSEEN = object()
_PID_KEY = b'"participant_id"'
_FRAME_PACK = struct.Struct(">16sQI").pack


class SubjectTracker:
    """The participant each event belongs to, learned in log order by the audit trail's rule
    (``application.audit_index.participant_of``), and the commitment a format-1 leaf carries.

    Commitment to participant P (16 UUID bytes): SHA-256(subject domain || salt || P) with
    salt = HMAC-SHA256(subject key, P). The subject key is kept outside the database
    (``subject.key`` in the data directory); a bundle for P opens the commitment by giving the salt.
    Ids are kept as 16 bytes. ``lookup(aggregate id)``, when given, is asked about an aggregate first
    seen after its first event (the sealer, in a new process): it replays the earlier events.
    """

    def __init__(self, key: bytes | None, lookup: Any = None):
        self.key = key or b""
        self.lookup = lookup
        self.known: dict[bytes, bytes | None] = {}
        self._commitments: dict[bytes | None, bytes] = {None: M.NO_SUBJECT}
        self._types: dict[str, str] = {}

    def aggregate_type(self, topic: str) -> str:
        t = self._types.get(topic)
        if t is None:
            try:
                t = topic_aggregate_type(topic)
            except Exception:  # a topic no class answers (tampered, or code removed): its own spelling
                t = topic.partition(":")[2].split(".")[0]
            self._types[topic] = t
        return t

    def observe(self, topic: str, aggregate: bytes, version: int, state: bytes) -> bytes | None:
        """The participant (16 bytes) this event belongs to, or None; remembered for its aggregate."""
        atype = self._types.get(topic) or self.aggregate_type(topic)
        own = None
        if atype != "Participant" and _PID_KEY in state:
            try:
                value = orjson.loads(state)
                text = value.get("participant_id") if type(value) is dict else None
                own = UUID(str(text)).bytes if text else None
            except (orjson.JSONDecodeError, ValueError, TypeError):
                own = None
        known = self.known.get(aggregate, _UNSEEN)
        if known is _UNSEEN:
            known = None
            if version > 1 and self.lookup is not None and atype != "Participant" and own is None:
                known = self.lookup(aggregate, version)
        participant = participant_of(atype, aggregate, own, known)
        self.known[aggregate] = participant
        return participant

    def salt(self, participant: bytes) -> bytes:
        return hmac.digest(self.key, participant, "sha256")

    def commitment(self, participant: bytes | None) -> bytes:
        c = self._commitments.get(participant)
        if c is None:
            c = self._commitments[participant] = M.subject_commitment(self.salt(participant), participant)
        return c

    def v1_leaves(self, rows: Sequence[tuple], *, uuid_ids: bool) -> list[bytes]:
        """The format-1 leaf data of event rows ``(nid, originator id, version, topic bytes, state)`` as
        verify reads them (originator ids as UUIDs, or as 32 ASCII hex digits): ``leaf`` per row,
        inlined (the hot loop of verify on a format-1 log). Raises on a row that does not frame."""
        out = []
        append = out.append
        known = self.known
        commitments = self._commitments
        types = self._types
        texts: dict[bytes, tuple[str, str]] = {}
        sha = _sha256
        pack = _FRAME_PACK
        leaf_pack = M.leaf_v1
        for nid, o, version, topic, state in rows:
            oid = o.bytes if uuid_ids else unhexlify(o)
            if len(oid) != 16 or version < 0:
                raise ValueError("not a stored event")
            info = texts.get(topic)
            if info is None:
                text = topic.decode("utf-8")
                info = texts[topic] = (text, types.get(text) or self.aggregate_type(text))
            if type(state) is not bytes:
                state = bytes(state)
            digest = sha(pack(oid, version, len(topic)) + topic + state).digest()
            if info[1] == "Participant":
                participant = oid
            elif _PID_KEY in state:
                participant = self.observe(info[0], oid, version, state)
            else:
                participant = known.get(oid)
            known[oid] = participant
            c = commitments.get(participant)
            if c is None:
                c = self.commitment(participant)
            append(leaf_pack(digest, c, nid))
        return out

    def leaf(self, nid: int, oid: bytes, version: int, topic: bytes, topic_text: str, state: bytes) -> bytes:
        """The format-1 leaf data of a stored event (observing it)."""
        digest = _sha256(_FRAME_PACK(oid, version, len(topic)) + topic + state).digest()
        return M.leaf_v1(digest, self.commitment(self.observe(topic_text, oid, version, state)), nid)


class _Sql:
    """The few statements of the Merkle log, for one dialect and schema."""

    def __init__(self, *, pg: bool, leaves: str, nodes: str, heads: str, events: str, nid: str, alarms: str):
        self.pg = pg
        self.alarms = alarms
        self.leaves, self.nodes, self.heads, self.events, self.nid = leaves, nodes, heads, events, nid
        p = "%s" if pg else "?"
        self.p = p
        self.last_leaf = (f"SELECT leaf_index, leaf_hash, seal_ts, seal_signature FROM {leaves} "
                          f"ORDER BY leaf_index DESC LIMIT 1")
        self.last_seal = (f"SELECT leaf_index, seal_ts, seal_signature FROM {leaves} WHERE seal_signature IS NOT NULL "
                          f"ORDER BY leaf_index DESC LIMIT 1")
        self.insert_leaves = (
            f"INSERT INTO {leaves} (leaf_index, notification_id, leaf_hash, leaf_data, seal_ts, seal_signature) "
            f"VALUES ({p},{p},{p},{p},{p},{p})"
        )
        self.insert_nodes = f"INSERT INTO {nodes} (node_id, hash) VALUES ({p},{p})"
        self.insert_head = (
            f"INSERT INTO {heads} (tree_size, root_hash, timestamp_ms, signature, public_key) VALUES ({p},{p},{p},{p},{p})"
            + (" RETURNING head_id" if pg else "")
        )
        self.last_head_time = f"SELECT MAX(timestamp_ms) AS t FROM {heads}"
        self.last_head = (
            f"SELECT head_id, tree_size, root_hash, timestamp_ms, signature, public_key FROM {heads} "
            f"ORDER BY head_id DESC LIMIT 1"
        )
        self.select_heads = f"SELECT head_id, tree_size, root_hash, timestamp_ms, signature, public_key FROM {heads}"
        self.join_events = (
            f"SELECT l.leaf_index AS leaf_index, l.notification_id AS nid, l.leaf_hash AS leaf_hash, "
            f"l.leaf_data AS leaf_data, "
            f"e.originator_id AS oid, e.originator_version AS version, e.topic AS topic, e.state AS state "
            f"FROM {leaves} l LEFT JOIN {events} e ON e.{nid} = l.notification_id "
        )

    def many(self, n: int) -> str:
        return ",".join([self.p] * n)


def _sqlite_sql(events_table: str) -> _Sql:
    return _Sql(pg=False, leaves=LEAVES, nodes=NODES, heads=HEADS, events=events_table, nid="rowid", alarms=ALARMS)


def _pg_sql(schema: str, events_table: str) -> _Sql:
    def q(name: str) -> str:
        return '"{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))

    return _Sql(pg=True, leaves=q(LEAVES), nodes=q(NODES), heads=q(HEADS), events=q(events_table), nid="notification_id",
                alarms=q(ALARMS))


class UncoveredLeaves(ProgrammingError, Conflict):
    """The stored log ends in leaves that no signed head made with our key covers: refuse to extend it
    (409 over HTTP: the write conflicts with the state of the log; nothing is stored)."""

    def __init__(self, message: str):
        Conflict.__init__(self, message)


class _Sealing:
    """The sealing half shared by both recorders."""

    #: Attached by the composition root: an object with ``public_key`` and ``sign(bytes)``.
    head_signer: Any = None
    #: The key of the subject commitments (SubjectTracker), attached with the signer.
    subject_key: bytes | None = None
    head_interval_seconds: float = 10.0
    #: 1: format-1 leaves and a head per transaction; 0: as older code sealed (upgrade tests only)
    leaf_format: int = 1
    merkle_sql: _Sql

    def _init_sealing(self) -> None:
        # The right edge of the tree as this recorder last wrote it: (frontier, hash of the last leaf,
        # notification id of the last leaf).
        # Only a hint: every seal checks it against the stored log inside the write transaction.
        self._frontier_cache: tuple[M.Frontier, bytes | None, int] | None = None
        self._seal_lock = threading.Lock()
        self._topic_bytes: dict[str, bytes] = {}
        self._subjects: SubjectTracker | None = None
        self._last_head_ms: int | None = None

    def _seal(self, curs: Any, stored_events: Sequence[StoredEvent], notification_ids: Sequence[int]) -> None:
        """Append these stored events (all the events of a transaction, or of a group-committed
        batch) to the log: their format-1 leaves, the nodes they complete and a signed head.

        The cached frontier is checked against the stored log in this transaction, under the write
        lock, by one indexed read of the last leaf (tree size and hash). When another process (or a
        rolled-back transaction) made it stale, the frontier is reloaded from the stored nodes, and
        the stored tail must be covered by a signed head made with our key (every sealing
        transaction signs one), else the seal refuses (UncoveredLeaves): leaves appended behind
        the server's back are never built on nor signed over.
        On SQLite the read is skipped when the first new event's rowid follows the last one this
        recorder sealed: SQLite gives a new row the largest rowid plus one, so no event (and so no
        leaf) was committed by anyone since.
        """
        if not stored_events:
            return
        if len(notification_ids) != len(stored_events):
            raise ProgrammingError("cannot seal events without their notification ids")
        pairs = zip(notification_ids, stored_events)
        if any(a >= b for a, b in zip(notification_ids, notification_ids[1:])):
            pairs = sorted(pairs, key=_first)
            first_nid = pairs[0][0]
        else:
            first_nid = notification_ids[0]
        leaf_rows = []
        topics = self._topic_bytes
        sql = self.merkle_sql
        with self._seal_lock:
            cached = self._frontier_cache
            self._frontier_cache = None  # until this seal is done: a failure midway leaves nothing cached
        if cached is None or sql.pg or first_nid != cached[2] + 1:
            curs.execute(sql.last_leaf)
            row = curs.fetchone()
            size, last = (row["leaf_index"] + 1, bytes(row["leaf_hash"])) if row else (0, None)
            if cached is None or cached[0].size != size or cached[1] != last:
                frontier = self._load_frontier(curs, size)  # first seal, or another process appended
                if self.leaf_format:
                    self._check_covered(curs, frontier, row)
                cached = (frontier, last, -2)
        frontier = cached[0]  # extended in place: the cache is set again only once all is written
        if self.leaf_format == 0:
            self._seal_old_format(curs, frontier, pairs)
            return
        subjects = self._subjects
        if subjects is None:
            subjects = self._subjects = SubjectTracker(self.subject_key)
        subjects.lookup = lambda aggregate, version: self._replay_subject(curs, subjects, aggregate, version)
        index = frontier.size
        leaf = subjects.leaf
        for nid, event in pairs:
            t = topics.get(event.topic)
            if t is None:
                t = topics[event.topic] = event.topic.encode("utf-8")
            data = leaf(nid, originator_bytes(event.originator_id), event.originator_version, t, event.topic,
                        event.state)
            leaf_rows.append((index, nid, _sha256(b"\x00" + data).digest(), data, None, None))
            index += 1
        subjects.lookup = None
        node_rows = frontier.extend([r[2] for r in leaf_rows], M.STORED_LEVEL)
        root = frontier.root()
        signer = self.head_signer
        if signer is not None:  # the tail seal: a signed head over the log as this transaction leaves it
            ts = now_ms()
            leaf_rows[-1] = (*leaf_rows[-1][:4], ts, signer.sign(M.tree_head_bytes(frontier.size, ts, root)))
        if len(leaf_rows) == 1:
            curs.execute(sql.insert_leaves, leaf_rows[0])
        else:
            curs.executemany(sql.insert_leaves, leaf_rows)
        if node_rows:
            curs.executemany(sql.insert_nodes, node_rows)
        self._maybe_sign_head(curs, frontier, root)
        with self._seal_lock:
            self._frontier_cache = (frontier, leaf_rows[-1][2], leaf_rows[-1][1])

    def _seal_old_format(self, curs: Any, frontier: M.Frontier, pairs: Any) -> None:
        """As code before 2026-12 sealed: the leaf data is the event's frame (not stored), and no head
        (heads came at intervals). Kept to build the stores that upgrades and tests start from."""
        sql = self.merkle_sql
        rows = []
        index = frontier.size
        for nid, event in pairs:
            data = frame(event.originator_id, event.originator_version, event.topic, event.state)
            rows.append((index, nid, M.leaf_hash(data), None, None, None))
            index += 1
        curs.executemany(sql.insert_leaves, rows)
        node_rows = frontier.extend([r[2] for r in rows], M.STORED_LEVEL)
        if node_rows:
            curs.executemany(sql.insert_nodes, node_rows)

    def _replay_subject(self, curs: Any, subjects: SubjectTracker, aggregate: bytes, version: int) -> bytes | None:
        """The participant of an aggregate this process has not seen yet: its earlier events, replayed."""
        sql = self.merkle_sql
        oid: Any = UUID(bytes=aggregate) if sql.pg else UUID(bytes=aggregate).hex
        curs.execute(
            f"SELECT originator_version AS v, topic, state FROM {sql.events} WHERE originator_id = {sql.p} "
            f"AND originator_version < {sql.p} ORDER BY originator_version", (oid, version)
        )
        lookup, subjects.lookup = subjects.lookup, None
        try:
            for row in curs.fetchall():
                subjects.observe(row["topic"], aggregate, row["v"], bytes(row["state"]))
        finally:
            subjects.lookup = lookup
        return subjects.known.get(aggregate)

    def _seal_rolled_back(self) -> None:
        """Sealed rows were rolled back (or may have been): forget what was cached from them."""
        with self._seal_lock:
            self._frontier_cache = None
            self._subjects = None  # it may have learned from events that were rolled back
        self._last_head_ms = None

    def _load_frontier(self, curs: Any, size: int) -> M.Frontier:
        wanted = M.frontier_nodes(size)
        hashes = _fetch_nodes(curs, self.merkle_sql, wanted)
        return M.Frontier(size, [hashes[n] for n in wanted])

    def _check_covered(self, curs: Any, frontier: M.Frontier, last_leaf: Any) -> None:
        """Refuse to build on leaves that no signed head made with our key covers: the last leaf's tail
        seal, else the last head in merkle_heads (a store adopted from older code, an operator's head)."""
        signer = self.head_signer
        if signer is None or frontier.size == 0:
            return
        from infrastructure.signing import verify_signature

        root = frontier.root()
        if last_leaf is not None and last_leaf["seal_signature"] is not None:
            signed = M.tree_head_bytes(frontier.size, last_leaf["seal_ts"], root)
            if verify_signature(signer.public_key, bytes(last_leaf["seal_signature"]), signed):
                return
        curs.execute(self.merkle_sql.last_head)
        row = curs.fetchone()
        problem = None
        if row is None:
            problem = "no signed head covers them"
        else:
            size, root, ts = row["tree_size"], bytes(row["root_hash"]), row["timestamp_ms"]
            if bytes(row["public_key"]) != signer.public_key:
                problem = "the last signed head was not made with this server's key"
            elif size != frontier.size or root != frontier.root():
                problem = f"the last signed head covers {size} leaves with another root"
            elif not verify_signature(signer.public_key, bytes(row["signature"]), M.tree_head_bytes(size, ts, root)):
                problem = "the last signed head's signature does not verify"
        if problem is not None:
            message = (f"refusing to extend the integrity log: it ends at {frontier.size} leaves and {problem}; "
                       f"leaves were appended behind the server's back (run `trialaudit verify`)")
            log.critical(message)
            # recorded apart from this transaction, which is rolled back (another thread: this one
            # still holds the write connection)
            threading.Thread(target=self._record_alarm, args=(frontier.size, message), daemon=True).start()
            raise UncoveredLeaves(message)

    def _record_alarm(self, tree_size: int, message: str) -> None:
        sql = self.merkle_sql
        try:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(f"INSERT INTO {sql.alarms} (at_ms, tree_size, message) VALUES ({sql.p},{sql.p},{sql.p})",
                             (now_ms(), tree_size, message))
        except Exception:  # the log line above stays; never hide the refusal behind this
            log.exception("could not record the integrity alarm")

    def _maybe_sign_head(self, curs: Any, frontier: M.Frontier, root: bytes) -> None:
        """Keep a head in merkle_heads once the last one is ``head_interval_seconds`` old (the heads
        GET /integrity/head serves and verify localises rewrites by; the tail seal covers the rest)."""
        signer = self.head_signer
        if signer is None:
            return
        sql = self.merkle_sql
        if self._last_head_ms is None:
            curs.execute(sql.last_head_time)
            row = curs.fetchone()
            self._last_head_ms = (row["t"] if row else None) or 0
        now = now_ms()
        if now - self._last_head_ms < self.head_interval_seconds * 1000:
            return
        signature = signer.sign(M.tree_head_bytes(frontier.size, now, root))
        curs.execute(sql.insert_head, (frontier.size, root, now, signature, signer.public_key))
        if sql.pg:
            curs.fetchone()
        self._last_head_ms = now


def _fetch_nodes(curs: Any, sql: _Sql, wanted: Iterable[M.Node]) -> dict[M.Node, bytes]:
    """The hashes of these perfect nodes: leaves and stored nodes as read; a node below
    M.STORED_LEVEL recomputed from the leaves beneath it (one range read per run of leaves)."""
    wanted = set(wanted)
    stored = {M.post_order_position(level, i): (level, i) for level, i in wanted if level >= M.STORED_LEVEL}
    spans = sorted((i << level, (i + 1) << level) for level, i in wanted if level < M.STORED_LEVEL)
    runs: list[list[int]] = []
    for start, end in spans:  # merge overlapping or adjacent spans: a proof's low nodes share a block
        if runs and start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    leaves: dict[int, bytes] = {}
    p = sql.p
    for start, end in runs:
        curs.execute(
            f"SELECT leaf_index, leaf_hash FROM {sql.leaves} WHERE leaf_index >= {p} AND leaf_index < {p}", (start, end)
        )
        for row in curs.fetchall():
            leaves[row["leaf_index"]] = bytes(row["leaf_hash"])
    found: dict[M.Node, bytes] = {}
    for level, i in wanted:
        if level >= M.STORED_LEVEL:
            continue
        span = range(i << level, (i + 1) << level)
        if all(j in leaves for j in span):
            found[(level, i)] = leaves[span.start] if level == 0 else M.root_of([leaves[j] for j in span])
    ids = sorted(stored)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        curs.execute(f"SELECT node_id, hash FROM {sql.nodes} WHERE node_id IN ({sql.many(len(chunk))})", chunk)
        for row in curs.fetchall():
            found[stored[row["node_id"]]] = bytes(row["hash"])
    missing = wanted - found.keys()
    if missing:
        raise ProgrammingError(f"the Merkle log lacks {len(missing)} node(s), e.g. {sorted(missing)[0]}")
    return found


# --------------------------------------------------------------------------- recorders
class MerkleSQLiteRecorder(_Sealing, AppendOnlySQLiteRecorder):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.merkle_sql = _sqlite_sql(self.events_table_name)
        self._init_sealing()

    def construct_create_table_statements(self) -> list[str]:
        statements = [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {LEAVES} (leaf_index INTEGER PRIMARY KEY, "
            "notification_id INTEGER NOT NULL, leaf_hash BLOB NOT NULL, leaf_data BLOB, seal_ts INTEGER, "
            "seal_signature BLOB)",
            # No index by notification id on SQLite: a leaf's index is its event's rowid less the first
            # leaf's (rowids have no gaps), found by primary key (MerkleLog._sqlite_leaves_of). The index
            # cost a page write in every sealed commit. Stores made before 2026-11-27 lose it here.
            f"DROP INDEX IF EXISTS {LEAVES}_by_notification",
            f"CREATE TABLE IF NOT EXISTS {NODES} (node_id INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {HEADS} (head_id INTEGER PRIMARY KEY, tree_size INTEGER NOT NULL, "
            "root_hash BLOB NOT NULL, timestamp_ms INTEGER NOT NULL, signature BLOB NOT NULL, public_key BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {ALARMS} (alarm_id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, "
            "tree_size INTEGER NOT NULL, message TEXT NOT NULL)",
        ]
        for table in (LEAVES, NODES, HEADS, ALARMS):
            for op in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the integrity log is append-only: {op} refused'); END"
                )
        return statements

    def create_table(self) -> None:
        super().create_table()
        # leaf_data (format-1 leaves) came in 2026-12; older stores gain the column (NULL: old format)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(f"PRAGMA table_info({LEAVES})")
            columns = {row["name"] for row in curs.fetchall()}
            for name, kind in (("leaf_data", "BLOB"), ("seal_ts", "INTEGER"), ("seal_signature", "BLOB")):
                if name not in columns:
                    curs.execute(f"ALTER TABLE {LEAVES} ADD COLUMN {name} {kind}")


class MerklePostgresRecorder(_Sealing, AppendOnlyPostgresRecorder):
    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        schema = self.datastore.schema
        self.merkle_sql = _pg_sql(schema, self.events_table_name)
        self._init_sealing()
        s = Identifier(schema)
        function = Identifier(f"{self.events_table_name}_refuse_change")
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (leaf_index bigint PRIMARY KEY, "
                "notification_id bigint NOT NULL, leaf_hash bytea NOT NULL)"
            ).format(s, Identifier(LEAVES)),
            SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS leaf_data bytea, ADD COLUMN IF NOT EXISTS seal_ts bigint, "
                "ADD COLUMN IF NOT EXISTS seal_signature bytea").format(s, Identifier(LEAVES)),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (notification_id)").format(
                Identifier(f"{LEAVES}_by_notification"), s, Identifier(LEAVES)
            ),
            SQL("CREATE TABLE IF NOT EXISTS {}.{} (node_id bigint PRIMARY KEY, hash bytea NOT NULL)").format(
                s, Identifier(NODES)
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (head_id bigserial PRIMARY KEY, tree_size bigint NOT NULL, "
                "root_hash bytea NOT NULL, timestamp_ms bigint NOT NULL, signature bytea NOT NULL, public_key bytea NOT NULL)"
            ).format(s, Identifier(HEADS)),
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (alarm_id bigserial PRIMARY KEY, at_ms bigint NOT NULL, "
                "tree_size bigint NOT NULL, message text NOT NULL)"
            ).format(s, Identifier(ALARMS)),
        ]
        for table in (LEAVES, NODES, HEADS, ALARMS):
            self.sql_create_statements += [
                SQL(
                    "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE OR DELETE ON {}.{} FOR EACH ROW EXECUTE FUNCTION {}.{}()"
                ).format(Identifier(f"{table}_append_only"), s, Identifier(table), s, function),
                SQL(
                    "CREATE OR REPLACE TRIGGER {} BEFORE TRUNCATE ON {}.{} FOR EACH STATEMENT EXECUTE FUNCTION {}.{}()"
                ).format(Identifier(f"{table}_no_truncate"), s, Identifier(table), s, function),
            ]


# --------------------------------------------------------------------------- reading the log
class MerkleLog:
    """The MerkleLogStore port over the recorder's own connections."""

    def __init__(self, recorder: Any):
        if not isinstance(recorder, _Sealing):
            raise TypeError("the application recorder does not keep a Merkle log")
        self.recorder = recorder
        self.sql: _Sql = recorder.merkle_sql
        self.datastore = recorder.datastore
        self._topics: dict[str, bytes] = {}
        self._first_nid: int | None = None

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return curs.fetchall()

    def _tuples(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Plain tuples: several times faster than named rows for whole-log scans."""
        with self.datastore.transaction(commit=False) as curs:
            if self.sql.pg:
                curs.row_factory = tuple_row
            else:
                getattr(curs, "sqlite_cursor", curs).row_factory = None
            curs.execute(statement, params)
            return curs.fetchall()

    def tree_size(self) -> int:
        rows = self._rows(self.sql.last_leaf)
        return rows[0]["leaf_index"] + 1 if rows else 0

    def event_count(self) -> int:
        return self._rows(f"SELECT COUNT(*) AS n FROM {self.sql.events}")[0]["n"]

    def node_hashes(self, nodes: Iterable[M.Node]) -> dict[M.Node, bytes]:
        with self.datastore.transaction(commit=False) as curs:
            return _fetch_nodes(curs, self.sql, nodes)

    def _leaf(self, row: Any) -> Leaf:
        event = None
        if row["state"] is not None:
            event = frame(row["oid"], row["version"], row["topic"], bytes(row["state"]))
        data = bytes(row["leaf_data"]) if row["leaf_data"] is not None else event
        return Leaf(row["leaf_index"], row["nid"], bytes(row["leaf_hash"]), data, event)

    def leaves(self, start: int, limit: int) -> list[Leaf]:
        p = self.sql.p
        rows = self._rows(self.sql.join_events + f"WHERE l.leaf_index >= {p} ORDER BY l.leaf_index LIMIT {p}", (start, limit))
        return [self._leaf(r) for r in rows]

    def leaves_of(self, originator_id: UUID) -> list[Leaf]:
        if not self.sql.pg:
            return self._sqlite_leaves_of(originator_id)
        rows = self._rows(self.sql.join_events + "WHERE e.originator_id = %s ORDER BY l.leaf_index", (originator_id,))
        return [self._leaf(r) for r in rows]

    def _sqlite_leaves_of(self, originator_id: UUID) -> list[Leaf]:
        """The aggregate's events by its index, then their leaves by primary key at ``rowid - offset``
        (offset: the first leaf's notification id; SQLite gives rowids without gaps). Should a guess
        miss (rowids renumbered, say), the leaf is searched for by bisection: leaves are in
        notification order. Events without a leaf are left out, as the join on PostgreSQL does."""
        sql = self.sql
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT rowid AS nid, originator_id AS oid, originator_version AS version, topic, state "
                f"FROM {sql.events} WHERE originator_id = ? ORDER BY rowid", (originator_id.hex,)
            )
            events = curs.fetchall()
            if not events:
                return []
            if self._first_nid is None:
                curs.execute(f"SELECT notification_id FROM {sql.leaves} WHERE leaf_index = 0")
                row = curs.fetchone()
                if row is None:
                    return []
                self._first_nid = row["notification_id"]  # the first leaf never changes (append-only)
            offset = self._first_nid
            found: dict[int, tuple[int, bytes]] = {}
            guesses = [e["nid"] - offset for e in events]
            for start in range(0, len(guesses), 500):
                chunk = guesses[start : start + 500]
                curs.execute(
                    f"SELECT leaf_index, notification_id, leaf_hash, leaf_data FROM {sql.leaves} "
                    f"WHERE leaf_index IN ({sql.many(len(chunk))})", chunk
                )
                for row in curs.fetchall():
                    data = row["leaf_data"]
                    found[row["notification_id"]] = (row["leaf_index"], bytes(row["leaf_hash"]),
                                                     None if data is None else bytes(data))
            out = []
            for e in events:
                hit = found.get(e["nid"]) or self._bisect_leaf(curs, e["nid"])
                if hit is not None:
                    leaf_index, leaf_hash, leaf_data = hit
                    event = frame(e["oid"], e["version"], e["topic"], bytes(e["state"]))
                    out.append(Leaf(leaf_index, e["nid"], leaf_hash, leaf_data or event, event))
        out.sort(key=lambda leaf: leaf.leaf_index)
        return out

    def _bisect_leaf(self, curs: Any, nid: int) -> tuple[int, bytes, bytes | None] | None:
        sql = self.sql
        curs.execute(sql.last_leaf)
        row = curs.fetchone()
        lo, hi = 0, (row["leaf_index"] if row else -1)
        while lo <= hi:
            mid = (lo + hi) // 2
            curs.execute(f"SELECT notification_id, leaf_hash, leaf_data FROM {sql.leaves} WHERE leaf_index = ?", (mid,))
            row = curs.fetchone()
            if row is None:  # a gap in the leaves (tampered): no answer by bisection
                return None
            if row["notification_id"] == nid:
                return mid, bytes(row["leaf_hash"]), None if row["leaf_data"] is None else bytes(row["leaf_data"])
            if row["notification_id"] < nid:
                lo = mid + 1
            else:
                hi = mid - 1
        return None

    def _head(self, row: Any) -> SignedHead:
        return SignedHead(
            tree_size=row["tree_size"],
            root_hash=bytes(row["root_hash"]),
            timestamp_ms=row["timestamp_ms"],
            signature=bytes(row["signature"]),
            public_key=bytes(row["public_key"]),
            head_id=row["head_id"],
        )

    def heads(self) -> list[SignedHead]:
        return [self._head(r) for r in self._rows(self.sql.select_heads + " ORDER BY head_id")]

    def tail_seal(self) -> tuple[int, int, bytes] | None:
        """(tree size, timestamp ms, signature) of the last leaf that carries a tail seal, if any."""
        rows = self._rows(self.sql.last_seal)
        if not rows:
            return None
        return rows[0]["leaf_index"] + 1, rows[0]["seal_ts"], bytes(rows[0]["seal_signature"])

    def alarms(self) -> list[dict[str, Any]]:
        """The sealer's recorded refusals (leaves no head covers), oldest first."""
        rows = self._rows(f"SELECT alarm_id, at_ms, tree_size, message FROM {self.sql.alarms} ORDER BY alarm_id")
        return [dict(r) for r in rows]

    def latest_head(self) -> SignedHead | None:
        rows = self._rows(self.sql.select_heads + " ORDER BY tree_size DESC, head_id DESC LIMIT 1")
        return self._head(rows[0]) if rows else None

    def add_head(self, head: SignedHead) -> SignedHead:
        params = (head.tree_size, head.root_hash, head.timestamp_ms, head.signature, head.public_key)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.sql.insert_head, params)
            head_id = curs.fetchone()["head_id"] if self.sql.pg else curs.lastrowid
        return SignedHead(*params, head_id=head_id)

    def _event_rows(self, after_notification_id: int, limit: int) -> list[tuple]:
        """(notification id, originator id, version, topic, state), as leaf_hasher.leaf_hashes takes them."""
        sql, p = self.sql, self.sql.p
        if not sql.pg:
            return self._tuples(leaf_hasher.sqlite_events_statement(sql.events), (after_notification_id, limit))
        return self._tuples(
            f"SELECT notification_id, originator_id, originator_version, convert_to(topic, 'UTF8'), state "
            f"FROM {sql.events} WHERE notification_id > {p} ORDER BY notification_id LIMIT {p}",
            (after_notification_id, limit),
        )

    def v1_from(self) -> int | None:
        """The notification id from which on events are sealed in format 1 (None: none are)."""
        rows = self._tuples(f"SELECT notification_id FROM {self.sql.leaves} WHERE leaf_data IS NOT NULL "
                            f"ORDER BY leaf_index LIMIT 1")
        return rows[0][0] if rows else None

    def subjects(self) -> SubjectTracker:
        return SubjectTracker(self.recorder.subject_key)

    def _scan_state(self, after: int) -> tuple[SubjectTracker, int | None]:
        """The subject tracker of a pass in log order, as it stands after this notification id
        (a new pass from the start, or the one the fast pages left; primed by replay otherwise)."""
        state = self._pass
        if state is None or after == 0 or state[2] > after:
            v1 = self.v1_from()
            tracker = self.subjects()
            if after > 0 and v1 is not None:
                self._observe_upto(tracker, after)
            state = self._pass = (tracker, v1, after)
        return state[0], state[1]

    def _observe_upto(self, tracker: SubjectTracker, upto: int) -> None:
        after = 0
        while True:
            rows = [r for r in self._event_rows(after, 20_000) if r[0] <= upto]
            for nid, oid, version, topic, state in rows:
                try:
                    tracker.observe(topic.decode("utf-8"), originator_bytes(oid), version, bytes(state))
                except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
                    continue
            if len(rows) < 20_000:
                return
            after = rows[-1][0]

    def _leaf_data_of_rows(self, rows: Sequence[tuple], tracker: SubjectTracker, v1: int | None) -> list[bytes | None]:
        """The leaf data of each event row (format 1 from notification ``v1`` on), None when it does not frame."""
        if v1 is not None and rows and rows[0][0] >= v1:
            try:
                return tracker.v1_leaves(rows, uuid_ids=self.sql.pg)
            except (ValueError, TypeError, AttributeError, UnicodeDecodeError, struct.error, KeyError):
                pass  # a row that does not frame: row by row below, which says which
        out: list[bytes | None] = []
        for nid, oid, version, topic, state in rows:
            try:
                o = originator_bytes(oid)
                state = bytes(state)
                if v1 is not None and nid >= v1:
                    out.append(tracker.leaf(nid, o, version, topic, topic.decode("utf-8"), state))
                    continue
                if v1 is not None:
                    tracker.observe(topic.decode("utf-8"), o, version, state)
            except (ValueError, TypeError, AttributeError, UnicodeDecodeError, struct.error):
                out.append(None)
                continue
            out.append(frame_row(oid, version, topic, state))
        return out

    def scan_events(self, after_notification_id: int, limit: int) -> list[tuple[int, bytes | None]]:
        tracker, v1 = self._scan_state(after_notification_id)
        rows = self._event_rows(after_notification_id, limit)
        return list(zip(map(_first, rows), self._leaf_data_of_rows(rows, tracker, v1)))

    #: Recompute leaves in a helper process (leaf_hasher.py, on another core) when at least this
    #: many events are left to check (None: never). Smaller logs are done before it would start.
    helper_min_events: int | None = 100_000
    _pass: tuple[SubjectTracker, int | None, int] | None = None

    def leaf_hash_pages(self, after_notification_id: int, page: int) -> Iterator[tuple[array, bytes | None]]:
        self._pass = None
        tracker, v1 = self._scan_state(after_notification_id)
        if v1 is None and self._use_helper(after_notification_id):  # the helper knows the old format only
            return self._helper_pages(after_notification_id, page)
        return self._local_pages(after_notification_id, page)

    def _use_helper(self, after_notification_id: int) -> bool:
        if self.sql.pg or self.helper_min_events is None or (os.cpu_count() or 1) < 2:
            return False
        if self.datastore.pool.is_sqlite_memory_mode:
            return False
        rows = self._tuples(f"SELECT MAX(rowid) FROM {self.sql.events}")
        return (rows[0][0] or 0) - after_notification_id >= self.helper_min_events

    def _local_pages(self, after: int, page: int) -> Iterator[tuple[array, bytes | None]]:
        uuid_ids = self.sql.pg
        tracker, v1 = self._scan_state(after)
        while True:
            rows = self._event_rows(after, page)
            if v1 is None:
                hashes = leaf_hashes(rows, uuid_ids=uuid_ids)
            else:
                hashes = [None if d is None else _sha256(b"\x00" + d).digest()
                          for d in self._leaf_data_of_rows(rows, tracker, v1)]
            nids = array("q", map(_first, rows))
            yield nids, (None if None in hashes else b"".join(hashes))  # type: ignore[arg-type]
            if len(rows) < page:
                return
            after = nids[-1]

    def _helper_pages(self, after: int, page: int) -> Iterator[tuple[array, bytes | None]]:
        """leaf_hasher.py in its own process over its own read-only connection; the same pages as
        _local_pages. Should it fail, the pages go on in this process from where it stopped."""
        command = [sys.executable, "-I", "-S", leaf_hasher.__file__, self.datastore.pool.db_name,
                   self.sql.events, str(after), str(page)]
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            log.warning("cannot start the leaf hasher process (%s); recomputing leaves in-process", e)
            yield from self._local_pages(after, page)
            return
        out = proc.stdout
        head_size = leaf_hasher.PAGE_HEAD.size
        try:
            while True:
                head = out.read(head_size)
                if len(head) < head_size:
                    break
                n, flags = leaf_hasher.PAGE_HEAD.unpack(head)
                body = out.read(40 * n)
                if len(body) < 40 * n:
                    break
                nids = array("q")
                nids.frombytes(body[: 8 * n])
                yield nids, (None if flags & leaf_hasher.BAD_ROWS else body[8 * n :])
                if n < page:
                    return
                after = nids[-1]
            proc.wait(timeout=10)
            log.warning("the leaf hasher process stopped early (exit status %s): %s; going on in-process",
                        proc.returncode, proc.stderr.read().decode(errors="replace")[-2000:])
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            out.close()
            proc.stderr.close()
        yield from self._local_pages(after, page)

    def scan_leaves(self, after_leaf_index: int, limit: int) -> list[tuple[int, int, bytes]]:
        sql, p = self.sql, self.sql.p
        return self._tuples(
            f"SELECT leaf_index, notification_id, leaf_hash FROM {sql.leaves} WHERE leaf_index > {p} "
            f"ORDER BY leaf_index LIMIT {p}",
            (after_leaf_index, limit),
        )

    def leaf_range(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        sql, p = self.sql, self.sql.p
        return self._tuples(
            f"SELECT notification_id, leaf_hash FROM {sql.leaves} WHERE leaf_index >= {p} AND leaf_index < {p} "
            f"ORDER BY leaf_index",
            (start, start + limit),
        )

    def nodes_between(self, after_position: int, upto_position: int) -> list[tuple[int, bytes]]:
        sql, p = self.sql, self.sql.p
        return self._tuples(
            f"SELECT node_id, hash FROM {sql.nodes} WHERE node_id > {p} AND node_id <= {p} ORDER BY node_id",
            (after_position, upto_position),
        )


def attach_head_signer(recorder: Any, signer: Any, interval_seconds: float = 10.0,
                       subject_key: bytes | None = None) -> None:
    """Let the recorder seal every storing transaction's tail (a signed head kept in the last leaf's
    row), keep a head in merkle_heads once the last is ``interval_seconds`` old, and commit leaves to
    their subject with this key."""
    if isinstance(recorder, _Sealing):
        recorder.head_signer = signer
        recorder.head_interval_seconds = interval_seconds
        if subject_key is not None:
            recorder.subject_key = subject_key
            recorder._subjects = None
