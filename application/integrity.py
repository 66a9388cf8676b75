"""The integrity service: signed tree heads, proofs, leaves, whole-log verification and bundles.

The Merkle log itself is written by the recorder, in the transaction that stores the events
(infrastructure/merkle_store.py). This service only reads it, signs heads and checks it. Any
authenticated user may read proofs (they reveal hashes only); the API enforces authentication.
"""

from __future__ import annotations

import base64
import datetime as dt
import gc
import json
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from application import merkle as M
from domain.errors import Conflict, InvalidInput, NotFound

MAX_LEAVES_PAGE = 1000


class UncoveredLeaves(Conflict):
    def __init__(self, covered: int, size: int):
        self.covered, self.size = covered, size
        super().__init__(
            f"leaves {covered}..{size - 1} are covered by no signed head made with this log's key: they were "
            f"appended behind the server's back (every sealing transaction signs a head); run `trialaudit verify`"
        )


class BrokenLog(Conflict):
    """The log does not verify: nothing is built on it (bundles)."""


@dataclass(frozen=True)
class SignedHead:
    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    signature: bytes
    public_key: bytes
    head_id: int | None = None

    def signed_bytes(self) -> bytes:
        return M.tree_head_bytes(self.tree_size, self.timestamp_ms, self.root_hash)

    @property
    def timestamp(self) -> str:
        moment = dt.datetime.fromtimestamp(self.timestamp_ms / 1000, dt.timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "timestamp_ms": self.timestamp_ms,
            "signature": base64.b64encode(self.signature).decode(),
            "public_key": base64.b64encode(self.public_key).decode(),
            "head_id": self.head_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedHead:
        """Read a head as GET /integrity/head or a bundle's head.json gives it."""
        try:
            if "timestamp_ms" in data:
                ts = int(data["timestamp_ms"])
            else:
                moment = dt.datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00"))
                ts = round(moment.timestamp() * 1000)
            return cls(
                tree_size=int(data["tree_size"]),
                root_hash=bytes.fromhex(data["root_hash"]),
                timestamp_ms=ts,
                signature=base64.b64decode(data["signature"]),
                public_key=base64.b64decode(data["public_key"]),
                head_id=data.get("head_id"),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidInput.one("head", f"not a signed tree head: {e}") from None


@dataclass(frozen=True)
class Leaf:
    leaf_index: int
    notification_id: int
    leaf_hash: bytes
    leaf_data: bytes | None = None  # None when the sealed event is missing (and the leaf is of the old format)
    event: bytes | None = None  # the event's frame (M.frame_event), None when it is missing


class MerkleLogStore(Protocol):
    """What the service needs from the store (implemented in infrastructure/merkle_store.py)."""

    def tree_size(self) -> int: ...
    def event_count(self) -> int: ...
    def node_hashes(self, nodes: Iterable[M.Node]) -> dict[M.Node, bytes]: ...
    def leaves(self, start: int, limit: int) -> list[Leaf]: ...
    def leaves_of(self, originator_id: UUID) -> list[Leaf]: ...
    def subjects(self) -> Any:
        """A fresh subject tracker (infrastructure/merkle_store.py SubjectTracker) with this store's key."""
        ...

    def v1_from(self) -> int | None:
        """The notification id of the first format-1 leaf, None when there is none."""
        ...

    def tail_seal(self) -> tuple[int, int, bytes] | None:
        """(tree size, timestamp ms, signature) of the last leaf row that carries a tail seal."""
        ...

    def heads(self) -> list[SignedHead]: ...
    def latest_head(self) -> SignedHead | None: ...
    def add_head(self, head: SignedHead) -> SignedHead: ...
    def scan_events(self, after_notification_id: int, limit: int) -> list[tuple[int, bytes | None]]:
        """(notification id, leaf data) of the next events; None for a row that no longer frames."""
        ...

    def leaf_hash_pages(self, after_notification_id: int, page: int) -> Iterator[tuple[Sequence[int], bytes | None]]:
        """The events after this one, ``page`` at a time (a shorter page is the last): their notification
        ids and their leaf hashes ``M.leaf_hash(leaf data)`` concatenated, recomputed from the stored
        bytes; None instead of the hashes when some event of the page does not frame."""
        ...

    def scan_leaves(self, after_leaf_index: int, limit: int) -> list[tuple[int, int, bytes]]: ...
    def leaf_range(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """(notification id, leaf hash) of the leaves ``start <= leaf_index < start + limit``, in order."""
        ...

    def nodes_between(self, after_position: int, upto_position: int) -> list[tuple[int, bytes]]:
        """(post-order position, hash) of the stored nodes ``after < position <= upto``, in order."""
        ...


class Signer(Protocol):
    public_key: bytes

    def sign(self, data: bytes) -> bytes: ...


SignatureCheck = Callable[[bytes, bytes, bytes], bool]  # (public key, signature, data) -> valid
Progress = Callable[[int, int], None]  # (done, total)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def decode_leaf_data(data: bytes) -> dict[str, Any]:
    """The event a leaf seals, decoded for people: the framing fields and the JSON state."""
    oid, version, topic, state = M.unframe_event(data)
    try:
        decoded_state: Any = json.loads(state)
    except (UnicodeDecodeError, json.JSONDecodeError):
        decoded_state = {"_base64_": base64.b64encode(state).decode()}
    return {"originator_id": str(UUID(bytes=oid)), "originator_version": version, "topic": topic, "state": decoded_state}


@dataclass
class Finding:
    """A place where the log is not intact: leaves ``first <= i < last`` hold the first bad one."""

    first: int
    last: int
    message: str

    @property
    def exact(self) -> bool:
        return self.last == self.first + 1


@dataclass
class VerificationReport:
    events: int = 0
    leaves: int = 0
    heads_checked: int = 0
    root_hash: bytes = M.EMPTY_ROOT
    findings: list[Finding] = field(default_factory=list)
    bad_leaves: int = 0
    seconds: float = 0.0
    #: (first, end) of an old-format tail no signed head covers (written by older code): a note, not tampering
    uncovered_old: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad(self) -> Finding | None:
        """The earliest proven problem: an exact leaf if one lies before the end of any range."""
        if not self.findings:
            return None
        exact = [f for f in self.findings if f.exact]
        ranges = [f for f in self.findings if not f.exact]
        best = min(exact, key=lambda f: f.first) if exact else None
        for r in sorted(ranges, key=lambda f: f.first):
            if best is None or r.last <= best.first:
                return r
        return best

    @property
    def rate(self) -> float:
        return self.leaves / self.seconds if self.seconds else 0.0


@dataclass
class Bundle:
    scope: str
    head: SignedHead
    #: every leaf up to the head, in order: (its line of leaves.jsonl, its event's line of events.jsonl or None)
    lines: Iterator[tuple[dict[str, Any], dict[str, Any] | None]]
    subject: dict[str, Any] | None = None  # participant bundles: the opening of the subject commitment
    since_head: SignedHead | None = None


def _paged(fetch: Callable[[int, int], Sequence[tuple]], start_after: int, page: int) -> Iterator[tuple]:
    after = start_after
    while True:
        rows = fetch(after, page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1][0]


class IntegrityService:
    def __init__(
        self,
        log: MerkleLogStore,
        signer: Signer,
        verify_signature: SignatureCheck,
        clock: Callable[[], int] = now_ms,
    ):
        self.log = log
        self.signer = signer
        self.verify_signature = verify_signature
        self.clock = clock

    # ------------------------------------------------------------------ heads
    def root_at(self, tree_size: int) -> bytes:
        if tree_size == 0:
            return M.EMPTY_ROOT
        nodes = M.frontier_nodes(tree_size)
        return M.range_hash(0, tree_size, self.log.node_hashes(nodes))

    def tail_seal_head(self) -> SignedHead | None:
        """The last tail seal (a head kept in the row of the last leaf of a sealing transaction) as a
        head without its root (the root is the log's at that size: recomputed by whoever checks it)."""
        seal = self.log.tail_seal()
        if seal is None:
            return None
        size, ts, signature = seal
        return SignedHead(size, b"", ts, signature, self.signer.public_key)

    def covered_size(self) -> int:
        """How many leaves the latest valid tail seal or head made with our key covers (0: none)."""
        covered = 0
        latest = self.log.latest_head()
        if latest is not None and self.check_head(latest) is None:
            covered = latest.tree_size
        seal = self.tail_seal_head()
        if seal is not None and seal.tree_size > covered:
            rooted = SignedHead(seal.tree_size, self.root_at(seal.tree_size), seal.timestamp_ms, seal.signature,
                                seal.public_key)
            if self.check_head(rooted) is None:
                covered = seal.tree_size
        return covered

    def sign_head(self, accept_uncovered: bool = False) -> SignedHead:
        """Sign and keep a head over the whole log as it is now. Refused (UncoveredLeaves) when the
        log has leaves no head of ours covers: every sealing transaction signs one, so those were
        appended behind the server's back; ``accept_uncovered`` (an operator, after `verify`) adopts them."""
        size = self.log.tree_size()
        covered = self.covered_size()
        if size > covered and not accept_uncovered:
            raise UncoveredLeaves(covered, size)
        root = self.root_at(size)
        ts = self.clock()
        signature = self.signer.sign(M.tree_head_bytes(size, ts, root))
        return self.log.add_head(SignedHead(size, root, ts, signature, self.signer.public_key))

    def head(self) -> SignedHead:
        """The latest signed head, or a new one when the log has grown since (or the key changed)."""
        latest = self.log.latest_head()
        if latest is not None and latest.public_key == self.signer.public_key and latest.tree_size == self.log.tree_size():
            return latest
        return self.sign_head()

    def adopt_old_tail(self) -> SignedHead | None:
        """At set-up of a store written by older code (heads at intervals, old-format leaves): sign a
        head over its uncovered tail once, so the sealer can build on it. Only a tail of old-format
        leaves is adopted: this code never leaves a format-1 leaf uncovered."""
        size = self.log.tree_size()
        covered = self.covered_size()
        if size == covered:
            return None
        tail = self.log.leaves(size - 1, 1)
        if not tail or M.is_leaf_v1(tail[0].leaf_data or b""):
            return None
        return self.sign_head(accept_uncovered=True)

    # ------------------------------------------------------------------ proofs
    def inclusion_proof(self, leaf_index: int, tree_size: int | None = None) -> dict[str, Any]:
        current = self.log.tree_size()
        size = current if tree_size is None else tree_size
        if not 0 < size <= current:
            raise InvalidInput.one("tree_size", f"must be between 1 and the current tree size {current}")
        if not 0 <= leaf_index < size:
            raise InvalidInput.one("leaf_index", f"must be between 0 and {size - 1} for a tree of size {size}")
        ranges = M.inclusion_ranges(leaf_index, size)
        nodes = self.log.node_hashes(M.nodes_for(ranges) | {(0, leaf_index)})
        return {
            "leaf_index": leaf_index,
            "tree_size": size,
            "leaf_hash": nodes[(0, leaf_index)].hex(),
            "audit_path": [M.range_hash(a, b, nodes).hex() for a, b in ranges],
        }

    def consistency_proof(self, first: int, second: int | None = None) -> dict[str, Any]:
        current = self.log.tree_size()
        second = current if second is None else second
        if not 0 <= second <= current:
            raise InvalidInput.one("second", f"must be between 0 and the current tree size {current}")
        if not 0 <= first <= second:
            raise InvalidInput.one("first", f"must be between 0 and second ({second})")
        ranges = M.consistency_ranges(first, second)
        nodes = self.log.node_hashes(M.nodes_for(ranges))
        return {"first": first, "second": second, "proof": [M.range_hash(a, b, nodes).hex() for a, b in ranges]}

    def leaves(self, start: int = 0, limit: int = 100, *, old_format_data: bool = True) -> list[dict[str, Any]]:
        """Leaves with their data. A format-1 leaf's data is a digest and a subject commitment; an
        old-format leaf's data is its whole event, given only with ``old_format_data`` (else
        ``leaf_data`` is empty and ``withheld`` true)."""
        if start < 0:
            raise InvalidInput.one("start", "must be 0 or more")
        if not 1 <= limit <= MAX_LEAVES_PAGE:
            raise InvalidInput.one("limit", f"must be between 1 and {MAX_LEAVES_PAGE}")
        out = []
        for leaf in self.log.leaves(start, limit):
            data = leaf.leaf_data or b""
            withheld = not old_format_data and not M.is_leaf_v1(data)
            out.append({
                "leaf_index": leaf.leaf_index,
                "leaf_hash": leaf.leaf_hash.hex(),
                "leaf_data": "" if withheld else base64.b64encode(data).decode(),
                "format": 1 if M.is_leaf_v1(data) else 0,
                "withheld": withheld,
            })
        return out

    # ------------------------------------------------------------------ verification
    def check_head(self, head: SignedHead) -> str | None:
        """Why a head cannot be trusted (not our key, bad signature), or None."""
        if head.public_key != self.signer.public_key:
            return f"signed head{_id(head)} over {head.tree_size} leaves was not signed with this log's key"
        if not self.verify_signature(head.public_key, head.signature, head.signed_bytes()):
            return f"signed head{_id(head)} over {head.tree_size} leaves: the signature does not verify"
        return None

    def verify(self, progress: Progress | None = None, extra_heads: Iterable[SignedHead] = (),
               page: int = 20_000) -> VerificationReport:
        """Recompute every leaf from the stored events, the tree, and the root of every signed head.

        Checks, in one pass in log order: each event has its leaf (same notification, gap-free
        index) and hashes to it; the stored interior nodes equal those recomputed; every stored
        head (and each extra head, e.g. one an inspector kept) is signed by this log's key and
        its root equals the root recomputed from the events at its size.
        """
        # A whole-log pass allocates millions of row tuples that never form cycles; the cyclic
        # collector would walk them again and again (a quarter of the verify time, measured).
        with _gc_paused():
            return self._verify(progress, extra_heads, page)

    def _verify(self, progress: Progress | None, extra_heads: Iterable[SignedHead], page: int) -> VerificationReport:
        started = time.perf_counter()
        report = VerificationReport()
        seal = self.tail_seal_head()
        heads = sorted([*self.log.heads(), *extra_heads, *([seal] if seal else [])],
                       key=lambda h: (h.tree_size, h.head_id or 0))
        total = max(self.log.event_count(), self.log.tree_size())
        frontier = M.Frontier()
        leaves_consistent = True  # the stored leaves agree with the events so far
        nodes_consistent = True  # ... and the stored interior nodes with the leaves
        good_until = 0  # every leaf below this is covered by a head that verified
        hi = 0
        i = 0
        ev_after, lf_after = 0, -1

        covered = 0  # the largest tree size a head of ours that verified covers

        def check_heads_at(size: int) -> None:
            nonlocal hi, good_until, covered
            while hi < len(heads) and heads[hi].tree_size <= size:
                head = heads[hi]
                hi += 1
                report.heads_checked += 1
                if not head.root_hash:  # a tail seal: it signs the root of the log at its size
                    head = SignedHead(head.tree_size, frontier.root(), head.timestamp_ms, head.signature,
                                      head.public_key, head.head_id)
                problem = self.check_head(head)
                if problem is None and frontier.root() != head.root_hash:
                    problem = (
                        f"signed head{_id(head)} over {head.tree_size} leaves does not match the root recomputed "
                        f"from the stored events ({head.root_hash.hex()[:16]}… signed, {frontier.root().hex()[:16]}… now)"
                    )
                if problem is None:
                    good_until = size
                    covered = max(covered, size)
                else:
                    report.findings.append(Finding(good_until, max(size, good_until + 1), problem))

        def report_node(position: int) -> None:
            level, index = M.node_at(position)
            first, last = index << level, ((index + 1) << level) - 1
            report.findings.append(
                Finding(first, last + 1, f"the stored tree node over leaves {first}..{last} does not match "
                        "the leaves beneath it: leaf hashes or nodes were rewritten")
            )

        def compare_nodes(computed: dict[int, bytes], leaves_before: int, leaves_after: int) -> None:
            """The stored nodes that leaves [before, after) complete against the recomputed ones: every
            stored node must match (older stores keep the low levels too), and every node of a stored
            level (M.STORED_LEVEL and up) must be there."""
            nonlocal nodes_consistent
            first, end = _mmr_size(leaves_before), _mmr_size(leaves_after)
            if end - first == leaves_after - leaves_before:  # these leaves complete no node
                return
            stored = dict(self.log.nodes_between(first - 1, end - 1))
            required = {
                M.post_order_position(level, j)
                for level in range(M.STORED_LEVEL, leaves_after.bit_length())
                for j in range(leaves_before >> level, leaves_after >> level)
            }
            if required <= stored.keys() and all(computed.get(k) == v for k, v in stored.items()):
                return
            nodes_consistent = False
            for position in sorted(required | stored.keys()):
                if position not in stored or stored[position] != computed.get(position):
                    report_node(position)
                    return

        def append(hashes: list[bytes]) -> None:
            """Feed recomputed leaf hashes to the tree, checking stored nodes and heads on the way."""
            nonlocal i
            pos = 0
            while pos < len(hashes):
                boundary = heads[hi].tree_size - i if hi < len(heads) else len(hashes)
                end = min(len(hashes), pos + boundary)
                completed = frontier.extend(hashes[pos:end])
                if completed and leaves_consistent and nodes_consistent:
                    compare_nodes(dict(completed), i, i + end - pos)
                i += end - pos
                pos = end
                check_heads_at(i)

        def append_page(hashes: Sequence[bytes]) -> None:
            """As append, for a whole page: the tree a level at a time, the nodes compared at once."""
            nonlocal i
            computed: dict[int, bytes] = {}
            before = i
            pos = 0
            while pos < len(hashes):
                boundary = heads[hi].tree_size - i if hi < len(heads) else len(hashes)
                end = min(len(hashes), pos + boundary)
                computed.update(frontier.extend_by_level(hashes[pos:end]))
                i += end - pos
                pos = end
                check_heads_at(i)
            if nodes_consistent:
                compare_nodes(computed, before, i)

        check_heads_at(0)
        # Fast path: whole pages in which every event has its leaf and hashes to it, compared a page
        # at a time. The leaf hashes of big logs are recomputed in a helper process (the store's
        # choice), so that this thread only reads the stored leaves and nodes and rebuilds the tree.
        pages = self.log.leaf_hash_pages(ev_after, page)
        try:
            for nids, recomputed in pages:
                n = len(nids)
                leaves = self.log.leaf_range(i, page)
                # leaf indices are unique integers: a full range has no gap; a shorter one must end the log
                if not n or n != len(leaves) or recomputed is None or (n < page and self.log.tree_size() != i + n):
                    break
                leaf_nids, leaf_hashes = zip(*leaves)
                try:
                    if array("q", leaf_nids) != nids or b"".join(leaf_hashes) != recomputed:
                        break
                    if set(map(len, leaf_hashes)) != {M.HASH_SIZE}:  # joined, 31 + 33 bytes pass as 32 + 32
                        break
                except (TypeError, OverflowError):  # a leaf row of the wrong types: event by event
                    break
                append_page(leaf_hashes)
                ev_after, lf_after = nids[-1], i - 1
                if progress is not None:
                    progress(i, total)
        finally:
            getattr(pages, "close", lambda: None)()
        # Slow path, from the first page with a problem: event by event, naming the first bad leaf.
        events_it = _paged(self.log.scan_events, ev_after, page)
        leaves_it = _paged(self.log.scan_leaves, lf_after, page)
        while True:
            ev = next(events_it, None)
            lf = next(leaves_it, None)
            if ev is None and lf is None:
                break
            problem = None
            if ev is None:
                problem = f"leaf {i} seals notification {lf[1]}, and no such event is stored (deleted)"
            elif lf is None:
                problem = f"event notification {ev[0]} has no leaf: it was stored without being sealed (inserted)"
            elif lf[0] != i:
                problem = f"leaf index {lf[0]} found where {i} was expected: leaves are missing"
            elif lf[1] != ev[0]:
                if lf[1] < ev[0]:
                    problem = f"leaf {i} seals notification {lf[1]}, which is missing: deleted, or events renumbered"
                else:
                    problem = f"event notification {ev[0]} is not the one leaf {i} seals ({lf[1]}): inserted or reordered"
            if ev is not None and ev[1] is None:
                problem = problem or (f"event notification {ev[0]} was changed: its stored columns no longer "
                                      f"form an event (e.g. an originator id that is no UUID, a negative version)")
                h = lf[2] if lf is not None else M.EMPTY_ROOT
            else:
                h = M.leaf_hash(ev[1]) if ev is not None else lf[2]
            if problem is None and h != lf[2]:
                problem = f"event notification {ev[0]} was changed: its stored bytes no longer hash to leaf {i}"
            if problem is not None:
                report.bad_leaves += 1
                if leaves_consistent:
                    report.findings.append(Finding(i, i + 1, problem))
                leaves_consistent = False
            append([h])
            if progress is not None and i % 10_000 == 0:
                progress(i, total)
        for head in heads[hi:]:
            if not head.root_hash:  # a tail seal always lies within the leaves
                continue
            report.heads_checked += 1
            problem = self.check_head(head)
            if problem is not None:  # not ours: it proves nothing about leaves the log does not have
                report.findings.append(Finding(min(good_until, max(i - 1, 0)), max(i, 1), f"{problem} (it claims more "
                                               f"leaves than the log's {i})"))
                continue
            report.findings.append(
                Finding(i, max(head.tree_size, i + 1),
                        f"signed head{_id(head)} covers {head.tree_size} leaves, but only {i} remain: "
                        f"leaves {i}..{head.tree_size - 1} and their events were removed")
            )
        if covered < i and report.ok:
            self._check_uncovered(report, covered, i)
        report.leaves = i
        report.events = self.log.event_count()
        report.root_hash = frontier.root()
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress(i, max(total, i))
        return report

    def _check_uncovered(self, report: VerificationReport, covered: int, size: int) -> None:
        """Leaves after the last head of ours: a finding when any is of format 1 (this code signs a
        head in every sealing transaction, so they were appended behind its back); a note for an
        old-format tail (older code signed heads at intervals)."""
        if self.covered_size() >= size:  # sealed meanwhile: the log grew while it was being verified
            return
        v1 = self.log.v1_from()
        last = self.log.leaf_range(size - 1, 1)
        if v1 is not None and last and last[0][0] >= v1:
            report.findings.append(Finding(
                covered, size, f"leaves {covered}..{size - 1} are covered by no signed head made with this log's "
                f"key: they were appended behind the server's back (every sealing transaction signs a head)"))
        else:
            report.uncovered_old = (covered, size)

    # ------------------------------------------------------------------ bundles
    def bundle(self, participant_id: Any | None = None, since: SignedHead | None = None) -> Bundle:
        """What an inspector needs to check events offline against a signed head: every leaf up to the
        head (format-1 leaves as their data, old-format ones as their hash), the events in scope with
        their stored bytes, and for a participant the opening of their subject commitment.

        Refused when the log does not verify (BrokenLog, naming the first bad leaf) or ends in leaves
        no signed head covers (UncoveredLeaves)."""
        oid = None
        if participant_id is not None:
            try:
                oid = participant_id if isinstance(participant_id, UUID) else UUID(str(participant_id))
            except ValueError:
                raise NotFound(f"no participant {participant_id!r}") from None
        head = self.head()
        if since is not None:
            problem = self.check_head(since)
            if problem:
                raise InvalidInput.one("since_head", problem)
            if since.tree_size > head.tree_size:
                raise InvalidInput.one("since_head", f"covers {since.tree_size} leaves; the log has {head.tree_size}")
        report = self.verify(extra_heads=[since] if since is not None else ())
        first = report.first_bad
        if first is not None:
            raise BrokenLog(f"the integrity log does not verify, so no bundle is written: first bad leaf index "
                            f"{first.first}: {first.message}")
        subject = None
        if oid is not None:
            tracker = self.log.subjects()
            salt = tracker.salt(oid.bytes)
            subject = {"participant_id": str(oid), "salt": salt.hex(),
                       "commitment": M.subject_commitment(salt, oid.bytes).hex()}
            lines = self._participant_lines(head.tree_size, oid, tracker)
            first_line = next(lines, None)
            if first_line is None:
                raise NotFound(f"no sealed events of participant {participant_id}")
            lines = _chain_one(first_line, lines)
            scope = f"participant {oid}"
        else:
            lines = self._lines(head.tree_size, lambda leaf: True)
            scope = "all"
        return Bundle(scope, head, lines, subject, since)

    def _lines(self, size: int, wanted: Callable[[Leaf], bool]) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        start = 0
        while start < size:
            batch = self.log.leaves(start, min(MAX_LEAVES_PAGE, size - start))
            if not batch:
                return
            for leaf in batch:
                yield _leaf_line(leaf), (_event_line(leaf) if wanted(leaf) else None)
            start = batch[-1].leaf_index + 1

    def _participant_lines(self, size: int, oid: UUID, tracker: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Every leaf; the event of each leaf whose subject is this participant: a format-1 leaf by its
        commitment, an old-format one by the audit trail's subject rule (the tracker, in log order).
        Yields nothing at all when the participant has no event."""
        commitment = tracker.commitment(oid.bytes)
        pending: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        found = False
        for leaf in self._all_leaves(size):
            mine = False
            data = leaf.leaf_data or b""
            if M.is_leaf_v1(data):
                mine = M.parse_leaf_v1(data)[1] == commitment
            elif leaf.event is not None:
                o, version, topic, state = M.unframe_event(leaf.event)
                mine = tracker.observe(topic, o, version, state) == oid.bytes
            line = (_leaf_line(leaf), _event_line(leaf) if mine else None)
            if found:
                yield line
                continue
            pending.append(line)
            if mine:
                found = True
                yield from pending
                pending = []

    def _all_leaves(self, size: int) -> Iterator[Leaf]:
        start = 0
        while start < size:
            batch = self.log.leaves(start, min(MAX_LEAVES_PAGE, size - start))
            if not batch:
                return
            yield from batch
            start = batch[-1].leaf_index + 1


def _chain_one(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _leaf_line(leaf: Leaf) -> dict[str, Any]:
    """A leaf as a bundle carries it: a format-1 leaf by its data, an old-format one (whose data is
    its event) by its hash only."""
    data = leaf.leaf_data or b""
    if M.is_leaf_v1(data):
        return {"leaf_index": leaf.leaf_index, "leaf_data": base64.b64encode(data).decode()}
    return {"leaf_index": leaf.leaf_index, "leaf_hash": leaf.leaf_hash.hex()}


def _event_line(leaf: Leaf) -> dict[str, Any]:
    data = leaf.event or b""
    try:
        event: Any = decode_leaf_data(data)
    except ValueError as e:
        event = {"undecodable": str(e)}
    return {
        "leaf_index": leaf.leaf_index,
        "notification_id": leaf.notification_id,
        "event_data": base64.b64encode(data).decode(),
        "event": event,
    }


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _mmr_size(leaves: int) -> int:
    """How many nodes, leaves included, a log of this many leaves has: the next post-order position."""
    return 2 * leaves - leaves.bit_count()


def _id(head: SignedHead) -> str:
    return f" #{head.head_id}" if head.head_id is not None else ""
