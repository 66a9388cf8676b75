"""The audit index over the real aggregates (participants, visits, items, adverse events), written by
the demo through the real commands: nothing in the index is specific to them (R1, R13, R15, R19)."""

from __future__ import annotations

import datetime as dt

from application.demo import generate

TODAY = dt.date(2026, 3, 1)


def test_real_visits_and_adverse_events_are_mapped_to_participant_site_and_clinical_date(services):
    app = services.app
    generate(app, participants=3, seed=5, today=TODAY)
    app.read_models.wait_for()
    store = services.projections.store
    head = app.recorder.max_notification_id()
    assert store.query("SELECT COUNT(*) AS n FROM audit_events")[0]["n"] == head

    orphans = store.query(
        "SELECT aggregate_type, COUNT(*) AS n FROM audit_events WHERE aggregate_type IN ('Visit', 'AdverseEvent')"
        " AND (participant_id IS NULL OR site IS NULL) GROUP BY aggregate_type")
    assert orphans == []
    items = store.query(
        "SELECT clinical_date FROM audit_changes WHERE field LIKE ? ESCAPE '!' AND aggregate_type = 'Visit'",
        ("acr!_eular.%",))
    assert items and all(r["clinical_date"] is not None for r in items)  # an item is dated by its visit

    dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
    corrected = app.audit_events(dm, type="ItemCorrected", limit=1)["events"]
    assert corrected, "the demo corrects items with reasons"
    event = corrected[0]
    field = event["changes"][0]["field"]
    history = app.audit_item_history(dm, event["participant_id"], field)["values"]
    assert history[0]["entry_no"] == 1 and any(v["reason"] == event["reason"] for v in history)
    assert history[-1]["time_zone"] == app.sites[event["site"]]

    report = app.audit_report(dm, "critical-changes")
    assert report["count"] >= 1 and all(r["entry_no"] > 1 for r in report["rows"])
    services.projections.wait_for()  # the report's own retrieval event included
    live = services.projections.dump(["audit_index"])
    services.projections.rebuild(["audit_index"])
    assert services.projections.dump(["audit_index"]) == live


def _reference(store, *, fields, site=None, participant=None, types=None, order="asc"):
    """What the item filter must return, by brute force over every indexed change."""
    positions = {
        r["position"] for r in store.query("SELECT position, field, site, participant_id FROM audit_changes")
        if any(r["field"] == f or (f.endswith("*") and r["field"].startswith(f[:-1])) for f in fields)
        and (site is None or r["site"] == site) and (participant is None or r["participant_id"] == participant)
    }
    events = {r["position"]: r for r in store.query("SELECT position, event_type FROM audit_events")}
    keep = [p for p in positions if types is None or events[p]["event_type"] in types]
    return sorted(keep, reverse=order == "desc")


def test_item_filter_pages_equal_a_brute_force_search_in_both_orders(services):
    """R13, R15: "every change to this item across the trial", exact and by prefix, with the site,
    participant and type filters, paged by cursor in both orders, equals a search of every change."""
    app = services.app
    generate(app, participants=4, seed=11, today=TODAY)
    app.read_models.wait_for()
    store = services.projections.store
    dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
    participant = app.audit_events(dm, item="mrss.*", limit=1)["events"][0]["participant_id"]
    cases = [
        {"item": "mrss.*"}, {"item": "acr_eular.*"}, {"item": "mrss.face"}, {"item": "mrss.*", "site": "MINSK"},
        {"item": "acr_eular.*", "participant": participant}, {"item": "mrss.*", "type": "ItemRecorded"},
        {"item": "*", "type": "ItemCorrected"},
        {"item": "nothing.*"}, {"item": "ae*"},
    ]
    for case in cases:
        for order in ("asc", "desc"):
            got, cursor = [], None
            while True:
                page = app.audit_events(dm, limit=7, order=order, cursor=cursor, **case)
                got.extend(e["position"] for e in page["events"])
                assert len(page["events"]) <= 7
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            expected = _reference(store, fields=[case["item"]], site=case.get("site"),
                                  participant=case.get("participant"),
                                  types={case["type"]} if "type" in case else None, order=order)
            assert got == expected, (case, order)
            if case["item"] != "nothing.*":
                assert expected, case


