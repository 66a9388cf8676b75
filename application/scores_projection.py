"""The visit and score read model: per participant and visit, the schedule, the date held, the current
item values, the ACR/EULAR and mRSS scores and the change from baseline (primary outcome a).

The projection keeps its own state (current item values per visit) in its own tables, so it never
replays an aggregate; its rows and its position commit in one transaction (application.projections).
"""

from __future__ import annotations

import json
from typing import Any

from application.projections import Projection, Recorded, ViewCursor
from application.scores import score_items
from application.views import iso, iso_recorded
from domain.schedule import BASELINE
from domain.visit import Visit

_V = Visit
ITEM_EVENTS = (_V.ItemRecorded, _V.ItemCorrected, _V.ItemCleared)
_ITEM_TOPICS = frozenset(cls.TOPIC for cls in ITEM_EVENTS)

VISIT_COLUMNS = (
    "visit_id", "participant_id", "site", "arm", "code", "target_date", "window_start", "window_end", "held_on",
    "deviations", "version", "acr_eular", "mrss", "acr_total", "acr_applicable", "acr_meets", "acr_indeterminate",
    "mrss_total", "acr_change", "mrss_change", "modified_at",
)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


_DECODE = {"true": True, "false": False, "null": None}


_ENCODE = {True: "true", False: "false", None: "null"}
_CLEARED = "<cleared>"


def encode_value(value: Any) -> str:
    """An item value as stored: JSON (true, false, null or an integer)."""
    return _ENCODE[value] if value is None or isinstance(value, bool) else str(int(value))


