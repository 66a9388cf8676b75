"""GET /audit/events in the application: filters, keyset paging, site walls, and retrievals on the trail
(R11, R15, R19, R23)."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput, PermissionDenied
from tests.audit.synthetic import SyntheticVisit, utc


def _all(app, actor, **filters):
    events, cursor = [], None
    while True:
        page = app.audit_events(actor, limit=3, cursor=cursor, **filters)
        events.extend(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            return events


def test_filters_by_participant_site_user_item_time_and_type(trial):
    """R15: the trail is searchable by participant, site, user, item, time range and event type."""
    app, insp = trial.app, trial.actors["insp"]
    by_participant = _all(app, insp, participant=trial.minsk)
    assert by_participant and {e["participant_id"] for e in by_participant} == {trial.minsk}
    assert {"Participant", "SyntheticVisit", "SyntheticAE", "ScreeningNumberClaim"} <= {e["aggregate_type"] for e in by_participant}

    gomel = _all(app, insp, site="GOMEL")
    assert gomel and {e["site"] for e in gomel} == {"GOMEL"}

    by_user = _all(app, insp, user="inv_gomel")  # a username works as well as the id
    assert by_user == _all(app, insp, user=trial.actors["inv_gomel"].user_id)
    assert {e["actor"]["username"] for e in by_user} == {"inv_gomel"} and len(by_user) == 3

    puffy = _all(app, insp, item="acr_eular.puffy_fingers")
    assert [[c["new_value"] for c in e["changes"]] for e in puffy] == [[True], [False]]
    assert puffy[1]["reason"] == "source document says no puffy fingers" and puffy[1]["query_id"] == "Q-17"
    assert len(_all(app, insp, item="acr_eular.*")) == 2 and len(_all(app, insp, item="mrss.*")) == 1

    window = _all(app, insp, from_=utc("2026-03-02T09:00:00Z"), to=utc("2026-03-04T08:00:00Z"))
    assert [e["recorded_at"] for e in window] == [
        "2026-03-02T09:00:00.000000Z", "2026-03-02T18:30:00.000000Z", "2026-03-03T07:00:00.000000Z"]
    assert {e["type"] for e in _all(app, insp, type="FieldCorrected")} == {"FieldCorrected"}
    assert len(_all(app, insp, type="FieldCorrected", site="MINSK")) == 1


def test_paging_in_both_orders_is_complete_and_stable_under_concurrent_inserts(trial):
    """R15: keyset cursors: no event is skipped or repeated when events are recorded between pages."""
    app, insp, inv = trial.app, trial.actors["insp"], trial.actors["inv_minsk"]
    everything = _all(app, insp)
    positions = [e["position"] for e in everything]
    assert positions == sorted(set(positions))

    first = app.audit_events(insp, limit=4)
    newest_first = app.audit_events(insp, limit=4, order="desc")
    # meanwhile, more is recorded
    for i in range(3):
        app.screen_participant(inv, screening_number=f"M-1{i}", site="MINSK", sex="F", birth_year=1980)
    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = app.audit_events(insp, limit=4, cursor=cursor)
        rest.extend(page["events"])
        cursor = page["next_cursor"]
    combined = [e["position"] for e in first["events"] + rest]
    assert combined[: len(positions)] == positions  # nothing shifted
    assert len(combined) == len(set(combined)) == len(positions) + 6  # 3 participants + 3 claims appended

    older = app.audit_events(insp, limit=1000, order="desc", cursor=newest_first["next_cursor"])
    desc = [e["position"] for e in newest_first["events"] + older["events"]]
    assert desc == sorted(positions, reverse=True)  # the new events are above the cursor, not in between

    with pytest.raises(InvalidInput):
        app.audit_events(insp, cursor="not-a-cursor")
    with pytest.raises(InvalidInput):
        app.audit_events(insp, order="asc", cursor=newest_first["next_cursor"])


def test_site_walls(trial):
    """R19, R23: a site-bound user sees only their own site's rows and is refused another site's;
    inspectors and data managers see every site; an admin sees the user administration only."""
    app, a = trial.app, trial.actors
    for name in ("mon_minsk", "inv_minsk"):
        rows = _all(app, a[name])
        assert rows and {e["site"] for e in rows} == {"MINSK"}
        assert trial.gomel not in {e["participant_id"] for e in rows}
        with pytest.raises(PermissionDenied):
            app.audit_events(a[name], site="GOMEL")
        with pytest.raises(PermissionDenied):
            app.audit_events(a[name], participant=trial.gomel)
        with pytest.raises(PermissionDenied):
            app.audit_item_history(a[name], trial.gomel, "sex")
    assert {e["site"] for e in _all(app, a["mon_gomel"], site="GOMEL")} == {"GOMEL"}
    for name in ("insp", "dm"):
        assert {"MINSK", "GOMEL"} <= {e["site"] for e in _all(app, a[name])}
    admin_rows = _all(app, a["adm"])
    assert admin_rows and {e["aggregate_type"] for e in admin_rows} <= {"User", "LoginAttempt"}
    with pytest.raises(PermissionDenied):
        app.audit_events(a["adm"], participant=trial.minsk)


def test_every_retrieval_is_on_the_trail_but_not_in_the_way(trial):
    """R11, R15: each retrieval and export is an audited event with the filters, format and row count;
    the inspector finds their own retrievals; ordinary pages leave them out unless asked."""
    app, insp = trial.app, trial.actors["insp"]
    page = app.audit_events(insp, participant=trial.minsk, limit=5)
    b"".join(app.export_audit_events(insp, format="csv", site="MINSK"))
    app.audit_item_history(insp, trial.minsk, "acr_eular.puffy_fingers")

    mine = app.audit_events(insp, user="insp", type="AuditTrailRetrieved")["events"]
    assert [e["type"] for e in mine] == ["AuditTrailRetrieved", "AuditTrailRetrieved"]
    assert mine[0]["actor"]["username"] == "insp" and mine[0]["actor"]["role"] == "inspector"
    exports = app.audit_events(insp, user="insp", type="AuditTrailExportStarted,AuditTrailExportCompleted")["events"]
    assert [e["type"] for e in exports] == ["AuditTrailExportStarted", "AuditTrailExportCompleted"]
    assert exports[0]["aggregate_id"] == exports[1]["aggregate_id"]

    store = app.read_models.store
    app.read_models.wait_for()
    first = store.query("SELECT aggregate_id FROM audit_events WHERE position = ?", (mine[0]["position"],))[0]
    event = app.repository.get(__import__("uuid").UUID(first["aggregate_id"]))
    assert event.view == "events" and event.filters["participant"] == trial.minsk and event.rows == len(page["events"])
    export = app.repository.get(__import__("uuid").UUID(exports[0]["aggregate_id"]))
    assert export.format == "csv" and export.filters["site"] == "MINSK" and export.rows > 0

    assert all(e["aggregate_type"] != "AuditTrailAccess" for e in app.audit_events(insp, limit=1000)["events"])
    assert any(e["aggregate_type"] == "AuditTrailAccess"
               for e in app.audit_events(insp, limit=1000, include_retrievals=True)["events"])
    # a site-bound reader's retrievals are visible within their site, not an inspector's
    mon = trial.actors["mon_minsk"]
    app.audit_events(mon)
    seen = app.audit_events(mon, include_retrievals=True, type="AuditTrailRetrieved", limit=1000)["events"]
    assert {e["actor"]["username"] for e in seen} == {"mon_minsk"}


def test_item_history_shows_who_role_when_utc_and_local_old_new_and_why(trial):
    """R13: every value the item had, with who, role, UTC and the site's local time, old -> new, reason."""
    history = trial.app.audit_item_history(trial.actors["mon_minsk"], trial.minsk, "acr_eular.puffy_fingers")
    assert history["site"] == "MINSK" and history["time_zone"] == "Europe/Minsk"
    first, second = history["values"]
    assert (first["old_value"], first["new_value"], first["reason"], first["entry_no"]) == (None, True, None, 1)
    assert (second["old_value"], second["new_value"], second["entry_no"]) == (True, False, 2)
    assert second["reason"] == "source document says no puffy fingers" and second["query_id"] == "Q-17"
    assert second["recorded_at"] == "2026-03-03T07:00:00.000000Z"
    assert second["recorded_at_local"] == "2026-03-03T10:00:00.000000+03:00"
    assert second["actor"] == {"user_id": trial.actors["inv_minsk"].user_id, "username": "inv_minsk",
                               "full_name": "Inv_Minsk Person", "role": "investigator", "site": "MINSK"}
    births = trial.app.audit_item_history(trial.actors["insp"], trial.minsk, "birth_year")["values"]
    assert [(v["old_value"], v["new_value"]) for v in births] == [(None, 1970), (1970, 1971)]


def test_index_is_generic_over_new_aggregates(trial):
    """A new aggregate type mapped to a participant by a `participant_id` attribute appears in that
    participant's trail with its site, without any change to the index (R1, R19)."""
    app, inv = trial.app, trial.actors["inv_gomel"]
    other = SyntheticVisit.open(trial.gomel, "GOMEL", inv, utc("2026-04-01T08:00:00Z"), code="W4")
    other.enter("mrss.face", 1, inv, utc("2026-04-01T08:10:00Z"))
    app.save(other)
    rows = app.audit_events(trial.actors["mon_gomel"], item="mrss.face")["events"]
    assert [(e["participant_id"], e["site"], e["aggregate_type"]) for e in rows] == [(trial.gomel, "GOMEL", "SyntheticVisit")]
    assert app.audit_events(trial.actors["mon_minsk"], item="mrss.face")["events"] == []
