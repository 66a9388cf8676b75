"""F.22 (R36, R37): `trialaudit verify` writes nothing and says what it could not do: exit 0 intact,
1 tampering and nothing else, 2 for usage and environment errors (a read-only copy it cannot open,
keys that are not there); `--head` names leaves by indices the log has."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import cli
from tests.integrity.test_tamper import run_verify


def _immutable(paths: list[Path], on: bool) -> bool:
    """Make files read-only even for root (chattr +i), where the file system allows it."""
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True)
    return done.returncode == 0


def test_verify_on_a_read_only_copy_exits_2_with_a_message_or_works(randomised_participant, cli_env, tmp_path,
                                                                    monkeypatch, store_url):
    """F.22: a read-only copy of a SQLite store is verified or refused with exit 2 and a message, never a
    crash or exit 1; nothing is written to it."""
    if not store_url.startswith("sqlite"):
        pytest.skip("a file copy is a SQLite matter; PostgreSQL read-only access is a role's grant")
    randomised_participant()
    source = Path(cli_env.database_url[len("sqlite:///"):])
    copy = tmp_path / "ro"
    copy.mkdir()
    shutil.copy(source, copy / "store.db")
    before = (copy / "store.db").read_bytes()
    (copy / "store.db").chmod(0o444)
    copy.chmod(0o555)
    locked = _immutable([copy / "store.db", copy], True)
    try:
        monkeypatch.setenv("TRIALAUDIT_DATABASE_URL", f"sqlite:///{copy / 'store.db'}")
        result = CliRunner().invoke(cli, ["verify"])
    finally:
        if locked:
            _immutable([copy / "store.db", copy], False)
        copy.chmod(0o755)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert "cannot open the store" in result.output and "copy it to a writable directory" in result.output
    else:
        assert "OK" in result.output
    assert (copy / "store.db").read_bytes() == before


def test_verify_writes_nothing_and_needs_the_keys(randomised_participant, cli_env, monkeypatch, tmp_path, integrity):
    """F.22: verify creates no table, trigger or key; without the data directory's keys it exits 2
    (a made-up key would make every head look forged)."""
    randomised_participant()
    assert run_verify()[0].exit_code == 0
    monkeypatch.setenv("TRIALAUDIT_DATA_DIR", str(tmp_path / "elsewhere"))
    result = CliRunner().invoke(cli, ["verify"])
    assert result.exit_code == 2 and "is missing" in result.output, result.output
    assert not (tmp_path / "elsewhere").exists()


def test_verify_head_names_leaves_the_log_has(randomised_participant, cli_env, tmp_path, integrity):
    """F.22: a head file that is not ours and claims more leaves than the log has is a failure (exit 1)
    naming a leaf index inside the log, not one beyond it; a file that is no head is exit 2."""
    randomised_participant()
    size = integrity.log.tree_size()
    head = integrity.head().to_json()
    head["tree_size"] = size + 1000
    forged = tmp_path / "forged-head.json"
    forged.write_text(json.dumps(head))
    result, bad = run_verify("--head", str(forged))
    assert result.exit_code == 1, result.output
    assert bad is not None and 0 <= bad < size, result.output
    assert "signature does not verify" in result.output
    for line in result.output.splitlines():
        if "lies in" in line:
            last = int(line.split("lies in ")[1].split("..")[1].split(")")[0])
            assert last < size, line
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    assert CliRunner().invoke(cli, ["verify", "--head", str(junk)]).exit_code == 2


def test_verify_creates_no_key_in_a_data_directory_holding_only_its_own(randomised_participant, cli_env, services):
    """F.22: with only the keys it needs (signing, subject, snapshot), verify passes and leaves the data
    directory as it found it: no token key or allocation seed is made up beside them."""
    randomised_participant()
    data_dir = services.settings.data_dir
    for name in ("token.key", "allocation.seed"):
        (data_dir / name).unlink(missing_ok=True)
    before = sorted(p.name for p in data_dir.iterdir())
    assert run_verify()[0].exit_code == 0
    assert sorted(p.name for p in data_dir.iterdir()) == before
    (data_dir / "snapshot.key").rename(data_dir / "snapshot.key.away")
    result = CliRunner().invoke(cli, ["verify"])
    assert result.exit_code == 2 and "snapshot.key is missing" in result.output, result.output
    assert not (data_dir / "snapshot.key").exists()
