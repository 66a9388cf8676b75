"""The audited participant lifecycle through the application, on SQLite and PostgreSQL."""

import datetime as dt
import time

import pytest

from domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied, StaleVersion
from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE


@pytest.fixture
def inv(add_user, actor_of):
    return actor_of(add_user("inv1", "investigator", "MINSK", "Dr Alena Investigator"))


def enrol(app, actor, number="SCR-001", site="MINSK"):
    pid = app.screen_participant(actor, screening_number=number, site=site, sex="F", birth_year=1970)["id"]
    app.assess_eligibility(actor, pid, inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(actor, pid, consent_version="ICF v1.0", signed_on="2026-01-05")
    return pid


def test_full_lifecycle_is_audited_step_by_step_R1_R2_R3_R4(app, inv):
    pid = enrol(app, inv)
    result = app.randomise(inv, pid)
    assert result["arm"] in ("treg_plus_standard", "standard")
    assert result["allocation_slot"] is None  # concealed from site roles (issue 13 E.19)
    app.correct_participant(inv, pid, field="birth_year", new_value=1971, reason="transcription error from source")
    history = app.participant_history(inv, pid)
    assert [h["type"] for h in history] == [
        "ParticipantScreened", "EligibilityAssessed", "ConsentRecorded", "ParticipantRandomised", "FieldCorrected",
    ]
    for h in history:
        assert h["actor"]["full_name"] == "Dr Alena Investigator" and h["actor"]["role"] == "investigator"
        assert h["actor"]["site"] == "MINSK" and h["recorded_at"].endswith("Z")
    assert [h["reason"] for h in history][:4] == [None] * 4  # first entries need no reason
    assert history[-1]["reason"] == "transcription error from source"
    assert history[-1]["changes"] == [{"field": "birth_year", "old_value": 1970, "new_value": 1971}]
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5]


def test_actor_is_stored_as_they_were_then_not_joined_from_current_tables_R3(app, services, add_user, actor_of):
    admin = actor_of(add_user("admin1", "admin", "*"))
    user = add_user("inv2", "investigator", "MINSK", "Dr Old Name")
    pid = app.screen_participant(actor_of(user), screening_number="S-9", site="MINSK", sex="M", birth_year=1980)["id"]
    app.change_user_role(admin, user["id"], role="coordinator", reason="took over coordination at the site")
    history = app.participant_history(actor_of(user), pid)
    assert history[0]["actor"]["role"] == "investigator"
    assert app.get_user(admin, user["id"])["role"] == "coordinator"


def test_screening_number_is_unique_in_the_trial(app, inv, add_user, actor_of):
    app.screen_participant(inv, screening_number="SCR-7", site="MINSK", sex="F", birth_year=1970)
    gomel = actor_of(add_user("g1", "investigator", "GOMEL"))
    with pytest.raises(Conflict, match="already in use"):
        app.screen_participant(gomel, screening_number="scr-7", site="GOMEL", sex="F", birth_year=1970)


def test_a_corrected_screening_number_frees_the_old_one(app, inv):
    pid = app.screen_participant(inv, screening_number="SCR-10", site="MINSK", sex="F", birth_year=1970)["id"]
    app.correct_participant(inv, pid, field="screening_number", new_value="SCR-11", reason="number swapped on the log")
    assert app.get_participant(inv, pid)["screening_number"] == "SCR-11"
    app.screen_participant(inv, screening_number="SCR-10", site="MINSK", sex="M", birth_year=1975)
    other = app.screen_participant(inv, screening_number="SCR-12", site="MINSK", sex="M", birth_year=1975)["id"]
    with pytest.raises(Conflict, match="already in use"):
        app.correct_participant(inv, other, field="screening_number", new_value="SCR-11", reason="number swapped on the log")
    assert app.get_participant(inv, other)["screening_number"] == "SCR-12"  # nothing changed


