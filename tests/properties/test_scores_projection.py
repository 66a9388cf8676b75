"""Property: for random sequences of item commands, the live score projection equals a rebuild from
event 1, equals the pure scoring of the aggregates, and equals as-of replay at the present (R6, R17)."""

import datetime as dt
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.scores import score_items
from application.scores_projection import row_view
from domain.errors import Conflict
from domain.visit import ITEM_CODES, Visit
from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE

# a few items of each instrument, so that sequences revisit the same item (corrections and clears)
ITEMS = [c for c in ITEM_CODES if c.startswith("acr_eular.")][:6] + [c for c in ITEM_CODES if c.startswith("mrss.")]


@st.composite
def commands(draw):
    code = draw(st.sampled_from(ITEMS))
    value = draw(st.sampled_from([True, False, None]) if code.startswith("acr_eular.") else st.integers(0, 3))
    clear = draw(st.integers(0, 4)) == 0 and code.startswith("acr_eular.")
    return draw(st.sampled_from(["BL", "M12", "M6"])), code, None if clear else value, clear


_numbers = itertools.count()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(commands(), min_size=1, max_size=40))
def test_projection_equals_rebuild_and_pure_scoring(services, add_user, actor_of, ops):
    """R6, R17: one event per command; projection == rebuild == pure scoring == as-of replay."""
    app = services.app
    n = next(_numbers)
    if n == 0 or app.user_by_name("prop_inv") is None:
        add_user("prop_inv", "investigator")
    inv = actor_of({"id": str(app.user_by_name("prop_inv").id)})
    pid = app.screen_participant(inv, screening_number=f"P-{n:04}", site="MINSK", sex="F", birth_year=1970)["id"]
    app.assess_eligibility(inv, pid, inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(inv, pid, consent_version="v1", signed_on="2026-01-01")
    app.randomise(inv, pid)
    today = dt.datetime.now(dt.timezone.utc).date()
    for visit_code in ("BL", "M12", "M6"):  # items are recorded once the visit's date is
        app.record_visit_held(inv, Visit.id_for(pid, visit_code), date=today)
    for i, (visit_code, code, value, clear) in enumerate(ops):
        try:
            app.record_item(inv, Visit.id_for(pid, visit_code), code, value=value, clear=clear,
                            reason=f"change number {i} after source review")
        except Conflict:
            pass  # clearing an item that has no value
    live = app.participant_scores(inv, pid)
    assert live == app.participant_scores(inv, pid, as_of=dt.datetime.now(dt.timezone.utc))
    rows = {r["visit_id"]: row_view(r) for r in services.projections.store.query(
        "SELECT * FROM visit_scores WHERE participant_id = ?", (pid,))}
    for vid, row in rows.items():
        acr, mrss = score_items(app.repository.get(Visit.id_for(pid, row["code"])).items)
        assert (row["acr_eular"], row["mrss"]) == (acr, mrss)
    before = services.projections.dump()
    services.projections.rebuild()
    assert services.projections.dump() == before
    assert app.participant_scores(inv, pid) == live
