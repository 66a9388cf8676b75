"""Adverse events through the application, on SQLite and PostgreSQL (R1, R2, R3, R5, R6, R8, R11, R23)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from application.adverse_events import demo_adverse_events
from domain.errors import Conflict, InvalidInput, PermissionDenied
from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE

NOW = dt.datetime.now(dt.timezone.utc)


def ae_values(**overrides):
    onset = (NOW - dt.timedelta(days=3)).date().isoformat()
    base = {
        "aeterm": "Pneumonia", "aestdat": onset, "aetoxgr": "3",
        "aeser": "Y", "aesdth": "N", "aeslife": "N", "aeshosp": "Y", "aesdisab": "N", "aescong": "N", "aesmie": "N",
        "aerel_treg": "NOT APPLICABLE", "aerel_proc": "NOT RELATED", "aeout": "NOT RECOVERED/NOT RESOLVED",
        "aeacn": "NOT APPLICABLE", "aware_at": NOW - dt.timedelta(hours=30),
    }
    return {**base, **overrides}


@pytest.fixture
def trial(app, add_user, actor_of):
    """An investigator at MINSK with one randomised participant per arm (screened until both arms exist)."""
    inv = actor_of(add_user("inv_minsk", "investigator", "MINSK"))
    by_arm = {}
    for i in range(12):
        p = app.screen_participant(inv, screening_number=f"AE-{i:03}", site="MINSK", sex="F", birth_year=1970)
        app.assess_eligibility(inv, p["id"], inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
        app.record_consent(inv, p["id"], consent_version="v1", signed_on="2026-01-01")
        arm = app.randomise(inv, p["id"])["arm"]
        by_arm.setdefault(arm, p["id"])
        if len(by_arm) == 2:
            break
    return inv, by_arm


def test_sae_report_starts_the_sponsor_clock_in_the_same_save(app, trial):
    """R1: one report appends the AE and its reporting clock atomically; R3: the actor is stored."""
    inv, by_arm = trial
    ae = app.report_adverse_event(inv, by_arm["standard"], values=ae_values())
    assert ae["classification"]["serious"] and not ae["classification"]["related_to_treg"]
    [ob] = ae["obligations"]
    assert ob["kind"] == "sae_initial" and ob["recipient"] == "sponsor" and ob["state"] == "overdue"
    aware = dt.datetime.fromisoformat(ae["aware_at"].replace("Z", "+00:00"))
    assert dt.datetime.fromisoformat(ob["due_at"].replace("Z", "+00:00")) - aware == dt.timedelta(hours=24)
    history = app.adverse_event_history(inv, ae["id"])
    assert [h["type"] for h in history] == ["AdverseEventReported", "ReportingClockStarted"]
    assert history[0]["actor"]["username"] == "inv_minsk" and history[0]["actor"]["role"] == "investigator"
    assert {c["field"] for c in history[0]["changes"]} >= {"aeterm", "aeser", "aeshosp", "aware_at"}


def test_inconsistent_flags_are_refused_and_nothing_is_saved(app, trial):
    inv, by_arm = trial
    with pytest.raises(InvalidInput) as e:
        app.report_adverse_event(inv, by_arm["standard"], values=ae_values(aeshosp="N", aerel_treg="POSSIBLE"))
    paths = {p for p, _ in e.value.errors}
    assert ("aeser",) in paths and ("aerel_treg",) in paths
    assert app.list_adverse_events(inv, by_arm["standard"]) == []


def test_naive_awareness_is_refused(app, trial):
    """R4: an instant without zone is refused."""
    inv, by_arm = trial
    with pytest.raises(InvalidInput) as e:
        app.report_adverse_event(inv, by_arm["standard"], values=ae_values(aware_at="2026-03-01T10:00:00"))
    assert e.value.errors[0][0] == ("aware_at",)


def test_correction_is_one_event_with_old_new_and_reason(app, trial):
    """R5, R6: a correction needs a reason; it is its own event with old and new values."""
    inv, by_arm = trial
    ae = app.report_adverse_event(inv, by_arm["standard"], values=ae_values())
    with pytest.raises(InvalidInput):
        app.correct_adverse_event(inv, ae["id"], field="aetoxgr", new_value="4", reason=" ")
    result = app.correct_adverse_event(inv, ae["id"], field="aetoxgr", new_value=4, reason="ICU admission in the source notes")
    assert result["aetoxgr"] == "4" and result["changes"] == [{"field": "aetoxgr", "old_value": "3", "new_value": "4"}]
    last = app.adverse_event_history(inv, ae["id"])[-1]
    assert last["type"] == "FieldCorrected" and last["reason"] == "ICU admission in the source notes"
    assert last["changes"] == [{"field": "aetoxgr", "old_value": "3", "new_value": "4"}]


def test_follow_up_changes_fields_together_one_event_each(app, trial):
    """R6: resolution needs outcome and end date together; each field is its own event."""
    inv, by_arm = trial
    ae = app.report_adverse_event(inv, by_arm["standard"], values=ae_values())
    with pytest.raises(InvalidInput) as e:  # the outcome alone breaks the end-date rule
        app.correct_adverse_event(inv, ae["id"], field="aeout", new_value="RECOVERED/RESOLVED", reason="patient discharged home")
    assert ("aeendat",) in {p for p, _ in e.value.errors}
    today = NOW.date().isoformat()
    r = app.follow_up_adverse_event(inv, ae["id"], changes={"aeout": "RECOVERED/RESOLVED", "aeendat": today},
                                    reason="patient discharged home", expected_version=ae["version"])
    assert r["aeout"] == "RECOVERED/RESOLVED" and r["aeendat"] == today
    types = [h["type"] for h in app.adverse_event_history(inv, ae["id"])]
    assert types[-2:] == ["FollowUpRecorded", "FollowUpRecorded"]
    with pytest.raises(Conflict):  # stale expected_version
        app.follow_up_adverse_event(inv, ae["id"], changes={"aetoxgr": "2"}, reason="regraded after review",
                                    expected_version=ae["version"])


def test_reclassification_starts_a_new_clock_from_awareness_of_new_facts(app, trial):
    """docs/domain.md §3.6: non-serious -> serious and not related -> related start new clocks."""
    inv, by_arm = trial
    pid = by_arm["treg_plus_standard"]
    ae = app.report_adverse_event(inv, pid, values=ae_values(
        aeser="N", aeshosp="N", aetoxgr="2", aerel_treg="UNLIKELY", aeexp="UNEXPECTED", rsi_version="IB v1.0"))
    assert ae["obligations"] == []
    learnt = NOW - dt.timedelta(hours=2)
    r = app.follow_up_adverse_event(inv, ae["id"], changes={"aeser": "Y", "aeshosp": "Y", "aetoxgr": "3"},
                                    reason="admitted to hospital overnight", aware_at=learnt)
    [sae] = r["obligations"]
    assert sae["kind"] == "sae_initial" and sae["trigger"] == "reclassified: became serious"
    assert sae["started_at"] == learnt.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    r = app.correct_adverse_event(inv, ae["id"], field="aerel_treg", new_value="PROBABLE", reason="investigator re-assessed causality")
    kinds = [o["kind"] for o in r["obligations"]]
    assert kinds == ["sae_initial", "sae_follow_up", "susar_15_day"]
    assert app.adverse_event_history(inv, ae["id"])[-1]["type"] == "ReportingClockStarted"


def test_reports_meet_obligations_and_late_ones_say_so(app, trial):
    """R11: a report made is an audited event; the overdue list reads the obligations read model."""
    inv, by_arm = trial
    ae = app.report_adverse_event(inv, by_arm["standard"], values=ae_values())
    [overdue] = app.safety_obligations(inv, overdue_only=True)
    assert overdue["adverse_event_id"] == ae["id"] and overdue["overdue_seconds"] >= 6 * 3600 - 5
    with pytest.raises(Conflict):
        app.record_safety_report(inv, ae["id"], recipient="authority", kind="susar_15_day", reported_at=NOW)
    with pytest.raises(InvalidInput):
        app.record_safety_report(inv, ae["id"], recipient="sponsor", kind="sae_initial", reported_at=NOW + dt.timedelta(days=1))
    r = app.record_safety_report(inv, ae["id"], recipient="sponsor", kind="sae_initial", reported_at=NOW, reference="SAE-1")
    assert r["report"]["late"] is True and r["obligations"][0]["state"] == "reported"
    assert app.safety_obligations(inv, overdue_only=True) == []


def test_aware_at_correction_moves_the_initial_clock(app, trial):
    inv, by_arm = trial
    ae = app.report_adverse_event(inv, by_arm["standard"], values=ae_values())
    earlier = NOW - dt.timedelta(hours=40)
    r = app.correct_adverse_event(inv, ae["id"], field="aware_at", new_value=earlier, reason="the site log shows an earlier call")
    due = dt.datetime.fromisoformat(r["obligations"][0]["due_at"].replace("Z", "+00:00"))
    assert due == earlier + dt.timedelta(hours=24)
    [row] = app.safety_obligations(inv)
    assert row["due_at"] == r["obligations"][0]["due_at"]


def test_site_and_role_access(app, trial, add_user, actor_of):
    """R23: another site's investigator neither reads nor writes; monitors read their site; admins see no clinical data."""
    inv, by_arm = trial
    ae = app.report_adverse_event(inv, by_arm["standard"], values=ae_values())
    gomel = actor_of(add_user("inv_gomel", "investigator", "GOMEL"))
    monitor = actor_of(add_user("mon_minsk", "monitor", "MINSK"))
    admin = actor_of(add_user("admin2", "admin", "*"))
    dm = actor_of(add_user("dm", "data_manager", "*"))
    for actor in (gomel, admin):
        with pytest.raises(PermissionDenied):
            app.get_adverse_event(actor, ae["id"])
        with pytest.raises(PermissionDenied):
            app.correct_adverse_event(actor, ae["id"], field="aetoxgr", new_value="2", reason="typing error in grade")
    with pytest.raises(PermissionDenied):
        app.report_adverse_event(gomel, by_arm["standard"], values=ae_values())
    assert app.get_adverse_event(monitor, ae["id"])["id"] == ae["id"]
    with pytest.raises(PermissionDenied):  # R33: monitors do not change site data
        app.correct_adverse_event(monitor, ae["id"], field="aetoxgr", new_value="2", reason="typing error in grade")
    with pytest.raises(PermissionDenied):
        app.safety_summary(admin)
    assert app.safety_obligations(gomel) == []  # a site-bound user sees only their site's deadlines
    assert len(app.safety_obligations(dm)) == 1


