"""Audit retrieval, export, item history and review reports, all from the audit index (never replaying).

Mixed into ``TrialApplication``. Every method:

* checks the role and the site wall first (R19, R23): inspectors and data managers see every row;
  investigators, coordinators and monitors only their own site's rows (naming another site or
  another site's participant is refused, not silently emptied); an admin sees only the
  user-administration events (accounts and logins), nothing clinical;
* waits for the index to reach the head of the log, so a write just made is visible;
* records the retrieval itself as an event (``AuditTrailRetrieved``, or ``AuditTrailExportStarted``
  and ``...Completed`` for a download) with the actor, the filters, the format and the row count
  (R11, R15). Those events are on the trail like any other; ``GET /audit/events`` leaves them out
  unless asked for (``type=AuditTrailRetrieved`` or ``include_retrievals``), so that paging through
  the trail does not page through its own reading.

Order is the recorded order: the global position (notification id) in the event log. Paging is by
keyset on that position, so a page never shifts when events are recorded meanwhile, and a download
is cut at the position the log had reached when it started (a consistent snapshot).
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from application import concealment
from application.audit_index import change_from_row
from application.views import iso
from domain import access
from domain.audit import Actor, make_stamp
from domain.audit_trail import ACCESS_EVENT_TYPES, AuditReview, AuditTrailAccess
from domain.errors import InvalidInput, NotFound, PermissionDenied
from domain.trial import ALL_SITES

#: what an admin may see of the trail: the user register and logins (R22), nothing clinical
ADMIN_AGGREGATES = ("User", "LoginAttempt")
ACCESS_AGGREGATE = "AuditTrailAccess"
AUDIT_READ_MODELS = ("audit_index",)
MAX_LIMIT = 1000
EXPORT_PAGE = 500

#: R18 "critical data": ACR/EULAR components, mRSS, and the AE term, grade, seriousness, causality and dates
CRITICAL_PREFIXES = ("acr_eular.", "mrss.", "aes", "aerel")
CRITICAL_FIELDS = frozenset({"aeterm", "aetoxgr", "aeser", "aestdat", "aeendat"})
REPORT_KINDS = ("critical-changes", "outside-hours", "late-entries", "change-rates", "changes-after-signature-or-lock")

CSV_COLUMNS = (
    "position", "recorded_at", "clinical_date", "event_type", "aggregate_type", "aggregate_id", "version",
    "participant_id", "site", "actor_user_id", "actor_username", "actor_full_name", "actor_role", "actor_site",
    "reason", "reason_code", "source", "query_id", "field", "old_value", "new_value",
)


def is_critical(field_name: str) -> bool:
    return field_name in CRITICAL_FIELDS or field_name.startswith(CRITICAL_PREFIXES)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _instant(value: Any, name: str) -> str | None:
    """A filter bound as the index's sortable UTC text. Naive times are refused (R4). A plain date is
    that day in UTC's calendar: ``from`` at its 00:00 UTC, ``to`` up to the end of it (the next day's
    00:00 UTC, exclusive), so ``from=D&to=D`` is the whole of day D."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value or " " in value else (
                    dt.date.fromisoformat(value))
            except ValueError:
                raise InvalidInput.one(name, "give an ISO 8601 instant with its zone, e.g. 2026-03-12T00:00:00Z") from None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            day = value + dt.timedelta(days=1) if name == "to" else value
            value = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
        if value.tzinfo is None:
            raise InvalidInput.one(name, "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
        return iso(value)
    except OverflowError:
        raise InvalidInput.one(name, "out of range: the instant falls outside years 1..9999 in UTC") from None


def encode_cursor(order: str, position: int) -> str:
    raw = json.dumps({"v": 1, "o": order, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        position, cursor_order = int(data["p"]), data["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidInput.one("cursor", "not a cursor this server gave out; start again without one") from None
    if not 0 <= position < 2**63:  # a position the store could hold (a forged one would overflow its integer)
        raise InvalidInput.one("cursor", "not a cursor this server gave out; start again without one")
    if cursor_order != order:
        raise InvalidInput.one("cursor", f"this cursor pages in '{cursor_order}' order; keep order={cursor_order}")
    return position


@dataclass
class AuditFilter:
    participant: str | None = None
    site: str | None = None
    user: str | None = None
    item: str | None = None
    from_: Any = None
    to: Any = None
    type: Sequence[str] | None = None
    aggregate_type: str | None = None
    include_retrievals: bool = False
    #: set by scoping, never by the caller
    admin_only: bool = False
    resolved_user: str | None = field(default=None, repr=False)

    def used(self) -> dict[str, Any]:
        """The filters as asked for, for the retrieval's own audit event."""
        return {
            "participant": self.participant, "site": self.site, "user": self.user, "item": self.item,
            "from": _instant(self.from_, "from"), "to": _instant(self.to, "to"),
            "type": ",".join(self.type) if self.type else None, "aggregate_type": self.aggregate_type,
            "include_retrievals": self.include_retrievals or None,
        }


def event_row_view(row: dict[str, Any]) -> dict[str, Any]:
    """An indexed event as the API shows it: the event_view shape plus where it sits in the trial."""
    return {
        "position": row["position"],
        "aggregate_id": row["aggregate_id"],
        "aggregate_type": row["aggregate_type"],
        "version": row["version"],
        "type": row["event_type"],
        "participant_id": row["participant_id"],
        "site": row["site"],
        "recorded_at": row["recorded_at"],
        "clinical_date": row["clinical_date"],
        "actor": {
            "user_id": row["actor_user_id"], "username": row["actor_username"], "full_name": row["actor_full_name"],
            "role": row["actor_role"], "site": row["actor_site"],
        },
        "reason": row["reason"],
        "reason_code": row["reason_code"],
        "source": row["source"],
        "query_id": row["query_id"],
        "changes": row["changes"],  # (a list, from AuditQueries._with_changes)
    }


class AuditQueries:
    """Audit-trail retrieval for ``TrialApplication`` (R11, R13, R15, R18, R19, R23)."""

    #: site hours for the outside-hours report, local time of the site (R18); set from the settings
    audit_site_hours: str = "07:00-20:00"
    #: days between clinical date and recorded time beyond which a first entry is late (R18)
    audit_late_entry_days: int = 7

    # these come from TrialApplication
    read_models: Any
    sites: dict[str, str]

    # ------------------------------------------------------------------ scope (R19, R23)
    def _scoped(self, actor: Actor, f: AuditFilter, action: str = "audit.read") -> AuditFilter:
        access.require(actor, action)
        self.read_models.wait_for(names=AUDIT_READ_MODELS)  # the trail reads the audit index only
        if actor.role == "admin":
            if f.participant is not None:
                raise PermissionDenied("an admin sees the user-administration trail only, not participants' data")
            f.admin_only = True
        elif access.is_site_bound(actor) and actor.site != ALL_SITES:
            if f.site is not None and f.site != actor.site:
                raise PermissionDenied(f"a {actor.role} at site {actor.site} has no access to site {f.site}'s trail")
            if f.participant is not None:
                site = self._participant_site(f.participant)
                if site is not None and site != actor.site:
                    raise PermissionDenied(
                        f"a {actor.role} at site {actor.site} has no access to site {site}'s participants"
                    )
            f.site = actor.site
        if f.user is not None:
            f.resolved_user = self._resolve_user(f.user)
        return f

    def _participant_site(self, participant_id: str) -> str | None:
        rows = self.read_models.store.query(
            "SELECT site FROM audit_aggregates WHERE aggregate_id = ?", (str(participant_id),)
        )
        return rows[0]["site"] if rows else None

    def _resolve_user(self, user: str) -> str:
        """A user id, or else a username as it was recorded on the trail (the first account of that name)."""
        store = self.read_models.store
        if store.query("SELECT 1 AS one FROM audit_events WHERE actor_user_id = ? LIMIT 1", (user,)):
            return user
        rows = store.query(
            "SELECT actor_user_id FROM audit_events WHERE actor_username = ? ORDER BY position LIMIT 1", (user,)
        )
        if rows:
            return rows[0]["actor_user_id"]
        account = self._account(user)
        if account is None:  # an unknown user is a mistake to point out, not an empty trail (issue 14.6)
            raise InvalidInput.one("user", f"no user {user!r} (give a user id or a username)")
        return str(account.id)

    def _account(self, user: str) -> Any:
        """The account with this id or username, or None (one that has not acted yet has no trail)."""
        try:
            found = self.user_by_name(user)  # type: ignore[attr-defined]
        except Exception:  # not a name an account can have
            found = None
        if found is None:
            try:
                found = self.repository.get(UUID(user))  # type: ignore[attr-defined]
            except Exception:  # not a UUID, or no aggregate of that id
                return None
        return found if type(found).__name__ == "User" else None

    @staticmethod
    def _access_site(actor: Actor) -> str:
        return actor.site if access.is_site_bound(actor) else ALL_SITES

    @staticmethod
    def _row_filters(f: AuditFilter, alias: str) -> tuple[list[str], list[Any]]:
        """The filters that both audit_events (``e``) and audit_changes (``c``) carry as columns."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("participant_id", None if f.participant is None else str(f.participant)),
                              ("site", f.site), ("actor_user_id", f.resolved_user),
                              ("aggregate_type", f.aggregate_type or None)):
            if value is not None:
                where.append(f"{alias}.{column} = ?")
                params.append(value)
        lo, hi = _instant(f.from_, "from"), _instant(f.to, "to")
        if lo is not None:
            where.append(f"{alias}.recorded_at >= ?")
            params.append(lo)
        if hi is not None:
            where.append(f"{alias}.recorded_at < ?")
            params.append(hi)
        if f.admin_only:
            where.append(f"{alias}.aggregate_type IN ({', '.join('?' * len(ADMIN_AGGREGATES))})")
            params.extend(ADMIN_AGGREGATES)
        return where, params

    def _where(self, f: AuditFilter) -> tuple[list[str], list[Any]]:
        where, params = self._row_filters(f, "e")
        if f.type:
            where.append(f"e.event_type IN ({', '.join('?' * len(f.type))})")
            params.extend(f.type)
        wants_access = f.include_retrievals or f.aggregate_type == ACCESS_AGGREGATE or bool(
            f.type and set(f.type) & set(ACCESS_EVENT_TYPES)
        )
        if not wants_access:
            where.append("e.aggregate_type <> ?")
            params.append(ACCESS_AGGREGATE)
        return where, params

    def _page(self, f: AuditFilter, *, order: str, after: int | None, limit: int, stop: int | None = None) -> list[dict]:
        """One page of audit_events rows, each with its ``changes`` as a list."""
        if f.item:
            rows = self._item_page(f, order=order, after=after, limit=limit, stop=stop)
        else:
            rows = self._event_page(f, order=order, after=after, limit=limit, stop=stop)
        return self._with_changes(rows)

    def _with_changes(self, rows: list[dict]) -> list[dict]:
        """Each row's changes: the JSON an event keeps when its audit_changes rows cannot say them
        exactly, else those rows, read for the whole page in one query per 500 events (see the
        module doc of application.audit_index)."""
        wanted = [r["position"] for r in rows if r["changes"] is None and r["n_changes"]]
        found: dict[int, list[dict[str, Any]]] = defaultdict(list)
        store = self.read_models.store
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for c in store.query(
                "SELECT position, field, old_value, new_value FROM audit_changes"
                f" WHERE position IN ({', '.join('?' * len(chunk))}) ORDER BY position, seq", chunk,
            ):
                found[c["position"]].append(change_from_row(c["field"], c["old_value"], c["new_value"]))
        for r in rows:
            r["changes"] = json.loads(r["changes"]) if r["changes"] is not None else found.get(r["position"], [])
        return rows

    def _event_page(self, f: AuditFilter, *, order: str, after: int | None, limit: int, stop: int | None) -> list[dict]:
        where, params = self._where(f)
        if after is not None:
            where.append("e.position > ?" if order == "asc" else "e.position < ?")
            params.append(after)
        if stop is not None:
            where.append("e.position <= ?")
            params.append(stop)
        sql = "SELECT e.* FROM audit_events e"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY e.position {'ASC' if order == 'asc' else 'DESC'} LIMIT ?"
        return self.read_models.store.query(sql, (*params, limit))

    # ------------------------------------------------------------------ the item filter (R13, R15)
    # "Every change to this item (or these items) across the trial" is answered from audit_changes,
    # not by testing each event against every matching change: for each field the filter names, a
    # keyset walk of the (field, position) index, with every filter audit_changes carries (participant,
    # site, user, time, aggregate type) applied there, takes at most ``limit`` positions; the smallest
    # ``limit`` of their union are exactly the first ``limit`` matches (each field's walk is in
    # position order). Only the event-type filter needs the event row: when it drops candidates, the
    # walk goes on from the last candidate. The cost grows with the page, not with the trail.
    def _item_fields(self, item: str) -> list[str]:
        if not item.endswith("*"):
            return [item]
        prefix = item[:-1]
        if not prefix:
            return [r["field"] for r in self.read_models.store.query("SELECT field FROM audit_fields ORDER BY field")]
        rows = self.read_models.store.query(  # substr, not a range: the same answer under any collation
            "SELECT field FROM audit_fields WHERE substr(field, 1, ?) = ?", (len(prefix), prefix))
        return sorted(r["field"] for r in rows)

    def _item_page(self, f: AuditFilter, *, order: str, after: int | None, limit: int, stop: int | None) -> list[dict]:
        fields = self._item_fields(f.item or "")
        if not fields:
            return []
        store = self.read_models.store
        desc = order == "desc"
        direction = "DESC" if desc else "ASC"
        # retrievals record no changes, so _where's exclusion of them is moot here
        common, common_params = self._row_filters(f, "c")
        if stop is not None:
            common.append("c.position <= ?")
            common_params.append(stop)
        type_where = ""
        type_params: list[Any] = []
        if f.type:
            type_where = f" AND e.event_type IN ({', '.join('?' * len(f.type))})"
            type_params = list(f.type)
        out: list[dict] = []
        batch = limit
        while len(out) < limit:
            # with a type filter, candidates may be dropped: read further ahead each time
            want = max(limit - len(out), batch)
            batch = min(batch * 4, 10_000)
            parts, params = [], []
            for i, name in enumerate(fields):
                where = ["c.field = ?", *common]
                params += [name, *common_params]
                if after is not None:
                    where.append("c.position < ?" if desc else "c.position > ?")
                    params.append(after)
                parts.append(
                    f"SELECT * FROM (SELECT c.position FROM audit_changes c WHERE {' AND '.join(where)}"
                    f" ORDER BY c.position {direction} LIMIT ?) AS s{i}"
                )
                params.append(want)
            candidates_sql = (f"SELECT DISTINCT u.position FROM ({' UNION ALL '.join(parts)}) AS u"
                              f" ORDER BY u.position {direction} LIMIT ?")
            params.append(want)
            if not f.type:  # every candidate is a match: one round trip
                return out + store.query(
                    f"SELECT e.* FROM audit_events e WHERE e.position IN ({candidates_sql})"
                    f" ORDER BY e.position {direction}", params)
            candidates = [r["position"] for r in store.query(candidates_sql, params)]
            if not candidates:
                break
            for start in range(0, len(candidates), 500):
                chunk = candidates[start:start + 500]
                out.extend(store.query(
                    f"SELECT e.* FROM audit_events e WHERE e.position IN ({', '.join('?' * len(chunk))}){type_where}"
                    f" ORDER BY e.position {direction}",
                    [*chunk, *type_params],
                ))
                if len(out) >= limit:
                    break
            if len(candidates) < want:
                break  # every field's walk is exhausted
            after = candidates[-1]
        return out[:limit]

    def _record_access(self, actor: Actor, view: str, filters: dict[str, Any], fmt: str, rows: int) -> None:
        access_event = AuditTrailAccess.retrieved(
            view=view, filters=filters, format=fmt, rows=rows, site=self._access_site(actor),
            stamp=make_stamp(actor, source="api"),
        )
        self.save(access_event)  # type: ignore[attr-defined]

    def record_page_view(self, actor: Actor, page: str, filters: dict[str, Any], rows: int) -> None:
        """A page of the web workspace was shown to ``actor``: on the trail like an API retrieval (R11),
        as ``AuditTrailRetrieved`` with view ``web:<page>`` and format ``html``."""
        self._record_access(actor, f"web:{page}", filters, "html", rows)

    # ------------------------------------------------------------------ GET /audit/events
    def audit_events(
        self, actor: Actor, *, participant: str | None = None, site: str | None = None, user: str | None = None,
        item: str | None = None, from_: Any = None, to: Any = None, type: Sequence[str] | str | None = None,
        aggregate_type: str | None = None, include_retrievals: bool = False, order: str = "asc",
        limit: int = 100, cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of the trail, filtered, in recorded order (R15, R19). The reading is audited (R11)."""
        f = self._filter(participant, site, user, item, from_, to, type, aggregate_type, include_retrievals)
        order = self._order(order)
        if not 1 <= int(limit) <= MAX_LIMIT:
            raise InvalidInput.one("limit", f"between 1 and {MAX_LIMIT}")
        after = decode_cursor(cursor, order) if cursor else None
        f = self._scoped(actor, f)
        rows = self._page(f, order=order, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        events = [concealment.event(actor, event_row_view(r)) for r in rows]  # no slots for site roles (E.19)
        next_cursor = encode_cursor(order, rows[-1]["position"]) if more else None
        used = {**f.used(), "order": order, "limit": limit, "cursor": cursor}
        self._record_access(actor, "events", used, "json", len(events))
        return {"events": events, "next_cursor": next_cursor, "order": order, "limit": limit}

    def _filter(self, participant, site, user, item, from_, to, type, aggregate_type, include_retrievals) -> AuditFilter:
        """The filters, checked before anything is read: bounds that parse and are in order (``from`` not
        after ``to``), a site of the trial; a contradictory or unknown filter is a 422, not an empty page."""
        if isinstance(type, str):
            type = [t.strip() for t in type.split(",") if t.strip()]
        lo, hi = _instant(from_, "from"), _instant(to, "to")
        if lo is not None and hi is not None and lo >= hi:  # [from, to) holds nothing: a contradiction
            raise InvalidInput([(("from",), f"'from' ({lo}) is not before 'to' (up to {hi})"),
                                (("to",), f"'to' (up to {hi}) is not after 'from' ({lo})")])
        if site is not None and site not in self.sites:
            raise InvalidInput.one("site", f"no site {site!r}; sites: {', '.join(sorted(self.sites))}")
        return AuditFilter(
            participant=participant, site=site, user=user, item=item, from_=from_, to=to, type=type or None,
            aggregate_type=aggregate_type, include_retrievals=bool(include_retrievals),
        )

    @staticmethod
    def _order(order: str) -> str:
        if order not in ("asc", "desc"):
            raise InvalidInput.one("order", "asc (oldest first) or desc (newest first)")
        return order

    # ------------------------------------------------------------------ downloads (R15)
    def export_audit_events(
        self, actor: Actor, *, format: str = "jsonl", participant: str | None = None, site: str | None = None,
        user: str | None = None, item: str | None = None, from_: Any = None, to: Any = None,
        type: Sequence[str] | str | None = None, aggregate_type: str | None = None,
        include_retrievals: bool = False, order: str = "asc",
    ) -> Iterator[bytes]:
        """The filtered trail as CSV (one row per changed field) or JSON Lines (one event per line).

        Checks access and records ``AuditTrailExportStarted`` before returning; the rows are then
        read page by page (keyset) as the client consumes them, up to the log position reached at
        the start, and ``AuditTrailExportCompleted`` records how many rows went out (R11, R15).
        """
        if format not in ("csv", "jsonl"):
            raise InvalidInput.one("format", "csv or jsonl")
        f = self._filter(participant, site, user, item, from_, to, type, aggregate_type, include_retrievals)
        order = self._order(order)
        f = self._scoped(actor, f)
        stop = self.read_models.store.position("audit_index")
        started = AuditTrailAccess.export_started(
            view="events", filters={**f.used(), "order": order}, format=format, up_to_position=stop,
            site=self._access_site(actor), stamp=make_stamp(actor, source="api"),
        )
        self.save(started)  # type: ignore[attr-defined]
        return self._stream(actor, f, format, order, stop, started)

    def _stream(self, actor: Actor, f: AuditFilter, fmt: str, order: str, stop: int,
                started: AuditTrailAccess) -> Iterator[bytes]:
        count = 0
        if fmt == "csv":
            yield CSV_BOM + _csv_line(CSV_COLUMNS)
        after: int | None = None
        while True:
            rows = self._page(f, order=order, after=after, limit=EXPORT_PAGE, stop=stop)
            if not rows:
                break
            chunk = io.StringIO() if fmt == "csv" else None
            lines: list[bytes] = []
            for row in rows:
                view = concealment.event(actor, event_row_view(row))
                if chunk is not None:
                    writer = csv.writer(chunk, lineterminator="\r\n")
                    for cells in _csv_rows(row, view["changes"]):
                        writer.writerow(cells)
                else:
                    lines.append(json.dumps(view, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace") + b"\n")
                count += 1
            yield chunk.getvalue().encode("utf-8", "backslashreplace") if chunk is not None else b"".join(lines)
            after = rows[-1]["position"]
            if len(rows) < EXPORT_PAGE:
                break
        started.export_completed(count, make_stamp(actor, source="api"))
        self.save(started)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ item history (R13)
    def audit_item_history(self, actor: Actor, participant_id: str, item: str, *, aggregate_id: str | None = None) -> dict:
        """Every value one item (or field) of a participant has had: who, role, when in UTC and in the
        site's time zone, old -> new, and why (R13). Across all the participant's aggregates (every
        visit that records the item), or one with ``aggregate_id``."""
        f = self._scoped(actor, AuditFilter(participant=str(participant_id), item=item))
        if f.admin_only:
            raise PermissionDenied("an admin sees the user-administration trail only")
        sql = (
            "SELECT c.position, c.seq, c.aggregate_id, c.aggregate_type, c.site, c.field, c.old_value, c.new_value,"
            " c.entry_no, c.recorded_at, c.clinical_date, e.version, e.event_type, e.actor_user_id, e.actor_username,"
            " e.actor_full_name, e.actor_role, e.actor_site, e.reason, e.reason_code, e.source, e.query_id"
            " FROM audit_changes c JOIN audit_events e ON e.position = c.position"
            " WHERE c.participant_id = ? AND c.field = ?"
        )
        params: list[Any] = [str(participant_id), item]
        if f.site is not None:
            sql += " AND c.site = ?"
            params.append(f.site)
        if aggregate_id is not None:
            sql += " AND c.aggregate_id = ?"
            params.append(str(aggregate_id))
        rows = self.read_models.store.query(sql + " ORDER BY c.position, c.seq", params)
        site = self._participant_site(str(participant_id))
        if site is None and not rows:
            raise NotFound(f"no participant with id {participant_id} on the trail")
        zone_name = self.sites.get(site or "", "UTC")
        values = []
        if concealment.conceals(actor) and concealment.concealed_field(item):
            rows = []  # the slot and the rule are not shown to site roles (E.19)
        for r in rows:
            values.append({
                "position": r["position"],
                "aggregate_id": r["aggregate_id"],
                "aggregate_type": r["aggregate_type"],
                "version": r["version"],
                "type": r["event_type"],
                "entry_no": r["entry_no"],
                "recorded_at": r["recorded_at"],
                "recorded_at_local": self._local(r["recorded_at"], zone_name).isoformat(timespec="microseconds"),
                "time_zone": zone_name,
                "clinical_date": r["clinical_date"],
                "actor": {
                    "user_id": r["actor_user_id"], "username": r["actor_username"], "full_name": r["actor_full_name"],
                    "role": r["actor_role"], "site": r["actor_site"],
                },
                "old_value": json.loads(r["old_value"]) if r["old_value"] is not None else None,
                "new_value": json.loads(r["new_value"]) if r["new_value"] is not None else None,
                "reason": r["reason"],
                "reason_code": r["reason_code"],
                "query_id": r["query_id"],
                "source": r["source"],
            })
        self._record_access(
            actor, "item_history", {"participant": str(participant_id), "item": item, "aggregate_id": aggregate_id},
            "json", len(values),
        )
        return {"participant_id": str(participant_id), "item": item, "site": site, "time_zone": zone_name,
                "values": values}

    @staticmethod
    def _local(recorded_at: str, zone_name: str) -> dt.datetime:
        return dt.datetime.fromisoformat(recorded_at.replace("Z", "+00:00")).astimezone(_zone(zone_name))

    def _zone_for(self, site: str | None, actor_site: str | None) -> str:
        if site in self.sites:
            return self.sites[site]  # type: ignore[index]
        if actor_site in self.sites:
            return self.sites[actor_site]  # type: ignore[index]
        return "UTC"

    # ------------------------------------------------------------------ review reports (R18)
    def audit_report(
        self, actor: Actor, kind: str, *, site: str | None = None, from_: Any = None, to: Any = None,
        hours: str | None = None, weekends: bool = True, late_days: int | None = None, period: str = "day",
        include_first_entries: bool = False, _record: bool = True,
    ) -> dict[str, Any]:
        """An audit-trail review report over the recorded-time range [from, to) (R18)."""
        if kind not in REPORT_KINDS:
            raise NotFound(f"no report {kind!r}; reports: {', '.join(REPORT_KINDS)}")
        f = self._scoped(actor, self._filter(None, site, None, None, from_, to, None, None, False), "audit.report.read")
        lo, hi = _instant(f.from_, "from"), _instant(f.to, "to")
        params: dict[str, Any] = {"site": f.site, "from": lo, "to": hi}
        if kind == "critical-changes":
            params["include_first_entries"] = include_first_entries
            rows = self._critical_changes(f.site, lo, hi, include_first_entries)
        elif kind == "outside-hours":
            start, end = _parse_hours(hours or self.audit_site_hours)
            params.update(hours=f"{start.isoformat('minutes')}-{end.isoformat('minutes')}", weekends=weekends)
            rows = self._outside_hours(f.site, lo, hi, start, end, weekends)
        elif kind == "changes-after-signature-or-lock":  # application.review (issue 7)
            rows = self._changes_after_signature_or_lock_rows(f.site, lo, hi)  # type: ignore[attr-defined]
        elif kind == "late-entries":
            days = self.audit_late_entry_days if late_days is None else int(late_days)
            if days < 0:
                raise InvalidInput.one("late_days", "zero or more days")
            params["late_days"] = days
            rows = self._late_entries(f.site, lo, hi, days)
        else:
            if period not in ("day", "week"):
                raise InvalidInput.one("period", "day or week")
            params["period"] = period
            rows = self._change_rates(f.site, lo, hi, period)
        report = {"kind": kind, "parameters": params, "count": len(rows), "rows": rows}
        if _record:
            self._record_access(actor, f"report:{kind}", {k: v for k, v in params.items()}, "json", len(rows))
        return report

    def _changes_where(self, site: str | None, lo: str | None, hi: str | None) -> tuple[str, list[Any]]:
        where, params = ["c.participant_id IS NOT NULL"], []
        if site is not None:
            where.append("c.site = ?")
            params.append(site)
        if lo is not None:
            where.append("c.recorded_at >= ?")
            params.append(lo)
        if hi is not None:
            where.append("c.recorded_at < ?")
            params.append(hi)
        return " AND ".join(where), params

    def _iter_changes(self, where: str, params: list[Any], page: int = 2000) -> Iterator[dict[str, Any]]:
        """Changed fields joined with their event, keyset-paged on (position, seq)."""
        select = (
            "SELECT c.position, c.seq, c.aggregate_id, c.aggregate_type, c.participant_id, c.site, c.field,"
            " c.old_value, c.new_value, c.entry_no, c.recorded_at, c.clinical_date, e.event_type, e.version,"
            " e.actor_user_id, e.actor_username, e.actor_full_name, e.actor_role, e.actor_site, e.reason,"
            " e.reason_code, e.query_id FROM audit_changes c JOIN audit_events e ON e.position = c.position"
        )
        store = self.read_models.store
        after = 0
        while True:
            rows = store.query(
                f"{select} WHERE {where} AND c.position > ? ORDER BY c.position, c.seq LIMIT ?", (*params, after, page)
            )
            full = len(rows) == page
            if full:  # finish the last event in full, so no change is split across pages
                last = rows[-1]["position"]
                rows = [r for r in rows if r["position"] != last] + store.query(
                    f"{select} WHERE {where} AND c.position = ? ORDER BY c.seq", (*params, last)
                )
            yield from rows
            if not full:
                return
            after = rows[-1]["position"]

    @staticmethod
    def _change_view(r: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "position": r["position"], "recorded_at": r["recorded_at"], **extra, "clinical_date": r["clinical_date"],
            "participant_id": r["participant_id"], "site": r["site"], "aggregate_type": r["aggregate_type"],
            "aggregate_id": r["aggregate_id"], "version": r["version"], "type": r["event_type"], "field": r["field"],
            "old_value": json.loads(r["old_value"]), "new_value": json.loads(r["new_value"]), "entry_no": r["entry_no"],
            "actor": {"user_id": r["actor_user_id"], "username": r["actor_username"],
                      "full_name": r["actor_full_name"], "role": r["actor_role"], "site": r["actor_site"]},
            "reason": r["reason"], "reason_code": r["reason_code"], "query_id": r["query_id"],
        }

    def _critical_changes(self, site, lo, hi, include_first_entries: bool) -> list[dict[str, Any]]:
        where, params = self._changes_where(site, lo, hi)
        where += " AND (c.field LIKE ? ESCAPE '!' OR c.field LIKE ? ESCAPE '!' OR c.field LIKE ? ESCAPE '!')"
        params = [*params, _like_prefix("acr_eular."), _like_prefix("mrss."), _like_prefix("ae")]
        if not include_first_entries:
            where += " AND c.entry_no > 1"
        return [self._change_view(r) for r in self._iter_changes(where, params) if is_critical(r["field"])]

    def _events_of_changes(self, where: str, params: list[Any]) -> Iterator[tuple[dict[str, Any], list[str]]]:
        """Group the changed fields by event (position): (first row, fields)."""
        current: dict[str, Any] | None = None
        fields: list[str] = []
        for r in self._iter_changes(where, params):
            if current is not None and r["position"] != current["position"]:
                yield current, fields
                current, fields = None, []
            if current is None:
                current = r
            fields.append(r["field"])
        if current is not None:
            yield current, fields

    def _outside_hours(self, site, lo, hi, start: dt.time, end: dt.time, weekends: bool) -> list[dict[str, Any]]:
        where, params = self._changes_where(site, lo, hi)
        out = []
        for r, fields in self._events_of_changes(where, params):
            zone = self._zone_for(r["site"], r["actor_site"])
            local = self._local(r["recorded_at"], zone)
            weekend = local.weekday() >= 5
            inside = start <= local.time().replace(tzinfo=None) < end
            if inside and not (weekends and weekend):
                continue
            out.append({
                "position": r["position"], "recorded_at": r["recorded_at"],
                "recorded_at_local": local.isoformat(timespec="microseconds"), "time_zone": zone,
                "weekday": local.strftime("%A"), "why": "weekend" if weekends and weekend else "outside site hours",
                "participant_id": r["participant_id"], "site": r["site"], "aggregate_type": r["aggregate_type"],
                "aggregate_id": r["aggregate_id"], "type": r["event_type"], "fields": fields,
                "actor": {"user_id": r["actor_user_id"], "username": r["actor_username"],
                          "full_name": r["actor_full_name"], "role": r["actor_role"], "site": r["actor_site"]},
            })
        return out

    def _late_entries(self, site, lo, hi, days: int) -> list[dict[str, Any]]:
        where, params = self._changes_where(site, lo, hi)
        where += " AND c.entry_no = 1 AND c.clinical_date IS NOT NULL"
        out = []
        for r, fields in self._events_of_changes(where, params):
            zone = self._zone_for(r["site"], r["actor_site"])
            local_day = self._local(r["recorded_at"], zone).date()
            delay = (local_day - dt.date.fromisoformat(r["clinical_date"])).days
            if delay <= days:
                continue
            out.append({
                "position": r["position"], "recorded_at": r["recorded_at"], "recorded_on_local": local_day.isoformat(),
                "time_zone": zone, "clinical_date": r["clinical_date"], "days_late": delay,
                "participant_id": r["participant_id"], "site": r["site"], "aggregate_type": r["aggregate_type"],
                "aggregate_id": r["aggregate_id"], "type": r["event_type"], "fields": fields,
                "actor": {"user_id": r["actor_user_id"], "username": r["actor_username"],
                          "full_name": r["actor_full_name"], "role": r["actor_role"], "site": r["actor_site"]},
            })
        return out

    def _change_rates(self, site, lo, hi, period: str) -> list[dict[str, Any]]:
        """Per user and per site and per UTC day (or ISO week): first entries, changes after first
        entry, and the share of changes among all entries."""
        where, params = self._changes_where(site, lo, hi)
        rows = self.read_models.store.query(
            "SELECT substr(c.recorded_at, 1, 10) AS day, c.actor_user_id, c.actor_username, c.actor_role, c.site,"
            " SUM(CASE WHEN c.entry_no > 1 THEN 1 ELSE 0 END) AS changes, COUNT(*) AS entries"
            f" FROM audit_changes c WHERE {where}"
            " GROUP BY substr(c.recorded_at, 1, 10), c.actor_user_id, c.actor_username, c.actor_role, c.site",
            params,
        )
        by_user: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        by_site: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        names: dict[str, tuple[str, str]] = {}
        for r in rows:
            key = r["day"] if period == "day" else _iso_week(r["day"])
            names[r["actor_user_id"]] = (r["actor_username"], r["actor_role"])
            for acc in (by_user[(key, r["actor_user_id"], r["site"])], by_site[(key, r["site"])]):
                acc[0] += int(r["entries"])
                acc[1] += int(r["changes"])
        out: list[dict[str, Any]] = []
        for (key, user_id, row_site), (entries, changes) in sorted(by_user.items(), key=lambda kv: tuple(map(str, kv[0]))):
            username, role = names[user_id]
            out.append({"scope": "user", "period": key, "user_id": user_id, "username": username, "role": role,
                        "site": row_site, **_rate(entries, changes)})
        for (key, row_site), (entries, changes) in sorted(by_site.items(), key=lambda kv: tuple(map(str, kv[0]))):
            out.append({"scope": "site", "period": key, "site": row_site, **_rate(entries, changes)})
        return out

    # ------------------------------------------------------------------ sign-off (R18)
    def sign_off_audit_report(
        self, actor: Actor, kind: str, *, period_from: Any, period_to: Any, comment: Any, source: str = "api",
    ) -> dict[str, Any]:
        """A data manager or monitor signs off one report over a period of recorded dates (inclusive).
        The sign-off keeps the row count and a SHA-256 of the report as reviewed (R18)."""
        access.require(actor, "audit.report.sign")
        if kind not in REPORT_KINDS:
            raise NotFound(f"no report {kind!r}; reports: {', '.join(REPORT_KINDS)}")
        start, end = _as_date(period_from, "period_from"), _as_date(period_to, "period_to")
        if start > end:
            raise InvalidInput([(("period_from",), f"the period starts ({start}) after it ends ({end})"),
                                (("period_to",), f"the period ends ({end}) before it starts ({start})")])
        if end == dt.date.max:  # its end (the next day's 00:00 UTC) is past year 9999
            raise InvalidInput.one("period_to", "out of range: the period must end before 9999-12-31")
        report = self.audit_report(
            actor, kind, from_=dt.datetime.combine(start, dt.time(), dt.timezone.utc),
            to=dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.timezone.utc), _record=False,
        )
        digest = hashlib.sha256(
            json.dumps(report, sort_keys=True, separators=(",", ":"), default=str).encode()
        ).hexdigest()
        review = AuditReview.sign_off(
            kind=kind, period_from=start.isoformat(), period_to=end.isoformat(), comment=comment,
            site=self._access_site(actor), rows=report["count"], report_sha256=digest,
            stamp=make_stamp(actor, source=source),
        )
        recordings = self.save(review)  # type: ignore[attr-defined]
        return {
            "id": str(review.id), "kind": kind, "period_from": review.period_from, "period_to": review.period_to,
            "comment": review.comment, "site": review.site, "rows": review.rows, "report_sha256": digest,
            "signed_by": {k: v for k, v in actor.as_dict().items()}, "signed_at": iso(review.created_on),
            "notification_id": recordings[-1].notification.id,
        }


def _as_date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput.one(name, "a date as YYYY-MM-DD") from None


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern for a literal prefix (escape character '!'; no literal % in SQL text, for psycopg)."""
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


def _parse_hours(text: str) -> tuple[dt.time, dt.time]:
    try:
        a, b = text.split("-")
        start, end = dt.time.fromisoformat(a.strip()), dt.time.fromisoformat(b.strip())
    except ValueError:
        raise InvalidInput.one("hours", "site hours as HH:MM-HH:MM, e.g. 07:00-20:00") from None
    if not start < end:
        raise InvalidInput.one("hours", "the site opens before it closes")
    return start, end


def _iso_week(day: str) -> str:
    year, week, _ = dt.date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _rate(entries: int, changes: int) -> dict[str, Any]:
    return {"entries": entries, "first_entries": entries - changes, "changes": changes,
            "change_rate": round(changes / entries, 4) if entries else 0.0}


#: The CSV download is UTF-8 with a byte-order mark: spreadsheets (Excel) read a BOM-less CSV in the
#: machine's legacy code page, which turns a Minsk site's Cyrillic (``Ш-001``) into mojibake.
CSV_BOM = "\ufeff".encode()
#: OWASP CSV injection: a cell a spreadsheet would take for a formula (or a DDE payload) is prefixed
#: with a single quote, so it is shown as the text it is.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a plain CSV cell: empty for null, true/false, numbers as they are, text as written
    (neutralised if it starts like a formula), and a list or object as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    elif not isinstance(value, str):
        value = str(value)
    return "'" + value if value.startswith(FORMULA_START) else value


def _csv_line(cells: Sequence[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([csv_cell(c) for c in cells])
    return buf.getvalue().encode()


def _csv_rows(row: dict[str, Any], changes: list[dict[str, Any]]) -> Iterator[list[Any]]:
    """One CSV row per changed field (an event without changes gives one row with no field)."""
    base = [row[c] if c in row else None for c in CSV_COLUMNS[:18]]
    base[3] = row["event_type"]
    base = [csv_cell(c) for c in base]
    for ch in changes or [None]:
        if ch is None:
            yield [*base, "", "", ""]
        else:
            yield [*base, csv_cell(ch.get("field")), csv_cell(ch.get("old_value")), csv_cell(ch.get("new_value"))]
