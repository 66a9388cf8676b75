"""A.2 (R36, R23): a leaf commits to its event without carrying it; stores written by older code
(old-format leaves that are whole events) keep verifying, and their tail is adopted at set-up; who may
read leaves follows the roles. 14.11: the byte layouts are defined once and the docs derive from them."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

from typer.testing import CliRunner

from api.cli import cli
from api.container import build, setup_store
from application import merkle as M
from domain.visit import Visit
from infrastructure import bundle_verifier as V
from tests.integrity.test_bundle import busy_participant, make_bundle, run_verifier

README = Path(__file__).parents[2] / "README.md"


def test_leaves_commit_to_events_without_carrying_them(client, login, randomised_participant, integrity):
    """A.2: GET /integrity/leaves keeps leaf_index, leaf_hash, leaf_data, and the data is 73 bytes: format,
    the digest of the event's stored bytes, a subject commitment, the notification id; no content."""
    pid, _ = randomised_participant(number="S-WHO-7")
    admin = login("adm", "admin", "*")
    leaves = client.get("/integrity/leaves", params={"limit": 1000}, headers=admin).json()
    events = dict(integrity.log.scan_events(0, 10_000))
    frames = {leaf.notification_id: leaf.event for leaf in integrity.log.leaves(0, 1000)}
    subjects = set()
    for leaf in leaves:
        data = base64.b64decode(leaf["leaf_data"])
        assert b"S-WHO-7" not in data and pid.encode() not in data
        digest, subject, nid = M.parse_leaf_v1(data)
        assert leaf["leaf_hash"] == M.leaf_hash(data).hex() and events[nid] == data
        assert digest == hashlib.sha256(frames[nid]).digest()
        subjects.add(subject)
    tracker = integrity.log.subjects()
    import uuid
    assert tracker.commitment(uuid.UUID(pid).bytes) in subjects and M.NO_SUBJECT in subjects


def test_who_may_read_leaves(client, login, randomised_participant):
    """A.2, R23: the oversight roles read leaves; site-bound roles get 403 problem+json."""
    randomised_participant()
    for role, site in (("admin", "*"), ("monitor", "MINSK"), ("data_manager", "*"), ("inspector", "*")):
        assert client.get("/integrity/leaves", headers=login(f"u-{role}", role, site)).status_code == 200, role
    for role in ("investigator", "coordinator"):
        r = client.get("/integrity/leaves", headers=login(f"u-{role}", role, "GOMEL"))
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json"), role
    r = client.get("/integrity/head", headers=login("u-inv2", "investigator", "GOMEL"))
    assert r.status_code == 200  # heads and proofs are hashes only


def test_a_store_written_by_older_code_keeps_verifying(client, login, randomised_participant, services, integrity,
                                                       cli_env, tmp_path):
    """A.2: old-format leaves (whole events, heads at intervals) and new ones in one log: set-up adopts the
    old uncovered tail, `verify` passes, an old leaf's data goes to inspectors only, and a participant
    bundle spanning both formats verifies offline (saying which part rests on the subject rule)."""
    recorder = services.app.recorder
    recorder.leaf_format = 0  # as the code before format 1 sealed
    pid, inv = randomised_participant()
    old_size = integrity.log.tree_size()
    assert integrity.log.v1_from() is None and integrity.covered_size() < old_size
    recorder.leaf_format = 1
    recorder._frontier_cache = None
    setup_store(services.settings)  # an upgrade: set-up signs over the old tail once
    assert integrity.covered_size() == old_size
    client.put(f"/visits/{Visit.id_for(pid, 'BL')}/items/mrss.fingers_right", json={"value": 1}, headers=inv)
    assert client.post(f"/visits/{Visit.id_for(pid, 'BL')}/held", json={"date": "2026-01-05"}, headers=inv).status_code == 200
    assert client.put(f"/visits/{Visit.id_for(pid, 'BL')}/items/mrss.fingers_right", json={"value": 1},
                      headers=inv).status_code == 200
    assert integrity.log.v1_from() is not None
    result = CliRunner().invoke(cli, ["verify"])
    assert result.exit_code == 0, result.output

    admin, insp = login("adm", "admin", "*"), login("insp", "inspector", "*")
    as_admin = client.get("/integrity/leaves", params={"limit": 1000}, headers=admin).json()
    as_inspector = client.get("/integrity/leaves", params={"limit": 1000}, headers=insp).json()
    old = [leaf for leaf in as_admin if leaf["format"] == 0]
    assert old and all(leaf["withheld"] and leaf["leaf_data"] == "" for leaf in old)
    for leaf in as_inspector:
        data = base64.b64decode(leaf["leaf_data"])
        assert M.leaf_hash(data).hex() == leaf["leaf_hash"] and M.is_leaf_v1(data) == (leaf["format"] == 1)

    out = tmp_path / "bundle"
    make_bundle(out, "--participant", pid)
    done = run_verifier(out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "old-format leaves" in done.stdout and f"events of participant {pid}" in done.stdout


def _rendered(layout: M.Layout) -> str:
    return layout.render()


def test_signed_head_layout_is_defined_once():
    """14.11: the signed bytes are packed from TREE_HEAD_LAYOUT (84 bytes, not the 87 the README said),
    the offline verifier packs the same bytes, and the README shows the rendered layout."""
    layout = M.TREE_HEAD_LAYOUT
    signed = M.tree_head_bytes(0x0102030405060708, 0x1112131415161718, bytes(range(32)))
    assert len(signed) == layout.size == 84
    offsets = {f.name: (offset, f.size) for offset, f in layout.offsets()}
    assert signed[: offsets["domain"][1]] == b"trialaudit/NCT05214014/tree-head/v1"
    assert signed[offsets["separator"][0]] == 0
    o, n = offsets["tree size"]
    assert struct.unpack(">Q", signed[o:o + n])[0] == 0x0102030405060708
    o, n = offsets["timestamp"]
    assert struct.unpack(">Q", signed[o:o + n])[0] == 0x1112131415161718
    o, n = offsets["root hash"]
    assert signed[o:o + n] == bytes(range(32))
    assert V.tree_head_bytes(0x0102030405060708, 0x1112131415161718, bytes(range(32))) == signed
    assert f"{layout.size} bytes" in layout.render()
    assert layout.render() in README.read_text(encoding="utf-8"), (
        "README.md must show the signed-head layout as TREE_HEAD_LAYOUT.render() gives it:\n" + layout.render())


def test_leaf_layout_is_defined_once():
    """A.2, 14.11: format-1 leaves are packed from LEAF_V1_LAYOUT, read the same by the offline verifier,
    and the README shows the rendered layout."""
    data = M.leaf_v1(b"\x11" * 32, b"\x22" * 32, 77)
    assert len(data) == M.LEAF_V1_LAYOUT.size == V.LEAF_V1_SIZE == 73
    assert V.parse_leaf_v1(data) == (b"\x11" * 32, b"\x22" * 32, 77) == M.parse_leaf_v1(data)
    assert V.SUBJECT_DOMAIN == M.SUBJECT_DOMAIN and V.TREE_HEAD_PREFIX == M.TREE_HEAD_PREFIX
    assert M.LEAF_V1_LAYOUT.render() in README.read_text(encoding="utf-8"), (
        "README.md must show the leaf layout as LEAF_V1_LAYOUT.render() gives it:\n" + M.LEAF_V1_LAYOUT.render())
