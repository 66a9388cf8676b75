"""Leaf hashes recomputed from stored event rows, and the helper process `trialaudit verify` runs.

A leaf (application/merkle.py, RFC 9162) is SHA-256(0x00 || frame), where the frame of a stored
event is: originator UUID (16 bytes) || version (8 bytes, big-endian) || topic length (4 bytes,
big-endian) || topic (UTF-8) || state. This module computes it from the columns as stored, so the
verifier recomputes every leaf from the database's bytes, never from decoded events.

Recomputing leaves is most of the verifier's work, and it is Python code per event (the hashes are
too small for hashlib to release the GIL), so threads cannot share it. For a big SQLite log the
verifier therefore starts this file as a separate process (stdlib only, so it starts in a few tens
of milliseconds): it reads the events page by page over its own read-only connection and writes
each page's notification ids and leaf hashes to stdout, while the verifier reads the stored
leaves and tree nodes, rebuilds the tree and checks the heads on the other core.

Page format on stdout: a header ``<IB`` (event count n, flags; flag 1: some event of the page does
not frame, so the page must be checked event by event), then n notification ids (``array('q')``,
native byte order), then n leaf hashes of 32 bytes. A page with fewer than ``limit`` events is the
last one.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from array import array
from binascii import unhexlify
from collections.abc import Sequence
from operator import itemgetter
from typing import Any
from uuid import UUID

FRAME_HEAD = struct.Struct(">16sQI")  # as application.merkle.frame_event
PAGE_HEAD = struct.Struct("<IB")
BAD_ROWS = 1
_LEAF_HEAD = struct.Struct(">c16sQI").pack  # the RFC 9162 leaf prefix 0x00, then the frame's header
_sha256 = hashlib.sha256
_first, _second = itemgetter(0), itemgetter(1)


def originator_bytes(originator_id: Any) -> bytes:
    """The 16 bytes of an originator id as stored (a UUID; SQLite keeps it as 32 hex digits)."""
    if isinstance(originator_id, UUID):
        return originator_id.bytes
    text = originator_id.decode("ascii") if isinstance(originator_id, bytes) else str(originator_id)
    if len(text) == 32:
        return unhexlify(text)  # unlike bytes.fromhex, no whitespace: always 16 bytes
    return UUID(text).bytes


def frame_row(originator_id: Any, version: Any, topic: Any, state: Any) -> bytes | None:
    """The leaf data of a stored row as read back, or None when its columns cannot be framed
    (a tampered row: an originator id that is no UUID, a negative or non-integer version, ...)."""
    try:
        t = topic if isinstance(topic, bytes) else topic.encode("utf-8")
        if not isinstance(state, (bytes, memoryview)):
            raise TypeError("state is not binary")
        return FRAME_HEAD.pack(originator_bytes(originator_id), version, len(t)) + t + bytes(state)
    except (ValueError, TypeError, AttributeError, struct.error):
        return None


def leaf_hashes(rows: Sequence[tuple], *, uuid_ids: bool = False) -> list[bytes | None]:
    """The leaf hash of each row ``(notification id, originator id, version, topic, state)``; None
    for a row that does not frame. The hot loop of `trialaudit verify`.

    The fast forms take the topic as bytes and the originator id as its 32 ASCII hex digits (SQLite,
    both read with CAST AS BLOB) or, with ``uuid_ids``, as a UUID (PostgreSQL): one expression per
    event, no Python calls but hashlib's. An id of another form, or a row they cannot frame, sends
    the page to frame_row, which says which rows do not frame.
    """
    try:
        if uuid_ids:
            return [_sha256(_LEAF_HEAD(b"\x00", o.bytes, v, len(t)) + t + s).digest() for _, o, v, t, s in rows]
        if set(map(len, map(_second, rows))) <= {32}:
            return [_sha256(_LEAF_HEAD(b"\x00", unhexlify(o), v, len(t)) + t + s).digest() for _, o, v, t, s in rows]
    except (ValueError, TypeError, AttributeError, struct.error):
        pass
    out: list[bytes | None] = []
    for row in rows:
        data = frame_row(*row[1:])
        out.append(None if data is None else _sha256(b"\x00" + data).digest())
    return out


def sqlite_events_statement(events_table: str) -> str:
    """The event rows as leaf_hashes takes them, after a notification id, up to a limit."""
    return (
        f"SELECT rowid, CAST(originator_id AS BLOB), originator_version, CAST(topic AS BLOB), state "
        f"FROM {events_table} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    )


def encode_page(nids: Sequence[int], hashes: Sequence[bytes | None]) -> bytes:
    if None in hashes:
        return PAGE_HEAD.pack(len(nids), BAD_ROWS) + array("q", nids).tobytes() + b"".join(h or bytes(32) for h in hashes)
    return PAGE_HEAD.pack(len(nids), 0) + array("q", nids).tobytes() + b"".join(hashes)  # type: ignore[arg-type]


def main(argv: Sequence[str]) -> int:
    """``leaf_hasher.py DATABASE EVENTS_TABLE AFTER_NOTIFICATION_ID LIMIT``: every page to stdout."""
    import gc
    import sqlite3

    gc.disable()  # nothing here makes cycles; the collector would only rescan the rows of each page
    path, table, after, limit = argv[0], argv[1], int(argv[2]), int(argv[3])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    statement = sqlite_events_statement(table)
    out = sys.stdout.buffer
    try:
        while True:
            rows = conn.execute(statement, (after, limit)).fetchall()
            out.write(encode_page(list(map(_first, rows)), leaf_hashes(rows)))
            out.flush()
            if len(rows) < limit:
                return 0
            after = rows[-1][0]
    except BrokenPipeError:  # the verifier stopped reading (a problem found, or it was interrupted)
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
