"""Issue 13 C.6: a snapshot is never believed on its own.

A database administrator rewrites a snapshot row below the API (one UPDATE, as the attacks of the
issue did): an investigator's User snapshot made a data manager of all sites, a Participant snapshot
with another sex, screening number or arm. The snapshot store seals every snapshot with an
HMAC-SHA256 under a key kept in the data directory, outside the database; a snapshot whose seal does
not hold is not used (the aggregate is replayed from its events) and `trialaudit verify` names it
(R10: records cannot be altered undetected; R7: the audit trail is the record).
"""

from __future__ import annotations

import json
import sqlite3
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import cli_actor
from api.container import build, setup_store
from application.repository import SNAPSHOT_SEAL
from bench.crash import cli, store_env
from infrastructure.store import parse_database_url, postgres_conninfo
from tests.conftest import PASSWORD

MAC_END = len(SNAPSHOT_SEAL) + 32


def _rows(url: str) -> tuple[object, str, list[tuple]]:
    parts = parse_database_url(url)
    if parts["kind"] == "sqlite":
        conn = sqlite3.connect(parts["path"], isolation_level=None)
        table = "stored_snapshots"
    else:
        import psycopg

        conn = psycopg.connect(postgres_conninfo(url), autocommit=True)
        table = f'"{parts["schema"]}".trialaudit_snapshots'
    rows = conn.execute(f"SELECT originator_id, originator_version, state FROM {table}").fetchall()
    return conn, table, rows


def _rewrite(url: str, aggregate_id: str, change, *, keep_seal: bool = True) -> None:
    """UPDATE the aggregate's snapshot row as a DBA would: the state's JSON changed, the old MAC kept
    (the key is not in the database) or the seal dropped (the format of snapshots before sealing)."""
    conn, table, rows = _rows(url)
    ph = "?" if isinstance(conn, sqlite3.Connection) else "%s"
    try:
        hits = [r for r in rows if UUID(str(r[0])) == UUID(aggregate_id)]
        assert hits, "the aggregate has a snapshot"
        for oid, version, state in hits:
            state = bytes(state)
            seal, body = (state[:MAC_END], state[MAC_END:]) if state.startswith(SNAPSHOT_SEAL) else (b"", state)
            snapshot = json.loads(body)
            change(snapshot["state"])
            new = json.dumps(snapshot).encode()
            conn.execute(f"UPDATE {table} SET state = {ph} WHERE originator_id = {ph} AND originator_version = {ph}",
                         ((seal if keep_seal else b"") + new, oid, version))
    finally:
        conn.close()


@pytest.fixture
def world(store_url, make_settings):
    settings = make_settings(store_url)
    setup_store(settings)
    svc = build(settings)
    app = svc.app
    inv = app.register_user(cli_actor(), username="ivan", full_name="Ivan Investigator", role="investigator",
                            site="MINSK", password=PASSWORD, source="cli")
    actor = app.actor_for(inv["id"])
    p = app.screen_participant(actor, screening_number="SCR-7001", site="MINSK", sex="F", birth_year=1970)
    app.take_snapshot(UUID(inv["id"]))
    app.take_snapshot(UUID(p["id"]))
    svc.close()
    return settings, inv["id"], p["id"]


def _verify(settings) -> tuple[int, str]:
    r = cli(store_env(settings.database_url, settings.data_dir), settings.data_dir.parent, "verify")
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("keep_seal", [True, False], ids=["old-mac-kept", "seal-dropped"])
def test_a_rewritten_user_snapshot_does_not_elevate_the_user(world, keep_seal):
    settings, user_id, _ = world
    assert _verify(settings)[0] == 0  # genuine snapshots agree with the replay of their events
    _rewrite(settings.database_url, user_id, lambda s: s.update(role="data_manager", site="*"), keep_seal=keep_seal)

    svc = build(settings)  # a process started after the UPDATE (no cached aggregate)
    try:
        actor = svc.app.actor_for(user_id)
        assert (actor.role, actor.site) == ("investigator", "MINSK")
        with TestClient(create_app(svc)) as client:
            token = client.post("/auth/token", data={"username": "ivan", "password": PASSWORD}).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get("/me", headers=headers).json()["role"] == "investigator"
            r = client.post("/study/lock", json={"reason": "database lock for the final analysis"}, headers=headers)
            assert r.status_code == 403, r.text
    finally:
        svc.close()
    code, output = _verify(settings)
    assert code == 1
    assert f"snapshot of User {user_id} at version" in output


def test_a_rewritten_participant_snapshot_changes_nothing_served(world):
    settings, user_id, participant_id = world
    _rewrite(settings.database_url, participant_id,
             lambda s: s.update(sex="M", screening_number="SCR-9999", arm="treatment"))

    svc = build(settings)
    try:
        served = svc.app.get_participant(svc.app.actor_for(user_id), participant_id)
    finally:
        svc.close()
    assert (served["sex"], served["screening_number"], served.get("arm")) == ("F", "SCR-7001", None)
    code, output = _verify(settings)
    assert code == 1
    assert f"snapshot of Participant {participant_id} at version" in output