def decode_value(text: str) -> Any:
    return _DECODE[text] if text in _DECODE else int(text)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class VisitScores(Projection):
    name = "visit_scores"
    topics = tuple(
        cls.TOPIC
        for cls in (_V.VisitScheduled, _V.VisitRescheduled, _V.VisitHeld, _V.VisitDateCorrected,
                    _V.ProtocolDeviationRecorded, *ITEM_EVENTS)
    )

    #: flush reads a participant's visits back to refresh the change from baseline
    defers_store = True
    lookup_indexes = frozenset({"visit_scores_participant"})

    def create_statements(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS visit_scores ("
            " visit_id TEXT PRIMARY KEY, participant_id TEXT NOT NULL, site TEXT NOT NULL, arm TEXT NOT NULL,"
            " code TEXT NOT NULL, target_date TEXT, window_start TEXT, window_end TEXT, held_on TEXT,"
            " deviations BIGINT NOT NULL, version BIGINT NOT NULL, acr_eular TEXT, mrss TEXT,"
            " acr_total BIGINT, acr_applicable BOOLEAN, acr_meets BOOLEAN, acr_indeterminate BOOLEAN,"
            " mrss_total BIGINT, acr_change BIGINT, mrss_change BIGINT, modified_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS visit_scores_participant ON visit_scores (participant_id)",
            "CREATE INDEX IF NOT EXISTS visit_scores_code_arm ON visit_scores (code, arm)",
            "CREATE TABLE IF NOT EXISTS visit_items ("
            " visit_id TEXT NOT NULL, item_code TEXT NOT NULL, value TEXT NOT NULL,"
            " PRIMARY KEY (visit_id, item_code))",
        ]

    def tables(self) -> list[str]:
        return ["visit_scores", "visit_items"]

    def process(self, event: Any, notification_id: int, cur: ViewCursor) -> None:
        vid = str(event.originator_id)
        version = event.originator_version
        if isinstance(event, ITEM_EVENTS):
            # kept until the end of the batch: items written together, each visit scored once (flush)
            self._pending.setdefault(vid, {})[event.item_code] = (
                _CLEARED if isinstance(event, _V.ItemCleared) else encode_value(event.value))
            self._dirty[vid] = (version, iso(event.timestamp))
            return
        # kept until the end of the batch too, in order: the batch touches the store only in flush
        at = iso(event.timestamp)
        statements = self._statements
        if isinstance(event, _V.VisitScheduled):
            if self._memory is not None:
                self._memory.schedule(vid, event.participant_id, event.code)
            statements.append((
                "INSERT INTO visit_scores (visit_id, participant_id, site, arm, code, target_date, window_start,"
                " window_end, deviations, version, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (vid, event.participant_id, event.site, event.arm, event.code, event.target_date,
                 event.window_start, event.window_end, 0, version, at),
            ))
        elif isinstance(event, _V.VisitRescheduled):
            statements.append((
                "UPDATE visit_scores SET target_date = ?, window_start = ?, window_end = ?, version = ?,"
                " modified_at = ? WHERE visit_id = ?",
                (event.target_date, event.window_start, event.window_end, version, at, vid),
            ))
        elif isinstance(event, (_V.VisitHeld, _V.VisitDateCorrected)):
            statements.append(("UPDATE visit_scores SET held_on = ?, version = ?, modified_at = ? WHERE visit_id = ?",
                               (event.held_on, version, at, vid)))
        elif isinstance(event, _V.ProtocolDeviationRecorded):
            statements.append(("UPDATE visit_scores SET deviations = deviations + 1, version = ?, modified_at = ?"
                               " WHERE visit_id = ?", (version, at, vid)))

    def process_recorded(self, recorded: Recorded, cur: ViewCursor) -> None:
        topic = recorded.topic
        if topic not in _ITEM_TOPICS:
            self.process(recorded.event(), recorded.id, cur)
            return
        state = recorded.fields()
        vid = recorded.aggregate_id
        self._pending.setdefault(vid, {})[state["item_code"]] = (
            _CLEARED if topic == _V.ItemCleared.TOPIC else encode_value(state["value"]))
        self._dirty[vid] = (recorded.originator_version, iso_recorded(state["timestamp"]))

    def __init__(self) -> None:
        self._memory: _Memory | None = None
        self.begin_batch()

    def begin_rebuild(self) -> None:
        self._memory = _Memory()

    def end_rebuild(self) -> None:
        self._memory = None

    def begin_batch(self) -> None:
        self._dirty: dict[str, tuple[int, str]] = {}  # visit -> (version, time) of its last item event
        self._pending: dict[str, dict[str, str]] = {}
        self._statements: list[tuple[str, tuple]] = []

    def flush(self, cur: ViewCursor) -> None:
        dirty, pending, statements = self._dirty, self._pending, self._statements
        self.begin_batch()
        i = 0
        while i < len(statements):  # in order; a run of the same statement in one executemany
            sql, j = statements[i][0], i + 1
            while j < len(statements) and statements[j][0] == sql:
                j += 1
            if j - i == 1:
                cur.execute(sql, statements[i][1])
            else:
                cur.executemany(sql, [params for _, params in statements[i:j]])
            i = j
        upserts = [(vid, code, v) for vid, items in pending.items() for code, v in items.items() if v is not _CLEARED]
        deletes = [(vid, code) for vid, items in pending.items() for code, v in items.items() if v is _CLEARED]
        if upserts:
            cur.executemany(
                "INSERT INTO visit_items (visit_id, item_code, value) VALUES (?, ?, ?)"
                " ON CONFLICT (visit_id, item_code) DO UPDATE SET value = excluded.value", upserts)
        if deletes:
            cur.executemany("DELETE FROM visit_items WHERE visit_id = ? AND item_code = ?", deletes)
        memory = self._memory
        if memory is not None:  # a rebuild: known here (only the items of a visit let go are read back)
            items, participants = memory.items_of(dirty, pending, cur), memory.participants_of(dirty)
        else:
            items, participants = self._read_back(dirty, cur)
        score_rows, version_rows = [], []
        for vid, (version, modified_at) in dirty.items():
            acr, mrss = score_items(items[vid])
            acr_total, mrss_total = acr and acr["total_score"], mrss and mrss["total"]
            score_rows.append((
                dumps(acr), dumps(mrss), acr_total, None if acr is None else acr["applicable"],
                None if acr is None else acr["meets_criteria"], None if acr is None else acr["indeterminate"],
                mrss_total, vid,
            ))
            version_rows.append((version, modified_at, vid, version))
            if memory is not None:
                memory.scored(vid, acr_total, mrss_total)
        if score_rows:
            cur.executemany(
                "UPDATE visit_scores SET acr_eular = ?, mrss = ?, acr_total = ?, acr_applicable = ?, acr_meets = ?,"
                " acr_indeterminate = ?, mrss_total = ? WHERE visit_id = ?", score_rows)
            cur.executemany("UPDATE visit_scores SET version = ?, modified_at = ? WHERE visit_id = ? AND version < ?",
                            version_rows)
        if memory is not None:
            changes = memory.changes(participants)
            if changes:
                cur.executemany("UPDATE visit_scores SET acr_change = ?, mrss_change = ? WHERE visit_id = ?", changes)
            return
        for pid in sorted(participants):
            self._refresh_changes(pid, cur)

    @staticmethod
    def _read_back(dirty: dict[str, Any], cur: ViewCursor) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """The dirty visits' items and participants, in a statement or two per 500 visits, not two
        per visit (each a round trip on PostgreSQL)."""
        vids = list(dirty)
        participants: set[str] = set()
        for start in range(0, len(vids), 500):
            chunk = vids[start : start + 500]
            cur.execute(f"SELECT participant_id FROM visit_scores WHERE visit_id IN ({','.join('?' * len(chunk))})", chunk)
            participants.update(row[0] for row in cur.fetchall())
        return _items_in_table(vids, cur), participants

    @staticmethod
    def _refresh_changes(pid: str, cur: ViewCursor) -> None:
        """Change from baseline of every visit of the participant (a baseline change moves them all)."""
        cur.execute("SELECT visit_id, code, acr_total, mrss_total, acr_change, mrss_change FROM visit_scores"
                    " WHERE participant_id = ?", (pid,))
        rows = cur.fetchall()
        bl = next((r for r in rows if r[1] == BASELINE), None)
        bl_acr, bl_mrss = (bl[2], bl[3]) if bl else (None, None)
        for visit_id, _, acr, mrss, old_acr_change, old_mrss_change in rows:
            acr_change = None if acr is None or bl_acr is None else acr - bl_acr
            mrss_change = None if mrss is None or bl_mrss is None else mrss - bl_mrss
            if (acr_change, mrss_change) != (old_acr_change, old_mrss_change):
                cur.execute("UPDATE visit_scores SET acr_change = ?, mrss_change = ? WHERE visit_id = ?",
                            (acr_change, mrss_change, visit_id))


