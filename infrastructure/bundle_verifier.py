#!/usr/bin/env python3
"""Offline verifier of a trialaudit inspector bundle (NCT05214014).

Needs Python 3.9+ and the `cryptography` package, nothing else, and no access to the system that
wrote the bundle. Run it in the bundle directory:

    python3 verify_bundle.py [BUNDLE_DIR] [--public-key BASE64]

Give --public-key the sponsor's published tree-head key (raw Ed25519, base64) to pin it; without it
the key shipped in the bundle is used, and its fingerprint is printed so you can compare it.

It checks, and prints as it goes:
1. the signed tree head: the Ed25519 signature over the exact bytes below;
2. every event: its leaf data decodes to the event shown beside it, and its leaf hash
   SHA-256(0x00 || leaf data) is proven included in the signed tree by an RFC 9162 audit path;
3. for a whole-log bundle, that the leaves are 0..n-1 without gaps and their root is the signed root;
4. with an earlier head (since_head.json), its signature and the RFC 9162 consistency proof showing
   the new tree extends it without changing anything it covered.
Exit status 0 when everything checks, 1 otherwise.

Signed bytes of a tree head: ASCII "trialaudit/NCT05214014/tree-head/v1", one 0x00 byte, the tree size
(8 bytes, big-endian), the timestamp in milliseconds since the Unix epoch (8 bytes, big-endian) and
the 32-byte root hash.
Leaf data of an event: originator UUID (16 bytes) || version (8 bytes, big-endian) || topic length
(4 bytes, big-endian) || topic (UTF-8) || the stored state bytes.
"""

import argparse
import base64
import hashlib
import json
import struct
import sys
import uuid
from pathlib import Path

TREE_HEAD_PREFIX = b"trialaudit/NCT05214014/tree-head/v1\x00"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_head_bytes(tree_size, timestamp_ms, root):
    return TREE_HEAD_PREFIX + struct.pack(">QQ", tree_size, timestamp_ms) + root


def unframe(data):
    oid, version, topic_length = struct.unpack_from(">16sQI", data)
    end = 28 + topic_length
    if len(data) < end:
        raise ValueError("leaf data shorter than its topic")
    return oid, version, data[28:end].decode("utf-8"), data[end:]


