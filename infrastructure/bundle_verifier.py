#!/usr/bin/env python3
"""Offline verifier of a trialaudit inspector bundle (NCT05214014).

Needs Python 3.9+ and the `cryptography` package (for Ed25519), nothing else, and no access to the
system that wrote the bundle. Run it in the bundle directory:

    python3 verify_bundle.py [BUNDLE_DIR] [--public-key BASE64]

Give --public-key the sponsor's published tree-head key (raw Ed25519, base64) to pin it; without it
the key shipped in the bundle is used, and its fingerprint is printed so you can compare it.

It checks, and prints as it goes:
1. the signed tree head: the Ed25519 signature over the exact bytes below;
2. every leaf of the log up to the head is in the bundle (leaves.jsonl, 0..M-1 without gaps), and
   the RFC 9162 root recomputed from all of them is the signed root;
3. every event in events.jsonl: its stored bytes decode to the event shown beside it and match its
   leaf (a format-1 leaf: the SHA-256 of the bytes and the notification id; an old-format leaf: the
   leaf hash of the bytes);
4. a participant bundle (subject.json): the participant id and salt open the subject commitment,
   every format-1 leaf carrying that commitment has its event in the bundle, and no event of another
   subject is; a whole-log bundle: every leaf has its event;
5. with an earlier head (since_head.json): its signature, and that the first leaves of this log
   give its root (the new tree extends it unchanged).
It ends with one verdict line. Exit status 0 when everything checks, 1 otherwise (a malformed bundle
included), 2 for a usage error.

Signed bytes of a tree head (84 bytes): ASCII "trialaudit/NCT05214014/tree-head/v1", one 0x00 byte,
the tree size (8 bytes, big-endian), the timestamp in milliseconds since the Unix epoch (8 bytes,
big-endian) and the 32-byte root hash.
Leaf data, format 1 (73 bytes): 0x01, SHA-256 of the event's frame (32), the subject commitment (32:
SHA-256 of "trialaudit/NCT05214014/subject/v1", 0x00, the 32-byte salt and the participant's 16 UUID
bytes; 32 zero bytes for no participant), the notification id (8, big-endian).
Frame of an event (= the whole leaf data of an old-format leaf): originator UUID (16 bytes) ||
version (8 bytes, big-endian) || topic length (4 bytes, big-endian) || topic (UTF-8) || stored state.
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
SUBJECT_DOMAIN = b"trialaudit/NCT05214014/subject/v1\x00"
LEAF_V1_SIZE = 73
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_head_bytes(tree_size, timestamp_ms, root):
    return TREE_HEAD_PREFIX + struct.pack(">QQ", tree_size, timestamp_ms) + root


def parse_leaf_v1(data):
    """(event digest, subject commitment, notification id), or None for an old-format leaf."""
    if len(data) != LEAF_V1_SIZE or data[0] != 1:
        return None
    _, digest, subject, nid = struct.unpack(">B32s32sQ", data)
    return digest, subject, nid


def unframe(data):
    if len(data) < 28:
        raise ValueError("shorter than the frame's header")
    oid, version, topic_length = struct.unpack_from(">16sQI", data)
    end = 28 + topic_length
    if len(data) < end:
        raise ValueError("shorter than its topic")
    return oid, version, data[28:end].decode("utf-8"), data[end:]


class Frontier:
    """The right edge of an RFC 9162 tree, leaf by leaf; root() at any size."""

    def __init__(self):
        self.stack = []  # (level, hash), largest first
        self.size = 0

    def append(self, h):
        level = 0
        while self.stack and self.stack[-1][0] == level:
            h = node_hash(self.stack.pop()[1], h)
            level += 1
        self.stack.append((level, h))
        self.size += 1

    def root(self):
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
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


def signature_valid(public_key_raw, head):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(
            base64.b64decode(head["signature"]),
            tree_head_bytes(int(head["tree_size"]), int(head["timestamp_ms"]), bytes.fromhex(head["root_hash"])),
        )
    except (InvalidSignature, ValueError, TypeError, KeyError, struct.error):
        return False
    return True


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    raise ValueError(f"{path.name} line {number} is not JSON: {e}") from None


def verify(root_dir, pinned_key, c):
    manifest = read_json(root_dir / "manifest.json")
    head = read_json(root_dir / "head.json")
    print(f"bundle: {manifest.get('scope')} (written {manifest.get('created')})")

    # 1. the key and the signed head
    from cryptography.hazmat.primitives import serialization

    pem_key = serialization.load_pem_public_key((root_dir / "public_key.pem").read_bytes())
    key_raw = pem_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_text = base64.b64encode(key_raw).decode()
    print(f"public key: {key_text} (SHA-256 fingerprint {hashlib.sha256(key_raw).hexdigest()})")
    if pinned_key:
        c.check(base64.b64decode(pinned_key) == key_raw, "the bundle's key is the pinned key")
    else:
        print("  note  no --public-key given: compare the fingerprint above with the sponsor's published key")
    c.check(base64.b64decode(head["public_key"]) == key_raw, "the head names the same key as public_key.pem")
    size, root = int(head["tree_size"]), bytes.fromhex(head["root_hash"])
    c.check(signature_valid(key_raw, head),
            f"signed tree head: {size} leaves, root {head['root_hash']}, signed {head['timestamp']}: signature valid")

    # the scope, read first so that only the leaves it needs are kept (a log may have millions)
    subject_path = root_dir / "subject.json"
    subject = read_json(subject_path) if subject_path.exists() else None
    commitment = pid = None
    if subject is not None:
        pid = str(uuid.UUID(str(subject["participant_id"])))
        commitment = hashlib.sha256(SUBJECT_DOMAIN + bytes.fromhex(subject["salt"]) + uuid.UUID(pid).bytes).digest()
    wanted = set()
    for line in read_jsonl(root_dir / "events.jsonl"):
        if isinstance(line, dict) and isinstance(line.get("leaf_index"), int):
            wanted.add(line["leaf_index"])
    missing = []  # format-1 leaves committed to the participant whose event is not in the bundle

    # 2. every leaf up to the head, and the root
    since = read_json(root_dir / "since_head.json") if (root_dir / "since_head.json").exists() else None
    since_size = int(since["tree_size"]) if since else None
    since_root = None
    frontier = Frontier()
    leaves = {}  # leaf index -> (leaf hash, parsed format-1 data or None)
    expected = 0
    gap = None
    for line in read_jsonl(root_dir / "leaves.jsonl"):
        index = line.get("leaf_index")
        if index != expected:
            gap = gap or (f"leaf {expected} is missing from the bundle (found leaf {index} in its place)"
                          if isinstance(index, int) and index > expected else f"leaf {index} is out of order or repeated")
            break
        if "leaf_data" in line:
            data = base64.b64decode(line["leaf_data"], validate=True)
            parsed = parse_leaf_v1(data)
            if parsed is None:
                raise ValueError(f"leaf {index}: its data is not a format-1 leaf")
            h = leaf_hash(data)
        else:
            h, parsed = bytes.fromhex(line["leaf_hash"]), None
            if len(h) != 32:
                raise ValueError(f"leaf {index}: a leaf hash has 32 bytes")
        if index in wanted:
            leaves[index] = (h, parsed)
        if commitment is not None and parsed is not None and parsed[1] == commitment and index not in wanted:
            missing.append(index)
        frontier.append(h)
        expected += 1
        if since_size is not None and frontier.size == since_size:
            since_root = frontier.root()
    if gap is None and expected < size:
        gap = f"the bundle's leaves end at leaf {expected - 1}; the signed head covers {size} (leaves {expected}..{size - 1} are missing)"
    if gap is None and expected > size:
        gap = f"the bundle holds {expected} leaves; the signed head covers {size}"
    if gap:
        c.fail(gap)
    else:
        c.check(frontier.root() == root, f"the root recomputed from all {size} leaves is the signed root")

    # 3. the events against their leaves
    events = {}
    for line in read_jsonl(root_dir / "events.jsonl"):
        index = line.get("leaf_index")
        if not isinstance(index, int) or index not in leaves:
            c.fail(f"an event names leaf {index!r}, which is not in this log of {size} leaves")
            continue
        if index in events:
            c.fail(f"leaf {index}: its event is in the bundle twice")
            continue
        problems = []
        frame = base64.b64decode(line.get("event_data", ""))
        h, parsed = leaves[index]
        if parsed is not None:
            if hashlib.sha256(frame).digest() != parsed[0]:
                problems.append("its stored bytes do not match the digest its leaf holds")
            if line.get("notification_id") != parsed[2]:
                problems.append("its notification id is not the one its leaf holds")
        elif leaf_hash(frame) != h:
            problems.append("its stored bytes do not hash to its leaf")
        event = line.get("event") or {}
        try:
            oid, version, topic, state = unframe(frame)
            if (str(uuid.UUID(bytes=oid)) != event.get("originator_id") or version != event.get("originator_version")
                    or topic != event.get("topic")):
                problems.append("the decoded event does not match its stored bytes")
            elif json.loads(state) != event.get("state"):
                problems.append("the decoded state does not match its stored bytes")
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"its stored bytes do not decode: {e}")
        if problems:
            c.fail(f"leaf {index} ({event.get('topic', '?')} v{event.get('originator_version', '?')}): " + "; ".join(problems))
        events[index] = parsed
    c.check(bool(events), f"{len(events)} event(s) checked against their leaves")

    # 4. the scope: all of a participant's events, or every event
    old_format = sum(1 for p in events.values() if p is None)
    verdict = None
    if subject is not None:
        c.check(commitment.hex() == subject.get("commitment"),
                f"participant {pid}: the salt opens the subject commitment {commitment.hex()[:16]}…")
        foreign = [i for i, p in sorted(events.items()) if p is not None and p[1] != commitment]
        for i in missing[:20]:
            c.fail(f"leaf {i} belongs to participant {pid} and its event is not in the bundle")
        if len(missing) > 20:
            c.fail(f"... {len(missing)} of participant {pid}'s events in all are not in the bundle")
        for i in foreign[:20]:
            c.fail(f"leaf {i} belongs to another subject, yet its event is in this participant's bundle")
        if not missing and not foreign:
            c.ok(f"every format-1 leaf committed to participant {pid} has its event here, and no other event is")
        verdict = f"all {len(events)} events of participant {pid} in a log of {size} leaves"
    elif manifest.get("scope") == "all":
        missing = [i for i in range(expected) if i not in events]
        c.check(not missing, "every leaf has its event" if not missing else f"leaf {missing[0]} has no event in the bundle")
        verdict = f"all {len(events)} events in a log of {size} leaves"
    else:
        c.fail("the bundle names no scope it can prove (no subject.json and not a whole-log bundle)")
    if old_format:
        print(f"  note  {old_format} of the events sit in old-format leaves (sealed before format 1), which commit to no "
              f"subject: that they are all of them rests on the server's subject rule, not on the log")

    # 5. the earlier head an inspector already held
    if since is not None:
        c.check(base64.b64decode(since["public_key"]) == key_raw and signature_valid(key_raw, since),
                f"earlier head: {since_size} leaves, signed {since['timestamp']}: signature valid")
        c.check(since_root is not None and since_root.hex() == since.get("root_hash"),
                f"the first {since_size} leaves of this log give the earlier head's root: it extends it unchanged")

    if c.failures:
        return f"NOT VERIFIED: {c.failures} check(s) failed"
    return (f"VERIFIED: {verdict}, signed by key {key_text} (SHA-256 {hashlib.sha256(key_raw).hexdigest()[:16]}…) "
            f"at {head['timestamp']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Verify a trialaudit inspector bundle offline.")
    parser.add_argument("bundle", nargs="?", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--public-key", help="the published tree-head key (raw Ed25519, base64) to pin")
    args = parser.parse_args(argv)
    c = Checker()
    try:
        verdict = verify(Path(args.bundle), args.public_key, c)
    except ImportError as e:
        print(f"cannot check signatures: {e} (pip install cryptography)")
        return 2
    except Exception as e:  # a malformed bundle is a verdict too, never a crash
        print(f"  FAIL  the bundle is malformed: {type(e).__name__}: {e}")
        verdict = "NOT VERIFIED: the bundle is malformed"
        c.failures += 1
    print(verdict)
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
