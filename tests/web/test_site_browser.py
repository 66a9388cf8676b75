"""The site's workspace in a real browser (issue 17): Playwright driving Debian's chromium against a real
``trialaudit serve`` on a fresh SQLite store. Screenshots go to docs/screenshots/site-*.png
(listed in docs/notes/h-site.md). Without chromium these tests skip, except under CI=true."""

from __future__ import annotations

import datetime as dt

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from domain.scoring import MRSS_SITES
from domain.signature import ACCOUNTABILITY_STATEMENT
from domain.trial import EXCLUSION_CODES, INCLUSION_CODES
from tests.web.test_browser import DEMO_PASSWORD, Server, browser, chromium_path, shot  # noqa: F401 (fixtures)

USERS = (("coord", "coordinator", "MINSK"), ("inv", "investigator", "MINSK"), ("mon", "monitor", "MINSK"),
         ("dm", "data_manager", "*"), ("adm", "admin", "*"))


def _api(server: Server, username: str, method: str, path: str, body: dict | None = None) -> object:
    form = urllib.parse.urlencode({"username": username, "password": DEMO_PASSWORD}).encode()
    with urllib.request.urlopen(server.url + "/auth/token", form) as r:
        token = json.load(r)["access_token"]
    req = urllib.request.Request(server.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def site_server(chromium_path, tmp_path_factory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("web-site"), demo=False)
    for username, role, site in USERS:
        s.cli("users", "add", username, "--full-name", f"{username.title()} Person", "--role", role, "--site", site,
              stdin=DEMO_PASSWORD + "\n")
    inv = next(u for u in _api(s, "adm", "GET", "/users") if u["username"] == "inv")
    _api(s, "adm", "POST", f"/users/{inv['id']}/signature-enablement",
         {"method": "photo ID checked in person", "evidence": "passport seen by the site administrator"})
    _api(s, "inv", "POST", "/me/signature-acknowledgement", {"statement": ACCOUNTABILITY_STATEMENT})
    yield s
    s.stop()


@pytest.fixture
def new_page(browser):
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.route(re.compile(r"^(?!http://127\.0\.0\.1:).*"), lambda route: route.abort())
        contexts.append(context)
        return context.new_page()

    yield make
    for c in contexts:
        c.close()


def login(page, server: Server, username: str) -> None:
    page.goto(server.url + "/ui/login?next=/ui/site/participants")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/site/participants")


def fill_visit(page, value: int) -> None:
    for s in MRSS_SITES:
        page.locator(f"#i-mrss\\.{s}").select_option(str(value))


def test_site_scenario_enrol_enter_correct_query_sign_verify_lock_conflict(site_server, new_page):
    """R5, R7, R13, R25, R27-R30, R32, R34, R35 in the browser, keyboard-operable forms with labelled inputs."""
    server = site_server
    coord = new_page()
    login(coord, server, "coord")
    # enrolment: screen, eligibility checklist with verdict, consent, randomise with a confirmation step
    coord.get_by_label("Screening number").fill("MIN-900")
    coord.get_by_label("Year of birth").fill("1969")
    coord.get_by_label("Sex").select_option("F")
    shot(coord, "site-screen")
    coord.get_by_role("button", name="Screen").click()
    coord.wait_for_url(re.compile(r".*/ui/site/participants/[0-9a-f-]+.*"))
    pid = re.search(r"/participants/([0-9a-f-]+)", coord.url).group(1)
    for c in INCLUSION_CODES:
        coord.get_by_label(f"{c.replace('_', ' ')}: yes").check()
    for c in EXCLUSION_CODES:
        coord.get_by_label(f"{c.replace('_', ' ')}: no").check()
    coord.get_by_role("button", name="Record eligibility").click()
    assert "eligible (every inclusion holds" in coord.locator(".verdict").inner_text()
    coord.get_by_label("Consent form version").fill("ICF v1.2")
    coord.get_by_label("Signed on").fill("2026-01-05")
    coord.get_by_role("button", name="Record consent").click()
    coord.get_by_role("button", name="Randomise…").click()
    assert "Confirm" in coord.locator("form.confirm").inner_text() and "Group" not in coord.locator("main").inner_text().split("Randomisation")[1][:300]
    shot(coord, "site-randomise-confirm")
    coord.get_by_role("button", name="Yes, randomise now").click()
    assert "Allocated to" in coord.locator(".arm").inner_text()
    shot(coord, "site-enrolment", full_page=True)

    visits = {v["code"]: v for v in _api(server, "dm", "GET", f"/participants/{pid}/visits")}
    # baseline and month 12: date first, then the items
    for code, score in (("BL", 2), ("M12", 1)):
        coord.goto(server.url + f"/ui/site/visits/{visits[code]['id']}")
        assert "Date held" in coord.content(), coord.locator("main").inner_text()[:800]
        # a visit is held on a past day: month 12 of a participant randomised today lies a year ahead, so it
        # is held today, outside its window (recorded with a protocol deviation, as a site would have to)
        held = min(visits[code]["target_date"], dt.date.today().isoformat())
        coord.get_by_label("Date held (at the site)").fill(held)
        coord.get_by_role("button", name="Record the date").click()
        fill_visit(coord, score)
        coord.locator("#row-acr_eular\\.puffy_fingers").get_by_label("yes").check()
        coord.locator("#save-items").focus()
        coord.keyboard.press("Enter")  # the keyboard alone sends the form
        assert coord.locator("#mrss-total").inner_text() == str(17 * score)
    bl = visits["BL"]["id"]
    coord.goto(server.url + f"/ui/site/visits/{bl}")
    shot(coord, "site-visit-form", full_page=True)
    # a correction asks for the reason before it is sent (static JS), then is saved; the score changes
    coord.locator("#i-mrss\\.fingers_right").select_option("3")
    coord.get_by_role("button", name="Preview the scores").click()
    assert coord.locator("#preview-mrss").inner_text() == "35"  # as it would be stored; nothing saved yet
    shot(coord, "site-score-preview")
    coord.locator("#save-items").click()
    assert "give the reason" in coord.locator("#err-reason").inner_text()
    assert _api(server, "dm", "GET", f"/visits/{bl}")["items"]["mrss.fingers_right"] == 2
    coord.locator("#reason").fill("re-palpated at the clinic")
    coord.locator("#reason_code").select_option("transcription_error")
    coord.locator("#save-items").click()
    assert coord.locator("#mrss-total").inner_text() == "35"

    # the monitor verifies the site and raises a query on it
    mon = new_page()
    login(mon, server, "mon")
    mon.goto(server.url + f"/ui/site/visits/{bl}")
    mon.get_by_role("button", name="Verify mrss.fingers_right").click()
    assert "verified by" in mon.locator("#row-mrss\\.fingers_right").inner_text()
    mon.locator("#row-mrss\\.fingers_right").get_by_role("link", name="raise a query").click()
    mon.get_by_label("Question to the site").fill("Source document says 2: please check")
    mon.get_by_role("button", name="Open the query").click()
    mon.wait_for_url("**/ui/site/queries/*")
    qid = mon.url.split("/")[-1].split("?")[0]

    # the investigator answers with a correction that cites the query, and signs the visit
    inv = new_page()
    login(inv, server, "inv")
    inv.goto(server.url + "/ui/site/queries?state=open")
    inv.get_by_role("link", name="open").first.click()
    inv.get_by_label("Answer", exact=True).fill("Source checked: the right fingers score 2")
    inv.get_by_label("Correct mrss.fingers_right with this answer").check()
    inv.get_by_label("New value").select_option("2")
    shot(inv, "site-query-answer", full_page=True)
    inv.get_by_role("button", name="Send the answer").click()
    assert inv.locator("#current-value").inner_text() == "2"
    corrected = [e for e in _api(server, "dm", "GET", f"/visits/{bl}/history") if e["type"].endswith("ItemCorrected")][-1]
    assert corrected["query_id"] == qid and corrected["source"] == "web"
    inv.goto(server.url + f"/ui/site/visits/{bl}")
    inv.get_by_label("approval", exact=False).first.check()
    inv.locator("form.sign input[type=password]").fill(DEMO_PASSWORD)
    inv.get_by_role("button", name="Sign", exact=True).click()
    assert "Signed" in inv.locator("#signed-why").inner_text()
    shot(inv, "site-signed-visit", full_page=True)

    # the tick vanished with the query's correction; the monitor verifies again, then a later correction removes it visibly
    mon.goto(server.url + f"/ui/site/visits/{bl}")
    assert "verification withdrawn" in mon.locator("#row-mrss\\.fingers_right").inner_text()
    mon.get_by_role("button", name="Verify mrss.fingers_right").click()
    assert "verified by" in mon.locator("#row-mrss\\.fingers_right").inner_text()
    coord.goto(server.url + f"/ui/site/visits/{bl}")
    assert "invalidates this signature" in coord.locator("#signed-why").inner_text()  # said before typing
    coord.locator("#i-mrss\\.fingers_right").select_option("1")
    coord.locator("#reason").fill("late information from the dermatologist")
    coord.locator("#save-items").click()
    assert "Invalidated" in coord.locator("#signature").locator("xpath=..").inner_text()
    mon.reload()
    assert "verification withdrawn" in mon.locator("#row-mrss\\.fingers_right").inner_text()
    shot(mon, "site-sdv-withdrawn")

    # a second browser editing the same item gets the conflict, nothing overwritten
    inv.goto(server.url + f"/ui/site/visits/{bl}")  # opened now
    coord.reload()
    coord.locator("#i-mrss\\.face").select_option("3")
    coord.locator("#reason").fill("face re-examined by the coordinator")
    coord.locator("#save-items").click()
    inv.locator("#i-mrss\\.face").select_option("0")
    inv.locator("#reason").fill("face re-examined by the investigator")
    inv.locator("#save-items").click()
    assert "changed since you opened it" in inv.locator("#conflict").inner_text()
    shot(inv, "site-conflict")
    assert _api(server, "dm", "GET", f"/visits/{bl}")["items"]["mrss.face"] == 3

    # the data manager locks the visit; the form turns read-only and says why
    dm = new_page()
    login(dm, server, "dm")
    dm.goto(server.url + f"/ui/site/visits/{bl}")
    dm.get_by_label("Reason").last.fill("database lock for the interim analysis")
    dm.get_by_role("button", name="Lock the visit").click()
    coord.goto(server.url + f"/ui/site/visits/{bl}")
    assert "Read-only" in coord.locator("#lock-why").inner_text()
    assert coord.locator("#i-mrss\\.face").is_disabled() and coord.locator("#save-items").count() == 0
    shot(coord, "site-locked-visit")
