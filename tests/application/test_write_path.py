"""The fast paths of the audited write path (bench http_commands) keep their guarantees,
on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import uuid

import pytest

from api.container import build
from domain.casebook import Casebook
from domain.errors import Locked
from domain.lock import StudyLock
from domain.participant import Participant


@pytest.fixture
def inv(add_user, actor_of):
    return actor_of(add_user("inv1", "investigator", "MINSK"))


def screen(app, inv) -> str:
    return app.screen_participant(inv, screening_number=f"S-{uuid.uuid4().hex[:6]}", site="MINSK", sex="F",
                                  birth_year=1970)["id"]


def test_one_read_tells_which_aggregates_exist(app, inv):
    pid = screen(app, inv)
    absent = [StudyLock.id_for(), Casebook.id_for(pid), uuid.uuid4()]
    assert app.recorder.originators_with_events([]) == set()
    assert app.recorder.originators_with_events(absent) == set()
    assert app.recorder.originators_with_events([uuid.UUID(pid), *absent]) == {uuid.UUID(pid)}


def test_a_lock_committed_by_another_process_refuses_the_next_correction(services, make_settings, add_user,
                                                                          actor_of, inv):
    """The lock lookups are one read per save, never a cached 'not locked'."""
    app = services.app
    dm = actor_of(add_user("dm1", "data_manager", "*"))
    pid = screen(app, inv)
    app.correct_participant(inv, pid, field="birth_year", new_value=1971, reason="transcription error at entry")
    other = build(make_settings(services.settings.database_url), follow=False)
    try:
        other.app.lock_participant(other.app.actor_for(dm.user_id), pid, reason="casebook complete")
        with pytest.raises(Locked):
            app.correct_participant(inv, pid, field="birth_year", new_value=1972, reason="transcription error again")
        other.app.unlock_participant(other.app.actor_for(dm.user_id), pid, reason="query reopened by monitor")
        app.correct_participant(inv, pid, field="birth_year", new_value=1972, reason="transcription error again")
        other.app.lock_study(other.app.actor_for(dm.user_id), reason="database lock before analysis")
        with pytest.raises(Locked):
            app.correct_participant(inv, pid, field="birth_year", new_value=1973, reason="transcription error third")
    finally:
        other.close()
    assert app.get_participant(inv, pid)["birth_year"] == 1972


def test_the_sqlite_pool_hands_out_the_connection_returned_last(sqlite_url, make_settings):
    """Its page cache is the warmest (WAL mode discards a connection's cache after others commit)."""
    svc = build(make_settings(sqlite_url), create_tables=True, follow=False)
    try:
        pool = svc.app.recorder.datastore.pool
        a = pool.get_connection(is_writer=False)
        b = pool.get_connection(is_writer=False)
        pool.put_connection(a)
        pool.put_connection(b)
        c = pool.get_connection(is_writer=False)
        assert c is b
        pool.put_connection(c)
    finally:
        svc.close()
