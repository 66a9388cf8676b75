"""The inspector's workspace in a real browser (issue 16): Playwright driving Debian's chromium against a
real ``trialaudit serve`` on a fresh SQLite store with the demo trial loaded (``trialaudit demo``).

Screenshots of the main pages are saved under docs/screenshots/ (listed in docs/notes/h-web.md).
``make test`` installs chromium with apt-get when it is missing; without it these tests skip, except
under CI=true, where they fail.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"
DEMO_PASSWORD = "demo-password-not-secret"
SITES = '{"MINSK": "Europe/Minsk", "GOMEL": "Europe/Minsk"}'
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("chromium is not installed (apt-get install chromium); the browser tests must run under CI")
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:  # pragma: no cover - dev extras missing
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path, *, demo: bool, env: dict[str, str] | None = None):
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "TRIALAUDIT_DATABASE_URL": f"sqlite:///{root}/t.db",
                    "TRIALAUDIT_DATA_DIR": str(root / "keys"), "TRIALAUDIT_SITES": SITES, "TRIALAUDIT_DEMO": "0",
                    "TRIALAUDIT_ARGON2_MEMORY_KIB": "1024", "TRIALAUDIT_ARGON2_TIME_COST": "1", **(env or {})}
        if demo:
            subprocess.run([sys.executable, "-m", "api.cli", "demo"], env=self.env, cwd=root, check=True,
                           capture_output=True, timeout=600)
        self.log = open(root / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--workers", "1"], env=self.env, cwd=root, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, (root / "server.log").read_text()
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)

    def cli(self, *args: str, stdin: str = "") -> None:
        subprocess.run([sys.executable, "-m", "api.cli", *args], env=self.env, cwd=self.root, input=stdin.encode(),
                       check=True, capture_output=True, timeout=120)

    def api(self, path: str, username: str = "demo.inspector") -> object:
        """The JSON API, to choose what the browser then looks for (never to check the pages)."""
        body = urllib.parse.urlencode({"username": username, "password": DEMO_PASSWORD}).encode()
        with urllib.request.urlopen(self.url + "/auth/token", body) as r:
            token = json.load(r)["access_token"]
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def server(chromium_path, tmp_path_factory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("web-demo"), demo=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(chromium_path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    # nothing may come from anywhere but trialaudit itself (no CDN)
    context.route(re.compile(r"^(?!http://127\.0\.0\.1:).*"), lambda route: route.abort())
    p = context.new_page()
    yield p
    context.close()


def shot(page, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page, server: Server, username: str, screenshot: bool = False) -> None:
    page.goto(server.url + "/")
    assert "/ui/login" in page.url
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    if screenshot:
        shot(page, "sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/participants")


def _a_correction(server: Server) -> dict:
    """A correction in the demo trial that changed a value that was there (not a first entry)."""
    cursor = None
    while True:
        page = server.api("/audit/events?type=ItemCorrected&order=asc&limit=200" + (f"&cursor={cursor}" if cursor else ""))
        for e in page["events"]:
            change = e["changes"][0]
            if change["old_value"] is not None and change["new_value"] is not None and e["reason"]:
                return e
        cursor = page["next_cursor"]
        assert cursor, "the demo trial has no correction of a recorded value"


def _shown(value: object) -> str:
    return {True: "yes", False: "no"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def test_an_inspector_follows_a_correction_back_in_time_and_checks_the_proof(server, page, tmp_path):
    """R13, R15, R17, R11: sign in, open a participant, go to just before a correction (the old value and
    the reason shown), compare two instants, download the CSV and the bundle, run the bundle's verifier."""
    correction = _a_correction(server)
    pid, field = correction["participant_id"], correction["changes"][0]["field"]
    old, new = correction["changes"][0]["old_value"], correction["changes"][0]["new_value"]
    participant = server.api(f"/participants/{pid}")
    visit = server.api(f"/visits/{correction['aggregate_id']}")

    sign_in(page, server, "demo.inspector", screenshot=True)
    assert "recorded on the audit trail" in page.locator("footer").inner_text()
    page.get_by_label("Search").fill(participant["screening_number"])
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/ui/participants?q=*")
    shot(page, "participants")
    page.get_by_role("link", name=participant["screening_number"]).click()
    page.wait_for_url(f"**/ui/participants/{pid}")

    # the trail, filtered to the corrections of this item
    page.get_by_label("Item").fill(field)
    page.get_by_label("Event type").fill("ItemCorrected")
    page.get_by_label("Order").select_option("asc")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**type=ItemCorrected*")
    row = page.locator("table.trail tbody tr").filter(has_text=correction["reason"]).first
    assert field in row.inner_text() and "leaf " in row.inner_text()
    assert "Europe/Minsk" in row.inner_text() and "UTC" in row.inner_text()
    shot(page, "participant-trail")

    # back in time: the casebook as recorded just before the correction
    row.get_by_role("link", name="casebook just before").click()
    page.wait_for_url(re.compile(r".*/casebook\?as_of=.*"))
    assert "as_of=" in page.url  # the URL holds the instant: citable
    item_row = page.locator(f"section[aria-label='Visit {visit['code']}'] tr").filter(has_text=field).first
    assert item_row.locator("mark").inner_text() == _shown(old)
    assert correction["reason"] in item_row.inner_text()
    assert correction["reason"] in page.locator("section.later").inner_text()
    shot(page, "time-travel")
    # and now: the new value
    page.get_by_role("link", name="now").click()
    page.wait_for_url(re.compile(r".*/casebook$"))
    now_row = page.locator(f"section[aria-label='Visit {visit['code']}'] tr").filter(has_text=field).first
    assert _shown(new) in now_row.inner_text() and now_row.locator("mark").count() == 0

    # compare two instants around the correction
    at = dt.datetime.fromisoformat(correction["recorded_at"].replace("Z", "+00:00"))
    page.get_by_role("link", name="Compare two instants").click()
    page.wait_for_url(re.compile(r".*/compare$"))
    page.get_by_label("From").fill((at - dt.timedelta(seconds=1)).isoformat())
    page.get_by_label("To").fill((at + dt.timedelta(seconds=1)).isoformat())
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url("**/compare?from=*")
    changed = page.locator("table.diff tr.changed").filter(has_text=field).first
    assert changed.locator("del").inner_text() == _shown(old)
    assert changed.locator("mark").inner_text() == _shown(new)
    assert correction["reason"] in changed.inner_text()
    shot(page, "compare")

    page.get_by_role("link", name="Scores").click()
    page.wait_for_url("**/scores")
    assert page.locator("svg.chart").count() == 1
    shot(page, "scores")

    # the study-wide audit search, and its CSV
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    page.wait_for_url("**/ui/audit")
    page.get_by_label("Participant id").fill(pid)
    page.get_by_label("Item (prefix*)").fill(field)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/ui/audit?*")
    assert correction["reason"] in page.locator("table.trail").inner_text()
    shot(page, "audit-search")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    csv_path = tmp_path / "trail.csv"
    download.value.save_as(csv_path)
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("position,recorded_at")
    assert any(correction["reason"] in line and field in line for line in lines[1:])

    # the integrity page, the bundle and its verifier run offline on the downloaded file
    page.goto(f"{server.url}/ui/integrity?participant={pid}")
    assert "Yes." in page.locator("p.ok").inner_text()
    shot(page, "integrity")
    command = page.locator("pre.cmd").inner_text().splitlines()
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the bundle")).click()
    work = tmp_path / "inspection"
    work.mkdir()
    zip_path = work / download.value.suggested_filename
    download.value.save_as(zip_path)
    assert command[0] == f"unzip {zip_path.name}"
    zipfile.ZipFile(zip_path).extractall(work)
    verify = command[1].split()
    assert verify[0] == "python3"
    result = subprocess.run([sys.executable, *verify[1:]], cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    events = (work / f"bundle-{pid}" / "events.jsonl").read_text().splitlines()
    # (the bundle holds what ``trialaudit bundle --participant`` writes: today the participant record's events)
    assert any(participant["screening_number"] in line for line in events)

    page.get_by_role("link", name="Outcomes").click()
    page.wait_for_url("**/ui/outcomes")
    assert page.locator("svg.chart").count() == 2
    shot(page, "outcomes")
    page.get_by_role("link", name="Safety").click()
    page.wait_for_url("**/ui/safety")
    shot(page, "safety")

    # every page opened here is on the trail, as the inspector's own retrievals
    mine = server.api("/audit/events?user=demo.inspector&type=AuditTrailRetrieved&limit=1000", "demo.datamanager")
    assert len(mine["events"]) >= 10


def test_a_minsk_monitor_cannot_open_a_gomel_participant(server, page):
    """R19, R23: the site wall, as in the API: a 403 page."""
    gomel = next(p for p in server.api("/participants") if p["site"] == "GOMEL")
    sign_in(page, server, "demo.monitor.minsk")
    assert "GOM-" not in page.locator("main").inner_text()
    response = page.goto(f"{server.url}/ui/participants/{gomel['id']}")
    assert response.status == 403
    assert "403" in page.locator("h1").inner_text() and "MINSK" in page.locator("main").inner_text()
    shot(page, "forbidden")


def test_a_form_without_its_csrf_token_is_refused(server, page):
    page.goto(server.url + "/ui/login")
    page.locator("input[name=csrf_token]").evaluate("e => e.remove()")
    page.get_by_label("User name").fill("demo.inspector")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    with page.expect_response(lambda r: r.url.endswith("/ui/login") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 403
    assert "CSRF" in page.locator("main").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "trialaudit_session"]


def test_the_docs_page_works_offline(server, page):
    """/docs draws the OpenAPI page from assets served by trialaudit (every other host is blocked here)."""
    page.goto(server.url + "/docs")
    page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
    assert "trialaudit" in page.locator(".swagger-ui .info .title").inner_text()
    shot(page, "api-docs")


def test_the_session_ends_after_the_idle_timeout(chromium_path, browser, tmp_path):
    """R24: the shortest token lifetime the settings allow (30 s); the next page asks to sign in again."""
    s = Server(tmp_path, demo=False, env={"TRIALAUDIT_TOKEN_TTL_SECONDS": "30"})
    try:
        s.cli("users", "add", "idle.inspector", "--full-name", "Idle Inspector", "--role", "inspector", "--site", "MINSK",
              stdin=DEMO_PASSWORD + "\n")
        context = browser.new_context()
        page = context.new_page()
        page.goto(s.url + "/ui/participants")
        page.get_by_label("User name").fill("idle.inspector")
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/ui/participants")
        assert page.locator("h1").inner_text() == "Participants"
        time.sleep(31)
        page.get_by_role("link", name="Audit trail").click()
        page.wait_for_url(re.compile(r".*/ui/login\?.*"))
        assert "session has ended" in page.locator("main").inner_text()
        assert page.get_by_label("User name").is_visible()
        context.close()
    finally:
        s.stop()


def test_the_sign_in_form_works_from_the_keyboard(server, page):
    """Keyboard-navigable: the first Tab reaches 'Skip to content', then the labelled fields and the button."""
    page.goto(server.url + "/ui/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(3):  # past the trialaudit home link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "username":
            break
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type("demo.inspector")
    page.keyboard.press("Tab")
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/participants")
    assert page.locator("h1").inner_text() == "Participants"