def test_deletion_is_a_tombstone_and_cancels_open_obligations(app, trial):
    """R8: deleted values stay in the history; the AE leaves the safety table and the overdue list."""
    inv, by_arm = trial
    ae = app.report_adverse_event(inv, by_arm["standard"], values=ae_values())
    app.delete_adverse_event(inv, ae["id"], reason="entered for the wrong participant")
    assert app.get_adverse_event(inv, ae["id"])["deleted"] is True
    assert app.adverse_event_history(inv, ae["id"])[0]["changes"]
    assert app.safety_obligations(inv) == []
    standard = next(a for a in app.safety_summary(inv)["arms"] if a["arm"] == "standard")
    assert standard["events"] == 0
    with pytest.raises(Conflict):
        app.correct_adverse_event(inv, ae["id"], field="aetoxgr", new_value="2", reason="typing error in grade")


def test_safety_summary_per_arm_and_rebuild_equals_live(services, app, trial):
    """Primary outcome (b) per arm from the read models; a rebuild from event 1 gives the same rows."""
    inv, by_arm = trial
    rng = random.Random(7)
    for arm, pid in by_arm.items():
        demo_adverse_events(app, inv, pid, arm, rng, (NOW - dt.timedelta(days=200)).date(), serious=True)
    summary = {a["arm"]: a for a in app.safety_summary(inv)["arms"]}
    for arm in ("treg_plus_standard", "standard"):
        # the fixture randomises until both arms exist, so an arm may hold more than one participant
        assert summary[arm]["participants"] >= 1 and summary[arm]["participants_with_ae"] == 1
        assert summary[arm]["serious"] == {"participants": 1, "events": 1}
        assert summary[arm]["participants_by_worst_grade"]["4"] == 1  # the demo corrects the SAE to grade 4
    assert summary["standard"]["related_to_treg"]["events"] == 0
    assert summary["treg_plus_standard"]["related_to_treg"]["participants"] == 1
    live = services.projections.dump()
    services.projections.rebuild()
    assert services.projections.dump() == live