def test_randomisation_refused_unless_eligible_and_consented(app, inv):
    pid = app.screen_participant(inv, screening_number="S-1", site="MINSK", sex="F", birth_year=1970)["id"]
    with pytest.raises(Conflict):
        app.randomise(inv, pid)
    app.assess_eligibility(inv, pid, inclusion=INCLUSION_ALL_TRUE, exclusion={**EXCLUSION_ALL_FALSE, "decompensated_disease": True})
    app.record_consent(inv, pid, consent_version="ICF v1.0", signed_on="2026-01-05")
    with pytest.raises(Conflict, match="not eligible"):
        app.randomise(inv, pid)
    assert app.get_participant(inv, pid)["arm"] is None


def test_allocation_follows_the_concealed_sequence_and_is_balanced(app, inv, services):
    from domain.randomisation import sequence

    arms = [app.randomise(inv, enrol(app, inv, f"S-{i}"))["arm"] for i in range(8)]
    assert arms == sequence(app._allocation_seed, "MINSK", 8)
    assert arms.count("standard") in (3, 4, 5)


def test_stale_expected_version_changes_nothing(app, inv):
    pid = app.screen_participant(inv, screening_number="S-1", site="MINSK", sex="F", birth_year=1970)["id"]
    with pytest.raises(StaleVersion):
        app.correct_participant(inv, pid, field="sex", new_value="M", reason="sex recorded wrongly", expected_version=7)
    app.correct_participant(inv, pid, field="sex", new_value="M", reason="sex recorded wrongly", expected_version=1)
    assert app.get_participant(inv, pid)["version"] == 2


def test_as_of_returns_the_state_as_recorded_at_that_instant_R17(app, inv):
    pid = app.screen_participant(inv, screening_number="S-1", site="MINSK", sex="F", birth_year=1970)["id"]
    time.sleep(0.01)
    t1 = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    app.correct_participant(inv, pid, field="birth_year", new_value=1969, reason="transcription error from source")
    assert app.get_participant(inv, pid, as_of=t1)["birth_year"] == 1970
    assert app.get_participant(inv, pid)["birth_year"] == 1969
    with pytest.raises(NotFound):
        app.get_participant(inv, pid, as_of=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(InvalidInput):
        app.get_participant(inv, pid, as_of=dt.datetime(2030, 1, 1))


def test_site_walls_and_roles_R23_R33(app, inv, add_user, actor_of):
    pid = app.screen_participant(inv, screening_number="S-1", site="MINSK", sex="F", birth_year=1970)["id"]
    gomel_inv = actor_of(add_user("g1", "investigator", "GOMEL"))
    monitor = actor_of(add_user("m1", "monitor", "MINSK"))
    inspector = actor_of(add_user("i1", "inspector", "*"))
    dm = actor_of(add_user("d1", "data_manager", "*"))
    admin = actor_of(add_user("a1", "admin", "*"))
    for outsider in (gomel_inv, admin):
        with pytest.raises(PermissionDenied):
            app.get_participant(outsider, pid)
    for reader in (monitor, inspector, dm):
        assert app.get_participant(reader, pid)["id"] == pid
        with pytest.raises(PermissionDenied):
            app.correct_participant(reader, pid, field="sex", new_value="M", reason="should not be allowed to")
    with pytest.raises(PermissionDenied):
        app.screen_participant(gomel_inv, screening_number="S-2", site="MINSK", sex="F", birth_year=1970)
    assert app.get_participant(inv, pid)["version"] == 1


def test_withdrawal_needs_a_reason_and_is_final(app, inv):
    pid = app.screen_participant(inv, screening_number="S-1", site="MINSK", sex="F", birth_year=1970)["id"]
    with pytest.raises(InvalidInput):
        app.withdraw(inv, pid, reason="  ")
    app.withdraw(inv, pid, reason="withdrew consent by phone")
    with pytest.raises(Conflict):
        app.withdraw(inv, pid, reason="withdrew consent by phone")
    assert app.get_participant(inv, pid)["status"] == "withdrawn"
