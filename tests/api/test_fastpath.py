"""The lean way in for busy commands (api/fastpath.py) answers exactly as the FastAPI routes do.

Every request below is sent to the app with the fast path and to the same app without it, on the
same store; the status, content type and body must agree (R1, R5, R23: audit, reasons, access).
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.app import FAST_COMMANDS, create_app
from api.cli import cli_actor
from api.fastpath import FastCommand, FastCommands, plan
from tests.conftest import PASSWORD

SCREEN = {"site": "MINSK", "sex": "F", "birth_year": 1970}
REASON = "transcription error; see clinic note"


@pytest.fixture
def slow_client(services):
    """The same app without the fast path: every request goes through FastAPI's routing."""
    app = create_app(services)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastCommands]
    with TestClient(app) as c:
        yield c


def _screen(client, headers, site="MINSK") -> str:
    r = client.post("/participants", json={**SCREEN, "site": site, "screening_number": f"S-{uuid.uuid4().hex[:8]}"},
                    headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _same(fast, slow, method: str, path: str, **kwargs) -> None:
    a = fast.request(method, path, **kwargs)
    b = slow.request(method, path, **kwargs)
    assert (a.status_code, a.headers.get("content-type")) == (b.status_code, b.headers.get("content-type")), (a.text, b.text)
    assert a.content == b.content
    assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")


def test_each_fast_command_is_the_route_the_router_would_pick(services):
    """Route precedence: the route FastAPI picks for each fast command's path is that command's own."""
    picked: list = []

    class Probe:  # outside the routing: sees the endpoint the router put in the scope
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            await self.app(scope, receive, send)
            picked.append(scope.get("endpoint"))

    app = create_app(services)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastCommands]
    app.add_middleware(Probe)
    with TestClient(app) as c:
        for command in FAST_COMMANDS:
            sample = command.path.replace("{", "").replace("}", "")  # every parameter becomes a plain segment
            c.request(command.method, sample, json={})
            assert picked[-1] is command.endpoint, command.path

    # and with the fast path in place, a plain correction never reaches the router at all
    h_app = create_app(services)
    h_app.add_middleware(Probe)
    with TestClient(h_app) as c:
        services.app.register_user(cli_actor(), username="probe", full_name="Probe Person", role="investigator",
                                   site="MINSK", password=PASSWORD, source="cli")
        token = c.post("/auth/token", data={"username": "probe", "password": PASSWORD}).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        pid = _screen(c, h)
        r = c.post(f"/participants/{pid}/corrections", json={"field": "birth_year", "new_value": 1971, "reason": REASON},
                   headers=h)
        assert r.status_code == 200 and picked[-1] is None


def test_the_fast_path_refuses_endpoints_it_cannot_serve():
    def endpoint(participant_id: str, limit: int):  # a query parameter: FastAPI's job
        raise AssertionError

    with pytest.raises(TypeError):
        plan(FastCommand("POST", "/participants/{participant_id}/x", endpoint))


