"""The library's repository and ``save`` without its runtime ``Protocol`` checks on the hot path.

eventsourcing 9.x checks ``isinstance(x, SomeProtocol)`` on every event it projects and on every
aggregate it saves. On Python 3.11 a runtime-checkable Protocol with data members is checked by
walking its attributes: 5 to 20 microseconds each, about 4% of an audited command's CPU. Every
aggregate here is an ``eventsourcing.domain.Aggregate`` and every event has ``mutate``, so a plain
class check (or none) says the same; anything else goes the library's way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore, Mapper, StoredEvent


def project_events(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's ``project_aggregate`` without its per-event ``assert isinstance(..., Protocol)``."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class FastRepository(Repository):
    def get(self, aggregate_id: Any, *, version: int | None = None, projector_func: Any = None,
            fastforward_skipping: bool = False, deepcopy_from_cache: bool = True) -> Any:
        return super().get(
            aggregate_id, version=version, projector_func=projector_func or project_events,
            fastforward_skipping=fastforward_skipping, deepcopy_from_cache=deepcopy_from_cache,
        )


class FastProcessingEvent(ProcessingEvent):
    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:
            if isinstance(obj, Aggregate):  # a plain class check
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif obj is not None:
                super().collect_events(obj)  # events and other shapes: the library's checks
        self.saved_kwargs.update(kwargs)


# ---------------------------------------------------------------------- sealed snapshots
#: the stored state of a sealed snapshot: this prefix, an HMAC-SHA256 of 32 bytes, the mapped state
SNAPSHOT_SEAL = b"TAS1"
_MAC_SIZE = 32


def snapshot_mac(key: bytes, originator_id: Any, originator_version: int, topic: str, state: bytes) -> bytes:
    """The MAC of one snapshot: its aggregate, version, topic and stored state, under ``key``."""
    message = b"\0".join((b"trialaudit snapshot v1", str(originator_id).encode(), str(int(originator_version)).encode(),
                          topic.encode(), bytes(state)))
    return hmac.new(key, message, hashlib.sha256).digest()


def unseal(key: bytes, stored: StoredEvent) -> tuple[bytes | None, str]:
    """The mapped state of a stored snapshot if its seal holds, else None and why not."""
    state = bytes(stored.state)
    if not state.startswith(SNAPSHOT_SEAL) or len(state) < len(SNAPSHOT_SEAL) + _MAC_SIZE:
        return None, "it carries no seal (written outside trialaudit, or by a version before sealed snapshots)"
    mac, payload = state[len(SNAPSHOT_SEAL):len(SNAPSHOT_SEAL) + _MAC_SIZE], state[len(SNAPSHOT_SEAL) + _MAC_SIZE:]
    expected = snapshot_mac(key, _canonical_id(stored.originator_id), stored.originator_version, stored.topic, payload)
    if not hmac.compare_digest(mac, expected):
        return None, "its MAC does not match (rewritten outside trialaudit)"
    return payload, ""


def _canonical_id(originator_id: Any) -> str:
    try:
        return str(UUID(str(originator_id)))
    except ValueError:
        return str(originator_id)


class SealedSnapshotStore(EventStore):
    """The snapshot store, with every snapshot sealed by an HMAC-SHA256 under a key kept outside the
    database. A snapshot is never believed on its own: one whose seal does not hold (rewritten by
    UPDATE, inserted, or written before snapshots were sealed) is skipped, reported to
    ``on_rejected``, and the repository replays the aggregate from its events instead (the library's
    ``Repository`` asks this store for the latest snapshot and replays from event 1 when there is none).
    """

    def __init__(self, mapper: Mapper, recorder: Any, key: bytes,
                 on_rejected: Callable[[StoredEvent, str], None] | None = None):
        super().__init__(mapper, recorder)
        self.key = key
        self.on_rejected = on_rejected

    def seal(self, stored: StoredEvent) -> StoredEvent:
        mac = snapshot_mac(self.key, _canonical_id(stored.originator_id), stored.originator_version, stored.topic,
                           stored.state)
        return StoredEvent(originator_id=stored.originator_id, originator_version=stored.originator_version,
                           topic=stored.topic, state=SNAPSHOT_SEAL + mac + bytes(stored.state))

    def put(self, domain_events: Sequence[Any], **kwargs: Any) -> list[Any]:
        self.recorder.insert_events([self.seal(self.mapper.to_stored_event(e)) for e in domain_events], **kwargs)
        return []

    def get(self, originator_id: Any, *, gt: int | None = None, lte: int | None = None, desc: bool = False,
            limit: int | None = None) -> Iterator[Any]:
        for stored in self.recorder.select_events(originator_id=originator_id, gt=gt, lte=lte, desc=desc, limit=limit):
            payload = self.unsealed(stored)
            if payload is not None:
                yield self.mapper.to_domain_event(payload)

    def unsealed(self, stored: StoredEvent) -> StoredEvent | None:
        """The stored snapshot with its seal removed, or None (reported) when the seal does not hold."""
        payload, why = unseal(self.key, stored)
        if payload is None:
            if self.on_rejected is not None:
                self.on_rejected(stored, why)
            return None
        return StoredEvent(originator_id=stored.originator_id, originator_version=stored.originator_version,
                           topic=stored.topic, state=payload)
