"""The inspector's workspace (issue 16): access rules, sessions, CSRF and what each page shows, over
TestClient on both stores. The browser itself is driven in test_browser.py."""

from __future__ import annotations

import re
import time

from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html[:500]
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD, next_: str = "/ui/participants"):
    form = client.get("/ui/login")
    assert form.status_code == 200
    return client.post("/ui/login", data={"csrf_token": csrf_of(form.text), "username": username,
                                          "password": password, "next": next_}, follow_redirects=False)


@pytest.fixture
def web(services):
    with TestClient(create_app(services)) as c:
        yield c


@pytest.fixture
def trial(services, add_user, actor_of):
    """Two sites, one participant each; the MINSK one's birth year corrected with a reason."""
    app = services.app
    inv_minsk = actor_of(add_user("inv.minsk", "investigator", "MINSK"))
    inv_gomel = actor_of(add_user("inv.gomel", "investigator", "GOMEL"))
    minsk = app.screen_participant(inv_minsk, screening_number="MIN-001", site="MINSK", sex="F", birth_year=1970)
    gomel = app.screen_participant(inv_gomel, screening_number="GOM-001", site="GOMEL", sex="M", birth_year=1960)
    time.sleep(0.01)
    app.correct_participant(inv_minsk, minsk["id"], field="birth_year", new_value=1971,
                            reason="transcription error; see clinic note")
    for name, role, site in (("insp", "inspector", "MINSK"), ("mon.minsk", "monitor", "MINSK"),
                             ("dm", "data_manager", "MINSK"), ("adm", "admin", "MINSK")):
        add_user(name, role, site)
    return {"minsk": minsk["id"], "gomel": gomel["id"]}


def test_sign_in_sets_an_httponly_strict_session_cookie(web, trial):
    r = sign_in(web, "insp")
    assert r.status_code == 303 and r.headers["location"] == "/ui/participants"
    cookies = [h for h in r.headers.get_list("set-cookie") if h.startswith("trialaudit_session=")]
    assert cookies and "HttpOnly" in cookies[0] and "SameSite=strict" in cookies[0]
    assert "Secure" not in cookies[0]  # plain http here; see the https test
    page = web.get("/ui/participants")
    assert page.status_code == 200 and "MIN-001" in page.text and "GOM-001" in page.text


