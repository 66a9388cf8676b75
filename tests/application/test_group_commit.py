"""The SQLite group commit: commands queued together are written in one transaction; one that
conflicts is refused alone, the others are stored and sealed, and the Merkle log stays intact (R36)."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import IntegrityError

from api.cli import cli_actor
from api.container import build, setup_store
from domain.audit import make_stamp
from domain.participant import Participant
from infrastructure.store import _PendingWrite


@pytest.fixture
def svc(sqlite_url, make_settings):
    settings = make_settings(sqlite_url)
    setup_store(settings)
    services = build(settings, follow=False)
    yield services
    services.close()


def _screened(participant_id: uuid.UUID, number: str) -> Participant:
    return Participant.screen(participant_id=participant_id, screening_number=number, site="MINSK", sex="F",
                              birth_year=1970, stamp=make_stamp(cli_actor(), source="cli"))


def _stored(app, participant: Participant):
    return [app.mapper.to_stored_event(e) for e in participant.collect_events()]


def test_a_conflict_in_a_batch_refuses_only_that_command(svc):
    app, recorder = svc.app, svc.app.recorder
    taken = uuid.uuid4()
    app.save(_screened(taken, "G-0"))
    writes = [
        _PendingWrite(_stored(app, _screened(uuid.uuid4(), "G-1")), {}),
        _PendingWrite(_stored(app, _screened(taken, "G-2")), {}),  # version 1 of an existing aggregate
        _PendingWrite(_stored(app, _screened(uuid.uuid4(), "G-3")), {}),
    ]
    recorder._queue.extend(writes)
    recorder._commit_queued()
    assert all(w.done for w in writes)
    first, conflict, third = writes
    assert first.error is None and third.error is None
    assert isinstance(conflict.error, IntegrityError) and conflict.result is None
    assert first.result and third.result and first.result[0] < third.result[0]
    # exactly the two accepted commands were stored (and the first screening, before them)
    assert [n.id for n in recorder.select_notifications(start=1, limit=10)] == [1, *first.result, *third.result]
    report = svc.integrity.verify()
    assert report.first_bad is None and report.leaves == report.events == 3


def test_a_batch_without_conflict_is_one_transaction_in_order(svc):
    app, recorder = svc.app, svc.app.recorder
    writes = [_PendingWrite(_stored(app, _screened(uuid.uuid4(), f"H-{i}")), {}) for i in range(5)]
    recorder._queue.extend(writes)
    recorder._commit_queued()
    assert [w.error for w in writes] == [None] * 5
    assert [w.result[0] for w in writes] == [1, 2, 3, 4, 5]
    report = svc.integrity.verify()
    assert report.first_bad is None and report.leaves == 5