def root_from_inclusion(index, size, leaf, path):
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0 or len(p) != 32:
            return None
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
    return r if sn == 0 else None


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 §2.1.4.2."""
    if not 0 <= first <= second or any(len(p) != 32 for p in proof):
        return False
    if first == 0:
        return not proof
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
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


def root_of(leaves):
    frontier = []  # (level, hash), largest first
    for h in leaves:
        level = 0
        while frontier and frontier[-1][0] == level:
            h = node_hash(frontier.pop()[1], h)
            level += 1
        frontier.append((level, h))
    if not frontier:
        return EMPTY_ROOT
    h = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        h = node_hash(left, h)
    return h


class Checker:
    def __init__(self):
        self.failures = 0

    def ok(self, message):
        print("  ok    " + message)

    def fail(self, message):
        self.failures += 1
        print("  FAIL  " + message)

    def check(self, condition, message):
        (self.ok if condition else self.fail)(message)
        return condition


def load_public_key(raw):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def signature_valid(public_key_raw, head):
    from cryptography.exceptions import InvalidSignature

    try:
        load_public_key(public_key_raw).verify(
            base64.b64decode(head["signature"]),
            tree_head_bytes(head["tree_size"], head["timestamp_ms"], bytes.fromhex(head["root_hash"])),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Verify a trialaudit inspector bundle offline.")
    parser.add_argument("bundle", nargs="?", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--public-key", help="the published tree-head key (raw Ed25519, base64) to pin")
    args = parser.parse_args(argv)
    root_dir = Path(args.bundle)
    c = Checker()
    manifest = json.loads((root_dir / "manifest.json").read_text(encoding="utf-8"))
    head = json.loads((root_dir / "head.json").read_text(encoding="utf-8"))
    print(f"bundle: {manifest.get('scope')} (written {manifest.get('created')})")

    # 1. the key and the signed head
    from cryptography.hazmat.primitives import serialization

    pem_key = serialization.load_pem_public_key((root_dir / "public_key.pem").read_bytes())
    key_raw = pem_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    print(f"public key: {base64.b64encode(key_raw).decode()} (SHA-256 fingerprint {hashlib.sha256(key_raw).hexdigest()})")
    if args.public_key:
        c.check(base64.b64decode(args.public_key) == key_raw, "the bundle's key is the pinned key")
    else:
        print("  note  no --public-key given: compare the fingerprint above with the sponsor's published key")
    c.check(base64.b64decode(head["public_key"]) == key_raw, "the head names the same key as public_key.pem")
    size, root = head["tree_size"], bytes.fromhex(head["root_hash"])
    c.check(signature_valid(key_raw, head),
            f"signed tree head: {size} leaves, root {head['root_hash']}, signed {head['timestamp']}: signature valid")

    # 2. every event, its leaf and its inclusion proof
    events = read_jsonl(root_dir / "events.jsonl")
    proofs = {p["leaf_index"]: p for p in read_jsonl(root_dir / "inclusion_proofs.jsonl")}
    proven = 0
    leaf_hashes = []
    for line in events:
        index = line["leaf_index"]
        data = base64.b64decode(line["leaf_data"])
        h = leaf_hash(data)
        leaf_hashes.append((index, h))
        problems = []
        try:
            oid, version, topic, state = unframe(data)
            event = line["event"]
            if str(uuid.UUID(bytes=oid)) != event["originator_id"] or version != event["originator_version"] or topic != event["topic"]:
                problems.append("the decoded event does not match its leaf data")
            elif json.loads(state) != event["state"]:
                problems.append("the decoded state does not match its leaf data")
        except (ValueError, KeyError, UnicodeDecodeError) as e:
            problems.append(f"leaf data does not decode: {e}")
        proof = proofs.get(index)
        if proof is None:
            problems.append("no inclusion proof")
        else:
            path = [bytes.fromhex(p) for p in proof["audit_path"]]
            if proof["tree_size"] != size or root_from_inclusion(index, size, h, path) != root:
                problems.append("the inclusion proof does not lead to the signed root")
        label = f"leaf {index}: {line.get('event', {}).get('topic', '?')} v{line.get('event', {}).get('originator_version', '?')}"
        if problems:
            c.fail(f"{label}: " + "; ".join(problems))
        else:
            proven += 1
    c.check(proven == len(events) and events,
            f"{proven} of {len(events)} events decoded from their leaf data and proven included in the signed tree")

    # 3. a whole-log bundle: every leaf, and the root itself
    if manifest.get("scope") == "all":
        indices = [i for i, _ in leaf_hashes]
        c.check(indices == list(range(size)), f"the bundle holds leaves 0..{size - 1} without gaps")
        c.check(root_of([h for _, h in sorted(leaf_hashes)]) == root, "the root recomputed from every leaf is the signed root")

    # 4. the earlier head an inspector already held
    since_path = root_dir / "since_head.json"
    if since_path.exists():
        since = json.loads(since_path.read_text(encoding="utf-8"))
        consistency = json.loads((root_dir / "consistency.json").read_text(encoding="utf-8"))
        c.check(base64.b64decode(since["public_key"]) == key_raw and signature_valid(key_raw, since),
                f"earlier head: {since['tree_size']} leaves, signed {since['timestamp']}: signature valid")
        proof = [bytes.fromhex(p) for p in consistency["proof"]]
        c.check(
            consistency["first"] == since["tree_size"] and consistency["second"] == size
            and verify_consistency(since["tree_size"], size, bytes.fromhex(since["root_hash"]), root, proof),
            f"consistency: the tree of {size} leaves extends the earlier tree of {since['tree_size']} leaves unchanged",
        )

    if c.failures:
        print(f"NOT VERIFIED: {c.failures} check(s) failed")
        return 1
    print(f"VERIFIED: {proven} event(s) proven in the log whose signed head covers {size} leaves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