def test_the_list_of_changed_fields_is_filled_for_an_index_built_before_it_existed(services):
    """An audit index written by an earlier version (no audit_fields rows) is completed on start, so the
    item-prefix filter still finds every change."""
    app = services.app
    generate(app, participants=2, seed=3, today=TODAY)
    app.read_models.wait_for()
    store = services.projections.store
    before = {r["field"] for r in store.query("SELECT field FROM audit_fields")}
    assert before == {r["field"] for r in store.query("SELECT DISTINCT field FROM audit_changes")}
    with store.transaction() as cur:
        cur.execute("DROP TABLE audit_fields")
    services.projections.setup()
    assert {r["field"] for r in store.query("SELECT field FROM audit_fields")} == before
    dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
    assert app.audit_events(dm, item="mrss.*", limit=5)["events"]



#: the audit tables as schema version 1 made them (on both stores)
VERSION_1_TABLES = (
    "CREATE TABLE audit_events ("
    " position BIGINT PRIMARY KEY, aggregate_id TEXT NOT NULL, version BIGINT NOT NULL,"
    " event_type TEXT NOT NULL, aggregate_type TEXT NOT NULL, participant_id TEXT, site TEXT,"
    " actor_user_id TEXT NOT NULL, actor_username TEXT, actor_full_name TEXT, actor_role TEXT, actor_site TEXT,"
    " reason TEXT, reason_code TEXT, source TEXT, query_id TEXT,"
    " recorded_at TEXT NOT NULL, clinical_date TEXT, n_changes BIGINT NOT NULL, fields TEXT, changes TEXT NOT NULL)",
    "CREATE INDEX audit_events_aggregate ON audit_events (aggregate_id, version)",
    "CREATE TABLE audit_changes ("
    " position BIGINT NOT NULL, seq BIGINT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_type TEXT NOT NULL,"
    " participant_id TEXT, site TEXT, actor_user_id TEXT NOT NULL, actor_username TEXT, actor_role TEXT,"
    " field TEXT NOT NULL, old_value TEXT, new_value TEXT, entry_no BIGINT NOT NULL,"
    " recorded_at TEXT NOT NULL, clinical_date TEXT, PRIMARY KEY (position, seq))",
)


def _layout(store) -> dict[str, str]:
    if store.dialect == "sqlite":
        rows = store.query("SELECT name, sql FROM sqlite_master WHERE name IN ('audit_events', 'audit_changes')")
        return {r["name"]: r["sql"] for r in rows}
    rows = store.query("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                       " AND table_name = 'audit_events'")
    return {"audit_events": " ".join(sorted(r["column_name"] for r in rows))}


def test_an_audit_index_in_the_older_layout_is_rebuilt_in_the_current_one_on_start(services, monkeypatch):
    """Schema version 1 kept every event's changes twice (audit_events.changes and audit_changes) and
    the changed fields' names, and on SQLite keyed audit_events by a BIGINT (a second b-tree) and gave
    audit_changes a rowid. An index in that layout is dropped and rebuilt from event 1 when the store
    is set up (a primary key cannot be altered in place); the other read models are left alone."""
    app, engine = services.app, services.projections
    generate(app, participants=2, seed=3, today=TODAY)
    app.read_models.wait_for()
    store = engine.store
    live = engine.dump()
    rebuilt: list[list[str]] = []
    rebuild = engine._rebuild
    monkeypatch.setattr(engine, "_rebuild", lambda names, progress: rebuilt.append(names) or rebuild(names, progress))

    seen: list[tuple[int, int]] = []
    engine.setup(lambda done, total: seen.append((done, total)))  # the current layout: nothing to do
    assert rebuilt == [] and engine.stale_layouts() == [] and seen == []  # (so no progress bar on start)
    current = _layout(store)
    assert "fields" not in current["audit_events"].split()
    if store.dialect == "sqlite":
        assert "WITHOUT ROWID" in current["audit_changes"]
        assert "position INTEGER PRIMARY KEY" in current["audit_events"]

    # the index as version 1 left it (the rows do not matter: they are made anew), no version recorded
    with store.transaction() as cur:
        cur.execute("DROP TABLE audit_events")
        cur.execute("DROP TABLE audit_changes")
        for statement in VERSION_1_TABLES:
            cur.execute(statement)
        cur.execute("DELETE FROM projection_versions")
    assert _layout(store) != current
    assert engine.stale_layouts() == ["audit_index"]

    engine.setup(lambda done, total: seen.append((done, total)))
    assert rebuilt == [["audit_index"]] and engine.stale_layouts() == []
    assert seen and seen[-1][0] == seen[-1][1] == app.recorder.max_notification_id()  # the rebuild showed progress
    assert _layout(store) == current
    assert not store.query("SELECT 1 AS one FROM audit_events WHERE aggregate_id IS NULL")
    assert engine.dump() == live
    assert engine.positions()["audit_index"] == app.recorder.max_notification_id()
    dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
    assert app.audit_events(dm, item="mrss.*", limit=5)["events"]
