"""The data-query listing: one row per query with its current state, so that open queries are listed
per site without replaying aggregates (R32)."""

from __future__ import annotations

from typing import Any

from application.projections import Projection, ViewCursor
from application.views import iso
from domain.query import DataQuery


class QueryListing(Projection):
    name = "data_queries"
    topics = tuple(cls.TOPIC for cls in (
        DataQuery.QueryOpened, DataQuery.QueryAnswered, DataQuery.QueryClosed, DataQuery.QueryReopened,
        DataQuery.QueryCancelled,
    ))

    def create_statements(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS data_queries ("
            " id TEXT PRIMARY KEY, site TEXT NOT NULL, participant_id TEXT NOT NULL, visit_id TEXT NOT NULL,"
            " visit_code TEXT NOT NULL, item_code TEXT NOT NULL, state TEXT NOT NULL, text TEXT NOT NULL,"
            " opened_by TEXT NOT NULL, opened_at TEXT NOT NULL, version BIGINT NOT NULL, modified_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS data_queries_site_state ON data_queries (site, state, opened_at)",
        ]

    def tables(self) -> list[str]:
        return ["data_queries"]

    def process(self, event: Any, notification_id: int, cur: ViewCursor) -> None:
        qid = str(event.originator_id)
        if isinstance(event, DataQuery.QueryOpened):
            cur.execute(
                "INSERT INTO data_queries (id, site, participant_id, visit_id, visit_code, item_code, state, text,"
                " opened_by, opened_at, version, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (qid, event.site, event.participant_id, event.visit_id, event.visit_code, event.item_code, "open",
                 event.text, event.audit["actor"]["full_name"], iso(event.timestamp), event.originator_version,
                 iso(event.timestamp)),
            )
            return
        state = next(ch["new_value"] for ch in event.changes if ch["field"] == "state")
        cur.execute("UPDATE data_queries SET state = ?, version = ?, modified_at = ? WHERE id = ?",
                    (state, event.originator_version, iso(event.timestamp), qid))
