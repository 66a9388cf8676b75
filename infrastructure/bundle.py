"""Writes an inspector bundle to a directory: every leaf, the events in scope, the signed head, the key
and the offline verifier. The directory is written under a temporary name beside it and renamed when
complete, so a bundle is either whole or absent; the directory is 0700 and its files 0600."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from application.integrity import Bundle

VERIFIER_SOURCE = Path(__file__).with_name("bundle_verifier.py")
FORMAT = 2  # 1: events with inclusion proofs (before 2026-12); 2: every leaf, events, subject opening

README = """trialaudit inspector bundle, NCT05214014
=========================================

Scope: {scope}
Signed tree head: {size} leaves, root {root}, signed {timestamp}

Check it on any machine with Python 3.9+ and the `cryptography` package (pip install cryptography):

    python3 verify_bundle.py . --public-key {key}

(Compare the key with the one the sponsor published before trusting it.)

Files
- leaves.jsonl            every leaf of the log up to the signed head, in order: a format-1 leaf as its
                          data (format, event digest, subject commitment, notification id; no content),
                          an old-format leaf (whose data is its whole event) as its hash only
- events.jsonl            the events in scope: leaf_index, notification_id, event_data (base64 of the
                          stored bytes, framed) and the event decoded from those bytes
- subject.json            (participant bundles) the participant id and the salt that open the
                          commitment their leaves carry
- head.json               the signed tree head (Ed25519)
- since_head.json         the earlier head you gave (only with --since-head)
- public_key.pem          the tree-head public key
- verify_bundle.py        the verifier (standard library + cryptography); read it, it is short
- manifest.json           what this bundle holds
"""


class BundleExists(Exception):
    pass


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_bundle(
    bundle: Bundle, out: Path, public_key_pem: bytes, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Write the bundle to ``out`` (which must not exist, or be an empty directory)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleExists(f"{out} already exists and is not an empty directory; give a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))  # 0700
    try:
        manifest = _write_into(bundle, tmp, public_key_pem, progress)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write_into(bundle: Bundle, out: Path, public_key_pem: bytes, progress: Callable[[int], None] | None) -> dict[str, Any]:
    head = bundle.head.to_json()
    count = leaves = 0
    for name in ("leaves.jsonl", "events.jsonl"):
        os.close(os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with open(out / "leaves.jsonl", "w", encoding="utf-8") as leaf_file, open(
        out / "events.jsonl", "w", encoding="utf-8"
    ) as events:
        for leaf, event in bundle.lines:
            leaf_file.write(json.dumps(leaf, sort_keys=True) + "\n")
            leaves += 1
            if event is not None:
                events.write(json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n")
                count += 1
            if progress is not None and leaves % 1000 == 0:
                progress(leaves)
    _write(out / "head.json", json.dumps(head, indent=2) + "\n")
    if bundle.subject is not None:
        _write(out / "subject.json", json.dumps(bundle.subject, indent=2) + "\n")
    if bundle.since_head is not None:
        _write(out / "since_head.json", json.dumps(bundle.since_head.to_json(), indent=2) + "\n")
    _write(out / "public_key.pem", public_key_pem.decode("ascii"))
    _write(out / "verify_bundle.py", VERIFIER_SOURCE.read_text(encoding="utf-8"))
    manifest = {
        "trial": "NCT05214014",
        "format": FORMAT,
        "scope": "all" if bundle.scope == "all" else bundle.scope,
        "participant_id": bundle.subject["participant_id"] if bundle.subject else None,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "events": count,
        "leaves": leaves,
        "tree_size": head["tree_size"],
        "root_hash": head["root_hash"],
        "since_tree_size": bundle.since_head.tree_size if bundle.since_head else None,
    }
    _write(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    _write(out / "README.txt", README.format(scope=bundle.scope, size=head["tree_size"], root=head["root_hash"],
                                             timestamp=head["timestamp"], key=head["public_key"]))
    if progress is not None:
        progress(leaves)
    return manifest
