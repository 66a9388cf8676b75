"""The audit index: one row per event of every aggregate, so audit retrieval never replays (R15, R19).

Generic over event types. From each event it reads only the audit stamp (``audit``), the
``changes``, the class name, the recorded ``timestamp``, the originator id and version, and the
notification id (the global position). Everything else is learned on the way:

* **participant**: an event with a ``participant_id`` attribute belongs to that participant and
  maps its aggregate to it (a visit, an adverse event, a screening-number claim); later events of
  the aggregate inherit it. A ``Participant`` is its own participant.
* **site**: an event with a ``site`` attribute gives it directly (``ParticipantScreened``,
  ``VisitScheduled``, ``UserRegistered``, ``SiteChanged`` ...) and maps its aggregate to it;
  otherwise the participant's site, otherwise the aggregate's last known site. A user's events
  therefore carry the user's site.
* **clinical date** (for the late-entry report, R18): the event's own ``clinical_date``,
  ``visit_date``, ``date``, ``aestdat``, ``signed_on`` or ``held_on`` attribute (first present,
  as an ISO date), also looked up inside a ``record`` mapping (an AE's CDASH fields). A date that
  describes the aggregate itself (every name above except ``signed_on``, which dates one act) is
  remembered for the aggregate, as is a change whose field is one of those names, and events
  without a date of their own inherit it: an item recorded at a visit is dated by the visit.

Tables: ``audit_events`` (one row per event), ``audit_changes`` (one row per changed field, with old
and new value as JSON text and ``entry_no``: 1 for the first entry of that field in its aggregate, 2+
for every change after it) and ``audit_aggregates`` (what was learned per aggregate). All three are
rebuilt from event 1 and a rebuild equals the live rows.

An event's changes are kept once: its audit_changes rows, in ``seq`` order, say them exactly when
each change is ``{"field": <text>, "old_value": ..., "new_value": ...}`` (``domain.audit.change``
makes every one). Only an event with any other change keeps them, as they were, in
``audit_events.changes`` (JSON); otherwise that column is NULL and ``event_changes`` rebuilds the
list from the rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from eventsourcing.utils import resolve_topic

from application.projections import Projection, Recorded, ViewCursor
from application.views import iso, iso_recorded

#: attributes that date an event clinically, in order of preference
CLINICAL_DATE_ATTRIBUTES = ("clinical_date", "visit_date", "date", "aestdat", "signed_on", "held_on")
#: those of them that date the aggregate itself (inherited by its later events)
AGGREGATE_DATE_ATTRIBUTES = frozenset(CLINICAL_DATE_ATTRIBUTES) - {"signed_on"}

EVENT_COLUMNS = (
    "position", "aggregate_id", "version", "event_type", "aggregate_type", "participant_id", "site",
    "actor_user_id", "actor_username", "actor_full_name", "actor_role", "actor_site",
    "reason", "reason_code", "source", "query_id", "recorded_at", "clinical_date", "n_changes", "changes",
)
#: the keys of a change that its audit_changes row says exactly
_CHANGE_KEYS = frozenset(("field", "old_value", "new_value"))


_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def to_json(value: Any) -> str:
    """Old and new values as JSON text: exact, typed, keys sorted, so comparable as text."""
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()


def _value_json(value: Any) -> str:
    """``to_json`` of an old or new value, without the call for the commonest ones."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()


def change_from_row(field: str, old_value: str | None, new_value: str | None) -> dict[str, Any]:
    """A change as the event carried it, from its audit_changes row (keys in to_json's order)."""
    return {"field": field, "new_value": orjson.loads(new_value or "null"), "old_value": orjson.loads(old_value or "null")}


