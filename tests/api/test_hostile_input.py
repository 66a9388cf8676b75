"""Hostile input gets a 4xx problem+json naming the field, and nothing is written (issue 13 E.13-E.17,
F.21; issue 14.4, 14.6). Both stores (the ``client`` fixture runs on SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import sqlite3

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE
from tests.export.conftest import ae_body

INSTANT_NAMES = {"as_of", "at", "from", "to", "aware_at", "reported_at"}
OVERFLOWING = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
FILLER = {"kind": "critical-changes"}


def _log_size(services) -> int:
    return services.app.recorder.max_notification_id() or 0


def _problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    return r.json()


def _paths(body: dict) -> set[str]:
    return {e["path"] for e in body.get("errors") or []}


def _operations(app):
    """(method, path, operation, body schema) of every operation in the app's OpenAPI description."""
    spec = app.openapi()
    schemas = spec.get("components", {}).get("schemas", {})
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body and "$ref" in body:
                body = schemas[body["$ref"].rsplit("/", 1)[-1]]
            yield method.upper(), path, op, body


def _instant_params(app) -> list[tuple[str, str, str, str]]:
    """(method, path, 'query'|'body', name) for every instant parameter of every route, found in the
    OpenAPI description: a new route with an `as_of` is covered without touching this test."""
    found = []
    for method, path, op, body in _operations(app):
        for p in op.get("parameters", []):
            if p["in"] == "query" and p["name"] in INSTANT_NAMES:
                found.append((method, path, "query", p["name"]))
        for name in (body or {}).get("properties", {}):
            if name in INSTANT_NAMES:
                found.append((method, path, "body", name))
    return sorted(set(found))


def _fill(path: str, pid: str) -> str:
    for name in ("participant_id", "ae_id", "visit_id", "kind"):
        path = path.replace("{" + name + "}", FILLER.get(name, pid))
    return path


@pytest.fixture
def raw_client(services):
    """A client that answers 500s as the server would instead of raising them in the test."""
    with TestClient(create_app(services), raise_server_exceptions=False) as c:
        yield c


def test_every_instant_parameter_refuses_instants_that_overflow_in_utc_E13(raw_client, services, login, randomised_participant):
    """E.13: `9999-12-31T23:59:59-14:00` is valid ISO 8601 but past year 9999 in UTC: every as_of, at,
    from, to, aware_at and report range (query or body) answers 422 problem+json naming the field."""
    dm = login("dm_e13", "data_manager", "*")
    pid, inv = randomised_participant()
    params = _instant_params(raw_client.app)
    by_name = {name for *_, name in params}
    assert by_name >= {"as_of", "at", "from", "to", "aware_at"}, by_name
    assert len(params) >= 12, params
    before = _log_size(services)
    for method, path, where, name in params:
        url = _fill(path, pid)
        for value in OVERFLOWING:
            for headers in (dm, inv):
                if where == "query":
                    r = raw_client.request(method, url, params={name: value}, headers=headers)
                else:
                    r = raw_client.request(method, url, json={name: value}, headers=headers)
                if r.status_code == 403 and headers is dm:
                    continue  # a data manager may not report AEs: the investigator's request is the one checked
                body = _problem(r, 422)
                assert f"{where}.{name}" in _paths(body), (method, path, name, value, body)
    assert _log_size(services) == before  # nothing written, not even a retrieval record
    # the latest instant UTC can hold is valid, but an AE the site became aware of then is in the future
    r = raw_client.post(f"/participants/{pid}/adverse-events", headers=inv,
                        json=ae_body(aware_at="9999-12-31T23:59:59Z", aeser="Y", aeshosp="Y"))
    assert "body.aware_at" in _paths(_problem(r, 422))


