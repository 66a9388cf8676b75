"""Allocation concealment (issue 13 E.19): site roles never see slot numbers or the block structure.

Site staff see the arms of their own participants (the trial is open-label), but with the slot
of each allocation and the rule's block sizes they could work out where a block ends and predict
the next arm (69-72 % of the time with blocks of 2 and 4). Slots, the ``slot.N`` changes of the
allocation sequence and the rule (which names the block sizes) are therefore left out of what a
site-bound role (investigator, coordinator, monitor) is shown: participant responses, histories,
and the audit trail. Sponsor-side roles (data manager, inspector) and the event log keep them.
"""

from __future__ import annotations

from typing import Any

from domain import access
from domain.audit import Actor

#: fields of events whose values show the allocation's position or the block structure
CONCEALED_FIELDS = frozenset({"allocation_slot", "rule", "rule_from_slot", "from_slot"})


def conceals(actor: Actor | None) -> bool:
    return actor is None or access.is_site_bound(actor)


def concealed_field(name: Any) -> bool:
    name = str(name)
    return name in CONCEALED_FIELDS or name.startswith("slot.")


def participant(actor: Actor | None, view: dict[str, Any]) -> dict[str, Any]:
    """A participant view as ``actor`` may see it (None: the site user who just wrote it)."""
    if conceals(actor) and view.get("allocation_slot") is not None:
        return {**view, "allocation_slot": None}
    return view


def changes(actor: Actor | None, items: list[Any] | None) -> list[Any] | None:
    if not items or not conceals(actor):
        return items
    return [c for c in items if not concealed_field(c.get("field") if isinstance(c, dict) else getattr(c, "field", None))]


def event(actor: Actor | None, view: dict[str, Any]) -> dict[str, Any]:
    """A history or audit-trail entry as ``actor`` may see it."""
    if conceals(actor) and view.get("changes"):
        return {**view, "changes": changes(actor, view["changes"])}
    return view
