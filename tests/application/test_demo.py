"""The synthetic trial: real commands, corrections with reasons, reproducible from its seed (R5)."""

import datetime as dt

from api.container import build, setup_store
from application.demo import generate, store_is_empty

TODAY = dt.date(2026, 3, 1)


def test_demo_writes_a_year_of_visits_with_reasoned_corrections(services):
    app = services.app
    assert store_is_empty(app)
    summary = generate(app, participants=6, seed=7, today=TODAY)
    assert summary.participants == 6 and summary.items > 6 * 100 and not store_is_empty(app)
    dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
    table = app.primary_outcome(dm)
    assert sum(a["acr_eular_total"]["n"] for a in table["arms"]) == 6
    assert sum(a["mrss_change"]["n"] for a in table["arms"]) == 6
    corrections = [n for n in app.recorder.select_notifications(start=0, limit=100000)
                   if n.topic.endswith("ItemCorrected")]
    for n in corrections:
        audit = app.mapper.to_domain_event(n).audit
        assert len(audit["reason"]) > 20 and audit["source"] == "import"
    # recorded times run forward with the log and stay before the day the demo ran
    times = [app.mapper.to_domain_event(n).timestamp for n in app.recorder.select_notifications(start=0, limit=100000)]
    days = [t.date() for t in times]  # (within one command, save order may differ from creation order)
    assert days == sorted(days) and max(times).date() < TODAY


def test_same_seed_same_trial(tmp_path, make_settings):
    dumps = []
    for name in ("a", "b"):
        s = make_settings(f"sqlite:///{tmp_path}/{name}.db", allocation_seed="00" * 32, data_dir=tmp_path / name)
        setup_store(s)
        svc = build(s, follow=False)
        try:
            generate(svc.app, participants=3, seed=11, today=TODAY)
            svc.projections.catch_up()
            dump = svc.projections.dump(["visit_scores"])
            dumps.append(sorted(repr(tuple((k, v) for k, v in row if k not in ("visit_id", "participant_id", "modified_at")))
                                for row in dump["visit_scores"]))
        finally:
            svc.close()
    assert dumps[0] == dumps[1]