def test_plain_day_bounds_and_contradictions_in_audit_filters_14_6(client, services, login, add_user,
                                                                   randomised_participant):
    """14.6: `from=2026-12-04` is that UTC day from 00:00; `to=D` includes the whole of D; from after to,
    an unknown site or user, and a day whose end overflows answer 422 (not an empty 200)."""
    dm = login("dm_days", "data_manager", "*")
    randomised_participant()
    events = client.get("/audit/events", params={"limit": 1000}, headers=dm).json()["events"]
    day = events[0]["recorded_at"][:10]
    same_day = [e for e in events if e["recorded_at"].startswith(day)]
    r = client.get("/audit/events", params={"from": day, "to": day, "limit": 1000}, headers=dm)
    assert r.status_code == 200, r.text
    got = [e["position"] for e in r.json()["events"]]
    assert got[: len(same_day)] == [e["position"] for e in same_day]
    assert all(e["recorded_at"].startswith(day) for e in r.json()["events"])  # to=D: up to D's end, inclusive
    import datetime as dt

    next_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    previous = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    assert client.get("/audit/events", params={"from": next_day}, headers=dm).json()["events"] == []  # from = 00:00
    assert client.get("/audit/events", params={"to": previous}, headers=dm).json()["events"] == []
    assert len(client.get("/audit/events", params={"to": day, "limit": 1000}, headers=dm).json()["events"]) >= len(same_day)
    for params, field in (({"from": next_day, "to": day}, "query.from"), ({"site": "NOWHERE"}, "query.site"),
                          ({"user": "nobody-at-all"}, "query.user"), ({"to": "9999-12-31"}, "query.to"),
                          ({"from": "2026-02-30"}, "query.from")):
        body = _problem(client.get("/audit/events", params=params, headers=dm), 422)
        assert field in _paths(body), (params, body)
        if "user" not in params:  # reports have no user filter
            body = _problem(client.get("/audit/reports/change-rates", params=params, headers=dm), 422)
            assert field in _paths(body), (params, body)
    body = _problem(client.post("/audit/exports", json={"from": next_day, "to": day}, headers=dm), 422)
    assert "body.from" in _paths(body)
    # a review sign-off over a period: reversed or unbounded periods are 422s naming the period's fields
    for period, field in ((("2026-02-01", "2026-01-01"), "body.period_from"), (("2026-01-01", "9999-12-31"), "body.period_to")):
        r = client.post("/audit/reports/change-rates/sign-off", headers=dm,
                        json={"period_from": period[0], "period_to": period[1], "comment": "reviewed"})
        assert field in _paths(_problem(r, 422)), r.text
    # a forged cursor whose position no store integer can hold
    import base64

    for position in (10**30, -1):
        forged = base64.urlsafe_b64encode(json.dumps({"v": 1, "o": "asc", "p": position}).encode()).decode()
        assert "query.cursor" in _paths(_problem(client.get("/audit/events", params={"cursor": forged}, headers=dm), 422))
    # a user who has not acted yet is a known user with an empty trail
    add_user("quiet_one", "monitor", "MINSK")
    r = client.get("/audit/events", params={"user": "quiet_one"}, headers=dm)
    assert r.status_code == 200 and r.json()["events"] == []


def _body_routes(app) -> list[tuple[str, str]]:
    return sorted({(method, path) for method, path, _, body in _operations(app) if body is not None})


def test_a_lone_surrogate_in_any_json_string_is_a_422_E13(raw_client, services, login, randomised_participant):
    """E.13: `"\\ud800"` (a lone surrogate: no UTF-8 encoding exists) as any JSON string value or key, on
    every route that takes a JSON body, answers 422 naming the field, and nothing is stored."""
    pid, inv = randomised_participant()
    admin = login("adm_sur", "admin", "*")
    routes = _body_routes(raw_client.app)
    assert len(routes) >= 15, routes
    before = _log_size(services)
    for method, path in routes:
        headers = admin if path.startswith("/users") else inv
        raw = b'{"reason": "fine \\ud800 here", "nested": {"\\udfff": 1}}'
        r = raw_client.request(method, _fill(path, pid), content=raw,
                               headers={**headers, "content-type": "application/json"})
        body = _problem(r, 422)
        assert {"body.reason", "body.nested.\\udfff"} <= _paths(body), (path, body)
    # the lean correction path (api/fastpath.py) too, with an otherwise valid body
    r = raw_client.post(f"/participants/{pid}/corrections", headers={**inv, "content-type": "application/json"},
                        content=b'{"field": "birth_year", "new_value": 1971, "reason": "typo \\ud83d"}')
    assert _paths(_problem(r, 422)) == {"body.reason"}
    assert _log_size(services) == before


