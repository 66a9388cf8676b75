"""Accounts, credentials and sessions (issue 13 A.1, D.8-D.12; issue 14 item 7), on both stores.

R11 (logins audited), R22 (accounts never reused), R24 (lockout, idle logout), R28 (signing
re-authenticates) and 21 CFR 11.300 (a password an administrator set is one-time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import statistics
import time
from pathlib import Path

import jwt
import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import StoredEvent
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import cli, cli_actor
from api.container import _token_key, build, setup_store
from domain.errors import PermissionDenied
from domain.user import User
from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new passphrase of mine"
ADMIN_SET = "temporary passphrase from admin"


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(client, username: str, password: str = PASSWORD):
    return client.post("/auth/token", data={"username": username, "password": password})


def _token(client, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = _login(client, username, password)
    assert r.status_code == 200, r.text
    return _headers(r.json()["access_token"])


def _cache_wait(settings) -> None:
    """PostgreSQL workers believe a session row for session_cache_seconds: past that, a revocation holds."""
    if settings.is_postgres:
        time.sleep(settings.session_cache_seconds + 0.05)


def _all_event_states(app) -> list[bytes]:
    return [n.state for n in app.recorder.select_notifications(start=1, limit=100_000)]


# ---------------------------------------------------------------------------- 13.A1
def test_no_password_hash_in_events_leaves_or_bundles_13A1(client, services, add_user, tmp_path, monkeypatch):
    """After registering, logging in, changing one's own password and an admin reset, no event, no
    /integrity/leaves leaf and no bundle file holds the hash or the argon2 prefix."""
    app = services.app
    add_user("admin1", "admin", "*")
    user = add_user("inv1", "investigator")
    admin = _token(client, "admin1")
    mine = _token(client, "inv1")
    r = client.post(f"/users/{user['id']}/password", headers=mine,
                    json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    r = client.post(f"/users/{user['id']}/password", headers=admin,
                    json={"new_password": ADMIN_SET, "reason": "user forgot the password"})
    assert r.status_code == 200, r.text
    r = client.post("/users", headers=admin, json={"username": "mon1", "full_name": "Mon One", "role": "monitor",
                                                  "site": "MINSK", "password": ADMIN_SET})
    assert r.status_code == 201, r.text
    hashes = [app.accounts.password_hash(u["id"]) for u in app.list_users(cli_actor())]
    assert all(h.startswith("$argon2id$") for h in hashes)  # the credential store has them ...

    states = _all_event_states(app)
    assert len(states) >= 7
    for state in states:  # ... and the log does not
        assert b"$argon2" not in state and b"password_hash" not in state
        assert not any(h.encode() in state for h in hashes)
    add_user("insp1", "inspector", "*")
    r = client.get("/integrity/leaves", params={"limit": 1000}, headers=_token(client, "insp1"))
    assert r.status_code == 200, r.text
    leaves = r.json()
    assert len(leaves) >= len(states)
    for leaf in leaves:
        data = base64.b64decode(leaf["leaf_data"])
        assert b"$argon2" not in data and not any(h.encode() in data for h in hashes)
    out = tmp_path / "bundle"
    for name, value in (("DATABASE_URL", services.settings.database_url), ("DATA_DIR", str(services.settings.data_dir)),
                        ("SITES", json.dumps(services.settings.sites))):
        monkeypatch.setenv(f"TRIALAUDIT_{name}", value)
    result = CliRunner().invoke(cli, ["bundle", "--all", "--out", str(out)])  # what an inspector is handed
    assert result.exit_code == 0, result.output
    assert (out / "events.jsonl").read_text().count("\n") >= len(states)
    for f in out.iterdir():
        text = f.read_bytes()
        assert b"$argon2" not in text and not any(h.encode() in text for h in hashes), f.name
    # the audited facts are there: who set which password, when
    history = client.get(f"/users/{user['id']}/history", headers=admin).json()
    changes = [(h["type"], h["actor"]["username"], h["changes"]) for h in history if h["type"] == "PasswordChanged"]
    assert [(t, who) for t, who, _ in changes] == [("PasswordChanged", "inv1"), ("PasswordChanged", "admin1")]
    assert {"field": "password_change_required", "old_value": False, "new_value": True} in changes[1][2]


def _write_old_user(app, username: str, password_hash: str) -> str:
    """A User registration as code before this change stored it: v1 state with the hash in it."""
    user = User.register(username=username, full_name="Old Timer", role="investigator", site="MINSK",
                         password_one_time=False, stamp={"actor": cli_actor().as_dict(), "reason": None,
                                                         "reason_code": None, "source": "cli", "query_id": None})
    event = user.collect_events()[0]
    stored = app.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    state.pop("class_version")
    state.pop("password_one_time")
    state["password_hash"] = password_hash
    old = StoredEvent(originator_id=stored.originator_id, originator_version=stored.originator_version,
                      topic=stored.topic, state=json.dumps(state).encode())
    app.recorder.insert_events([old])
    return str(user.id)


def test_setup_upgrades_a_store_whose_user_events_carry_hashes_13A1(store_url, make_settings, caplog):
    settings = make_settings(store_url)
    setup_store(settings)
    svc = build(settings)
    try:
        old_hash = svc.app.passwords.hash(PASSWORD)
        user_id = _write_old_user(svc.app, "oldtimer", old_hash)
        assert svc.app.accounts.password_hash(user_id) is None
        # and a User snapshot as older code took it: the aggregate's state with the hash in it
        snapshot = svc.app.snapshots.mapper.to_stored_event(
            Snapshot.take(svc.app.repository.get(User.id_for("oldtimer"))))
        state = json.loads(snapshot.state)
        state["state"].pop("class_version", None)
        state["state"].pop("password_change_required")
        state["state"]["password_hash"] = old_hash
        svc.app.snapshots.recorder.insert_events([StoredEvent(
            originator_id=snapshot.originator_id, originator_version=snapshot.originator_version,
            topic=snapshot.topic, state=json.dumps(state).encode())])
    finally:
        svc.close()
    setup_store(settings)  # what `trialaudit setup` / `serve` run: moves the current hash out of the log
    assert "moved the password hashes of 1 accounts" in caplog.text and "choose new passwords" in caplog.text
    caplog.clear()
    setup_store(settings)  # once only
    assert "moved" not in caplog.text
    svc = build(settings)
    try:
        assert svc.app.accounts.password_hash(user_id) == old_hash
        with TestClient(create_app(svc)) as client:
            r = _login(client, "oldtimer")
            assert r.status_code == 200, r.text
            svc.app.register_user(cli_actor(), username="admin1", full_name="Ad Min", role="admin", site="*",
                                  password=PASSWORD, source="cli")
            admin = _token(client, "admin1")
            history = client.get(f"/users/{user_id}/history", headers=admin)
            assert history.status_code == 200 and "argon2" not in history.text
            assert "argon2" not in client.get(f"/users/{user_id}", headers=admin).text
        old_user = svc.app.repository.get(User.id_for("oldtimer"))
        assert "argon2" not in repr(vars(old_user)) and old_user.password_change_required is False
    finally:
        svc.close()


# ---------------------------------------------------------------------------- 13.D8
def test_nobody_changes_their_own_role_or_site_13D8(client, add_user):
    admin_user = add_user("admin1", "admin", "*")
    admin = _token(client, "admin1")
    r = client.post(f"/users/{admin_user['id']}/site", headers=admin, json={"site": "MINSK", "reason": "I want in"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = client.post(f"/users/{admin_user['id']}/role", headers=admin, json={"role": "investigator", "reason": "me"})
    assert r.status_code == 403
    spelt_otherwise = admin_user["id"].upper().replace("-", "")  # the same account, however the id is written
    r = client.post(f"/users/{spelt_otherwise}/role", headers=admin, json={"role": "investigator", "reason": "me"})
    assert r.status_code == 403
    r = client.post(f"/users/{spelt_otherwise}/site", headers=admin, json={"site": "MINSK", "reason": "me"})
    assert r.status_code == 403
    me = client.get("/me", headers=admin).json()
    assert (me["role"], me["site"]) == ("admin", "*")  # nothing changed
    history = [h["type"] for h in client.get(f"/users/{admin_user['id']}/history", headers=admin).json()]
    assert history == ["UserRegistered", "LoginSucceeded"]
    r = client.post("/participants", headers=admin,
                    json={"screening_number": "S-1", "site": "MINSK", "sex": "F", "birth_year": 1970})
    assert r.status_code == 403


def test_an_admin_set_password_is_one_time_and_never_signs_13D8(client, services, add_user):
    add_user("admin1", "admin", "*")
    admin = _token(client, "admin1")
    r = client.post("/users", headers=admin, json={"username": "inv2", "full_name": "Inv Two",
                                                  "role": "investigator", "site": "MINSK", "password": ADMIN_SET})
    assert r.status_code == 201 and r.json()["password_change_required"] is True
    inv2 = r.json()
    # the admin knows the password, but cannot log in as the user with it
    r = _login(client, "inv2", ADMIN_SET)
    assert r.status_code == 403 and r.json()["type"] == "/problems/password-change-required"
    assert "password change required" in r.json()["detail"] and "access_token" not in r.text
    # nor sign with it (21 CFR 11.300)
    with pytest.raises(PermissionDenied, match="your own password"):
        services.app._reauthenticate(services.app.actor_for(inv2["id"]), ADMIN_SET, "a visit")
    # the only thing it does: choose a new password
    r = client.post("/auth/password", json={"username": "inv2", "current_password": ADMIN_SET,
                                            "new_password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["password_change_required"] is False
    assert _login(client, "inv2", ADMIN_SET).status_code == 401
    mine = _token(client, "inv2", NEW_PASSWORD)
    assert client.get("/me", headers=mine).json()["username"] == "inv2"
    # an admin reset makes it one-time again and ends the user's sessions
    r = client.post(f"/users/{inv2['id']}/password", headers=admin, json={"new_password": ADMIN_SET, "reason": "forgot"})
    assert r.status_code == 200 and r.json()["password_change_required"] is True
    assert client.get("/me", headers=mine).status_code == 401
    assert _login(client, "inv2", ADMIN_SET).status_code == 403
    history = client.get(f"/users/{inv2['id']}/history", headers=admin).json()
    changed = [h for h in history if h["type"] == "PasswordChanged"]
    assert [h["actor"]["username"] for h in changed] == ["inv2", "admin1"]
    assert changed[0]["reason"] == "chosen replacing a one-time password set by an administrator, from testclient"


def test_own_password_change_needs_the_current_one_and_ends_every_session_13D8(client, add_user):
    user = add_user("inv1", "investigator")
    first, second = _token(client, "inv1"), _token(client, "inv1")
    url = f"/users/{user['id']}/password"
    r = client.post(url, headers=first, json={"new_password": NEW_PASSWORD})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.current_password"
    r = client.post(url, headers=first, json={"new_password": NEW_PASSWORD, "current_password": "not my password!"})
    assert r.status_code == 401
    assert _login(client, "inv1", NEW_PASSWORD).status_code == 401  # nothing changed
    r = client.post(url, headers=first, json={"new_password": NEW_PASSWORD, "current_password": PASSWORD})
    assert r.status_code == 200, r.text
    assert client.get("/me", headers=first).status_code == 401
    assert client.get("/me", headers=second).status_code == 401
    assert client.get("/me", headers=_token(client, "inv1", NEW_PASSWORD)).status_code == 200


def test_role_or_site_change_revokes_tokens_and_logout_revokes_its_own_13D8(client, add_user):
    add_user("admin1", "admin", "*")
    user = add_user("inv1", "investigator")
    admin = _token(client, "admin1")
    inv = _token(client, "inv1")
    r = client.post(f"/users/{user['id']}/site", headers=admin, json={"site": "GOMEL", "reason": "moved to Gomel"})
    assert r.status_code == 200
    assert client.get("/me", headers=inv).status_code == 401
    inv = _token(client, "inv1")
    r = client.post(f"/users/{user['id']}/role", headers=admin, json={"role": "coordinator", "reason": "new job"})
    assert r.status_code == 200
    assert client.get("/me", headers=inv).status_code == 401
    one, other = _token(client, "inv1"), _token(client, "inv1")
    r = client.post("/auth/logout", headers=one)
    assert r.status_code == 204
    r = client.get("/me", headers=one)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert client.get("/me", headers=other).status_code == 200  # only the token it was called with
    assert client.post("/auth/logout", headers=one).status_code == 401


# ---------------------------------------------------------------------------- 13.D9
@pytest.mark.parametrize("password, why", [
    ("short one", "at least 12"),
    (" " * 14, "whitespace"),
    ("newuser1newuser1", "username"),
    ("NewUser1 ", "at least 12"),
    ("1qaz2wsx3edc", "commonly used"),
    ("qwerty123456", "commonly used"),
])
def test_password_policy_NIST_800_63B_13D9(client, add_user, password, why):
    add_user("admin1", "admin", "*")
    admin = _token(client, "admin1")
    r = client.post("/users", headers=admin, json={"username": "newuser1", "full_name": "New User",
                                                  "role": "monitor", "site": "MINSK", "password": password})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in r.json()["errors"]] == ["body.password"] and why in r.json()["detail"]
    user = add_user("inv1", "investigator")
    mine = _token(client, "inv1")
    password = "inv1 INV1 pass" if why == "username" else password
    r = client.post(f"/users/{user['id']}/password", headers=mine,
                    json={"current_password": PASSWORD, "new_password": password})
    assert r.status_code == 422 and [e["path"] for e in r.json()["errors"]] == ["body.new_password"]
    assert len(client.get("/users", headers=admin).json()) == 2  # nothing was added


# ---------------------------------------------------------------------------- 13.D10
def test_deactivated_and_locked_answer_exactly_like_a_wrong_password_13D10(store_url, make_settings):
    # production argon2 parameters, so that the timing compares real work
    settings = make_settings(store_url, argon2_memory_kib=19456, argon2_time_cost=2, login_throttle_failures=1000)
    setup_store(settings)
    svc = build(settings)
    try:
        app = svc.app
        admin = app.actor_for(app.register_user(cli_actor(), username="admin1", full_name="Ad Min", role="admin",
                                                site="*", password=PASSWORD, source="cli")["id"])
        for name in ("gone1", "locked1", "fine1"):
            app.register_user(cli_actor(), username=name, full_name=name.title(), role="monitor", site="MINSK",
                              password=PASSWORD, source="cli")
        app.deactivate_user(admin, app.user_by_name("gone1").id, reason="left the study team")
        with TestClient(create_app(svc)) as client:
            for _ in range(settings.max_failed_logins):
                assert _login(client, "locked1", "wrong password!!").status_code == 401
            assert app.user_by_name("locked1").locked

            def answer(username: str, password: str):
                started = time.perf_counter()
                r = _login(client, username, password)
                elapsed = time.perf_counter() - started
                headers = {k: v for k, v in r.headers.items() if k not in ("date", "content-length")}
                return (r.status_code, headers, r.content), elapsed

            cases = {"wrong password": ("fine1", "wrong password!!"), "unknown": ("nobody1", PASSWORD),
                     "deactivated": ("gone1", PASSWORD), "locked": ("locked1", PASSWORD)}
            answers, times = {}, {}
            for _ in range(5):
                for what, (username, password) in cases.items():
                    a, t = answer(username, password)
                    answers.setdefault(what, set()).add(repr(a))
                    times.setdefault(what, []).append(t)
        assert all(len(a) == 1 for a in answers.values())
        assert len({next(iter(a)) for a in answers.values()}) == 1, answers  # one answer, byte for byte
        assert "incorrect username or password" in next(iter(answers["locked"]))
        wrong = statistics.median(times["wrong password"])
        for what in ("unknown", "deactivated", "locked"):  # the argon2 work is done either way
            assert statistics.median(times[what]) > 0.5 * wrong, (what, times)
    finally:
        svc.close()


# ---------------------------------------------------------------------------- 13.D11
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(key: bytes, header: dict, payload_bytes: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload_bytes)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def test_any_token_payload_is_valid_or_401_never_500_13D11(client, services, add_user):
    user = add_user("inv1", "investigator")
    key = _token_key(services.settings)
    now = int(time.time())
    good = {"sub": user["id"], "iat": now, "exp": now + 600, "jti": "x" * 32}
    hs = {"alg": "HS256", "typ": "JWT"}
    tokens = {
        "malformed json": _signed(key, hs, b"{not json"),
        "exp 1e400": _signed(key, hs, json.dumps({**good, "exp": 0}).replace('"exp": 0', '"exp": 1e400').encode()),
        "exp NaN": _signed(key, hs, json.dumps({**good, "exp": float("nan")}).encode()),
        "exp string": _signed(key, hs, json.dumps({**good, "exp": "soon"}).encode()),
        "payload a list": _signed(key, hs, b"[1, 2]"),
        "no exp": jwt.encode({k: v for k, v in good.items() if k != "exp"}, key, algorithm="HS256"),
        "no jti": jwt.encode({k: v for k, v in good.items() if k != "jti"}, key, algorithm="HS256"),
        "no sub": jwt.encode({k: v for k, v in good.items() if k != "sub"}, key, algorithm="HS256"),
        "sub a number": jwt.encode({**good, "sub": 12}, key, algorithm="HS256"),
        "alg HS512": jwt.encode(good, key, algorithm="HS512"),
        "alg none": f"{_b64(json.dumps({'alg': 'none'}).encode())}.{_b64(json.dumps(good).encode())}.",
        "other key": jwt.encode(good, b"k" * 32, algorithm="HS256"),
        "unknown session": jwt.encode(good, key, algorithm="HS256"),
        "garbage": "a.b.c.d",
        "huge": "a" * 10_000,
    }
    for what, token in tokens.items():
        r = client.get("/me", headers=_headers(token))
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json", what
    assert client.get("/me", headers=_token(client, "inv1")).status_code == 200
    header = jwt.get_unverified_header(_token(client, "inv1")["Authorization"].split()[1])
    assert header["alg"] == "HS256"


# ---------------------------------------------------------------------------- 14.7
def test_idle_timeout_extended_by_activity_with_an_absolute_maximum_14_7_R24(store_url, make_settings):
    settings = make_settings(store_url, idle_timeout_seconds=60, session_max_seconds=300)
    setup_store(settings)
    svc, other_worker = build(settings), build(settings)  # two workers on one database
    try:
        user_id = svc.app.register_user(cli_actor(), username="inv1", full_name="Inv One", role="investigator",
                                        site="MINSK", password=PASSWORD, source="cli")["id"]
        t0 = time.time()
        token = svc.tokens.issue(user_id, now=t0)
        # each request extends the session: 50 s apart, never idle for 60 s, on either worker
        for step in range(1, 5):
            worker = svc if step % 2 else other_worker
            assert worker.tokens.authenticate_token(token, now=t0 + 50 * step).user_id == user_id
        with pytest.raises(Exception, match="without activity"):
            svc.tokens.authenticate_token(token, now=t0 + 200 + 61)
        # activity cannot keep a session past its absolute maximum
        token = svc.tokens.issue(user_id, now=t0)
        for step in range(1, 6):
            svc.tokens.authenticate_token(token, now=t0 + 50 * step)
        with pytest.raises(Exception, match="maximum length"):
            other_worker.tokens.authenticate_token(token, now=t0 + 301)
        # a logout on one worker holds on the other
        token = svc.tokens.issue(user_id)
        assert other_worker.tokens.authenticate_token(token).user_id == user_id
        svc.tokens.logout(token)
        with pytest.raises(Exception, match="ended"):
            svc.tokens.authenticate_token(token)  # at once in the worker that did it
        _cache_wait(settings)
        with pytest.raises(Exception, match="ended"):
            other_worker.tokens.authenticate_token(token)
    finally:
        other_worker.close()
        svc.close()


def test_the_token_response_says_the_idle_timeout_14_7(client, add_user, services):
    add_user("inv1", "investigator")
    r = _login(client, "inv1")
    assert r.json()["expires_in"] == services.settings.idle_timeout_seconds == 900
    assert services.settings.session_max_seconds == 12 * 3600


# ---------------------------------------------------------------------------- 13.D12
def test_unknown_usernames_are_throttled_and_folded_into_one_event_per_window_13D12(store_url, make_settings):
    settings = make_settings(store_url, login_throttle_failures=3, login_throttle_window_seconds=2)
    setup_store(settings)
    svc = build(settings)
    try:
        def unknown_events():
            return [n for n in svc.app.recorder.select_notifications(start=1, limit=1000)
                    if n.topic.startswith("trialaudit.LoginAttempt.")]

        with TestClient(create_app(svc)) as client:
            for i in range(3):
                assert _login(client, f"nobody{i}", "some password here").status_code == 401
            r = _login(client, "nobody9", "some password here")
            assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
            assert 1 <= int(r.headers["retry-after"]) <= 2
            assert len(unknown_events()) == 1  # three failures, one event
            for _ in range(20):  # hammering changes nothing in the log
                assert _login(client, "nobody9", "x").status_code == 429
            assert len(unknown_events()) == 1
            time.sleep(2.1)  # the next window: the previous one is summarised in one event
            assert _login(client, "nobody0", "some password here").status_code == 401
        events = unknown_events()
        assert [e.topic.rsplit(".", 1)[1] for e in events] == [
            "UnknownUserLoginFailed", "UnknownUserLoginsFolded", "UnknownUserLoginFailed"]
        folded = svc.app.repository.get(events[1].originator_id)
        assert folded.attempts == 3 and folded.usernames_tried == ["nobody0", "nobody1", "nobody2"]
        # per username too, whatever the address
        for i in range(3):
            with pytest.raises(Exception, match="incorrect"):
                svc.app.authenticate("target", "wrong password!!", client=f"10.0.0.{i}")
        with pytest.raises(Exception, match="too many failed logins"):
            svc.app.authenticate("target", "wrong password!!", client="10.0.0.99")
    finally:
        svc.close()


def test_known_user_failures_still_lock_the_account_13D12_R24(client, add_user, services):
    add_user("inv1", "investigator")
    for _ in range(services.settings.max_failed_logins):
        assert _login(client, "inv1", "wrong password!!").status_code == 401
    assert services.app.user_by_name("inv1").locked
    assert _login(client, "inv1").status_code == 401


# ---------------------------------------------------------------------------- the CLI decision
def test_users_add_gives_a_usable_password_unless_temporary_13D8(tmp_path):
    """`trialaudit users add` is run by an operator with access to the store (trusted like a DBA): the
    password is usable at once; with --temporary it is one-time, as an administrator's over the API."""
    from domain.errors import PasswordChangeRequired
    from infrastructure.settings import Settings
    from tests.api.test_cli import run

    for name, extra in (("alena", []), ("boris", ["--temporary"])):
        r = run(["users", "add", name, "--full-name", name.title(), "--role", "investigator", "--site", "MINSK",
                 *extra], tmp_path, stdin="a long passphrase here\n")
        assert r.returncode == 0, r.stderr
    svc = build(Settings(database_url=f"sqlite:///{tmp_path}/cli.db", data_dir=tmp_path / "keys", demo=False),
                follow=False)
    try:
        assert svc.app.authenticate("alena", "a long passphrase here").username == "alena"
        with pytest.raises(PasswordChangeRequired):
            svc.app.authenticate("boris", "a long passphrase here")
        svc.app.change_own_password("boris", "a long passphrase here", "my very own passphrase")
        assert svc.app.authenticate("boris", "my very own passphrase").username == "boris"
    finally:
        svc.close()


