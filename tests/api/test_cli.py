"""The command line works on the configured store without a server (contract.md)."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import FAST_ARGON2

TRIALAUDIT = str(Path(sys.executable).with_name("trialaudit"))


def run(args, tmp_path, stdin="", url=None):
    env = {
        **os.environ,
        "TRIALAUDIT_DATABASE_URL": url or f"sqlite:///{tmp_path}/cli.db",
        "TRIALAUDIT_DATA_DIR": str(tmp_path / "keys"),
        "TRIALAUDIT_DEMO": "0",
        **{f"TRIALAUDIT_{k.upper()}": str(v) for k, v in FAST_ARGON2.items()},
    }
    return subprocess.run([TRIALAUDIT, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_users_add_reads_the_password_from_stdin_and_is_audited(tmp_path):
    r = run(["users", "add", "alena", "--full-name", "Dr Alena Investigator", "--role", "investigator", "--site", "MINSK"],
            tmp_path, stdin="a long passphrase here\n")
    assert r.returncode == 0, r.stderr
    assert "added alena (investigator, site MINSK)" in r.stdout
    r = run(["users", "list"], tmp_path)
    assert "alena" in r.stdout and "Dr Alena" in r.stdout

    from api.container import build
    from infrastructure.settings import Settings

    svc = build(Settings(database_url=f"sqlite:///{tmp_path}/cli.db", data_dir=tmp_path / "keys", demo=False), follow=False)
    try:
        user = svc.app.authenticate("alena", "a long passphrase here")
        registered = next(iter(svc.app.events.get(user.id)))
        assert registered.audit["source"] == "cli" and registered.audit["actor"]["user_id"].startswith("os:")
    finally:
        svc.close()


def test_users_add_explains_bad_input(tmp_path):
    r = run(["users", "add", "Bad Name", "--full-name", "X", "--role", "wizard", "--site", "MINSK"], tmp_path, stdin="short\n")
    assert r.returncode == 2
    assert "username" in r.stderr and "role" in r.stderr and "password" in r.stderr


def test_a_bad_database_url_says_what_to_do(tmp_path):
    r = run(["setup"], tmp_path, url="mysql://nope")
    assert r.returncode == 2 and "use sqlite:///path/to/file.db or postgresql://" in r.stderr
