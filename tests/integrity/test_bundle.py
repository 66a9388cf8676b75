"""Inspector bundles checked offline by their own verifier, run apart from the system (R36, R37)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from api.cli import cli


def run_verifier(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    """Copy the bundle elsewhere and run its verifier in isolated mode: no project code importable."""
    elsewhere = bundle.parent / (bundle.name + "-copied")
    shutil.copytree(bundle, elsewhere, dirs_exist_ok=True)
    return subprocess.run(
        [sys.executable, "-I", str(elsewhere / "verify_bundle.py"), str(elsewhere), *args],
        capture_output=True, text=True, cwd=elsewhere, timeout=120,
    )


def make_bundle(out: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["bundle", "--out", str(out), *args])
    assert result.exit_code == 0, result.output


def test_verifier_is_a_single_standalone_file():
    """The verifier imports only the standard library and cryptography."""
    source = (Path(__file__).parents[2] / "infrastructure" / "bundle_verifier.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.strip().startswith(("import ", "from "))}
    assert imports <= {"argparse", "base64", "hashlib", "json", "struct", "sys", "uuid", "pathlib", "cryptography"}


def test_participant_bundle_verifies_offline_and_since_an_earlier_head(randomised_participant, cli_env, tmp_path, integrity):
    """R36: an inspector's bundle for one participant proves each event against the signed head,
    and the new head's consistency with a head they kept from before."""
    pid, _ = randomised_participant()
    kept = tmp_path / "earlier-head.json"
    assert CliRunner().invoke(cli, ["head", "--out", str(kept)]).exit_code == 0
    randomised_participant()
    out = tmp_path / "bundle"
    make_bundle(out, "--participant", pid, "--since-head", str(kept))
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert events and {e["event"]["originator_id"] for e in events} == {pid}
    assert {"head.json", "inclusion_proofs.jsonl", "public_key.pem", "consistency.json", "since_head.json", "verify_bundle.py"} <= {
        p.name for p in out.iterdir()
    }
    key = base64.b64encode(integrity.signer.public_key).decode()
    done = run_verifier(out, "--public-key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(events)} of {len(events)} events" in done.stdout and "consistency" in done.stdout and "VERIFIED" in done.stdout


def test_whole_log_bundle_verifies_offline(randomised_participant, cli_env, tmp_path, integrity):
    """R36, R37: the --all bundle recomputes the signed root from every leaf."""
    randomised_participant()
    out = tmp_path / "all"
    make_bundle(out, "--all")
    done = run_verifier(out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the root recomputed from every leaf is the signed root" in done.stdout


def _tamper_first_event(out: Path, change) -> None:
    lines = (out / "events.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    change(first)
    lines[0] = json.dumps(first)
    (out / "events.jsonl").write_text("\n".join(lines) + "\n")


def test_tampered_bundles_fail(randomised_participant, cli_env, tmp_path, integrity):
    """R36: a changed leaf, a changed decoded event, a forged head or a foreign key: NOT VERIFIED."""
    pid, _ = randomised_participant()
    base = tmp_path / "base"
    make_bundle(base, "--participant", pid)

    def variant(name: str, mutate) -> Path:
        out = tmp_path / name
        shutil.copytree(base, out)
        mutate(out)
        return out

    def flip_leaf(e):
        data = bytearray(base64.b64decode(e["leaf_data"]))
        data[-3] ^= 1
        e["leaf_data"] = base64.b64encode(bytes(data)).decode()

    def change_shown_event(e):
        e["event"]["originator_version"] += 1

    def forge_head(out: Path):
        head = json.loads((out / "head.json").read_text())
        head["tree_size"] += 1
        (out / "head.json").write_text(json.dumps(head))

    cases = {
        "leaf": variant("leaf", lambda out: _tamper_first_event(out, flip_leaf)),
        "shown": variant("shown", lambda out: _tamper_first_event(out, change_shown_event)),
        "head": variant("head", forge_head),
    }
    for name, out in cases.items():
        done = run_verifier(out)
        assert done.returncode == 1 and "NOT VERIFIED" in done.stdout, (name, done.stdout, done.stderr)
    other_key = base64.b64encode(b"\x01" * 32).decode()
    done = run_verifier(base, "--public-key", other_key)
    assert done.returncode == 1 and "pinned key" in done.stdout