def test_a_logout_in_another_process_holds_here_14_7(store_url, make_settings):
    """Real worker processes: one keeps the session row it read, another process ends the session;
    the first refuses the token on its next request (SQLite: the shared generation; PostgreSQL: the row)."""
    import subprocess
    import sys

    settings = make_settings(store_url)
    setup_store(settings)
    svc = build(settings)
    try:
        user_id = svc.app.register_user(cli_actor(), username="inv1", full_name="Inv One", role="investigator",
                                        site="MINSK", password=PASSWORD, source="cli")["id"]
        token, kept = svc.tokens.issue(user_id), svc.tokens.issue(user_id)
        for t in (token, kept):
            assert svc.tokens.authenticate_token(t).user_id == user_id  # read, and kept
        code = ("import sys; from api.container import build; from infrastructure.settings import Settings\n"
                "svc = build(Settings.model_validate_json(sys.argv[1]), follow=False)\n"
                "svc.tokens.logout(sys.argv[2]); svc.close()\n")
        done = subprocess.run([sys.executable, "-c", code, settings.model_dump_json(), token],
                              capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
        assert done.returncode == 0, done.stderr
        _cache_wait(settings)
        with pytest.raises(Exception, match="ended"):
            svc.tokens.authenticate_token(token)
        assert svc.tokens.authenticate_token(kept).user_id == user_id
    finally:
        svc.close()
