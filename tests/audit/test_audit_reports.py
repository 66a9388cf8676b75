"""Audit-trail review reports and their sign-off (R18), on the synthetic trial of conftest.py."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput, PermissionDenied

MARCH = {"from_": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}


def test_changes_to_critical_data(trial):
    """R18: changes after first entry to ACR/EULAR, mRSS and AE term/grade/seriousness/causality/dates."""
    report = trial.app.audit_report(trial.actors["dm"], "critical-changes", **MARCH)
    assert [(r["field"], r["old_value"], r["new_value"]) for r in report["rows"]] == [
        ("acr_eular.puffy_fingers", True, False), ("aetoxgr", 2, 3)]
    assert report["rows"][0]["reason"] == "source document says no puffy fingers"
    assert report["rows"][1]["actor"]["role"] == "investigator"
    everything = trial.app.audit_report(trial.actors["dm"], "critical-changes", include_first_entries=True, **MARCH)
    assert {r["field"] for r in everything["rows"]} == {
        "acr_eular.puffy_fingers", "mrss.fingers_right", "aeterm", "aestdat", "aetoxgr"}


def test_entries_outside_site_hours_in_the_sites_local_time(trial):
    """R18: 21:30 in Minsk (18:30 UTC) is outside 07:00-20:00; a Saturday entry is flagged as weekend."""
    report = trial.app.audit_report(trial.actors["insp"], "outside-hours", **MARCH)
    assert [(r["type"], r["fields"], r["why"], r["recorded_at_local"]) for r in report["rows"]] == [
        ("ItemEntered", ["mrss.fingers_right"], "outside site hours", "2026-03-02T21:30:00.000000+03:00"),
        ("ItemEntered", ["notes.comment"], "weekend", "2026-03-07T12:00:00.000000+03:00"),
    ]
    weekdays_ok = trial.app.audit_report(trial.actors["insp"], "outside-hours", weekends=False, **MARCH)
    assert [r["fields"] for r in weekdays_ok["rows"]] == [["mrss.fingers_right"]]
    wide = trial.app.audit_report(trial.actors["insp"], "outside-hours", hours="06:00-22:00", weekends=False, **MARCH)
    assert wide["rows"] == []
    with pytest.raises(InvalidInput):
        trial.app.audit_report(trial.actors["insp"], "outside-hours", hours="20:00-07:00")


def test_late_entries(trial):
    """R18: a first entry recorded more than N days (default 7) after its clinical date."""
    report = trial.app.audit_report(trial.actors["insp"], "late-entries", **MARCH)
    assert [(r["type"], r["days_late"], r["clinical_date"]) for r in report["rows"]] == [("Reported", 31, "2026-02-01")]
    stricter = trial.app.audit_report(trial.actors["insp"], "late-entries", late_days=3, **MARCH)
    assert [(r["fields"], r["days_late"]) for r in stricter["rows"]] == [
        (["notes.comment"], 5), (["aeterm", "aestdat", "aetoxgr"], 31)]  # recorded order


def test_change_rates_per_user_and_site(trial):
    """R18: counts of changes after first entry per user and per site, per day or ISO week."""
    weekly = trial.app.audit_report(trial.actors["insp"], "change-rates", period="week", site="MINSK", **MARCH)
    user = [r for r in weekly["rows"] if r["scope"] == "user"]
    site = [r for r in weekly["rows"] if r["scope"] == "site"]
    assert [(r["period"], r["username"], r["entries"], r["first_entries"], r["changes"]) for r in user] == [
        ("2026-W10", "inv_minsk", 9, 7, 2)]
    assert [(r["period"], r["site"], r["changes"], r["change_rate"]) for r in site] == [("2026-W10", "MINSK", 2, round(2 / 9, 4))]
    daily = trial.app.audit_report(trial.actors["insp"], "change-rates", site="MINSK", **MARCH)
    assert [(r["period"], r["changes"]) for r in daily["rows"] if r["scope"] == "site"] == [
        ("2026-03-02", 0), ("2026-03-03", 1), ("2026-03-04", 0), ("2026-03-05", 1), ("2026-03-07", 0)]


def test_who_reads_and_who_signs_off(trial):
    """R18, R19, R23: inspectors, data managers and monitors read reports (monitors only their site);
    data managers and monitors sign off, and each sign-off is an audited event with the report's hash."""
    app, a = trial.app, trial.actors
    for name in ("inv_minsk", "adm"):
        with pytest.raises(PermissionDenied):
            app.audit_report(a[name], "late-entries")
    with pytest.raises(PermissionDenied):
        app.audit_report(a["mon_gomel"], "late-entries", site="MINSK")
    assert app.audit_report(a["mon_gomel"], "late-entries", **MARCH)["rows"] == []  # walls: GOMEL only
    for name in ("insp", "inv_minsk"):
        with pytest.raises(PermissionDenied):
            app.sign_off_audit_report(a[name], "critical-changes", period_from="2026-03-01", period_to="2026-03-31",
                                      comment="reviewed every change, all justified")
    with pytest.raises(InvalidInput):
        app.sign_off_audit_report(a["dm"], "critical-changes", period_from="2026-03-01", period_to="2026-03-31",
                                  comment="ok")

    signed = app.sign_off_audit_report(a["dm"], "critical-changes", period_from="2026-03-01",
                                       period_to="2026-03-31", comment="Reviewed both changes; source verified")
    assert signed["rows"] == 2 and len(signed["report_sha256"]) == 64 and signed["site"] == "*"
    by_monitor = app.sign_off_audit_report(a["mon_minsk"], "outside-hours", period_from="2026-03-01",
                                           period_to="2026-03-31", comment="Late entries explained by clinic hours")
    assert by_monitor["site"] == "MINSK" and by_monitor["rows"] == 2

    trail = app.audit_events(a["insp"], type="AuditReviewSignedOff")["events"]
    assert [(e["actor"]["username"], e["reason"]) for e in trail] == [("dm", None), ("mon_minsk", None)]
    assert trail[0]["changes"] == [{"field": "review.critical-changes", "old_value": None, "new_value": "signed_off"}]
    review = app.repository.get(__import__("uuid").UUID(trail[0]["aggregate_id"]))
    assert (review.kind, review.period_from, review.period_to, review.report_sha256) == (
        "critical-changes", "2026-03-01", "2026-03-31", signed["report_sha256"])
    # reading a report is itself a retrieval on the trail (R11)
    reads = app.audit_events(a["insp"], user="insp", type="AuditTrailRetrieved", limit=1000)["events"]
    assert len(reads) >= 1
