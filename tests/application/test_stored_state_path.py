"""Projections that read an event's stored state instead of the decoded event (``process_recorded``): the
audit index and the visit scores give exactly what they give for the decoded domain event, on both
stores, and the recorded time reads the same from the state as from the datetime (R2, R15, R17)."""

from __future__ import annotations

import datetime as dt

import pytest

from api.container import build, setup_store
from application.audit_index import AuditIndex
from application.demo import generate
from application.projections import ProjectionEngine, Recorded
from application.scores_projection import VisitScores
from application.views import iso, iso_recorded


@pytest.fixture
def trial(store_url, make_settings):
    settings = make_settings(store_url)
    setup_store(settings)
    svc = build(settings, follow=False)
    generate(svc.app, participants=4, seed=11, today=dt.date(2026, 3, 1))
    yield svc
    svc.close()


def log(svc) -> list[Recorded]:
    engine: ProjectionEngine = svc.projections
    head = svc.app.recorder.max_notification_id()
    return [Recorded(row, svc.app.mapper) for row in engine._read(0, head, ())]


def test_the_log_read_as_rows_is_the_log_read_as_notifications(trial):
    head = trial.app.recorder.max_notification_id()
    notifications = trial.app.recorder.select_notifications(start=0, limit=head + 1, inclusive_of_start=False)
    rows = log(trial)
    assert [(r.id, r.topic, r.originator_version, r.state) for r in rows] == [
        (n.id, n.topic, n.originator_version, n.state) for n in notifications]
    assert [r.aggregate_id for r in rows] == [str(n.originator_id) for n in notifications]
    some = trial.app.recorder.select_notification_rows(start=5, stop=40, limit=10, topics=("trialaudit.Visit.ItemRecorded",)) \
        if hasattr(trial.app.recorder, "select_notification_rows") else None
    if some is not None:  # SQLite: start exclusive, stop inclusive, topics filtered, limit kept
        assert len(some) == 10 and all(5 < r[0] <= 40 and r[3] == "trialaudit.Visit.ItemRecorded" for r in some)


def test_the_audit_index_reads_from_the_stored_state_what_the_decoded_event_says(trial):
    """Every row of every event of a whole synthetic trial (participants, visits, items, adverse
    events, users, corrections with reasons) is the same by either path."""
    by_object, by_state = AuditIndex(), AuditIndex()
    for index in (by_object, by_state):
        index.begin_rebuild()  # every look-up is answered from memory, none from the tables
    recorded = log(trial)
    for r in recorded:
        by_object.process(trial.app.mapper.to_domain_event(r), r.id, None)
        by_state.process_recorded(r, None)
    assert len(by_state._event_rows) == len(recorded)
    assert by_state._event_rows == by_object._event_rows
    assert by_state._change_rows == by_object._change_rows and by_state._change_rows
    assert by_state._aggregates == by_object._aggregates and by_state._fields == by_object._fields


def test_the_visit_scores_read_items_from_the_stored_state_as_from_the_event(trial):
    by_object, by_state = VisitScores(), VisitScores()
    for r in log(trial):
        if r.topic in VisitScores.topics:
            by_object.process(trial.app.mapper.to_domain_event(r), r.id, None)
            by_state.process_recorded(r, None)
    assert by_state._pending == by_object._pending and by_state._pending
    assert by_state._dirty == by_object._dirty
    assert by_state._statements == by_object._statements


@pytest.mark.parametrize("text", [
    "2025-08-22T13:56:13.000011+00:00",  # what the library writes
    "2026-11-26T22:00:01+00:00",  # a whole second: no fraction written
    "2025-03-30T01:59:59.999999+02:00",  # another offset: converted to UTC
    "0999-01-01T00:00:00+00:00",
])
def test_the_recorded_time_reads_the_same_from_the_state_as_from_the_datetime(text):
    stamp = dt.datetime.fromisoformat(text)
    assert iso_recorded({"_type_": "datetime_iso", "_data_": text}) == iso(stamp)
    assert iso_recorded(stamp) == iso(stamp)


def test_a_state_that_is_not_a_recorded_time_is_refused():
    with pytest.raises(ValueError):
        iso_recorded({"_type_": "date_iso", "_data_": "2025-01-01"})


def test_a_compressed_or_enciphered_state_is_read_through_the_mapper(trial):
    """An application configured with a compressor (or a cipher) stores bytes orjson cannot parse: the
    projections then read what the mapper decodes, and still give the same rows."""
    from eventsourcing.compressor import ZlibCompressor
    from eventsourcing.persistence import Mapper

    mapper = Mapper(transcoder=trial.app.mapper.transcoder, compressor=ZlibCompressor())
    recorded = []
    for r in log(trial):
        stored = mapper.to_stored_event(trial.app.mapper.to_domain_event(r))
        recorded.append(Recorded((r.id, stored.originator_id, stored.originator_version, stored.topic, stored.state), mapper))
    assert recorded[0].state != log(trial)[0].state  # compressed
    plain, compressed = AuditIndex(), AuditIndex()
    for index in (plain, compressed):
        index.begin_rebuild()
    for r, c in zip(log(trial), recorded):
        plain.process_recorded(r, None)
        compressed.process_recorded(c, None)
    assert compressed._event_rows == plain._event_rows and compressed._change_rows == plain._change_rows