def test_free_text_refuses_control_characters_but_tab_and_newline_E14(client, services, randomised_participant):
    """E.14: a C0 control character other than tab and newline in free text is a 422 naming the field;
    tab and newline are text."""
    pid, inv = randomised_participant()
    before = _log_size(services)
    for bad in ("bell\x07", "esc\x1b[31m", "nul\x00", "cr\r", "vt\x0b"):
        r = client.post(f"/participants/{pid}/corrections", headers=inv,
                        json={"field": "birth_year", "new_value": 1971, "reason": f"typo {bad}"})
        assert _paths(_problem(r, 422)) == {"body.reason"}
        r = client.post(f"/participants/{pid}/adverse-events", headers=inv, json=ae_body(aeterm=f"Rash {bad}"))
        assert "body.aeterm" in _paths(_problem(r, 422))
        r = client.get("/audit/events", params={"participant": f"x{bad}"}, headers=inv)
        assert "query.participant" in _paths(_problem(r, 422))
    assert _log_size(services) == before
    r = client.post(f"/participants/{pid}/corrections", headers=inv,
                    json={"field": "birth_year", "new_value": 1971, "reason": "typo\tin the\nsource transcription"})
    assert r.status_code == 200, r.text


def test_request_bodies_are_limited_before_they_are_read_E16(services):
    """E.16: a body over `max_body_bytes` answers 413 problem+json, by its Content-Length (before a byte
    is read) or, chunked, as soon as the bytes received pass the limit; nothing is written."""
    services.settings.max_body_bytes = 4096
    with TestClient(create_app(services)) as c:
        headers = _token(services, c)
        before = _log_size(services)
        big = json.dumps({"screening_number": "S-1", "site": "MINSK", "sex": "F", "birth_year": 1970,
                          "pad": "x" * 5000})
        body = _problem(c.post("/participants", content=big, headers={**headers, "content-type": "application/json"}), 413)
        assert body["max_body_bytes"] == 4096

        def chunks():
            for _ in range(10):
                yield b"x" * 1000

        r = c.post("/participants", content=chunks(), headers={**headers, "content-type": "application/json"})
        _problem(r, 413)
        r = c.post("/auth/token", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
        _problem(r, 413)
        r = c.post("/participants", content=chunks(), headers={**headers, "content-type": "text/plain"})
        _problem(r, 413)
        assert _log_size(services) == before
        ok = c.post("/participants", json={"screening_number": "S-2", "site": "MINSK", "sex": "F", "birth_year": 1970},
                    headers=headers)
        assert ok.status_code == 201, ok.text


def _token(services, client) -> dict[str, str]:
    from api.cli import cli_actor
    from tests.conftest import PASSWORD

    services.app.register_user(cli_actor(), username="inv_limit", full_name="Inv Limit", role="investigator",
                               site="MINSK", password=PASSWORD, source="cli")
    r = client.post("/auth/token", data={"username": "inv_limit", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_security_headers_on_every_response_and_a_500_is_problem_json_E17(services):
    """E.17: JSON, CSV, errors and even a 500 carry no-store, nosniff and a CSP with frame-ancestors 'none'."""
    app = create_app(services)

    @app.get("/boom-for-test")
    def boom():
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as c:
        dm = _token(services, c)
        responses = [c.get("/health"), c.get("/audit/events", params={"format": "csv"}, headers=dm),
                     c.get("/audit/events"), c.get("/boom-for-test"), c.get("/openapi.json")]
        for r in responses:
            assert r.headers["cache-control"] == "no-store", r.url
            assert r.headers["x-content-type-options"] == "nosniff"
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        boom_r = responses[3]
        body = _problem(boom_r, 500)
        assert "secret internals" not in boom_r.text and body["status"] == 500
        docs = c.get("/docs")
        assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_the_casebook_html_keeps_its_inline_stylesheet_under_the_csp_E17(client, randomised_participant):
    """E.17: the CSP allows no inline style but the casebook's own stylesheet, by its SHA-256."""
    import base64
    import hashlib
    import re

    pid, inv = randomised_participant()
    r = client.get(f"/participants/{pid}/casebook.html", headers=inv)
    assert r.status_code == 200, r.text
    css = re.search(r"<style>(.*?)</style>", r.text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    style_src = next(d for d in r.headers["content-security-policy"].split(";") if d.strip().startswith("style-src"))
    assert f"'sha256-{digest}'" in style_src and "unsafe-inline" not in style_src
    assert "<script" not in r.text


def test_csv_is_utf8_with_bom_plain_values_and_neutralised_formulas_E15_14_4(client, services, login, tmp_path):
    """E.15 and 14.4: the CSV download and the CSV job file are UTF-8 with a BOM (Cyrillic `Ш-001`
    round-trips), plain values (no JSON quoting, empty for null), and a cell that starts with = + - @
    tab or CR is prefixed with a quote so that a spreadsheet shows it as text."""
    inv = login("inv_csv", "investigator", "MINSK")
    dm = login("dm_csv", "data_manager", "*")
    r = client.post("/participants", json={"screening_number": "Ш-001", "site": "MINSK", "sex": "F", "birth_year": 1970},
                    headers=inv)
    pid = r.json()["id"]
    reasons = ['=HYPERLINK("http://x") says so', "@SUM(A1) per the source", "+1 per the clinic note"]
    for i, reason in enumerate(reasons):
        r = client.post(f"/participants/{pid}/corrections", headers=inv,
                        json={"field": "screening_number", "new_value": f"-Ш-00{i + 2}", "reason": reason})
        assert r.status_code == 200, r.text
    streamed = client.get("/audit/events", params={"participant": pid, "format": "csv"}, headers=dm).content
    job = client.post("/audit/exports", json={"participant": pid, "format": "csv"}, headers=dm).json()
    assert services.exports.wait(job["id"])["state"] == "done"
    job_file = client.get(f"/audit/exports/{job['id']}/file", headers=dm).content
    for content in (streamed, job_file):
        assert content.startswith(b"\xef\xbb\xbf")
        path = tmp_path / "trail.csv"
        path.write_bytes(content)
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        created = next(row for row in rows if row["field"] == "screening_number" and row["old_value"] == "")
        assert created["new_value"] == "Ш-001"  # plain, not "\u0428-001" nor "\"Ш-001\""
        corrected = [row for row in rows if row["event_type"] == "FieldCorrected"]
        assert corrected[0]["old_value"] == "Ш-001" and corrected[0]["new_value"] == "'-Ш-002"
        assert [row["reason"] for row in corrected] == ["'" + reason for reason in reasons]
        birth = next(row for row in rows if row["field"] == "birth_year")
        assert birth["new_value"] == "1970" and created["query_id"] == ""
        for row in rows:
            for cell in row.values():
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_export_jobs_limited_per_user_0600_and_removed_after_retention_E16(client, services, login):
    """E.16: at most `export_jobs_per_user` jobs run at once per user (429, nothing recorded); a job's
    file is 0600 in a 0700 directory and is removed once the retention period has passed; an export id
    longer than a file name is a 422, not a 500."""
    import datetime as dt

    dm = login("dm_jobs", "data_manager", "*")
    r = client.get("/audit/exports/" + "a" * 300, headers=dm)
    assert "path.job_id" in _paths(_problem(r, 422))
    r = client.get("/audit/exports/" + "a" * 300 + "/file", headers=dm)
    assert "path.job_id" in _paths(_problem(r, 422))
    job = client.post("/audit/exports", json={"format": "jsonl"}, headers=dm).json()
    done = services.exports.wait(job["id"])
    assert done["state"] == "done"
    directory = services.exports.directory
    data = services.exports.data_path(job["id"])
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o600
    assert not list(directory.glob("*.tmp"))

    # running jobs: block the limit's worth with never-ending exports of this user
    import threading

    gate = threading.Event()

    def slow():
        gate.wait(30)
        yield b"x"

    owner = services.app.user_by_name("dm_jobs").id
    for _ in range(services.settings.export_jobs_per_user):
        services.exports.start(str(owner), "test", "slow.jsonl", slow())
    before = _log_size(services)
    r = client.post("/audit/exports", json={"format": "jsonl"}, headers=dm)
    body = _problem(r, 429)
    assert body["limit"] == services.settings.export_jobs_per_user
    assert _log_size(services) == before  # refused before the export was recorded
    gate.set()

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=services.settings.export_retention_hours, minutes=1)
    for status in list(directory.glob("*.json")):
        services.exports.wait(status.stem)
    assert services.exports.purge(now=later) >= 1
    assert not data.exists()
    assert client.get(f"/audit/exports/{job['id']}", headers=dm).status_code == 404


def test_store_read_models_and_keys_are_private_E17(services, login, client):
    """E.17: the SQLite store, its read-model file, their WAL/SHM files and the keys are 0600 in a 0700
    data directory (the PostgreSQL run checks the keys and the data directory)."""
    login("inv_files", "investigator", "MINSK")  # writes: WAL files exist
    data_dir = services.settings.data_dir
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    files = [p for p in data_dir.iterdir() if p.is_file()]
    url = services.settings.database_url
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):]
        store_dir = os.path.dirname(db)
        files += [os.path.join(store_dir, n) for n in os.listdir(store_dir) if os.path.isfile(os.path.join(store_dir, n))]
        from infrastructure.readmodels import views_path

        names = {os.path.basename(str(f)) for f in files}
        views = os.path.basename(views_path(db))
        assert {os.path.basename(db), db.rsplit("/", 1)[-1] + "-wal", db.rsplit("/", 1)[-1] + "-shm"} <= names, names
        assert {views, views + "-wal", views + "-shm"} <= names, names
    assert files
    for f in files:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f


def test_a_full_disk_answers_503_and_reads_keep_working_F21(make_settings, sqlite_url):
    """F.21: a SQLite store that cannot grow (PRAGMA max_page_count on the real store's connections)
    answers a write with 503 problem+json, not a plain-text 500; reads that need no write answer 200."""
    from api.container import build, setup_store

    settings = make_settings(sqlite_url)
    setup_store(settings)
    services = build(settings)
    try:
        from api.cli import cli_actor
        from tests.conftest import PASSWORD

        services.app.register_user(cli_actor(), username="inv_full", full_name="Inv Full", role="investigator",
                                   site="MINSK", password=PASSWORD, source="cli")
        with TestClient(create_app(services), raise_server_exceptions=False) as c:
            token = c.post("/auth/token", data={"username": "inv_full", "password": PASSWORD}).json()["access_token"]
            h = {"Authorization": f"Bearer {token}"}
            pid = c.post("/participants", json={"screening_number": "F-1", "site": "MINSK", "sex": "F",
                                                "birth_year": 1970}, headers=h).json()["id"]
            assert c.get(f"/participants/{pid}", headers=h).status_code == 200
            # cap every pooled store connection at the pages the file has now: the next growth fails
            _cap_store(services)
            statuses = []
            for i in range(40):
                r = c.post(f"/participants/{pid}/corrections", headers=h,
                           json={"field": "birth_year", "new_value": 1900 + i % 100, "reason": "x" * 1500 + str(i)})
                statuses.append(r.status_code)
                if r.status_code != 200:
                    break
            assert statuses[-1] == 503, statuses
            body = _problem(r, 503)
            assert "full" in body["detail"]
            assert c.get(f"/participants/{pid}", headers=h).status_code == 200  # reads keep working
    finally:
        services.close()


def _cap_store(services) -> None:
    """PRAGMA max_page_count = the current page count on every connection of the real store's pool,
    idle now or opened later: the store file can no longer grow, as on a full disk."""
    pool = services.app.recorder.datastore.pool

    def cap(raw: sqlite3.Connection) -> None:
        pages = raw.execute("PRAGMA page_count").fetchone()[0]
        raw.execute(f"PRAGMA max_page_count = {pages}")

    create = pool._create_connection

    def create_capped():
        conn = create()
        cap(conn._sqlite_conn)
        return conn

    pool._create_connection = create_capped
    for conn in list(pool._pool):
        cap(conn._sqlite_conn)


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tcmd", "\rcmd"])
def test_csv_cells_that_start_like_a_formula_are_neutralised_E15(text):
    """E.15 (OWASP CSV injection): each of = + - @ tab CR at the start of a text cell gets a quote
    prefix (text a reason cannot carry, e.g. a leading tab, is checked here on the cell writer)."""
    from application.audit_queries import _csv_line

    line = _csv_line(["ok", text, -1, None, True, {"a": "Ш"}]).decode()
    assert list(csv.reader(io.StringIO(line))) == [["ok", "'" + text, "-1", "", "true", '{"a":"Ш"}']]


def test_disk_full_errors_of_both_drivers_are_recognised_F21():
    """F.21: what SQLite and PostgreSQL (psycopg's DiskFull, SQLSTATE 53100) raise on a full disk, also as
    the eventsourcing library wraps it, is recognised (503); other storage errors are not."""
    import psycopg.errors
    from eventsourcing.persistence import OperationalError

    from infrastructure.store import is_disk_full

    assert is_disk_full(OperationalError(sqlite3.OperationalError("database or disk is full")))
    assert is_disk_full(OperationalError(psycopg.errors.DiskFull("could not extend file: No space left on device")))
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(OperationalError(sqlite3.OperationalError("database is locked")))
    assert not is_disk_full(psycopg.errors.UniqueViolation("duplicate key"))
