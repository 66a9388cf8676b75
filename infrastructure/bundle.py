"""Writes an inspector bundle to a directory: events, proofs, heads, the key and the offline verifier."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from application.integrity import Bundle

VERIFIER_SOURCE = Path(__file__).with_name("bundle_verifier.py")

README = """trialaudit inspector bundle, NCT05214014
=========================================

Scope: {scope}
Signed tree head: {size} leaves, root {root}, signed {timestamp}

Check it on any machine with Python 3.9+ and the `cryptography` package (pip install cryptography):

    python3 verify_bundle.py . --public-key {key}

(Compare the key with the one the sponsor published before trusting it.)

Files
- events.jsonl            one event per line: leaf_index, notification_id, leaf_data (base64 of the
                          exact bytes hashed into the log) and the event decoded from those bytes
- inclusion_proofs.jsonl  an RFC 9162 audit path for every event against the signed head
- head.json               the signed tree head (Ed25519)
- since_head.json         the earlier head you gave, and consistency.json, the RFC 9162 consistency
                          proof from it to head.json (only with --since-head)
- public_key.pem          the tree-head public key
- verify_bundle.py        the verifier (standard library + cryptography); read it, it is short
- manifest.json           what this bundle holds
"""


def write_bundle(
    bundle: Bundle, out: Path, public_key_pem: bytes, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    head = bundle.head.to_json()
    count = 0
    with open(out / "events.jsonl", "w", encoding="utf-8") as events, open(
        out / "inclusion_proofs.jsonl", "w", encoding="utf-8"
    ) as proofs:
        for event, proof in zip(bundle.events, bundle.proofs):
            events.write(json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n")
            proofs.write(json.dumps(proof, sort_keys=True) + "\n")
            count += 1
            if progress is not None and count % 1000 == 0:
                progress(count)
    (out / "head.json").write_text(json.dumps(head, indent=2) + "\n", encoding="utf-8")
    if bundle.since_head is not None and bundle.consistency is not None:
        (out / "since_head.json").write_text(json.dumps(bundle.since_head.to_json(), indent=2) + "\n", encoding="utf-8")
        (out / "consistency.json").write_text(json.dumps(bundle.consistency, indent=2) + "\n", encoding="utf-8")
    (out / "public_key.pem").write_bytes(public_key_pem)
    (out / "verify_bundle.py").write_text(VERIFIER_SOURCE.read_text(encoding="utf-8"), encoding="utf-8")
    manifest = {
        "trial": "NCT05214014",
        "scope": "all" if bundle.scope == "all" else bundle.scope,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "events": count,
        "tree_size": head["tree_size"],
        "root_hash": head["root_hash"],
        "since_tree_size": bundle.since_head.tree_size if bundle.since_head else None,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (out / "README.txt").write_text(
        README.format(scope=bundle.scope, size=head["tree_size"], root=head["root_hash"], timestamp=head["timestamp"],
                      key=head["public_key"]),
        encoding="utf-8",
    )
    if progress is not None:
        progress(count)
    return manifest