def test_the_session_cookie_is_secure_over_https(services, trial):
    with TestClient(create_app(services), base_url="https://testserver") as c:
        r = sign_in(c, "insp")
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("trialaudit_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_wrong_password_is_refused_and_audited_as_in_the_api(web, trial, services):
    r = sign_in(web, "insp", password="not the password")
    assert r.status_code == 401 and "trialaudit_session" not in r.headers.get("set-cookie", "")
    assert web.get("/ui/participants", follow_redirects=False).status_code == 303
    page = services.app.audit_events(services.app.actor_for(services.app.user_by_name("dm").id), type="LoginFailed")
    assert [e for e in page["events"] if e["actor"]["username"] == "insp"]


def test_a_form_without_its_csrf_token_is_refused(web, trial):
    web.get("/ui/login")
    r = web.post("/ui/login", data={"username": "insp", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    assert "trialaudit_session" not in r.headers.get("set-cookie", "")
    r = web.post("/ui/login", data={"csrf_token": "forged", "username": "insp", "password": PASSWORD},
                 follow_redirects=False)
    assert r.status_code == 403
    assert sign_in(web, "insp").status_code == 303
    r = web.post("/ui/logout", data={}, follow_redirects=False)  # signing out needs the token too
    assert r.status_code == 403
    assert web.get("/ui/participants").status_code == 200  # still signed in


def test_sign_out_ends_the_session(web, trial):
    sign_in(web, "insp")
    page = web.get("/ui/participants")
    r = web.post("/ui/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    r = web.get("/ui/participants", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=%2Fui%2Fparticipants")


def test_a_session_older_than_the_timeout_ends(web, trial, services):
    """R24: the cookie holds the API's token, which the API's own check refuses once it has timed out."""
    user = services.app.user_by_name("insp")
    stale = services.tokens.issue(str(user.id), now=time.time() - services.tokens.ttl_seconds - 1)
    web.cookies.set("trialaudit_session", stale)
    r = web.get(f"/ui/participants/{trial['minsk']}", follow_redirects=False)
    assert r.status_code == 303
    login = web.get(r.headers["location"])
    assert "session has ended" in login.text and "expired" in login.text


def test_without_a_session_every_page_sends_to_sign_in(web, trial):
    for path in ("/ui/participants", f"/ui/participants/{trial['minsk']}", "/ui/audit", "/ui/integrity",
                 "/ui/outcomes", "/ui/safety", f"/ui/participants/{trial['minsk']}/bundle.zip"):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login"), path


def test_a_minsk_monitor_sees_minsk_only_as_in_the_api(web, trial):
    """R19, R23: the site wall of the API, as pages."""
    sign_in(web, "mon.minsk")
    listing = web.get("/ui/participants")
    assert "MIN-001" in listing.text and "GOM-001" not in listing.text
    assert web.get(f"/ui/participants/{trial['minsk']}").status_code == 200
    for path in ("", "/casebook", "/compare", "/scores", "/items/birth_year", "/bundle.zip"):
        r = web.get(f"/ui/participants/{trial['gomel']}{path}")
        assert r.status_code == 403, path
        assert r.headers["content-type"].startswith("text/html") and "403" in r.text
    assert web.get("/ui/audit?site=GOMEL").status_code == 403
    assert web.get("/ui/participants?site=GOMEL").status_code == 403


def test_an_admin_gets_403_pages_for_clinical_data(web, trial):
    sign_in(web, "adm")
    for path in ("/ui/participants", f"/ui/participants/{trial['minsk']}", "/ui/outcomes", "/ui/safety"):
        r = web.get(path)
        assert r.status_code == 403 and "<h1>403" in r.text, path


def test_every_page_is_on_the_audit_trail_and_says_so(web, trial, services):
    """R11: each page an inspector opens is an AuditTrailRetrieved event, as API retrievals are."""
    sign_in(web, "insp")
    pid = trial["minsk"]
    pages = {"participants": "/ui/participants", "participant": f"/ui/participants/{pid}",
             "casebook": f"/ui/participants/{pid}/casebook", "scores": f"/ui/participants/{pid}/scores",
             "outcomes": "/ui/outcomes", "safety": "/ui/safety", "audit": "/ui/audit", "integrity": "/ui/integrity"}
    for name, path in pages.items():
        r = web.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert "This page view is recorded on the audit trail" in r.text and f"web:{name}" in r.text
    dm = services.app.actor_for(services.app.user_by_name("dm").id)
    seen = services.app.audit_events(dm, user="insp", type="AuditTrailRetrieved", limit=1000)["events"]
    views = {services.app.repository.get(UUID(e["aggregate_id"])).view for e in seen}
    assert {f"web:{name}" for name in pages} <= views
    assert all(e["actor"]["username"] == "insp" for e in seen)


def test_the_trail_shows_who_when_what_why_and_the_sealing_leaf(web, trial, services):
    sign_in(web, "insp")
    html = web.get(f"/ui/participants/{trial['minsk']}").text
    assert "FieldCorrected" in html and "transcription error; see clinic note" in html
    assert re.search(r"<del>1970</del> → <ins>1971</ins>", html)
    assert "Inv.Minsk Person" in html and "investigator" in html
    assert "Europe/Minsk" in html and "UTC" in html  # UTC and the site's local time
    leaves = services.integrity.log.leaves_of(__import__("uuid").UUID(trial["minsk"]))
    assert f"leaf {leaves[-1].leaf_index}" in html
    # filters: only corrections
    only = web.get(f"/ui/participants/{trial['minsk']}?type=FieldCorrected&order=asc").text
    assert "FieldCorrected" in only and "ParticipantScreened" not in only
    # the item's history is one click away
    history = web.get(f"/ui/participants/{trial['minsk']}/items/birth_year").text
    assert "transcription error; see clinic note" in history and "1970" in history and "1971" in history


def test_time_travel_shows_the_old_value_and_why_it_changed_later(web, trial):
    """R17: the casebook as recorded just before the correction; the URL holds the instant."""
    sign_in(web, "insp")
    trail = web.get(f"/ui/participants/{trial['minsk']}?type=FieldCorrected").text
    link = re.search(r'href="(/ui/participants/[^"]+/casebook\?as_of=[^"]+)">casebook just before', trail).group(1)
    page = web.get(link.replace("&amp;", "&"))
    assert page.status_code == 200
    html = page.text
    assert "<mark>1970</mark>" in html  # the value then, marked as changed later
    assert "transcription error; see clinic note" in html and "Changed after this instant" in html
    now = web.get(f"/ui/participants/{trial['minsk']}/casebook").text
    assert "1971" in now and "<mark>" not in now


def test_compare_two_instants_highlights_the_changes(web, trial, services):
    sign_in(web, "insp")
    history = services.app.participant_history(services.app.actor_for(services.app.user_by_name("insp").id),
                                               trial["minsk"])
    first, last = history[0]["recorded_at"], history[-1]["recorded_at"]
    r = web.get(f"/ui/participants/{trial['minsk']}/compare", params={"from": first, "to": last})
    assert r.status_code == 200
    assert re.search(r'<tr class="changed">.*?birth_year.*?<del>1970</del>.*?<mark><ins>1971</ins></mark>', r.text, re.S)
    bad = web.get(f"/ui/participants/{trial['minsk']}/compare", params={"from": last, "to": first})
    assert bad.status_code == 422 and "query.to" in bad.text


def test_bad_input_is_a_422_page_naming_the_field(web, trial):
    sign_in(web, "insp")
    r = web.get(f"/ui/participants/{trial['minsk']}/casebook", params={"as_of": "yesterday"})
    assert r.status_code == 422 and "<code>query.as_of</code>" in r.text
    r = web.get(f"/ui/participants/{trial['minsk']}/casebook", params={"valid_at": "2026-13-01"})
    assert r.status_code == 422 and "query.valid_at" in r.text
    r = web.get("/ui/audit/download", params={"format": "xml"})
    assert r.status_code == 422 and "query.format" in r.text


def test_audit_search_pages_and_downloads(web, trial):
    """R15: the filters of GET /audit/events, and the whole filtered trail as CSV or JSON Lines."""
    sign_in(web, "insp")
    page = web.get("/ui/audit", params={"participant": trial["minsk"], "item": "birth_*", "order": "asc"})
    assert page.status_code == 200 and "transcription error; see clinic note" in page.text
    csv = web.get("/ui/audit/download", params={"format": "csv", "participant": trial["minsk"]})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.content.decode("utf-8-sig").splitlines()  # UTF-8 with a BOM, as spreadsheets want it
    assert lines[0].startswith("position,recorded_at") and any("1970,1971" in line for line in lines)
    jsonl = web.get("/ui/audit/download", params={"format": "jsonl", "site": "MINSK"})
    assert jsonl.status_code == 200 and all(line.startswith("{") for line in jsonl.text.splitlines())


def test_a_review_sign_off_needs_the_password_again(web, trial, services):
    """R18 sign-off with re-authentication (as for signatures): a wrong password signs nothing."""
    sign_in(web, "dm")
    form = web.get("/ui/audit/reports/critical-changes")
    assert form.status_code == 200 and "Sign off this review" in form.text
    data = {"csrf_token": csrf_of(form.text), "period_from": "2020-01-01", "period_to": "2030-12-31",
            "comment": "reviewed every critical change"}
    dm = services.app.actor_for(services.app.user_by_name("dm").id)

    def sign_offs() -> int:
        return len(services.app.audit_events(dm, type="AuditReviewSignedOff", limit=100)["events"])

    before = sign_offs()
    wrong = web.post("/ui/audit/reports/critical-changes/sign-off", data={**data, "password": "wrong"},
                     follow_redirects=False)
    assert wrong.status_code == 401 and sign_offs() == before
    missing = web.post("/ui/audit/reports/critical-changes/sign-off", data={**data, "comment": "", "password": PASSWORD},
                       follow_redirects=False)
    assert missing.status_code == 422 and "form.comment" in missing.text and sign_offs() == before
    ok = web.post("/ui/audit/reports/critical-changes/sign-off", data={**data, "password": PASSWORD})
    assert ok.status_code == 200 and "Signed off" in ok.text
    assert sign_offs() == before + 1


def test_an_inspector_may_not_sign_off(web, trial):
    sign_in(web, "insp")
    form = web.get("/ui/audit/reports/critical-changes")
    assert "Sign off this review" not in form.text
    r = web.post("/ui/audit/reports/critical-changes/sign-off",
                 data={"csrf_token": csrf_of(form.text), "period_from": "2020-01-01", "period_to": "2030-12-31",
                       "comment": "x", "password": PASSWORD})
    assert r.status_code == 403


def test_pictures_are_drawn_on_the_server(web, trial):
    sign_in(web, "insp")
    for path in ("/ui/outcomes", f"/ui/participants/{trial['minsk']}/scores"):
        html = web.get(path).text
        assert "<svg" in html and "<script" not in html
    safety = web.get("/ui/safety").text
    assert "Reporting clocks, overdue first" in safety


def test_integrity_page_and_bundle(web, trial, services):
    sign_in(web, "insp")
    html = web.get("/ui/integrity", params={"participant": trial["minsk"]}).text
    head = services.integrity.head().to_json()
    assert head["root_hash"][:16] in html or "Root hash" in html
    assert "<strong>Yes.</strong>" in html
    assert f"verify_bundle.py bundle-{trial['minsk']} --public-key {head['public_key']}" in html
    r = web.get(f"/ui/participants/{trial['minsk']}/bundle.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    import io
    import zipfile
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert f"bundle-{trial['minsk']}/verify_bundle.py" in names and f"bundle-{trial['minsk']}/head.json" in names


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_are_served_without_a_cdn(web, path):
    html = web.get(path).text
    assert "cdn" not in html.lower() and "https://" not in html
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith("/"), src
        assert web.get(src).status_code == 200, src
    assert "<script>" not in html  # no inline script: a CSP of default-src 'self' keeps it working


def test_pages_carry_no_inline_script_or_style(web, trial):
    sign_in(web, "insp")
    for path in ("/ui/login", "/ui/participants", f"/ui/participants/{trial['minsk']}", "/ui/audit", "/ui/integrity",
                 f"/ui/participants/{trial['minsk']}/casebook", "/ui/outcomes"):
        html = web.get(path).text
        assert "<script" not in html and " style=" not in html and " onclick=" not in html, path


def test_failed_sign_ins_lock_the_account_as_in_the_api(web, trial, services):
    """R24: the form is the API's login: consecutive failures lock the account, and the lock holds."""
    for _ in range(services.settings.max_failed_logins):
        assert sign_in(web, "insp", password="wrong password").status_code == 401
    r = sign_in(web, "insp")  # the right password now: refused, in the words of a wrong one (no enumeration)
    assert r.status_code == 401 and "incorrect username or password" in r.text.lower()
    assert services.app.user_by_name("insp").locked
    assert web.get("/ui/participants", follow_redirects=False).status_code == 303


def test_the_sign_in_page_shows_nothing_from_the_url_and_redirects_only_inside(web, trial):
    page = web.get("/ui/login", params={"why": "Call +1 555 0100 to unlock", "next": "https://evil.example/"})
    assert "555" not in page.text and "evil.example" not in page.text
    r = web.post("/ui/login", data={"csrf_token": csrf_of(page.text), "username": "insp", "password": PASSWORD,
                                    "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/participants"


def test_the_reporting_clocks_list_the_overdue_first(web, trial, services, actor_of):
    """Safety page: an SAE known 30 h ago is overdue to the sponsor (24 h) and comes before one known 1 h ago."""
    import datetime as dt

    from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE

    app = services.app
    inv = app.actor_for(app.user_by_name("inv.minsk").id)
    pid = trial["minsk"]
    app.assess_eligibility(inv, pid, inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(inv, pid, consent_version="v1", signed_on="2026-01-01")
    now = dt.datetime.now(dt.timezone.utc)
    base = {"aestdat": (now - dt.timedelta(days=3)).date().isoformat(), "aetoxgr": "3", "aeser": "Y", "aesdth": "N",
            "aeslife": "N", "aeshosp": "Y", "aesdisab": "N", "aescong": "N", "aesmie": "N",
            "aerel_treg": "NOT APPLICABLE", "aerel_proc": "NOT RELATED", "aeout": "NOT RECOVERED/NOT RESOLVED",
            "aeacn": "NOT APPLICABLE"}
    app.report_adverse_event(inv, pid, values={**base, "aeterm": "Recent pneumonia", "aware_at": now - dt.timedelta(hours=1)})
    app.report_adverse_event(inv, pid, values={**base, "aeterm": "Old pneumonia", "aware_at": now - dt.timedelta(hours=30)})
    sign_in(web, "insp")
    html = web.get("/ui/safety").text
    assert html.index("Old pneumonia") < html.index("Recent pneumonia")
    old_row = html[html.rindex("<tr", 0, html.index("Old pneumonia")):html.index("Old pneumonia")]
    assert 'class="overdue"' in old_row and "<strong>overdue</strong>" in old_row


def test_sign_out_revokes_the_token_on_the_server(web, trial, services):
    """R24, issue 13 D.8: signing out ends the session itself, not only the browser's cookie: the token the
    cookie held answers 401 on the API afterwards."""
    sign_in(web, "insp")
    token = web.cookies.get("trialaudit_session")
    assert web.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    page = web.get("/ui/participants")
    web.post("/ui/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert web.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_one_time_password_leads_to_choosing_ones_own(web, trial, services, actor_of):
    """21 CFR 11.300, issue 13 D.8: a password an administrator set opens no session; the page asks for the
    user's own password (same policy as the API), after which the user signs in with it."""
    admin = services.app.actor_for(str(services.app.user_by_name("adm").id))
    services.app.register_user(admin, username="new.monitor", full_name="New Monitor", role="monitor",
                               site="MINSK", password="given by the administrator", temporary=True)
    r = sign_in(web, "new.monitor", "given by the administrator")
    assert r.status_code == 403 and "Choose your own password" in r.text
    assert "trialaudit_session" not in r.cookies
    form = {"csrf_token": csrf_of(r.text), "username": "new.monitor", "current_password": "given by the administrator"}
    weak = web.post("/ui/password", data={**form, "new_password": "password1234", "repeat_password": "password1234"})
    assert weak.status_code == 422 and 'role="alert"' in weak.text
    mine = "my own monitoring passphrase"
    done = web.post("/ui/password", data={**form, "csrf_token": csrf_of(weak.text), "new_password": mine,
                                          "repeat_password": mine})
    assert done.status_code == 200 and "new password is set" in done.text
    assert sign_in(web, "new.monitor", mine).status_code == 303


def test_a_site_role_cannot_download_a_bundle(web, trial):
    """Issue 13 A.2/E.19: a bundle carries the participant's events whole, allocation slot included, and
    every leaf of the log: oversight roles only. A MINSK investigator gets 403 for a MINSK participant."""
    sign_in(web, "inv.minsk")
    r = web.get(f"/ui/participants/{trial['minsk']}/bundle.zip")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    page = web.get("/ui/integrity", params={"participant": trial["minsk"]})
    assert "bundle.zip" not in page.text and "data managers and inspectors download it" in page.text
