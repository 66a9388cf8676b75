"""C.7 (R36, R10): an event appended behind the server's back together with a correct leaf is never
built on nor signed over: every sealing transaction signs a head, a sealer refuses to extend a log
whose tail no head of ours covers (logged, and recorded outside the rolled-back transaction), the
head routes refuse to sign it, and `trialaudit verify` names the first uncovered leaf."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

from typer.testing import CliRunner

from api.cli import cli, cli_actor
from api.container import build, setup_store
from application import merkle as M
from tests.integrity.test_tamper import Attacker, run_verify


def forge_event_with_its_leaf(integrity) -> int:
    """Insert an event and a correctly formed format-1 leaf for it; return the forged leaf's index."""
    attacker = Attacker(integrity)
    attacker.drop_triggers()
    s, p = attacker.sql, attacker.p
    template = attacker.event(attacker.notification_ids()[0])
    oid = uuid.uuid4()
    stored_oid = oid if s.pg else oid.hex
    attacker.run(f"INSERT INTO {s.events} (originator_id, originator_version, topic, state) VALUES ({p},{p},{p},{p})",
                 (stored_oid, 1, template["topic"], bytes(template["state"])))
    nid = max(attacker.notification_ids())
    size = integrity.log.tree_size()
    frame = M.frame_event(oid.bytes, 1, template["topic"], bytes(template["state"]))
    data = M.leaf_v1(hashlib.sha256(frame).digest(), M.NO_SUBJECT, nid)
    attacker.run(f"INSERT INTO {s.leaves} (leaf_index, notification_id, leaf_hash, leaf_data) VALUES ({p},{p},{p},{p})",
                 (size, nid, M.leaf_hash(data), data))
    return size


def test_every_sealing_transaction_seals_its_tail(store_url, make_settings):
    """C.7: the log never ends in leaves no signature of ours covers, whatever the head interval: each
    sealing transaction signs the head it leaves and keeps it in its last leaf's row (the tail seal)."""
    settings = make_settings(store_url, head_interval_seconds=3600)
    setup_store(settings)
    svc = build(settings, follow=False)
    try:
        for i in range(3):
            svc.app.register_user(cli_actor(), username=f"u{i}", full_name=f"User {i}", role="inspector", site="*",
                                  password="a long enough password", source="cli")
            size = svc.integrity.log.tree_size()
            assert svc.integrity.log.tail_seal()[0] == size == svc.integrity.covered_size()
        assert len(svc.integrity.log.heads()) <= 1  # no head row per transaction
        assert svc.integrity.verify().ok
    finally:
        svc.close()


def test_a_forged_event_with_a_correct_leaf_is_refused_and_reported(client, login, randomised_participant, cli_env,
                                                                     integrity, services, caplog):
    """C.7, R36: after a forged event + leaf, the next write is refused (409, nothing stored, logged and
    recorded), no head is signed over it (GET/POST /integrity/head: 409), and `verify` exits 1 naming it."""
    pid, inv = randomised_participant()
    admin = login("adm", "admin", "*")
    forged = forge_event_with_its_leaf(integrity)
    size = integrity.log.tree_size()
    services.app.recorder._frontier_cache = None  # as a server process started after the forgery would be
    with caplog.at_level(logging.CRITICAL):
        r = client.post(f"/participants/{pid}/corrections",
                        json={"field": "birth_year", "new_value": 1971, "reason": "typo"}, headers=inv)
    assert r.status_code == 409, r.text
    assert f"ends at {size} leaves" in r.json()["detail"]
    assert integrity.log.tree_size() == size and client.get(f"/participants/{pid}", headers=inv).json()["birth_year"] == 1970
    assert any("refusing to extend the integrity log" in m for m in caplog.messages)
    deadline = time.monotonic() + 10  # recorded by another thread, apart from the rolled-back transaction
    while not integrity.log.alarms() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(f"ends at {size} leaves" in a["message"] for a in integrity.log.alarms())
    for method in (client.get, client.post):
        r = method("/integrity/head", headers=admin)
        assert r.status_code == 409 and f"leaves {forged}..{size - 1}" in r.json()["detail"], r.text
    result, bad = run_verify()
    assert result.exit_code == 1 and bad == forged, result.output
    assert "covered by no signed head" in result.output
    result = CliRunner().invoke(cli, ["head", "--sign"])
    assert result.exit_code == 1 and "covered by no signed head" in result.output


def test_a_log_growing_while_verified_is_not_called_uncovered(randomised_participant, services, integrity):
    """C.7, R36: events sealed by the server while `verify` runs are covered by their own tail seals:
    no false alarm of leaves appended behind its back."""
    randomised_participant()
    written = []

    def write_meanwhile(done: int, total: int) -> None:
        if not written:
            written.append(services.app.register_user(
                cli_actor(), username="meanwhile", full_name="Written Meanwhile", role="inspector", site="*",
                password="a long enough password", source="cli"))

    report = integrity.verify(progress=write_meanwhile)
    assert written and report.ok, report.findings