def _as_date(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and len(value) >= 10:
        try:
            return dt.date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            return None
    return None


def clinical_date_of(event: Any, get: Any = None) -> tuple[str | None, bool]:
    """(the event's own clinical date, whether it dates the aggregate itself). See the module doc.
    ``get(name)``: the attribute or None (default: ``getattr``)."""
    if get is None:
        get = _getter(event, False)
    record = get("record")
    if not isinstance(record, dict):
        record = None
    for name in CLINICAL_DATE_ATTRIBUTES:
        value = get(name)
        if value is None:
            if record is None:
                continue
            value = record.get(name)
            if value is None:
                continue
        date = _as_date(value)
        if date is not None:
            return date, name in AGGREGATE_DATE_ATTRIBUTES
    return None, False


#: the attributes an event's own clinical date is read from (``clinical_date_of``)
_DATED_BY = frozenset((*CLINICAL_DATE_ATTRIBUTES, "record"))
#: the attributes ``process`` reads, present or not
_READ = ("participant_id", "site", "record", "changes", "audit", *CLINICAL_DATE_ATTRIBUTES)
#: event class -> (its name, its aggregate's type, whether its instances' dict alone answers ``_READ``)
_CLASS_NAMES: dict[type, tuple[str, str, bool]] = {}


def _plain(cls: type) -> bool:
    """Whether nothing of the class itself answers an attribute ``process`` reads: a property, a
    class attribute, ``__getattr__`` or ``__getattribute__``, or slots instead of an instance dict."""
    return (cls.__getattribute__ is object.__getattribute__ and not hasattr(cls, "__getattr__")
            and "__slots__" not in vars(cls) and not any(hasattr(cls, name) for name in _READ))


def _class_info(event: Any) -> tuple[str, str, bool]:
    cls = type(event)
    info = _CLASS_NAMES[cls] = (cls.__name__, aggregate_type_of(event), _plain(cls) and hasattr(event, "__dict__"))
    return info


#: topic -> what ``_class_info`` says of its class, for an event read from its stored state
_TOPIC_INFO: dict[str, tuple[str, str, bool]] = {}


def _topic_info(topic: str) -> tuple[str, str, bool]:
    cls = resolve_topic(topic)
    info = _TOPIC_INFO[topic] = (cls.__name__, _aggregate_type(cls), _plain(cls))
    return info


def _getter(event: Any, plain: bool) -> Any:
    """``get(name)`` = ``getattr(event, name, None)`` for the attributes ``process`` reads: a look-up
    in the instance's dict when its class defines none of them (a missing attribute is the common
    case, and raising AttributeError for it is dear)."""
    return vars(event).get if plain else (lambda name: getattr(event, name, None))


def participant_of(aggregate_type: str, aggregate_id: Any, own_participant: Any, known: Any) -> Any:
    """THE subject rule: the participant an event belongs to (the audit trail's ``participant`` filter,
    participant bundles and the subject a Merkle leaf commits to all use it). A Participant is its
    own; an event naming one (``participant_id``) belongs to it and maps its aggregate to it; any
    other event belongs to its aggregate's participant as known so far (``known``), if any."""
    if aggregate_type == "Participant":
        return aggregate_id
    if own_participant:
        return own_participant
    return known


def topic_aggregate_type(topic: str) -> str:
    """The aggregate type of a stored event's topic (as ``aggregate_type_of`` of the decoded event)."""
    return (_TOPIC_INFO.get(topic) or _topic_info(topic))[1]


def aggregate_type_of(event: Any) -> str:
    return _aggregate_type(type(event))


def _aggregate_type(cls: type) -> str:
    qualname = cls.__qualname__
    return qualname.split(".")[0] if "." in qualname else cls.__name__


class AuditIndex(Projection):
    name = "audit_index"
    topics = ()  # every event
    defers_store = True

    def __init__(self) -> None:
        self._bulk = False
        self._forget()

    def schema_version(self) -> int:
        # 2: audit_events without the changed fields' names and with the changes JSON only where the
        # rows cannot say them; on SQLite also keyed by its rowid, and audit_changes WITHOUT ROWID
        return 2

    def create_statements(self) -> list[str]:
        # On SQLite the tables are kept in their key's order with no second b-tree for the key: a
        # position that is ``INTEGER PRIMARY KEY`` is the rowid (a BIGINT one is a separate unique index,
        # kept row by row even during a rebuild), and audit_changes is clustered on (position, seq).
        # That is less to write on a rebuild and one seek less per event a query joins or fetches.
        sqlite = self.dialect == "sqlite"
        return [
            "CREATE TABLE IF NOT EXISTS audit_events ("
            f" position {'INTEGER' if sqlite else 'BIGINT'} PRIMARY KEY, aggregate_id TEXT NOT NULL, version BIGINT NOT NULL,"
            " event_type TEXT NOT NULL, aggregate_type TEXT NOT NULL, participant_id TEXT, site TEXT,"
            " actor_user_id TEXT NOT NULL, actor_username TEXT, actor_full_name TEXT, actor_role TEXT, actor_site TEXT,"
            " reason TEXT, reason_code TEXT, source TEXT, query_id TEXT,"
            " recorded_at TEXT NOT NULL, clinical_date TEXT, n_changes BIGINT NOT NULL, changes TEXT)",
            "CREATE INDEX IF NOT EXISTS audit_events_participant ON audit_events (participant_id, position)",
            "CREATE INDEX IF NOT EXISTS audit_events_site ON audit_events (site, position)",
            "CREATE INDEX IF NOT EXISTS audit_events_user ON audit_events (actor_user_id, position)",
            "CREATE INDEX IF NOT EXISTS audit_events_username ON audit_events (actor_username)",
            "CREATE INDEX IF NOT EXISTS audit_events_type ON audit_events (event_type, position)",
            "CREATE INDEX IF NOT EXISTS audit_events_recorded ON audit_events (recorded_at, position)",
            # (no index on (aggregate_id, version): no query looks an aggregate's events up here)
            "DROP INDEX IF EXISTS audit_events_aggregate",
            "CREATE TABLE IF NOT EXISTS audit_changes ("
            " position BIGINT NOT NULL, seq BIGINT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_type TEXT NOT NULL,"
            " participant_id TEXT, site TEXT, actor_user_id TEXT NOT NULL, actor_username TEXT, actor_role TEXT,"
            " field TEXT NOT NULL, old_value TEXT, new_value TEXT, entry_no BIGINT NOT NULL,"
            " recorded_at TEXT NOT NULL, clinical_date TEXT, PRIMARY KEY (position, seq))" + (" WITHOUT ROWID" if sqlite else ""),
            "CREATE INDEX IF NOT EXISTS audit_changes_field ON audit_changes (field, position)",
            "CREATE INDEX IF NOT EXISTS audit_changes_participant_field ON audit_changes (participant_id, field, position)",
            # a site-bound reader's item filter always names the site (R19): walk that site's changes only
            "CREATE INDEX IF NOT EXISTS audit_changes_site_field ON audit_changes (site, field, position)",
            "CREATE INDEX IF NOT EXISTS audit_changes_aggregate_field ON audit_changes (aggregate_id, field, position)",
            "CREATE INDEX IF NOT EXISTS audit_changes_recorded ON audit_changes (recorded_at)",
            "CREATE TABLE IF NOT EXISTS audit_aggregates ("
            " aggregate_id TEXT PRIMARY KEY, aggregate_type TEXT NOT NULL, participant_id TEXT, site TEXT,"
            " clinical_date TEXT)",
            # every field ever changed, for the item-prefix filter (``mrss.*``); filled from audit_changes
            # once when an index built before this table existed is opened
            "CREATE TABLE IF NOT EXISTS audit_fields (field TEXT PRIMARY KEY)",
            "INSERT INTO audit_fields (field) SELECT DISTINCT field FROM audit_changes"
            " WHERE NOT EXISTS (SELECT 1 FROM audit_fields)",
        ]

    def tables(self) -> list[str]:
        return ["audit_events", "audit_changes", "audit_aggregates", "audit_fields"]

    # ------------------------------------------------------------------ one batch
    # What a batch learns is kept in memory until ``flush`` writes it with one executemany per table
    # (a pipeline on PostgreSQL). ``begin_batch`` forgets it, so a rolled-back batch leaves nothing
    # behind, and what another worker wrote is read from the tables in the next batch.
    # During a rebuild (bulk mode) nobody else writes the tables and every batch commits, so what
    # was learned is kept from batch to batch and never read back: the lookups need no index.
    def begin_rebuild(self) -> None:
        self._bulk = True
        self._forget()

    def end_rebuild(self) -> None:
        self._bulk = False
        self._forget()

    def _forget(self) -> None:
        self._aggregates: dict[str, tuple] = {}  # aggregate -> (participant, site, clinical date)
        self._aggregate_types: dict[str, str] = {}
        self._entries: dict[tuple[str, str], int] = {}  # (aggregate, field) -> entries so far
        self._complete: set[str] = set()  # aggregates created in this batch: all their entries are here
        # in bulk mode, the same per aggregate, for the whole log: a dict of fields per aggregate with
        # one string per field name, not a tuple and two strings per (aggregate, field) (about 300 of
        # 420 MB at 1,000,000 events, with 1.3 million pairs)
        self._counts: dict[str, dict[str, int]] = {}
        self._names: dict[str, str] = {}
        self.begin_batch()

    def begin_batch(self) -> None:
        if not self._bulk:
            self._aggregates = {}
            self._aggregate_types = {}
            self._entries = {}
            self._complete = set()
        self._stored: dict[str, tuple | None] = {}  # aggregate -> its row in the table before this batch
        self._event_rows: list[tuple] = []
        self._change_rows: list[tuple] = []
        self._fields: set[str] = set()

    def _known(self, cur: ViewCursor, aggregate_id: str, *, new: bool = False) -> tuple | None:
        if aggregate_id in self._aggregates:
            return self._aggregates[aggregate_id]
        if new or self._bulk:  # a first event, or a rebuild that saw all: nothing is known of it yet
            return None
        cur.execute("SELECT participant_id, site, clinical_date FROM audit_aggregates WHERE aggregate_id = ?", (aggregate_id,))
        row = cur.fetchone()
        known = None if row is None else (row[0], row[1], row[2])
        self._stored.setdefault(aggregate_id, known)
        if known is not None:
            self._aggregates[aggregate_id] = known
        return known

    def _entry_no(self, cur: ViewCursor, aggregate_id: str, field: str) -> int:
        key = (aggregate_id, field)
        if key not in self._entries:
            if self._bulk or aggregate_id in self._complete:
                self._entries[key] = 0
            else:
                cur.execute("SELECT COUNT(*) FROM audit_changes WHERE aggregate_id = ? AND field = ?", key)
                self._entries[key] = int(cur.fetchone()[0])
        self._entries[key] += 1
        return self._entries[key]

    def flush(self, cur: ViewCursor) -> None:
        inserts, updates = [], []
        aggregates = self._aggregates
        for aggregate_id, stored in self._stored.items():
            values = aggregates.get(aggregate_id)
            if values is None:
                continue
            if stored is None:
                inserts.append((aggregate_id, self._aggregate_types[aggregate_id], *values))
            elif values != stored:
                updates.append((*values, aggregate_id))
        if inserts:
            cur.executemany(
                "INSERT INTO audit_aggregates (aggregate_id, aggregate_type, participant_id, site, clinical_date)"
                " VALUES (?, ?, ?, ?, ?)", inserts)
        if updates:
            cur.executemany(
                "UPDATE audit_aggregates SET participant_id = ?, site = ?, clinical_date = ? WHERE aggregate_id = ?",
                updates)
        if self._event_rows:
            cur.executemany(
                f"INSERT INTO audit_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
                self._event_rows)
        if self._change_rows:
            cur.executemany(
                "INSERT INTO audit_changes (position, seq, aggregate_id, aggregate_type, participant_id, site,"
                " actor_user_id, actor_username, actor_role, field, old_value, new_value, entry_no, recorded_at,"
                " clinical_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._change_rows)
        if self._fields:
            cur.executemany("INSERT INTO audit_fields (field) VALUES (?) ON CONFLICT (field) DO NOTHING",
                            [(name,) for name in sorted(self._fields)])
        self.begin_batch()

    def process(self, event: Any, notification_id: int, cur: ViewCursor) -> None:
        info = _CLASS_NAMES.get(type(event)) or _class_info(event)
        if info[2]:
            state = vars(event)
            get, dated = state.get, not state.keys().isdisjoint(_DATED_BY)
        else:
            get, dated = _getter(event, False), True
        self._index(str(event.originator_id), event.originator_version, info, get, dated, iso(event.timestamp),
                    notification_id, cur)

    def process_recorded(self, recorded: Recorded, cur: ViewCursor) -> None:
        """The same as ``process`` of the decoded event, read from its stored state: no object, no
        UUID and no datetime per event (a rebuild spent about a third of its time making them). An
        event whose class answers any attribute read here other than from its state is decoded."""
        info = _TOPIC_INFO.get(recorded.topic) or _topic_info(recorded.topic)
        if not info[2]:
            self.process(recorded.event(), recorded.id, cur)
            return
        state = recorded.fields()
        self._index(recorded.aggregate_id, recorded.originator_version, info, state.get,
                    not state.keys().isdisjoint(_DATED_BY), iso_recorded(state["timestamp"]), recorded.id, cur)

    def _index(self, aggregate_id: str, version: int, info: tuple[str, str, bool], get: Any, dated: bool,
               recorded_at: str, notification_id: int, cur: ViewCursor) -> None:
        event_type, aggregate_type, _ = info
        new = version == 1
        aggregates = self._aggregates
        known = aggregates.get(aggregate_id)
        if known is None:
            known = self._known(cur, aggregate_id, new=new)
        agg_participant, agg_site, agg_date = known or (None, None, None)

        own_participant = get("participant_id")
        participant_id = agg_participant = participant_of(
            aggregate_type, aggregate_id, str(own_participant) if own_participant else None, agg_participant)

        # site: the event's own, else the participant's, else the aggregate's
        own_site = get("site")
        if isinstance(own_site, str) and own_site:
            site = own_site
            agg_site = own_site
        else:
            site = None
            if participant_id and participant_id != aggregate_id:
                participant = aggregates.get(participant_id) or self._known(cur, participant_id)
                site = participant[1] if participant else None
            site = site or agg_site
            if agg_site is None and site is not None:
                agg_site = site

        # clinical date: the event's own, else the aggregate's (see module doc)
        if dated:  # (an event with none of the attributes has no date of its own)
            clinical_date, dates_aggregate = clinical_date_of(None, get)
            if clinical_date is not None and dates_aggregate:
                agg_date = clinical_date
        else:
            clinical_date = None
        changes = get("changes") or ()
        if type(changes) is not list:
            changes = list(changes)
        for ch in changes:
            if ch.get("field") in AGGREGATE_DATE_ATTRIBUTES and _as_date(ch.get("new_value")):
                agg_date = _as_date(ch.get("new_value"))
                clinical_date = clinical_date or agg_date
        if clinical_date is None:
            clinical_date = agg_date

        self._stored.setdefault(aggregate_id, known)
        aggregates[aggregate_id] = (agg_participant, agg_site, agg_date)
        if new:
            self._aggregate_types.setdefault(aggregate_id, aggregate_type)
            if not self._bulk:  # (in bulk mode every aggregate is complete)
                self._complete.add(aggregate_id)
        elif aggregate_id not in self._aggregate_types:
            self._aggregate_types[aggregate_id] = aggregate_type

        audit = get("audit") or {}
        actor = audit.get("actor") or {}
        user_id = str(actor.get("user_id"))
        username = actor.get("username")
        role = actor.get("role")
        said = True  # whether the audit_changes rows say every change exactly
        if changes:
            counts = names = None
            if self._bulk:  # a rebuild: every earlier entry went through this instance
                counts = self._counts.get(aggregate_id)
                if counts is None:
                    counts = self._counts[aggregate_id] = {}
                names = self._names
            append = self._change_rows.append
            add_field = self._fields.add
            for seq, ch in enumerate(changes):
                if type(ch) is dict and ch.keys() == _CHANGE_KEYS and type(ch["field"]) is str:
                    field = ch["field"]
                else:
                    said = False
                    field = str(ch.get("field"))
                add_field(field)
                if counts is not None:
                    name = names.get(field)
                    if name is None:
                        name = names[field] = field
                    entry_no = counts[name] = counts.get(name, 0) + 1
                else:
                    entry_no = self._entry_no(cur, aggregate_id, field)
                append((
                    notification_id, seq, aggregate_id, aggregate_type, participant_id, site, user_id,
                    username, role, field, _value_json(ch.get("old_value")),
                    _value_json(ch.get("new_value")), entry_no, recorded_at, clinical_date,
                ))
        self._event_rows.append(
            (
                notification_id, aggregate_id, version, event_type, aggregate_type,
                participant_id, site, user_id, username, actor.get("full_name"),
                role, actor.get("site"), audit.get("reason"), audit.get("reason_code"),
                audit.get("source"), audit.get("query_id"), recorded_at, clinical_date, len(changes),
                None if said else to_json(changes),
            ),
        )
