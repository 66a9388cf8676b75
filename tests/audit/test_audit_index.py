"""The audit index: one row per event of every aggregate, generic over event types (R15, R17, R19)."""

from __future__ import annotations

import json

from application.audit_index import clinical_date_of


def test_every_event_is_indexed_once_with_its_stamp_participant_site_and_clinical_date(services, trial):
    """R2, R3, R15: every event in the log has exactly one row, with the actor as they were,
    the participant and site learned from creation events, and the clinical date."""
    app = trial.app
    app.read_models.wait_for()
    store = services.projections.store
    head = app.recorder.max_notification_id()
    positions = [r["position"] for r in store.query("SELECT position FROM audit_events ORDER BY position")]
    assert positions == list(range(1, head + 1))

    rows = {r["position"]: r for r in store.query("SELECT * FROM audit_events")}
    visit_rows = [r for r in rows.values() if r["aggregate_id"] == str(trial.visit.id)]
    assert {r["participant_id"] for r in visit_rows} == {trial.minsk}
    assert {r["site"] for r in visit_rows} == {"MINSK"}
    # items inherit the visit's clinical date from the VisitHeld event
    assert [r["clinical_date"] for r in visit_rows if r["event_type"] == "ItemEntered"] == ["2026-03-02"] * 4
    ae_rows = [r for r in rows.values() if r["aggregate_id"] == str(trial.ae.id)]
    assert {(r["participant_id"], r["site"], r["clinical_date"]) for r in ae_rows} == {(trial.minsk, "MINSK", "2026-02-01")}
    claim = [r for r in rows.values() if r["aggregate_type"] == "ScreeningNumberClaim" and r["participant_id"] == trial.gomel]
    assert claim and claim[0]["site"] == "GOMEL"
    user_rows = [r for r in rows.values() if r["aggregate_type"] == "User" and r["aggregate_id"] == trial.actors["mon_gomel"].user_id]
    assert user_rows[0]["site"] == "GOMEL" and user_rows[0]["participant_id"] is None

    correction = next(r for r in rows.values() if r["event_type"] == "FieldCorrected" and r["participant_id"] == trial.minsk)
    assert correction["actor_username"] == "inv_minsk" and correction["actor_role"] == "investigator"
    assert correction["reason"] == "transcribed wrongly from source"
    # the changes are kept once, in audit_changes (the event's JSON only for changes the rows cannot say)
    assert correction["changes"] is None and correction["n_changes"] == 1
    assert [(r["field"], json.loads(r["old_value"]), json.loads(r["new_value"])) for r in store.query(
        "SELECT field, old_value, new_value FROM audit_changes WHERE position = ?", (correction["position"],)
    )] == [("birth_year", 1970, 1971)]
    dm = trial.actors["insp"]
    shown = app.audit_events(dm, participant=trial.minsk, type="FieldCorrected")["events"]
    assert shown[0]["changes"] == [{"field": "birth_year", "old_value": 1970, "new_value": 1971}]

    entries = store.query(
        "SELECT field, entry_no, old_value, new_value FROM audit_changes WHERE aggregate_id = ? ORDER BY position, seq",
        (str(trial.visit.id),),
    )
    puffy = [(r["entry_no"], r["old_value"], r["new_value"]) for r in entries if r["field"] == "acr_eular.puffy_fingers"]
    assert puffy == [(1, "null", "true"), (2, "true", "false")]


def test_rebuilt_index_equals_the_live_one(services, trial):
    """R17-style replay of the read model: dropped and rebuilt from event 1, the rows are the same (both stores)."""
    trial.app.audit_events(trial.actors["insp"])  # retrieval events are indexed too
    services.projections.wait_for()
    live = services.projections.dump(["audit_index"])
    assert sum(len(rows) for rows in live.values()) > 40
    services.projections.rebuild(["audit_index"])
    assert services.projections.dump(["audit_index"]) == live


def test_clinical_date_rule():
    """The documented rule: own attribute first (clinical_date, visit_date, date, aestdat, signed_on, held_on),
    also inside a `record` mapping; signed_on dates the act, not the aggregate."""

    class E:
        pass

    e = E()
    e.signed_on = "2026-01-05"
    assert clinical_date_of(e) == ("2026-01-05", False)
    e = E()
    e.record = {"aestdat": "2026-02-01", "aeterm": "Rash"}
    assert clinical_date_of(e) == ("2026-02-01", True)
    e = E()
    e.visit_date = "not a date"
    assert clinical_date_of(e) == (None, False)


def test_changes_the_rows_cannot_say_exactly_are_kept_as_the_event_had_them():
    """A change with another key, or a field that is not text, keeps the event's changes as JSON; plain
    ones are said by the audit_changes rows alone, and read back equal to what the event carried."""
    import datetime as dt
    import sqlite3
    import uuid
    from types import SimpleNamespace

    from application.audit_index import AuditIndex
    from application.audit_queries import AuditQueries

    conn = sqlite3.connect(":memory:")
    cur = conn.cursor()
    index = AuditIndex()
    for statement in index.create_statements():
        cur.execute(statement)

    class Edited:  # any event type: the index reads attributes only
        def __init__(self, version, changes):
            self.originator_id, self.originator_version = uuid.UUID(int=7), version
            self.timestamp = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
            self.audit = {"actor": {"user_id": "u1", "username": "ann", "role": "investigator"}}
            self.changes = changes

    plain = [{"field": "a", "old_value": None, "new_value": {"x": [1, 2]}}, {"field": "b", "old_value": 1, "new_value": 2}]
    odd = [{"field": "c", "old_value": 1, "new_value": 2, "unit": "mg"}]
    numbered = [{"field": 3, "old_value": None, "new_value": "x"}]
    for position, changes in enumerate((plain, odd, numbered, []), start=1):
        index.process(Edited(position, changes), position, cur)
    index.flush(cur)
    rows = [dict(zip([d[0] for d in cur.description], r)) for r in cur.execute("SELECT * FROM audit_events ORDER BY position")]
    assert [r["changes"] is None for r in rows] == [True, False, False, True]

    class Store:
        def query(self, sql, params=()):
            c = conn.execute(sql, tuple(params))
            return [dict(zip([d[0] for d in c.description], r)) for r in c.fetchall()]

    queries = AuditQueries()
    queries.read_models = SimpleNamespace(store=Store())
    shown = [r["changes"] for r in queries._with_changes(rows)]
    assert shown == [plain, odd, [{"field": 3, "old_value": None, "new_value": "x"}], []]
