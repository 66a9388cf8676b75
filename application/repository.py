"""The library's repository and ``save`` without its runtime ``Protocol`` checks on the hot path.

eventsourcing 9.x checks ``isinstance(x, SomeProtocol)`` on every event it projects and on every
aggregate it saves. On Python 3.11 a runtime-checkable Protocol with data members is checked by
walking its attributes: 5 to 20 microseconds each, about 4% of an audited command's CPU. Every
aggregate here is an ``eventsourcing.domain.Aggregate`` and every event has ``mutate``, so a plain
class check (or none) says the same; anything else goes the library's way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventsourcing.application import ProcessingEvent, Repository
from eventsourcing.domain import Aggregate


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
