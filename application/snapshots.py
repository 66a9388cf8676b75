"""Snapshots are a cache, never a source of truth (issue 13 C.6).

``SealedSnapshotStore`` (application.repository) seals each snapshot with an HMAC-SHA256 and skips
one whose seal does not hold; this module reports such a snapshot when it is met, and checks every
stored snapshot against the replay of its aggregate's events for `trialaudit verify`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from eventsourcing.persistence import StoredEvent

from application.repository import SNAPSHOT_SEAL, project_events, unseal

log = logging.getLogger("trialaudit.snapshots")


def describe(stored: StoredEvent) -> str:
    """"snapshot of User <id> at version N" (the aggregate's class as the snapshot's state names it)."""
    state = bytes(stored.state)
    kind = "aggregate"
    for start in (0, len(SNAPSHOT_SEAL) + 32):
        try:
            kind = str(json.loads(state[start:])["topic"]).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
            break
        except (ValueError, KeyError, TypeError):
            continue
    return f"snapshot of {kind} {stored.originator_id} at version {stored.originator_version}"


def snapshot_rejected(stored: StoredEvent, why: str) -> None:
    log.warning("%s not used: %s; the aggregate is replayed from its events", describe(stored), why)


def check_snapshots(app: Any, stored_snapshots: Iterable[StoredEvent]) -> list[str]:
    """One line for each bad snapshot: a seal that does not hold, or a state that differs from the
    replay of the aggregate's events up to the snapshot's version."""
    store = app.snapshots
    problems = []
    for stored in stored_snapshots:
        name = describe(stored)
        payload, why = unseal(store.key, stored)
        if payload is None and not bytes(stored.state).startswith(SNAPSHOT_SEAL):
            # written before snapshots were sealed: never loaded (the aggregate is replayed instead), so
            # harmless while it equals the replay of its events; a verdict only when it does not
            payload = bytes(stored.state)
        if payload is None:
            problems.append(f"{name}: {why}")
            continue
        unsealed = StoredEvent(originator_id=stored.originator_id, originator_version=stored.originator_version,
                               topic=stored.topic, state=payload)
        try:
            snapshot = store.mapper.to_domain_event(unsealed)
        except Exception as e:  # a sealed snapshot that does not decode: the key was used on bad bytes
            problems.append(f"{name}: does not decode: {e}")
            continue
        replayed = project_events(None, app.events.get(originator_id=snapshot.originator_id,
                                                        lte=stored.originator_version))
        if replayed is None or replayed.version != stored.originator_version:
            problems.append(f"{name}: the aggregate has no such version in the event log")
            continue
        retaken = type(snapshot).take(replayed)
        transcoder = store.mapper.transcoder
        ours = transcoder.decode(store.mapper.to_stored_event(retaken).state)
        theirs = transcoder.decode(unsealed.state)
        if ours.get("state") != theirs.get("state") or ours.get("topic") != theirs.get("topic"):
            fields = sorted(k for k in set(ours["state"]) | set(theirs.get("state") or {})
                            if ours["state"].get(k) != (theirs.get("state") or {}).get(k))
            problems.append(f"{name}: differs from the replay of its events ({', '.join(fields) or 'topic'})")
    return problems
