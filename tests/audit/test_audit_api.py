"""The audit endpoints over HTTP: pages, streamed CSV and JSON Lines, item history, reports, 403s (R13, R15, R18, R19)."""

from __future__ import annotations

import csv
import io
import json

import application.audit_queries as audit_queries


def _headers(services, actor):
    return {"Authorization": f"Bearer {services.tokens.issue(actor.user_id)}"}


def test_pages_and_cursor_over_http(client, services, trial):
    """R15: `limit`/`cursor` paging, both orders, with the full audit stamp and changes."""
    h = _headers(services, trial.actors["insp"])
    seen, cursor = [], None
    while True:
        r = client.get("/audit/events", params={"limit": 4, **({"cursor": cursor} if cursor else {})}, headers=h)
        assert r.status_code == 200, r.text
        seen.extend(r.json()["events"])
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert [e["position"] for e in seen] == sorted({e["position"] for e in seen})
    desc = client.get("/audit/events", params={"order": "desc", "limit": 1000}, headers=h).json()["events"]
    assert [e["position"] for e in desc] == [e["position"] for e in reversed(seen)]
    e = next(e for e in seen if e["type"] == "FieldCorrected")
    assert set(e) >= {"recorded_at", "actor", "reason", "reason_code", "source", "query_id", "changes", "site", "participant_id"}
    r = client.get("/audit/events", params={"item": "acr_eular.puffy_fingers", "from": "2026-03-03T00:00:00Z"}, headers=h)
    assert [ev["changes"][0]["new_value"] for ev in r.json()["events"]] == [False]
    assert client.get("/audit/events", params={"from": "2026-03-03T00:00:00"}, headers=h).status_code == 422  # naive (R4)
    assert client.get("/audit/events", params={"cursor": "garbage!"}, headers=h).status_code == 422
    assert client.get("/audit/events").status_code == 401


def test_csv_and_jsonl_downloads_are_streamed_and_parse_back(client, services, trial, monkeypatch):
    """R15: any filter downloads as CSV (one row per changed field) or JSON Lines (one event per line),
    streamed page by page from keyset queries; the export is recorded with its row count (R11)."""
    monkeypatch.setattr(audit_queries, "EXPORT_PAGE", 3)  # many pages for a small trail
    h = _headers(services, trial.actors["dm"])
    page = client.get("/audit/events", params={"participant": trial.minsk, "limit": 1000}, headers=h).json()["events"]

    with client.stream("GET", "/audit/events", params={"participant": trial.minsk, "format": "jsonl"}, headers=h) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        assert "attachment" in r.headers["content-disposition"]
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines == page

    r = client.get("/audit/events", params={"participant": trial.minsk, "format": "csv"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == sum(max(1, len(e["changes"])) for e in page)
    corrected = [row for row in rows if row["field"] == "aetoxgr" and row["reason"]]
    assert [(json.loads(row["old_value"]), json.loads(row["new_value"]), row["actor_username"]) for row in corrected] == [
        (2, 3, "inv_minsk")]

    chunks = list(services.app.export_audit_events(trial.actors["dm"], format="jsonl", participant=trial.minsk))
    assert len(chunks) > 2  # fed page by page, never all at once
    done = client.get("/audit/events", params={"user": "dm", "type": "AuditTrailExportCompleted"}, headers=h).json()["events"]
    assert len(done) == 3


def test_site_walls_over_http(client, services, trial):
    """R19, R23: an investigator at MINSK cannot read GOMEL's trail (403), and sees only MINSK without a filter."""
    h = _headers(services, trial.actors["inv_minsk"])
    assert client.get("/audit/events", params={"site": "GOMEL"}, headers=h).status_code == 403
    assert client.get("/audit/events", params={"participant": trial.gomel}, headers=h).status_code == 403
    assert client.get("/audit/events", params={"site": "GOMEL", "format": "csv"}, headers=h).status_code == 403
    assert client.get(f"/audit/items/{trial.gomel}/sex", headers=h).status_code == 403
    r = client.get("/audit/events", params={"limit": 1000}, headers=h)
    assert {e["site"] for e in r.json()["events"]} == {"MINSK"}
    assert client.get("/audit/reports/late-entries", headers=h).status_code == 403


def test_item_history_and_reports_over_http(client, services, trial):
    """R13, R18: item history with UTC and local time; a report read and signed off."""
    h = _headers(services, trial.actors["mon_minsk"])
    r = client.get(f"/audit/items/{trial.minsk}/acr_eular.puffy_fingers", headers=h)
    assert r.status_code == 200, r.text
    assert [v["recorded_at_local"][-6:] for v in r.json()["values"]] == ["+03:00", "+03:00"]
    r = client.get("/audit/reports/critical-changes", params={"from": "2026-03-01T00:00:00Z"}, headers=h)
    assert r.status_code == 200 and r.json()["count"] == 2
    assert client.get("/audit/reports/nonsense", headers=h).status_code == 422
    r = client.post("/audit/reports/critical-changes/sign-off", headers=h,
                    json={"period_from": "2026-03-01", "period_to": "2026-03-31", "comment": "Both changes verified at SDV"})
    assert r.status_code == 201, r.text
    assert r.json()["signed_by"]["username"] == "mon_minsk" and r.json()["rows"] == 2
    r = client.post("/audit/reports/critical-changes/sign-off", headers=_headers(services, trial.actors["insp"]),
                    json={"period_from": "2026-03-01", "period_to": "2026-03-31", "comment": "Both changes verified"})
    assert r.status_code == 403
