"""RFC 9162 conformance of application.merkle (R36).

The vectors are the Certificate Transparency reference vectors (transparency-dev/merkle,
proof/verify_test.go; the same eight leaves as RFC 6962's reference implementation). Leaf numbers
in those vectors count from 1; here indices count from 0, as in RFC 9162 and our API.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application import merkle as M

h = bytes.fromhex

CT_LEAVES = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index from 0, tree size, audit path)
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
CT_TREE = M.MemoryTree(M.leaf_hash(x) for x in CT_LEAVES)


def test_empty_root_is_sha256_of_nothing():
    """R36: the empty tree's root, RFC 9162 §2.1.1."""
    assert M.root_of([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_roots(size):
    """R36: the roots of the CT reference trees of sizes 1..8, from leaves, frontier and stored nodes."""
    leaves = [M.leaf_hash(x) for x in CT_LEAVES[:size]]
    assert M.root_of(leaves).hex() == CT_ROOTS[size - 1]
    assert CT_TREE.root(size).hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize("index, size, path", CT_INCLUSION)
def test_ct_audit_paths(index, size, path):
    """R36: audit paths equal the CT vectors and verify against the CT roots; corruptions fail."""
    proof = CT_TREE.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == path
    leaf, root = M.leaf_hash(CT_LEAVES[index]), h(CT_ROOTS[size - 1])
    assert M.verify_inclusion(index, size, leaf, proof, root)
    probes = [
        (index + 1, size, leaf, proof, root),
        (index, size * 2, leaf, proof, root),
        (index, size, M.leaf_hash(b"wrong"), proof, root),
        (index, size, leaf, proof + [root], root),
        (index, size, leaf, [root] + proof, root),
        (index, size, leaf, proof, M.EMPTY_ROOT),
    ]
    if index > 0:
        probes.append((index - 1, size, leaf, proof, root))
    if proof:
        probes.append((index, size, leaf, proof[:-1], root))
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((index, size, leaf, bad, root))
    for probe in probes:
        assert not M.verify_inclusion(*probe), probe


@pytest.mark.parametrize("first, second, path", CT_CONSISTENCY)
def test_ct_consistency_proofs(first, second, path):
    """R36: consistency proofs equal the CT vectors and verify; corruptions fail."""
    proof = CT_TREE.consistency_proof(first, second)
    assert [p.hex() for p in proof] == path
    r1, r2 = h(CT_ROOTS[first - 1]), h(CT_ROOTS[second - 1])
    assert M.verify_consistency(first, second, r1, r2, proof)
    if not proof:
        return
    probes = [
        (first - 1, second, r1, r2, proof),
        (first + 1, second, r1, r2, proof),
        (first, second * 2, r1, r2, proof),
        (first, second, r2, r1, proof),
        (first, second, r1, r2, []),
        (first, second, r1, r2, proof[:-1]),
        (first, second, r1, r2, proof + [r2]),
        (first, second, r1, r2, [proof[0]] + proof),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((first, second, r1, r2, bad))
    for probe in probes:
        assert not M.verify_consistency(*probe), probe


def test_consistency_edge_cases():
    """RFC 9162 §2.1.4.2: from 0 and to the same size need an empty proof; time travel fails."""
    r = h(CT_ROOTS[0])
    assert M.verify_consistency(0, 5, M.EMPTY_ROOT, r, [])
    assert M.verify_consistency(3, 3, r, r, [])
    assert not M.verify_consistency(3, 3, r, M.EMPTY_ROOT, [])
    assert not M.verify_consistency(3, 3, r, r, [r])
    assert not M.verify_consistency(2, 1, r, r, [])
    with pytest.raises(ValueError):
        M.inclusion_ranges(3, 3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70), st.data())
def test_against_pymerkle(entries, data):
    """R36: roots, audit paths and consistency proofs agree with the pymerkle package on random trees."""
    from pymerkle import InmemoryTree
    from pymerkle import verify_consistency as pm_verify_consistency

    reference = InmemoryTree()  # sha256 with 0x00/0x01 prefixes: the RFC 9162 hashing
    for e in entries:
        reference.append_entry(e)
    tree = M.MemoryTree(M.leaf_hash(e) for e in entries)
    n = len(entries)
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(1, size))
    assert tree.root(size) == reference.get_root(size)
    ours = tree.inclusion_proof(index, size)
    theirs = reference.prove_inclusion(index + 1, size)  # pymerkle counts from 1
    assert theirs.path[0] == M.leaf_hash(entries[index]) and ours == theirs.path[1:]
    assert M.verify_inclusion(index, size, M.leaf_hash(entries[index]), ours, reference.get_root(size))
    proof = tree.consistency_proof(first, size)
    assert M.verify_consistency(first, size, reference.get_root(first), reference.get_root(size), proof)
    pm_verify_consistency(reference.get_root(first), reference.get_root(size), reference.prove_consistency(first, size))


def test_every_proof_of_small_trees_round_trips():
    """R36: every (index, size) and (first, second) up to 40 leaves verifies; the frontier matches."""
    rnd = random.Random(7)
    hashes = [M.leaf_hash(rnd.randbytes(rnd.randrange(20))) for _ in range(40)]
    tree = M.MemoryTree(hashes)
    for size in range(1, 41):
        root = M.root_of(hashes[:size])
        assert tree.root(size) == root
        for index in range(size):
            assert M.verify_inclusion(index, size, hashes[index], tree.inclusion_proof(index, size), root)
        for first in range(0, size + 1):
            assert M.verify_consistency(first, size, tree.root(first), root, tree.consistency_proof(first, size))


def test_post_order_positions_follow_append_order():
    """Stored nodes keyed by post-order position replay in the order the frontier completes them."""
    frontier, seen = M.Frontier(), []
    for i in range(300):
        for level, _ in frontier.append(M.leaf_hash(i.to_bytes(2, "big"))):
            seen.append(M.post_order_position(level, i >> level))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_event_framing_round_trips():
    data = M.frame_event(b"\x01" * 16, 7, "domain.participant:Participant.Screened", b'{"a":1}')
    assert M.unframe_event(data) == (b"\x01" * 16, 7, "domain.participant:Participant.Screened", b'{"a":1}')
    assert M.tree_head_bytes(5, 1000, b"\x00" * 32).startswith(b"trialaudit/NCT05214014/tree-head/v1\x00")


def test_node_positions_invert_and_extend_matches_append():
    """The post-order position of a node maps back to it; bulk extend yields the same nodes as append."""
    one, bulk = M.Frontier(), M.Frontier()
    hashes = [M.leaf_hash(i.to_bytes(2, "big")) for i in range(500)]
    expected = []
    for i, h in enumerate(hashes):
        expected += [(M.post_order_position(level, i >> level), node) for level, node in one.append(h)]
    assert bulk.extend(hashes[:123]) + bulk.extend(hashes[123:]) == expected
    assert bulk.root() == one.root() and bulk.size == 500
    for position, _ in expected:
        level, index = M.node_at(position)
        assert M.post_order_position(level, index) == position


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=6))
def test_extend_by_level_matches_extend(chunks):
    """The verifier's level-at-a-time extension computes the same nodes, positions, frontier and
    root as leaf-by-leaf extension, for any split of the leaves into pages (R36)."""
    one, levels = M.Frontier(), M.Frontier()
    start = 0
    for n in chunks:
        hashes = [M.leaf_hash(i.to_bytes(4, "big")) for i in range(start, start + n)]
        start += n
        expected = one.extend(hashes)
        got = levels.extend_by_level(hashes)
        assert got == dict(expected) and len(got) == len(expected)
        assert (levels.size, levels.hashes, levels.root()) == (one.size, one.hashes, one.root())
