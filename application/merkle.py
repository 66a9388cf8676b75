"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs: pure functions, no I/O.

Written here rather than borrowed (pymerkle is GPL-3.0 and its consistency proofs are not in the
RFC 9162 format). Conformance is proven against the Certificate Transparency test vectors and
cross-checked against pymerkle in tests/integrity.

Vocabulary
- A *range* ``(start, end)`` is the subtree over leaves ``start <= i < end``, as the RFC splits the
  tree: every range that the algorithms meet starts at a multiple of the largest power of two that
  is ``< end - start`` (or ``<= `` for a perfect one), so its hash can be assembled from *perfect*
  subtrees.
- A *perfect node* ``(level, index)`` is the perfect subtree over leaves
  ``index * 2**level <= i < (index + 1) * 2**level``; level 0 is a leaf.
- The store keeps the perfect nodes of level >= ``STORED_LEVEL`` (8: subtrees of 256 leaves and up)
  under a single integer, their *post-order position* (the position in a Merkle Mountain Range):
  the nodes a new leaf completes get the next positions, so an ordered scan of the node table
  replays the log in append order. A node below that level is recomputed from its <= 128 leaf
  hashes when a proof needs it (a few hundred microseconds at most), so that sealing writes a node
  row once per 256 events instead of about once per event. Stores written before kept every level;
  those extra rows are still checked by ``trialaudit verify`` and otherwise unused.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from operator import add as _add
from operator import sub as _sub

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256
_digest = type(_sha256()).digest  # the unbound HASH.digest, for map()
_NODE_PREFIX = b"\x01"

Node = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # (start, end)

#: the lowest level of the perfect nodes a store keeps (see the module docstring)
STORED_LEVEL = 8


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x00 || leaf data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------- leaf data framing
_FRAME_HEAD = struct.Struct(">16sQI")


def frame_event(originator_id: bytes, version: int, topic: str, state: bytes) -> bytes:
    """The leaf data of a stored event: an unambiguous framing of its stored columns.

    16-byte originator UUID || 8-byte big-endian version || 4-byte big-endian topic length ||
    topic (UTF-8) || state (the stored bytes, to the end).
    """
    t = topic.encode("utf-8")
    return _FRAME_HEAD.pack(originator_id, version, len(t)) + t + bytes(state)


def unframe_event(data: bytes) -> tuple[bytes, int, str, bytes]:
    """The inverse of frame_event: (originator id bytes, version, topic, state)."""
    if len(data) < _FRAME_HEAD.size:
        raise ValueError("leaf data shorter than its header")
    oid, version, tlen = _FRAME_HEAD.unpack_from(data)
    end = _FRAME_HEAD.size + tlen
    if len(data) < end:
        raise ValueError("leaf data shorter than its topic")
    return oid, version, data[_FRAME_HEAD.size : end].decode("utf-8"), data[end:]


# --------------------------------------------------------------------------- byte layouts
@dataclass(frozen=True)
class LayoutField:
    """One field of a fixed byte layout: its name, struct code (big-endian) and what it holds."""

    name: str
    code: str
    meaning: str

    @property
    def size(self) -> int:
        return struct.calcsize(">" + self.code)


@dataclass(frozen=True)
class Layout:
    """A fixed byte layout, defined once: the code packs with ``struct`` and the docs render from it."""

    title: str
    fields: tuple[LayoutField, ...]

    @property
    def format(self) -> struct.Struct:
        return struct.Struct(">" + "".join(f.code for f in self.fields))

    @property
    def size(self) -> int:
        return self.format.size

    def offsets(self) -> list[tuple[int, LayoutField]]:
        out, offset = [], 0
        for f in self.fields:
            out.append((offset, f))
            offset += f.size
        return out

    def render(self) -> str:
        """The layout as the README shows it (a fenced block): offset, size, field, meaning."""
        lines = [f"{self.title}: {self.size} bytes", "", "offset  size  field"]
        for offset, f in self.offsets():
            lines.append(f"{offset:>6}  {f.size:>4}  {f.name}: {f.meaning}")
        return "```\n" + "\n".join(lines) + "\n```"


# --------------------------------------------------------------------------- tree heads
TREE_HEAD_DOMAIN = b"trialaudit/NCT05214014/tree-head/v1"
TREE_HEAD_PREFIX = TREE_HEAD_DOMAIN + b"\x00"
TREE_HEAD_LAYOUT = Layout("Signed tree head (the bytes the Ed25519 signature covers)", (
    LayoutField("domain", f"{len(TREE_HEAD_DOMAIN)}s", f'ASCII "{TREE_HEAD_DOMAIN.decode()}"'),
    LayoutField("separator", "x", "one 0x00 byte"),
    LayoutField("tree size", "Q", "number of leaves, unsigned big-endian"),
    LayoutField("timestamp", "Q", "milliseconds since 1970-01-01T00:00:00Z, unsigned big-endian"),
    LayoutField("root hash", "32s", "RFC 9162 Merkle tree hash (SHA-256)"),
))
_TREE_HEAD = TREE_HEAD_LAYOUT.format