def _items_in_table(vids: list[str], cur: ViewCursor) -> dict[str, dict[str, Any]]:
    """These visits' items as visit_items holds them, a statement per 500 visits."""
    items: dict[str, dict[str, Any]] = {vid: {} for vid in vids}
    for start in range(0, len(vids), 500):
        chunk = vids[start : start + 500]
        cur.execute(f"SELECT visit_id, item_code, value FROM visit_items WHERE visit_id IN ({','.join('?' * len(chunk))})",
                    chunk)
        for vid, code, value in cur.fetchall():
            items[vid][code] = decode_value(value)
    return items


#: during a rebuild, the items of at most this many visits are kept in memory (the most recently written);
#: a visit written again after it was let go is read back from visit_items. About 40 MB; a visit's items
#: are usually written together, so at 1,000,000 events it is read back rarely, if ever.
ITEMS_KEPT = 20_000


class _Memory:
    """What a rebuild knows of every visit, kept from batch to batch (see ``Projection.begin_rebuild``):
    its participant and code, its totals and changes from baseline as written, and the current items of
    the visits written last. Only this engine writes the tables meanwhile and every batch commits (a
    batch that does not ends the rebuild's bulk mode, and this with it), so it equals what the rows say."""

    def __init__(self) -> None:
        self.visit: dict[str, list[Any]] = {}  # visit -> [participant, code, acr total, mrss total, acr change, mrss change]
        self.visits_of: dict[str, list[str]] = {}  # participant -> its visits
        self.items: dict[str, dict[str, Any]] = {}  # visit -> item code -> value, least recently written first
        self.let_go: set[str] = set()  # visits whose items are in visit_items only

    def schedule(self, vid: str, participant_id: str, code: str) -> None:
        self.visit[vid] = [participant_id, code, None, None, None, None]
        self.visits_of.setdefault(participant_id, []).append(vid)

    def items_of(self, dirty: dict[str, Any], pending: dict[str, dict[str, str]],
                 cur: ViewCursor) -> dict[str, dict[str, Any]]:
        """The dirty visits' current items, once this batch's ``pending`` changes are written."""
        items = self.items
        read = [vid for vid in dirty if vid in self.let_go]
        loaded = _items_in_table(read, cur) if read else {}  # (the table already holds this batch's changes)
        for vid, changed in pending.items():
            current = loaded.get(vid)
            if current is None:
                current = items.pop(vid, None) or {}
                for code, value in changed.items():
                    if value is _CLEARED:
                        current.pop(code, None)
                    else:
                        current[code] = decode_value(value)
            else:
                self.let_go.discard(vid)
            items[vid] = current  # the most recently written last
        result = {vid: items.get(vid, {}) for vid in dirty}
        while len(items) > ITEMS_KEPT:
            oldest = next(iter(items))
            del items[oldest]
            self.let_go.add(oldest)
        return result

    def participants_of(self, dirty: dict[str, Any]) -> set[str]:
        return {self.visit[vid][0] for vid in dirty if vid in self.visit}

    def scored(self, vid: str, acr_total: Any, mrss_total: Any) -> None:
        if vid in self.visit:
            self.visit[vid][2:4] = [acr_total, mrss_total]

    def changes(self, participants: set[str]) -> list[tuple[Any, Any, str]]:
        """The (acr change, mrss change, visit) that differ from what was written (``_refresh_changes``)."""
        rows = []
        for pid in sorted(participants):
            visits = [(vid, self.visit[vid]) for vid in self.visits_of.get(pid, ())]
            bl = next((v for _, v in visits if v[1] == BASELINE), None)
            bl_acr, bl_mrss = (bl[2], bl[3]) if bl else (None, None)
            for vid, v in visits:
                acr_change = None if v[2] is None or bl_acr is None else v[2] - bl_acr
                mrss_change = None if v[3] is None or bl_mrss is None else v[3] - bl_mrss
                if (acr_change, mrss_change) != (v[4], v[5]):
                    v[4:6] = [acr_change, mrss_change]
                    rows.append((acr_change, mrss_change, vid))
        return rows


def row_view(row: dict[str, Any]) -> dict[str, Any]:
    """A visit_scores row as the visit and score queries need it (JSON columns decoded)."""
    return {**row, "acr_eular": loads(row["acr_eular"]), "mrss": loads(row["mrss"])}
