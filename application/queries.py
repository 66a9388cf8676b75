"""Data queries (R32), mixed into TrialApplication.

A monitor or data manager opens a query on one item of a visit at a site they can see; an investigator
or coordinator of the site answers it, possibly with a correction of the item that cites the query
(R7), saved in the same transaction as the answer; the monitor or data manager closes, reopens or
cancels it. Listings come from the ``data_queries`` read model.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError

from application.views import event_view, iso
from domain import access
from domain.audit import Actor, make_stamp
from domain.errors import InvalidInput
from domain.query import ANSWERED, ODM_STATES, OPEN, STATES, DataQuery
from domain.visit import validate_item_code


def query_view(q: DataQuery) -> dict[str, Any]:
    return {
        "id": str(q.id), "state": q.state, "odm_state": ODM_STATES[q.state], "site": q.site,
        "participant_id": q.participant_id, "visit_id": q.visit_id, "visit_code": q.visit_code,
        "item_code": q.item_code, "value_at_opening": q.value_at_opening, "text": q.messages[0]["text"],
        "messages": [{**{k: v for k, v in m.items() if k not in ("at", "by")}, "at": iso(m["at"]),
                      "by": {k: m["by"][k] for k in ("user_id", "username", "full_name", "role", "site")}}
                     for m in q.messages],
        "created_at": iso(q.created_on), "modified_at": iso(q.modified_on), "version": q.version,
    }


class QueryCommands:
    """Mixin of TrialApplication (relies on ``_get``, ``_save``, ``_check_version``, ``_visit_for``, ``read_models``)."""

    def _query_for(self: Any, actor: Actor, query_id: Any, action: str) -> DataQuery:
        access.require(actor, action)
        query = self._get(DataQuery, query_id, "query")
        access.require(actor, action, query.site)
        return query

    def _query_result(self: Any, query: DataQuery, notification_id: int, **extra: Any) -> dict[str, Any]:
        return {**query_view(query), "notification_id": notification_id, **extra}

    def check_cited_query(self: Any, query_id: Any, *, record_type: str, record_id: Any, fields: Any) -> None:
        """A change may cite the data query it answers (R7) only when that query exists, concerns the same
        record and field (a visit's item, a participant's field, an AE's field) and is open or answered;
        otherwise 422 naming ``query_id``. Nothing is read when no query is cited."""
        if query_id is None:
            return
        fields = {fields} if isinstance(fields, str) else set(fields)
        try:
            query = self.repository.get(UUID(str(query_id)))
        except (ValueError, AggregateNotFoundError):
            query = None
        if not isinstance(query, DataQuery):
            raise InvalidInput.one("query_id", f"no data query with id {query_id}; cite the id of an open or "
                                               "answered query about this item (GET /queries)")
        # today's queries concern one item of one visit; a query about another kind of record never matches
        concerns = ("visit", query.visit_id, query.item_code)
        if concerns[:2] != (record_type, str(record_id)) or fields != {query.item_code}:
            what = ", ".join(sorted(fields)) or "nothing"
            raise InvalidInput.one("query_id", f"query {query.id} concerns {query.item_code} of visit "
                                               f"{query.visit_code} ({query.visit_id}), not {what} of this {record_type}")
        if query.state not in (OPEN, ANSWERED):
            raise InvalidInput.one("query_id", f"query {query.id} is {query.state}; a change may cite only an open "
                                               "or answered query")

    def open_query(self: Any, actor: Actor, *, visit_id: Any, item_code: Any, text: Any, source: str = "api") -> dict[str, Any]:
        """Open a query on one item of a visit (monitor, data manager; R32)."""
        item_code = validate_item_code(item_code)
        visit = self._visit_for(actor, visit_id, "query.open")
        query = DataQuery.open(
            query_id=uuid4(), visit_id=str(visit.id), visit_code=visit.code, participant_id=visit.participant_id,
            site=visit.site, item_code=item_code, text=text, value_at_opening=visit.items.get(item_code),
            stamp=make_stamp(actor, source=source),
        )
        return self._query_result(query, self._save(query))

    def answer_query(self: Any, actor: Actor, query_id: Any, *, text: Any, correction: dict[str, Any] | None = None,
                     expected_version: int | None = None, source: str = "api") -> dict[str, Any]:
        """The site answers; a correction of the queried item cites the query and is saved with the answer (R7)."""
        query = self._query_for(actor, query_id, "query.answer")
        self._check_version(query, expected_version)
        stamp = make_stamp(actor, source=source)
        if correction is None:
            query.answer(text, stamp)
            return self._query_result(query, self._save(query))
        visit = self._visit_for(actor, query.visit_id, "visit.write")
        reason = correction.get("reason") or text
        item_stamp = make_stamp(actor, reason=reason, reason_code=correction.get("reason_code") or "query_response",
                                query_id=str(query.id), source=source, reason_required=True)
        old = visit.items.get(query.item_code)
        try:
            changed = visit.set_item(query.item_code, correction.get("value"), item_stamp,
                                     clear=bool(correction.get("clear")))
        except InvalidInput as e:
            raise InvalidInput([(("correction", *p), m) for p, m in e.errors]) from None
        if not changed:
            raise InvalidInput.one(("correction", "value"), f"{query.item_code} already has this value; nothing to correct")
        query.answer(text, stamp, correction={"item_code": query.item_code, "old_value": old,
                                              "new_value": visit.items.get(query.item_code),
                                              "visit_id": str(visit.id), "visit_version": visit.version})
        return self._query_result(query, self._save(visit, query))

    def close_query(self: Any, actor: Actor, query_id: Any, *, text: Any = None, expected_version: int | None = None,
                    source: str = "api") -> dict[str, Any]:
        query = self._query_for(actor, query_id, "query.manage")
        self._check_version(query, expected_version)
        query.close(text, make_stamp(actor, source=source))
        return self._query_result(query, self._save(query))

    def reopen_query(self: Any, actor: Actor, query_id: Any, *, text: Any, expected_version: int | None = None,
                     source: str = "api") -> dict[str, Any]:
        query = self._query_for(actor, query_id, "query.manage")
        self._check_version(query, expected_version)
        query.reopen(text, make_stamp(actor, source=source))
        return self._query_result(query, self._save(query))

    def cancel_query(self: Any, actor: Actor, query_id: Any, *, reason: Any, expected_version: int | None = None,
                     source: str = "api") -> dict[str, Any]:
        query = self._query_for(actor, query_id, "query.manage")
        self._check_version(query, expected_version)
        query.cancel(reason, make_stamp(actor, reason=reason, source=source, reason_required=True))
        return self._query_result(query, self._save(query))

    def get_query(self: Any, actor: Actor, query_id: Any) -> dict[str, Any]:
        return query_view(self._query_for(actor, query_id, "query.read"))

    def query_history(self: Any, actor: Actor, query_id: Any) -> list[dict[str, Any]]:
        query = self._query_for(actor, query_id, "query.read")
        return [event_view(e) for e in self.events.get(query.id)]

    def list_queries(self: Any, actor: Actor, *, site: str | None = None, state: str | None = None,
                     visit_id: str | None = None, participant_id: str | None = None) -> list[dict[str, Any]]:
        """Queries per site (a site-bound user sees only their own site), oldest first (R32)."""
        access.require(actor, "query.read")
        if access.is_site_bound(actor):
            if site not in (None, actor.site):
                access.require(actor, "query.read", site)
            site = actor.site
        if state is not None and state not in STATES:
            raise InvalidInput.one("state", f"must be one of {', '.join(STATES)}")
        self.read_models.wait_for()
        sql, params = "SELECT * FROM data_queries WHERE 1 = 1", []
        for column, value in (("site", site), ("state", state), ("visit_id", visit_id), ("participant_id", participant_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        rows = self.read_models.store.query(sql + " ORDER BY opened_at, id", params)
        return [{**r, "odm_state": ODM_STATES[r["state"]]} for r in rows]
