"""Visits in the application: atomic with randomisation, re-anchored on the infusion (docs/domain.md §5)."""

import datetime as dt

from domain.visit import Visit
from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE


def randomise(app, inv, number):
    pid = app.screen_participant(inv, screening_number=number, site="MINSK", sex="M", birth_year=1965)["id"]
    app.assess_eligibility(inv, pid, inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(inv, pid, consent_version="v1", signed_on="2026-01-01")
    return pid, app.randomise(inv, pid)


def test_visits_are_saved_in_the_randomisation_transaction(app, add_user, actor_of):
    inv = actor_of(add_user("inv", "investigator"))
    pid, result = randomise(app, inv, "A-1")
    events = list(app.recorder.select_notifications(start=0, limit=1000))
    randomised = next(n for n in events if n.topic.endswith("ParticipantRandomised"))
    scheduled = [n for n in events if n.topic.endswith("VisitScheduled")]
    assert scheduled and all(n.id > randomised.id for n in scheduled)
    assert result["notification_id"] == scheduled[-1].id  # one save: the last event is the last visit
    codes = ("SCR", "BL", "BC", "INF", "D1", "D7", "M1", "M3", "M6", "M12") if result["arm"] == "treg_plus_standard" \
        else ("SCR", "BL", "D7", "M1", "M3", "M6", "M12")
    assert {n.originator_id for n in scheduled} == {Visit.id_for(pid, c) for c in codes}

def test_infusion_date_re_anchors_the_day0_visits(app, add_user, actor_of):
    inv = actor_of(add_user("inv", "investigator"))
    for i in range(12):
        pid, result = randomise(app, inv, f"B-{i}")
        if result["arm"] == "treg_plus_standard":
            break
    m12_before = app.get_visit(inv, Visit.id_for(pid, "M12"))
    inf = app.get_visit(inv, Visit.id_for(pid, "INF"))
    held = dt.date.fromisoformat(inf["target_date"]) - dt.timedelta(days=30)  # well before: out of window too
    r = app.record_visit_held(inv, inf["id"], date=held)
    assert r["status"] == "held_out_of_window" and r["deviations"]
    m12 = app.get_visit(inv, Visit.id_for(pid, "M12"))
    assert m12["target_date"] == (held + dt.timedelta(days=365)).isoformat() != m12_before["target_date"]
    d1 = app.get_visit(inv, Visit.id_for(pid, "D1"))
    assert d1["target_date"] == (held + dt.timedelta(days=1)).isoformat()
    listed = {v["code"]: v for v in app.list_visits(inv, pid)}
    assert listed["M12"]["target_date"] == m12["target_date"]
    history = app.visit_history(inv, m12["id"])
    assert history[-1]["type"] == "VisitRescheduled" and "infusion" in history[-1]["reason"]
