"""A small synthetic trial written through the application: two sites, users of every role,
participants with corrections, and visit/AE-shaped aggregates with chosen recorded times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.audit.synthetic import SyntheticAE, SyntheticVisit, utc


@dataclass
class Trial:
    app: Any
    actors: dict[str, Any]
    minsk: str  # participant ids
    gomel: str
    visit: SyntheticVisit
    ae: SyntheticAE


@pytest.fixture
def trial(services, add_user, actor_of) -> Trial:
    app = services.app
    actors = {
        name: actor_of(add_user(name, role, site))
        for name, role, site in (
            ("inv_minsk", "investigator", "MINSK"), ("inv_gomel", "investigator", "GOMEL"),
            ("mon_minsk", "monitor", "MINSK"), ("mon_gomel", "monitor", "GOMEL"),
            ("dm", "data_manager", "*"), ("insp", "inspector", "*"), ("adm", "admin", "*"),
        )
    }
    inv, inv_g = actors["inv_minsk"], actors["inv_gomel"]
    minsk = app.screen_participant(inv, screening_number="M-001", site="MINSK", sex="F", birth_year=1970)["id"]
    gomel = app.screen_participant(inv_g, screening_number="G-001", site="GOMEL", sex="M", birth_year=1965)["id"]
    app.correct_participant(inv, minsk, field="birth_year", new_value=1971, reason="transcribed wrongly from source")
    app.correct_participant(inv_g, gomel, field="sex", new_value="F", reason="source document says female")

    # A visit at MINSK (Europe/Minsk is UTC+3): held 2026-03-02, Monday.
    visit = SyntheticVisit.open(minsk, "MINSK", inv, utc("2026-03-02T08:00:00Z"))
    visit.held("2026-03-02", inv, utc("2026-03-02T08:05:00Z"))
    visit.enter("acr_eular.puffy_fingers", True, inv, utc("2026-03-02T09:00:00Z"))  # 12:00 local
    visit.enter("mrss.fingers_right", 2, inv, utc("2026-03-02T18:30:00Z"))  # 21:30 local: outside hours
    visit.enter("acr_eular.puffy_fingers", False, inv, utc("2026-03-03T07:00:00Z"),  # 10:00 local
                reason="source document says no puffy fingers", query_id="Q-17")
    visit.enter("notes.comment", "ok", inv, utc("2026-03-07T09:00:00Z"))  # Saturday 12:00 local
    app.save(visit)
    # An AE at MINSK, onset 2026-02-01, reported 2026-03-04 (31 days later: late).
    ae = SyntheticAE.report(minsk, {"aeterm": "Rash", "aestdat": "2026-02-01", "aetoxgr": 2}, inv,
                            utc("2026-03-04T08:00:00Z"))
    ae.correct("aetoxgr", 3, inv, utc("2026-03-05T08:00:00Z"), reason="grade per dermatology note")
    app.save(ae)
    return Trial(app=app, actors=actors, minsk=minsk, gomel=gomel, visit=visit, ae=ae)