def tree_head_bytes(tree_size: int, timestamp_ms: int, root: bytes) -> bytes:
    """The exact bytes an Ed25519 tree-head signature covers: TREE_HEAD_LAYOUT."""
    if len(root) != HASH_SIZE:
        raise ValueError("a root hash has 32 bytes")
    return _TREE_HEAD.pack(TREE_HEAD_DOMAIN, tree_size, timestamp_ms, root)


# --------------------------------------------------------------------------- leaves, format 1
#: Leaf data of format 1 (events sealed since this format): it commits to the event without
#: carrying it. Older leaves are the whole frame (frame_event); a store records from which
#: notification id on it seals format 1 (merkle_formats), and a leaf of exactly LEAF_V1_SIZE
#: bytes starting with 0x01 is format 1 wherever it is read.
LEAF_V1 = 1
LEAF_V1_LAYOUT = Layout("Leaf data, format 1", (
    LayoutField("format", "B", "0x01"),
    LayoutField("event digest", "32s", "SHA-256 of the event's frame (originator id, version, topic, stored state)"),
    LayoutField("subject", "32s", "commitment to the participant the event belongs to (32 zero bytes: none)"),
    LayoutField("notification id", "Q", "the event's position in the store, unsigned big-endian"),
))
LEAF_V1_SIZE = LEAF_V1_LAYOUT.size
_LEAF_V1 = LEAF_V1_LAYOUT.format
NO_SUBJECT = bytes(HASH_SIZE)
SUBJECT_DOMAIN = b"trialaudit/NCT05214014/subject/v1\x00"


def leaf_v1(event_digest: bytes, subject: bytes, notification_id: int) -> bytes:
    return _LEAF_V1.pack(LEAF_V1, event_digest, subject, notification_id)


def is_leaf_v1(data: bytes) -> bool:
    return len(data) == LEAF_V1_SIZE and data[0] == LEAF_V1


def parse_leaf_v1(data: bytes) -> tuple[bytes, bytes, int]:
    """(event digest, subject commitment, notification id) of a format-1 leaf."""
    if not is_leaf_v1(data):
        raise ValueError("not a format-1 leaf")
    _, digest, subject, nid = _LEAF_V1.unpack(data)
    return digest, subject, nid


def subject_commitment(salt: bytes, participant: bytes) -> bytes:
    """SHA-256(domain || salt || participant UUID bytes): binding, and hiding while the salt is secret."""
    return _sha256(SUBJECT_DOMAIN + salt + participant).digest()


