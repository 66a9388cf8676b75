"""Whole-trail exports run as background jobs, not blocking requests (R15), and are on the trail (R11)."""

from __future__ import annotations

import csv
import hashlib
import io
import json


def _headers(services, actor):
    return {"Authorization": f"Bearer {services.tokens.issue(actor.user_id)}"}


def test_export_job_runs_in_the_background_and_serves_a_checked_file_R15(client, services, trial):
    insp = _headers(services, trial.actors["insp"])
    r = client.post("/audit/exports", json={"format": "csv", "site": "MINSK"}, headers=insp)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("running", "done") and job["filename"].endswith(".csv")
    final = services.exports.wait(job["id"])
    assert final["state"] == "done", final
    status = client.get(f"/audit/exports/{job['id']}", headers=insp).json()
    assert status["state"] == "done" and status["bytes"] > 0
    r = client.get(f"/audit/exports/{job['id']}/file", headers=insp)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert hashlib.sha256(r.content).hexdigest() == status["sha256"] == r.headers["x-content-sha256"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert rows and {row["site"] for row in rows} == {"MINSK"}
    assert any(row["field"] == "birth_year" and json.loads(row["new_value"]) == 1971 for row in rows)

    # the job is its owner's: nobody else fetches what the owner's rights selected
    dm = _headers(services, trial.actors["dm"])
    assert client.get(f"/audit/exports/{job['id']}", headers=dm).status_code == 404
    assert client.get(f"/audit/exports/{job['id']}/file", headers=dm).status_code == 404

    # the export is itself on the trail: started, and completed with its row count (R11)
    mine = client.get("/audit/events", params={"user": trial.actors["insp"].user_id, "include_retrievals": "true",
                                               "limit": 1000}, headers=insp).json()["events"]
    kinds = [e["type"] for e in mine]
    assert "AuditTrailExportStarted" in kinds and "AuditTrailExportCompleted" in kinds


def test_export_job_keeps_the_site_wall_and_refuses_bad_input_R19(client, services, trial):
    gomel_inv = _headers(services, trial.actors["inv_gomel"])
    assert client.post("/audit/exports", json={"site": "MINSK"}, headers=gomel_inv).status_code == 403
    r = client.post("/audit/exports", json={"format": "xml"}, headers=gomel_inv)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.format"
    assert client.get("/audit/exports/nonexistent", headers=gomel_inv).status_code == 404