def test_errors_answer_exactly_as_through_the_route_R5_R23(client, slow_client, login):
    h = login("inv1", "investigator")
    gomel = login("inv2", "investigator", "GOMEL")
    monitor = login("mon1", "monitor")
    pid = _screen(client, h)
    path = f"/participants/{pid}/corrections"
    good = {"field": "birth_year", "new_value": 1971, "reason": REASON}
    for kwargs in [
        {"json": {**good, "reason": ""}},  # blank reason: 422 from the domain
        {"json": {**good, "reason": "n/a"}},  # placeholder reason
        {"json": {"field": "birth_year", "new_value": 1971}},  # missing reason: 422 from validation
        {"json": {**good, "surprise": 1}},  # unknown field
        {"json": {**good, "expected_version": 0}},
        {"json": {**good, "expected_version": 7}},  # stale: 409
        {"json": {**good, "field": "arm"}},
        {"json": {**good, "new_value": 1970}},  # no change
        {"json": [good]},  # not an object
        {"content": b"{not json", "headers_extra": {"content-type": "application/json"}},
        {"content": b'{"field": "birth_year"', "headers_extra": {"content-type": "application/json"}},
        {"content": b"field=birth_year", "headers_extra": {"content-type": "application/x-www-form-urlencoded"}},
        {"json": good, "as": gomel},  # another site: 403
        {"json": good, "as": monitor},  # a role that may not correct: 403
        {"json": good, "as": {}},  # no token: 401
        {"json": good, "as": {"Authorization": "Bearer forged.token"}},
        {"json": good, "as": {"Authorization": "Basic dXNlcjpwYXNz"}},
        {"json": good, "path": "/participants/not-a-uuid/corrections"},
        {"json": good, "path": f"/participants/{uuid.uuid4()}/corrections"},  # 404
    ]:
        headers = dict(kwargs.pop("as", h))
        headers.update(kwargs.pop("headers_extra", {}))
        _same(client, slow_client, "POST", kwargs.pop("path", path), headers=headers, **kwargs)
    repeated = [("Authorization", "Bearer forged.token"), ("Authorization", h["Authorization"])]
    _same(client, slow_client, "POST", path, headers=repeated, json=good)  # FastAPI reads the first
    # none of them changed anything
    assert client.get(f"/participants/{pid}", headers=h).json()["version"] == 1


def test_a_correction_through_the_fast_path_is_audited_like_any_other_R1_R2(client, slow_client, login):
    h = login("inv1", "investigator")
    pid = _screen(client, h)
    fast = client.post(f"/participants/{pid}/corrections", json={"field": "birth_year", "new_value": 1971, "reason": REASON,
                                                                 "expected_version": 1}, headers=h)
    slow = slow_client.post(f"/participants/{pid}/corrections", json={"field": "birth_year", "new_value": 1972,
                                                                      "reason": REASON, "reason_code": "transcription_error"},
                            headers=h)
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert set(fast.json()) == set(slow.json())
    assert fast.json()["changes"] == [{"field": "birth_year", "old_value": 1970, "new_value": 1971}]
    history = client.get(f"/participants/{pid}/history", headers=h).json()
    assert [e["type"] for e in history] == ["ParticipantScreened", "FieldCorrected", "FieldCorrected"]
    first, second = history[1], history[2]
    assert first["actor"]["username"] == "inv1" and first["reason"] == REASON
    assert first["changes"] == [{"field": "birth_year", "old_value": 1970, "new_value": 1971}]
    assert second["changes"] == [{"field": "birth_year", "old_value": 1971, "new_value": 1972}]
    assert second["reason_code"] == "transcription_error"


def test_a_deactivated_user_is_refused_on_the_fast_path_R22(client, login, add_user):
    admin = login("admin1", "admin")
    h = login("inv1", "investigator")
    pid = _screen(client, h)
    users = client.get("/users", headers=admin).json()
    inv = next(u for u in users if u["username"] == "inv1")
    body = {"field": "birth_year", "new_value": 1971, "reason": REASON}
    assert client.post(f"/participants/{pid}/corrections", json=body, headers=h).status_code == 200
    r = client.post(f"/users/{inv['id']}/deactivation", json={"reason": "left the study team"}, headers=admin)
    assert r.status_code == 200, r.text
    r = client.post(f"/participants/{pid}/corrections", json={**body, "new_value": 1972}, headers=h)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_an_unexpected_error_answers_500_as_through_the_route(services, login, client):
    h = login("inv1", "investigator")
    pid = _screen(client, h)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    services.app.correct_participant = broken
    body = {"field": "birth_year", "new_value": 1971, "reason": REASON}
    fast_app = create_app(services)
    slow_app = create_app(services)
    slow_app.user_middleware = [m for m in slow_app.user_middleware if m.cls is not FastCommands]
    with TestClient(fast_app, raise_server_exceptions=False) as fast, \
            TestClient(slow_app, raise_server_exceptions=False) as slow:
        a = fast.post(f"/participants/{pid}/corrections", json=body, headers=h)
        b = slow.post(f"/participants/{pid}/corrections", json=body, headers=h)
    assert a.status_code == b.status_code == 500
    assert a.content == b.content