# --------------------------------------------------------------------------- roots
def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) from the leaf hashes (RFC 9162 §2.1.1)."""
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


class Frontier:
    """The compact range [0, size): the hashes of the perfect subtrees along the right edge.

    Appending is O(1) amortised and yields the perfect nodes the new leaf completes; the root
    is the fold of at most log2(size) hashes.
    """

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()):
        if len(hashes) != bin(size).count("1"):
            raise ValueError("a frontier has one hash per set bit of its size")
        self.size = size
        self.hashes = list(hashes)  # largest subtree first

    def append(self, h: bytes) -> list[tuple[int, bytes]]:
        """Add a leaf hash; return the completed perfect nodes as (level, hash), lowest first."""
        completed = []
        level = 0
        n = self.size
        hashes = self.hashes
        while n & 1:
            h = _sha256(b"\x01" + hashes.pop() + h).digest()
            level += 1
            completed.append((level, h))
            n >>= 1
        hashes.append(h)
        self.size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes], min_level: int = 1) -> list[tuple[int, bytes]]:
        """Append many leaf hashes; return the completed perfect nodes of level >= ``min_level`` as
        (post-order position, hash)."""
        out = []
        stack = self.hashes
        sha = _sha256
        i = self.size
        for h in leaf_hashes:
            n = i
            base = 2 * i - i.bit_count()
            level = 0
            while n & 1:
                h = sha(b"\x01" + stack.pop() + h).digest()
                level += 1
                if level >= min_level:
                    out.append((base + level, h))
                n >>= 1
            stack.append(h)
            i += 1
        self.size = i
        return out

    def extend_by_level(self, leaf_hashes: Sequence[bytes]) -> dict[int, bytes]:
        """As ``extend``, but computed a tree level at a time; returns {post-order position: hash}.

        The same nodes and hashes as ``extend`` (unordered): at level L the nodes the new leaves
        complete are those of index ``size >> L <= j < (size + n) >> L``; each pair of them (with the
        frontier's node of level L in front when that index is odd) makes one node of level L + 1.
        Every hash of a level is computed by one ``map`` chain, so there is no Python code per node:
        this is the verifier's bulk path (several times faster than ``extend`` per leaf).
        """
        s = self.size
        e = s + len(leaf_hashes)
        old = dict(zip([lvl for lvl in range(s.bit_length() - 1, -1, -1) if s >> lvl & 1], self.hashes))
        out: dict[int, bytes] = {}
        right_edge: list[bytes] = []
        level = 0
        cur = list(leaf_hashes)
        while e >> level:
            if (s >> level) & 1:
                cur.insert(0, old[level])
            if (e >> level) & 1:
                right_edge.append(cur[-1])
            cur = list(map(_digest, map(_sha256, map(_add, map(_add, repeat(_NODE_PREFIX), cur[0::2]), cur[1::2]))))
            level += 1
            if cur:
                # node (level, j) is completed by leaf ((j + 1) << level) - 1 =: c and sits at 2c - popcount(c) + level
                step = 1 << level
                c0 = (((s >> level) + 1) << level) - 1
                completing = range(c0, c0 + step * len(cur), step)
                twice = range(2 * c0 + level, 2 * c0 + level + 2 * step * len(cur), 2 * step)
                out.update(zip(map(_sub, twice, map(int.bit_count, completing)), cur))
        right_edge.reverse()
        self.hashes = right_edge
        self.size = e
        return out

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        hashes = self.hashes
        h = hashes[-1]
        for left in reversed(hashes[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h


# --------------------------------------------------------------------------- node addressing
def post_order_position(level: int, index: int) -> int:
    """Position of a perfect node among all nodes (leaves included) in append order (MMR order)."""
    leaves_before = ((index + 1) << level) - 1  # the completing leaf's index
    return 2 * leaves_before - bin(leaves_before).count("1") + level


def node_at(position: int) -> Node:
    """The (level, index) of the perfect node at a post-order position (the inverse of the above)."""
    # the completing leaf i has 2i - popcount(i) <= position < 2(i+1) - popcount(i+1); search it
    lo, hi = 0, position // 2 + 64  # 2i - popcount(i) <= position implies i <= position/2 + 64
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if 2 * mid - mid.bit_count() <= position:
            lo = mid
        else:
            hi = mid - 1
    level = position - (2 * lo - lo.bit_count())
    return level, (lo + 1 >> level) - 1


def frontier_nodes(size: int) -> list[Node]:
    """The perfect nodes of the compact range [0, size), largest first."""
    return perfect_nodes(0, size)


def perfect_nodes(start: int, end: int) -> list[Node]:
    """Split an RFC range into its perfect subtrees, left to right (largest first)."""
    nodes = []
    pos = start
    while pos < end:
        width = end - pos
        level = width.bit_length() - 1
        # a perfect subtree must also be aligned; RFC ranges always are, this guards misuse
        while pos & ((1 << level) - 1):
            level -= 1
        nodes.append((level, pos >> level))
        pos += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: Mapping[Node, bytes]) -> bytes:
    """MTH(D[start:end]) from the hashes of its perfect subtrees."""
    parts = perfect_nodes(start, end)
    h = nodes[parts[-1]]
    for part in reversed(parts[:-1]):
        h = node_hash(nodes[part], h)
    return h


# --------------------------------------------------------------------------- proofs as ranges
def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form the audit path PATH(index, D[size]), leaf end first (§2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose hashes form PROOF(first, D[second]) (§2.1.4.1), in the RFC's order."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    out: list[Range] = []
    start, end, m, complete = 0, second, first, True
    # SUBPROOF(m, D[start:end], complete), unrolled; the appended items come out deepest last,
    # and the RFC lists them deepest first, hence the reversal at the end.
    while True:
        n = end - start
        if m == n:
            if not complete:
                out.append((start, end))
            break
        k = _split(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
            m -= k
            complete = False
    out.reverse()
    return out


def nodes_for(ranges: Iterable[Range]) -> set[Node]:
    needed: set[Node] = set()
    for start, end in ranges:
        needed.update(perfect_nodes(start, end))
    return needed


def inclusion_proof(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    return [range_hash(a, b, nodes) for a, b in inclusion_ranges(index, size)]


def consistency_proof(first: int, second: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    return [range_hash(a, b, nodes) for a, b in consistency_ranges(first, second)]


class MemoryTree:
    """All perfect nodes of a tree held in memory: for tests, bundles and small trees."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()):
        self.nodes: dict[Node, bytes] = {}
        self.frontier = Frontier()
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, h: bytes) -> None:
        index = self.frontier.size
        self.nodes[(0, index)] = h
        for level, node in self.frontier.append(h):
            self.nodes[(level, index >> level)] = node

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size == 0:
            return EMPTY_ROOT
        return range_hash(0, size, self.nodes)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.nodes)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        return consistency_proof(first, self.size if second is None else second, self.nodes)


# --------------------------------------------------------------------------- verification
def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2; raises ValueError when the proof cannot belong to (index, size)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise ValueError("a leaf hash has 32 bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ValueError("every proof hash has 32 bytes")
        if sn == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    try:
        return root_from_inclusion_proof(index, size, leaf, proof) == root
    except ValueError:
        return False


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if not 0 <= first <= second:
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    if first == 0:
        return not proof
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is the first node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
