"""The demo's accounts (published password) appear only in a store a user asked to be a demo (issue 13 E.18,
issue 14 item 8): `trialaudit serve` on an empty store serves an empty trial; `make run` and `trialaudit demo`
load the demo and say so; accounts added before the first `make run` do not stop it silently; `users list`
prints whole values when piped, and JSON with --json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import FAST_ARGON2

REPO = Path(__file__).resolve().parents[2]
TRIALAUDIT = str(Path(sys.executable).with_name("trialaudit"))
DEMO_PASSWORD = "demo-password-not-secret"
LONG_NAME = "Dr Alena Investigator-Ivanova-Petrova, Principal Investigator of the Minsk site (since 2026)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRIALAUDIT_DEMO"}  # the default, whatever this shell has
    env.update({
        "TRIALAUDIT_DATABASE_URL": url,
        "TRIALAUDIT_DATA_DIR": str(tmp_path / "keys"),
        **{f"TRIALAUDIT_{k.upper()}": str(v) for k, v in FAST_ARGON2.items()},
        **extra,
    })
    return env


def cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([TRIALAUDIT, *args], input=stdin, capture_output=True, text=True, env=env, timeout=180)


def login(port: int, username: str, password: str) -> int:
    data = urllib.parse.urlencode({"username": username, "password": password}).encode()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/auth/token", data=data, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Server:
    """A server started as a user starts it, in a process group of its own, its terminal output in a file."""

    def __init__(self, command: list[str], env: dict[str, str], tmp_path: Path, cwd: Path):
        self.log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, port: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "the server did not answer /health:\n" + self.output()
            time.sleep(0.3)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            self.log.close()


def serve(command_env: dict[str, str], tmp_path: Path, *args: str) -> tuple[Server, int]:
    port = free_port()
    server = Server([TRIALAUDIT, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *args],
                    command_env, tmp_path, tmp_path)
    return server, port


def usernames(env: dict[str, str]) -> list[str]:
    r = cli(["users", "list", "--json"], env)
    assert r.returncode == 0, r.stderr
    return [u["username"] for u in json.loads(r.stdout)]


def test_serve_on_an_empty_store_serves_an_empty_trial(store_url, tmp_path):
    env = environment(tmp_path, store_url)
    server, port = serve(env, tmp_path)
    try:
        server.wait_healthy(port)
        assert login(port, "demo.inv.minsk", DEMO_PASSWORD) == 401
        assert "empty store: serving an empty trial" in server.output()
        assert "loading the synthetic demo" not in server.output()
    finally:
        server.stop()
    assert usernames(env) == []  # no account at all, so none with a published password


def test_make_run_loads_the_demo_and_says_so(store_url, tmp_path):
    port = free_port()
    env = environment(tmp_path, store_url, HOST="127.0.0.1", PORT=str(port), TRIALAUDIT_WORKERS="1")
    server = Server(["make", "--no-print-directory", "run"], env, tmp_path, REPO)
    try:
        server.wait_healthy(port)
        assert login(port, "demo.inv.minsk", DEMO_PASSWORD) == 200
        out = server.output()
        assert "demo: loading the synthetic demo trial" in out
        assert "demo trial: 30 participants" in out and f"password '{DEMO_PASSWORD}'" in out
    finally:
        server.stop()


def test_make_run_with_the_demo_turned_off_loads_nothing(tmp_path):
    port = free_port()
    env = environment(tmp_path, f"sqlite:///{tmp_path}/t.db", HOST="127.0.0.1", PORT=str(port),
                      TRIALAUDIT_WORKERS="1", TRIALAUDIT_DEMO="0")
    server = Server(["make", "--no-print-directory", "run"], env, tmp_path, REPO)
    try:
        server.wait_healthy(port)
        assert login(port, "demo.inv.minsk", DEMO_PASSWORD) == 401
    finally:
        server.stop()
    assert usernames(env) == []


def test_trialaudit_demo_loads_the_demo_says_so_and_refuses_a_second_one(store_url, tmp_path):
    env = environment(tmp_path, store_url)
    r = cli(["demo", "--participants", "2"], env)
    assert r.returncode == 0, r.stderr
    assert "loading the synthetic demo trial" in r.stderr and "demo trial: 2 participants" in r.stdout
    assert "demo.inv.minsk" in usernames(env)
    r = cli(["demo", "--participants", "2"], env)
    assert r.returncode == 1 and "already holds the demo trial" in r.stderr


def test_accounts_added_before_the_first_make_run_keep_the_demo_loading(store_url, tmp_path):
    """Issue 14 item 8: a user added first, then `make run` (serve --demo): the demo loads beside the account."""
    env = environment(tmp_path, store_url)
    r = cli(["users", "add", "alena", "--full-name", "Dr Alena", "--role", "investigator", "--site", "MINSK"], env,
            stdin="a long passphrase here\n")
    assert r.returncode == 0, r.stderr
    server, port = serve(env, tmp_path, "--demo")
    try:
        server.wait_healthy(port)
        assert login(port, "demo.inv.minsk", DEMO_PASSWORD) == 200
        assert login(port, "alena", "a long passphrase here") == 200
        assert "account events already stored are kept" in server.output()
    finally:
        server.stop()
    assert usernames(env)[0] == "alena"
    r = cli(["verify"], env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_store_with_trial_data_gets_no_demo_and_the_terminal_says_why(store_url, tmp_path):
    from api.cli import cli_actor
    from api.container import build, setup_store
    from infrastructure.settings import Settings

    env = environment(tmp_path, store_url)
    settings = Settings(database_url=store_url, data_dir=tmp_path / "keys", **FAST_ARGON2)
    setup_store(settings)
    svc = build(settings, follow=False)
    try:
        cora = svc.app.register_user(cli_actor(), username="cora", full_name="Cora", role="coordinator",
                                     site="MINSK", password="a long passphrase here", source="cli")
        coord = svc.app.actor_for(cora["id"])
        svc.app.screen_participant(coord, screening_number="SCR-001", site="MINSK", sex="F", birth_year=1970)
    finally:
        svc.close()
    server, port = serve(env, tmp_path, "--demo")
    try:
        server.wait_healthy(port)
        assert login(port, "demo.inv.minsk", DEMO_PASSWORD) == 401
        assert "demo not loaded: this store" in server.output() and "already holds trial data" in server.output()
    finally:
        server.stop()
    assert usernames(env) == ["cora"]
    r = cli(["demo"], env)
    assert r.returncode == 1 and "already holds trial data" in r.stderr


def test_users_list_is_whole_when_piped_and_json_on_request(store_url, tmp_path):
    env = environment(tmp_path, store_url)
    r = cli(["users", "add", "alena", "--full-name", LONG_NAME, "--role", "investigator", "--site", "MINSK"], env,
            stdin="a long passphrase here\n")
    assert r.returncode == 0, r.stderr
    r = cli(["users", "add", "dana", "--full-name", "Dana Data-Manager", "--role", "data_manager", "--site", "*"],
            env, stdin="another long passphrase\n")
    assert r.returncode == 0, r.stderr

    piped = cli(["users", "list"], env)  # stdout is a pipe here, as in `trialaudit users list | grep ...`
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0].split("\t")[:4] == ["username", "full name", "role", "site"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["alena"][1:4] == [LONG_NAME, "investigator", "MINSK"]  # nothing cut, wrapped or padded
    assert rows["dana"][2:4] == ["data_manager", "*"]
    assert rows["alena"][4:6] == ["yes", "no"]  # active, locked: words, not Python's True / False

    as_json = cli(["users", "list", "--json"], env)
    users = {u["username"]: u for u in json.loads(as_json.stdout)}
    assert users["alena"]["full_name"] == LONG_NAME and users["alena"]["active"] is True
    assert users["dana"]["site"] == "*" and users["dana"]["locked"] is False
