"""The projection engine: exactly once, read-your-writes, rebuild == live."""

from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE


def test_list_follows_writes_and_rebuild_matches_live(services, add_user, actor_of):
    app = services.app
    inv = actor_of(add_user("inv1", "investigator"))
    ids = []
    for i in range(7):
        r = app.screen_participant(inv, screening_number=f"S-{i:03}", site="MINSK", sex="F", birth_year=1960 + i)
        ids.append(r["id"])
    app.assess_eligibility(inv, ids[0], inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(inv, ids[0], consent_version="v1", signed_on="2026-01-01")
    app.randomise(inv, ids[0])
    app.withdraw(inv, ids[1], reason="participant moved to another country")
    app.correct_participant(inv, ids[2], field="sex", new_value="M", reason="transcribed wrongly from source")

    listed = {p["id"]: p for p in app.list_participants(inv)}  # read-your-writes: no sleep
    assert listed[ids[0]]["status"] == "randomised" and listed[ids[0]]["arm"]
    assert listed[ids[1]]["status"] == "withdrawn"
    assert listed[ids[2]]["sex"] == "M"
    live = services.projections.dump()
    services.projections.rebuild()
    assert services.projections.dump() == live


def test_site_bound_users_list_only_their_site(services, add_user, actor_of):
    app = services.app
    minsk = actor_of(add_user("inv_minsk", "investigator", "MINSK"))
    gomel = actor_of(add_user("inv_gomel", "investigator", "GOMEL"))
    app.screen_participant(minsk, screening_number="M-1", site="MINSK", sex="F", birth_year=1970)
    app.screen_participant(gomel, screening_number="G-1", site="GOMEL", sex="M", birth_year=1971)
    assert [p["screening_number"] for p in app.list_participants(minsk)] == ["M-1"]
    assert [p["screening_number"] for p in app.list_participants(gomel)] == ["G-1"]
