"""Inspector bundles checked offline by their own verifier, run apart from the system (R36, R37):
complete for a participant (every event the audit trail lists for them, and provably no fewer),
never crashing without a verdict, written atomically and readable by their owner only."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import cli
from application import merkle as M
from domain.visit import Visit
from tests.integrity.test_tamper import Attacker


def run_verifier(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    """Copy the bundle elsewhere and run its verifier in isolated mode: no project code importable."""
    elsewhere = bundle.parent / (bundle.name + "-copied")
    shutil.rmtree(elsewhere, ignore_errors=True)
    shutil.copytree(bundle, elsewhere)
    return subprocess.run(
        [sys.executable, "-I", str(elsewhere / "verify_bundle.py"), str(elsewhere), *args],
        capture_output=True, text=True, cwd=elsewhere, timeout=120,
    )


def make_bundle(out: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["bundle", "--out", str(out), *args])
    assert result.exit_code == 0, result.output


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def write_jsonl(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def busy_participant(client, randomised_participant, login, site: str = "MINSK") -> tuple[str, dict]:
    """A participant with events in other aggregates: a visit held, items entered and changed, a query."""
    pid, inv = randomised_participant(site=site)
    bl = str(Visit.id_for(pid, "BL"))
    assert client.post(f"/visits/{bl}/held", json={"date": "2026-01-05"}, headers=inv).status_code == 200
    assert client.put(f"/visits/{bl}/items/mrss.fingers_right", json={"value": 1}, headers=inv).status_code == 200
    assert client.put(f"/visits/{bl}/items/mrss.fingers_right", json={"value": 2, "reason": "transcription error"},
                      headers=inv).status_code == 200
    mon = login(f"mon-{pid[:6]}", "monitor", site)
    r = client.post("/queries", json={"visit_id": bl, "item_code": "mrss.fingers_right", "text": "please confirm"},
                    headers=mon)
    assert r.status_code == 201, r.text
    return pid, inv


def audit_positions(client, login, pid: str) -> set[int]:
    h = login(f"insp-{pid[:6]}", "inspector", "*")
    r = client.get("/audit/events", params={"participant": pid, "limit": 1000}, headers=h)
    assert r.status_code == 200, r.text
    return {e["position"] for e in r.json()["events"]}


def test_verifier_is_a_single_standalone_file():
    """The verifier imports only the standard library and cryptography."""
    source = (Path(__file__).parents[2] / "infrastructure" / "bundle_verifier.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.strip().startswith(("import ", "from "))}
    assert imports <= {"argparse", "base64", "hashlib", "json", "struct", "sys", "uuid", "pathlib", "cryptography"}


def test_participant_bundle_holds_every_event_the_audit_trail_lists(client, login, randomised_participant, cli_env,
                                                                     tmp_path, integrity):
    """B.3, R36, R15: the bundle of a participant holds exactly the events GET /audit/events?participant=
    lists (their visits, items, queries ...; not only the Participant aggregate's), and its verifier
    says what it proved: all N events of participant X in a log of M leaves, signed by key K at T."""
    pid, _ = busy_participant(client, randomised_participant, login)
    other, _ = busy_participant(client, randomised_participant, login)
    kept = tmp_path / "earlier-head.json"
    assert CliRunner().invoke(cli, ["head", "--out", str(kept)]).exit_code == 0
    client.put(f"/visits/{Visit.id_for(pid, 'BL')}/items/mrss.hand_left", json={"value": 1},
               headers=login("inv-late", "investigator", "MINSK"))
    out = tmp_path / "bundle"
    make_bundle(out, "--participant", pid, "--since-head", str(kept))
    events = jsonl(out / "events.jsonl")
    assert {e["notification_id"] for e in events} == audit_positions(client, login, pid)
    assert len({e["event"]["originator_id"] for e in events}) > 1  # more than the Participant aggregate
    head = json.loads((out / "head.json").read_text())
    assert len(jsonl(out / "leaves.jsonl")) == head["tree_size"]
    key = base64.b64encode(integrity.signer.public_key).decode()
    done = run_verifier(out, "--public-key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"VERIFIED: all {len(events)} events of participant {pid} in a log of {head['tree_size']} leaves, "
            f"signed by key {key}") in done.stdout
    assert head["timestamp"] in done.stdout and "extends it unchanged" in done.stdout


def test_leaves_in_a_bundle_reveal_no_content_of_other_participants(client, login, randomised_participant, cli_env,
                                                                     tmp_path):
    """A.2: a participant bundle carries every leaf of the log, but a leaf is a digest and a commitment."""
    pid, _ = busy_participant(client, randomised_participant, login)
    randomised_participant(number="S-SECRET-42")
    out = tmp_path / "bundle"
    make_bundle(out, "--participant", pid)
    assert "S-SECRET-42" not in (out / "leaves.jsonl").read_text()
    assert "S-SECRET-42" not in (out / "events.jsonl").read_text()
    for leaf in jsonl(out / "leaves.jsonl"):
        data = base64.b64decode(leaf["leaf_data"])
        assert M.is_leaf_v1(data) and len(data) == M.LEAF_V1_SIZE == 73


def test_an_incomplete_or_padded_participant_bundle_fails_naming_the_leaf(client, login, randomised_participant,
                                                                          cli_env, tmp_path):
    """B.4, R36: leave an event out, truncate the tail, or add another participant's event: NOT VERIFIED,
    naming the leaf."""
    pid, _ = busy_participant(client, randomised_participant, login)
    other, _ = busy_participant(client, randomised_participant, login)
    base, foreign = tmp_path / "base", tmp_path / "foreign"
    make_bundle(base, "--participant", pid)
    make_bundle(foreign, "--participant", other)
    events = jsonl(base / "events.jsonl")
    leaves = jsonl(base / "leaves.jsonl")

    def variant(name: str) -> Path:
        out = tmp_path / name
        shutil.copytree(base, out)
        return out

    left_out = variant("left-out")
    write_jsonl(left_out / "events.jsonl", events[:2] + events[3:])
    done = run_verifier(left_out)
    assert done.returncode == 1 and "NOT VERIFIED" in done.stdout
    assert f"leaf {events[2]['leaf_index']} belongs to participant {pid} and its event is not in the bundle" in done.stdout

    truncated = variant("truncated")
    cut = events[-1]["leaf_index"]
    write_jsonl(truncated / "leaves.jsonl", leaves[:cut])
    write_jsonl(truncated / "events.jsonl", events[:-1])
    done = run_verifier(truncated)
    assert done.returncode == 1 and f"leaves {cut}..{len(leaves) - 1} are missing" in done.stdout, done.stdout

    padded = variant("padded")
    extra = jsonl(foreign / "events.jsonl")[0]
    write_jsonl(padded / "events.jsonl", events + [extra])
    done = run_verifier(padded)
    assert done.returncode == 1
    assert f"leaf {extra['leaf_index']} belongs to another subject" in done.stdout, done.stdout


def test_tampered_bundles_fail(randomised_participant, cli_env, tmp_path, integrity):
    """R36: a changed leaf, a changed event, a forged head or a foreign key: NOT VERIFIED."""
    pid, _ = randomised_participant()
    base = tmp_path / "base"
    make_bundle(base, "--participant", pid)

    def variant(name: str, mutate) -> Path:
        out = tmp_path / name
        shutil.copytree(base, out)
        mutate(out)
        return out

    def flip_leaf(out: Path):
        leaves = jsonl(out / "leaves.jsonl")
        data = bytearray(base64.b64decode(leaves[0]["leaf_data"]))
        data[-3] ^= 1
        leaves[0]["leaf_data"] = base64.b64encode(bytes(data)).decode()
        write_jsonl(out / "leaves.jsonl", leaves)

    def flip_event(out: Path):
        events = jsonl(out / "events.jsonl")
        data = bytearray(base64.b64decode(events[0]["event_data"]))
        data[-3] ^= 1
        events[0]["event_data"] = base64.b64encode(bytes(data)).decode()
        write_jsonl(out / "events.jsonl", events)

    def change_shown_event(out: Path):
        events = jsonl(out / "events.jsonl")
        events[0]["event"]["originator_version"] += 1
        write_jsonl(out / "events.jsonl", events)

    def forge_head(out: Path):
        head = json.loads((out / "head.json").read_text())
        head["tree_size"] += 1
        (out / "head.json").write_text(json.dumps(head))

    cases = {name: variant(name, f) for name, f in
             {"leaf": flip_leaf, "event": flip_event, "shown": change_shown_event, "head": forge_head}.items()}
    for name, out in cases.items():
        done = run_verifier(out)
        assert done.returncode == 1 and "NOT VERIFIED" in done.stdout, (name, done.stdout, done.stderr)
    other_key = base64.b64encode(b"\x01" * 32).decode()
    done = run_verifier(base, "--public-key", other_key)
    assert done.returncode == 1 and "pinned key" in done.stdout


def test_the_verifier_never_crashes_without_a_verdict(randomised_participant, cli_env, tmp_path):
    """B.5: a malformed bundle (missing file, broken JSON, wrong types, a leaf that is no leaf) gets
    NOT VERIFIED and exit 1, never a traceback."""
    pid, _ = randomised_participant()
    base = tmp_path / "base"
    make_bundle(base, "--participant", pid)
    mutations = {
        "no-leaves": lambda out: (out / "leaves.jsonl").unlink(),
        "broken-json": lambda out: (out / "events.jsonl").write_text("{not json\n"),
        "wrong-types": lambda out: (out / "events.jsonl").write_text('{"leaf_index": "x", "event_data": 5}\n'),
        "no-leaf": lambda out: (out / "leaves.jsonl").write_text('{"leaf_index": 0, "leaf_data": "AAAA"}\n'),
        "bad-subject": lambda out: (out / "subject.json").write_text('{"participant_id": 7}'),
        "head-types": lambda out: (out / "head.json").write_text('{"tree_size": "many"}'),
    }
    for name, mutate in mutations.items():
        out = tmp_path / name
        shutil.copytree(base, out)
        mutate(out)
        done = run_verifier(out)
        assert done.returncode == 1 and "NOT VERIFIED" in done.stdout, (name, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (name, done.stderr)


def test_bundle_refuses_a_broken_log_naming_the_first_bad_leaf(randomised_participant, cli_env, tmp_path, integrity):
    """B.5, R36: with an event deleted behind the server's back, `bundle` writes nothing, exits 1 and
    names the first bad leaf."""
    pid, _ = randomised_participant()
    attacker = Attacker(integrity)
    attacker.drop_triggers()
    nids = attacker.notification_ids()
    victim = nids[3]
    attacker.run(f"DELETE FROM {attacker.sql.events} WHERE {attacker.sql.nid} = {attacker.p}", (victim,))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(cli, ["bundle", "--out", str(out), "--participant", pid])
    assert result.exit_code == 1, result.output
    assert "first bad leaf index 3" in result.output
    assert not out.exists() and not list(tmp_path.glob(".bundle.*"))


def test_bundle_is_written_whole_and_private(randomised_participant, cli_env, tmp_path):
    """F.23, R36: a bundle appears complete under its name (written beside it, then renamed), its
    directory 0700 and its files 0600; an existing non-empty directory is refused (exit 2), untouched."""
    pid, _ = randomised_participant()
    out = tmp_path / "bundle"
    make_bundle(out, "--participant", pid)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes.values()) == {0o600}, modes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]
    before = (out / "manifest.json").read_text()
    result = CliRunner().invoke(cli, ["bundle", "--out", str(out), "--participant", pid])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (out / "manifest.json").read_text() == before


def test_whole_log_bundle_verifies_offline(randomised_participant, cli_env, tmp_path):
    """R36, R37: the --all bundle holds every event and recomputes the signed root from every leaf."""
    randomised_participant()
    out = tmp_path / "all"
    make_bundle(out, "--all")
    done = run_verifier(out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every leaf has its event" in done.stdout and "VERIFIED: all" in done.stdout


def test_bundle_prints_its_verifier_command_on_one_line(randomised_participant, cli_env, tmp_path):
    """Try-it run: the command to check the bundle was wrapped at 80 columns, so pasting it ran the
    verifier without its bundle directory."""
    pid, _ = randomised_participant()
    out = tmp_path / "a-directory-name-long-enough-to-push-the-command-past-eighty-columns" / "bundle"
    result = CliRunner().invoke(cli, ["bundle", "--out", str(out), "--participant", pid])
    assert result.exit_code == 0, result.output
    assert f"check it anywhere with: python3 {out / 'verify_bundle.py'} {out}" in result.output.splitlines()