def test_sponsor_cannot_downgrade_the_investigators_causality(app, trial, add_user, actor_of):
    """EU CTR Annex III: both opinions are kept; the sponsor may add relatedness, never remove it."""
    inv, by_arm = trial
    sponsor = actor_of(add_user("dm_sponsor", "data_manager", "*"))
    pid = by_arm["treg_plus_standard"]
    related = app.report_adverse_event(inv, pid, values=ae_values(aerel_treg="POSSIBLE", aeexp="UNEXPECTED", rsi_version="IB v1.0"))
    r = app.assess_causality_by_sponsor(sponsor, related["id"], causality="NOT RELATED")
    assert r["aerel_treg"] == "POSSIBLE" and r["aerel_treg_sponsor"] == "NOT RELATED"
    assert r["classification"]["related_to_treg"] and r["classification"]["susar"]
    unrelated = app.report_adverse_event(inv, pid, values=ae_values(aerel_treg="UNLIKELY", aeexp="UNEXPECTED", rsi_version="IB v1.0"))
    assert [o["kind"] for o in unrelated["obligations"]] == ["sae_initial"]
    r = app.assess_causality_by_sponsor(sponsor, unrelated["id"], causality="PROBABLE")
    assert r["classification"]["related_to_treg"] and [o["kind"] for o in r["obligations"]][-1] == "susar_15_day"
    with pytest.raises(InvalidInput):  # a revised opinion needs a reason (R5)
        app.assess_causality_by_sponsor(sponsor, unrelated["id"], causality="POSSIBLE")
    with pytest.raises(PermissionDenied):  # the investigator's own field is corrected, not the sponsor's
        app.assess_causality_by_sponsor(inv, unrelated["id"], causality="POSSIBLE", reason="site view differs")
    [row] = [x for x in app.list_adverse_events(inv, pid) if x["id"] == unrelated["id"]]
    assert row["aerel_treg"] == "UNLIKELY" and row["aerel_treg_sponsor"] == "PROBABLE"
