"""What a worker keeps between commands (who a token's user is, which lock holders do not exist) may be
kept only while nothing of that kind has changed anywhere.

A second TrialApplication on the same SQLite file stands for another API worker (it shares nothing
with the first but the file and its shared change counter); a subprocess checks the same across
real processes. Deactivation, a new role or site, a lockout (R22, R23, R24) and a casebook or study
lock (R34) must bite at once.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from api.cli import cli_actor
from api.container import build, setup_store
from domain.errors import AuthenticationFailed, Locked
from infrastructure.changecount import ChangeCounter
from infrastructure.tokens import TokenError, TokenService
from tests.conftest import PASSWORD

REPO = Path(__file__).resolve().parents[2]
REASON = "transcription error; see clinic note"


@pytest.fixture
def two_workers(sqlite_url, make_settings):
    settings = make_settings(sqlite_url)
    setup_store(settings)
    one, two = build(settings, follow=False), build(settings, follow=False)
    yield one.app, two.app, settings
    one.close()
    two.close()


def _register(app, username: str, role: str = "investigator", site: str = "MINSK") -> dict:
    return app.register_user(cli_actor(), username=username, full_name=f"{username} Person", role=role, site=site,
                             password=PASSWORD, source="cli")


def test_the_actor_is_kept_while_no_account_changes(two_workers):
    one, _, _ = two_workers
    user = _register(one, "inv1")
    first = one.actor_for(user["id"])
    reads = []
    original = one.repository.get
    one.repository.get = lambda *a, **k: reads.append(a) or original(*a, **k)
    assert one.actor_for(user["id"]) == first
    assert reads == []  # served from the kept actor: no read of the account


def test_deactivation_in_another_worker_bites_at_once_R22(two_workers):
    one, two, _ = two_workers
    admin = two.actor_for(_register(two, "admin1", "admin", "*")["id"])
    user = _register(one, "inv1")
    assert one.actor_for(user["id"]).role == "investigator"  # kept by worker one
    two.deactivate_user(admin, user["id"], reason="left the study team")
    with pytest.raises(AuthenticationFailed, match="deactivated"):
        one.actor_for(user["id"])
    two.reactivate_user(admin, user["id"], reason="rejoined the study team")
    assert one.actor_for(user["id"]).username == "inv1"


def test_a_new_role_or_site_in_another_worker_is_seen_at_once_R23(two_workers):
    one, two, _ = two_workers
    admin = two.actor_for(_register(two, "admin1", "admin", "*")["id"])
    user = _register(one, "inv1")
    assert one.actor_for(user["id"]).site == "MINSK"
    two.change_user_site(admin, user["id"], site="GOMEL", reason="moved to the Gomel site")
    assert one.actor_for(user["id"]).site == "GOMEL"
    two.change_user_role(admin, user["id"], role="coordinator", reason="now coordinates the site")
    assert one.actor_for(user["id"]).role == "coordinator"


def test_a_lockout_in_another_worker_bites_at_once_R24(two_workers):
    one, two, _ = two_workers
    user = _register(one, "inv1")
    one.actor_for(user["id"])
    for _ in range(two.max_failed_logins):
        with pytest.raises(AuthenticationFailed):
            two.authenticate("inv1", "not the password at all")
    with pytest.raises(AuthenticationFailed, match="locked"):
        one.actor_for(user["id"])


def test_deactivation_in_another_process_bites_at_once_R22(two_workers, tmp_path):
    one, two, settings = two_workers
    admin = _register(two, "admin1", "admin", "*")
    user = _register(one, "inv1")
    one.actor_for(user["id"])
    script = textwrap.dedent(f"""
        from api.container import build
        from infrastructure.settings import Settings
        svc = build(Settings(database_url={settings.database_url!r}, data_dir={str(settings.data_dir)!r},
                             sites={dict(settings.sites)!r}, demo=False), follow=False)
        admin = svc.app.actor_for({admin["id"]!r})
        svc.app.deactivate_user(admin, {user["id"]!r}, reason="left the study team")
        svc.close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""})
    with pytest.raises(AuthenticationFailed, match="deactivated"):
        one.actor_for(user["id"])


def test_no_generation_while_a_watched_write_is_in_flight(tmp_path):
    counter = ChangeCounter(str(tmp_path / "c"))
    other = ChangeCounter(str(tmp_path / "c"))  # another process's mapping of the same file
    assert counter.generation() == other.generation() == 0
    counter.begin()
    assert other.generation() is None  # nothing may be kept while a write is in flight
    counter.end()
    assert other.generation() == 1
    counter.begin()  # a writer that died here leaves no generation until the next write ends
    assert other.generation() is None
    other.begin()
    other.end()
    assert counter.generation() == other.generation() == 3


def test_a_remembered_token_still_expires():
    tokens = TokenService(b"k" * 32, ttl_seconds=60)
    token = tokens.issue("user-1", now=1000.0)
    assert tokens.verify(token, now=1001.0) == "user-1"
    assert tokens.verify(token, now=1002.0) == "user-1"  # remembered
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token, now=1060.0)
    with pytest.raises(TokenError):
        tokens.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], now=1001.0)


def test_memory_store_reads_the_account_every_time(make_settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its read models are a file named after it, in the working directory
    settings = make_settings("sqlite:///:memory:")
    svc = build(settings, create_tables=True, follow=False)
    try:
        assert svc.app._account_changes is None
    finally:
        svc.close()



def _screen(app, actor) -> str:
    return app.screen_participant(actor, screening_number=f"S-{uuid.uuid4().hex[:8]}", site="MINSK", sex="F",
                                  birth_year=1970)["id"]


def test_a_casebook_or_study_lock_made_by_another_worker_bites_at_once_R34(two_workers):
    """Worker one remembers that no casebook or study lock exists; a lock made by worker two must
    still refuse worker one's next correction (409), and an unlock must let it through again."""
    one, two, _ = two_workers
    inv = one.actor_for(_register(one, "inv1")["id"])
    dm = two.actor_for(_register(two, "dm1", "data_manager", "*")["id"])
    pid = _screen(one, inv)
    one.correct_participant(inv, pid, field="birth_year", new_value=1971, reason=REASON)  # absence remembered
    reads = []
    probe = one.recorder.originators_with_events
    one.recorder.originators_with_events = lambda ids: reads.append(ids) or probe(ids)
    one.correct_participant(inv, pid, field="birth_year", new_value=1972, reason=REASON)
    assert reads == []  # nothing asked: the lock holders were known to be absent

    two.lock_participant(dm, pid, reason="data cleaning finished")
    with pytest.raises(Locked):
        one.correct_participant(inv, pid, field="birth_year", new_value=1973, reason=REASON)
    two.unlock_participant(dm, pid, reason="query raised by the monitor")
    one.correct_participant(inv, pid, field="birth_year", new_value=1973, reason=REASON)

    other = _screen(one, inv)
    one.correct_participant(inv, other, field="birth_year", new_value=1971, reason=REASON)
    two.lock_study(dm, reason="database lock before final analysis")
    with pytest.raises(Locked):
        one.correct_participant(inv, other, field="birth_year", new_value=1972, reason=REASON)
