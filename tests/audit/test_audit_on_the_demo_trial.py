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
