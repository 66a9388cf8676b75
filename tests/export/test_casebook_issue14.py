"""Issue 14.5: the HTML and PDF casebook say in words which change broke a signature (R30), and the PDF of
the demo's largest participant carries every change of every item and its reason (R14). Its speed is a
benchmark row (bench/casebook_pdf.py), not a timed test."""

from __future__ import annotations

import datetime as dt
import io

from pypdf import PdfReader

from domain.visit import Visit
from tests.api.test_signatures_queries_locks import enable_signing
from tests.conftest import PASSWORD


def _pdf_text(content: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages).split())


def test_an_invalidated_signature_says_which_change_broke_it(client, randomised_participant, login):
    pid, inv = randomised_participant()
    admin = login("admin1", "admin", "*")
    bl = str(Visit.id_for(pid, "BL"))
    assert client.post(f"/visits/{bl}/held", json={"date": "2026-01-05"}, headers=inv).status_code == 200
    assert client.put(f"/visits/{bl}/items/mrss.face", json={"value": 1}, headers=inv).status_code == 200
    enable_signing(client, admin, inv)
    r = client.post(f"/visits/{bl}/signatures", json={"meaning": "approval", "password": PASSWORD}, headers=inv)
    assert r.status_code == 201, r.text
    r = client.put(f"/visits/{bl}/items/mrss.face", json={"value": 2, "reason": "re-examined by the same examiner"},
                   headers=inv)
    assert r.status_code == 200, r.text
    change = client.get(f"/visits/{bl}/items/mrss.face/history", headers=inv).json()[-1]
    who = change["actor"]["full_name"]

    cb = client.get(f"/participants/{pid}/casebook", headers=inv).json()
    (sig,) = [s for s in cb["signatures"] if s["meaning"] == "approval"]
    assert sig["valid"] is False
    expected = (f"unsigned since ItemCorrected (version {change['version']}) of this visit changed mRSS: Face "
                f"(mrss.face) from 1 to 2 by {who} (investigator, site MINSK) at {change['recorded_at']}; "
                "reason: re-examined by the same examiner")
    assert sig["invalidated_text"] == expected

    html = client.get(f"/participants/{pid}/casebook.html", headers=inv).text
    assert "INVALID: " + expected in html.replace("&#x27;", "'")
    assert "{'" not in html and "'version':" not in html  # no raw Python mapping
    text = _pdf_text(client.get(f"/participants/{pid}/casebook.pdf", headers=inv).content)
    assert "INVALID: " + expected in text
    assert "{'" not in text


def test_the_pdf_of_the_demos_largest_participant_has_every_reason(services, client, login):
    from application.demo import generate

    app = services.app
    generate(app, participants=6, seed=2022, today=dt.datetime.now(dt.timezone.utc).date())
    insp = app.actor_for(str(app.user_by_name("demo.inspector").id))
    sizes = sorted((app.casebook(insp, r["id"])["event_count"], r["id"]) for r in app.list_participants(insp))
    events, pid = sizes[-1]
    assert events > 150

    headers = login("insp1", "inspector", "*")
    r = client.get(f"/participants/{pid}/casebook.pdf", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"

    # every reason of every change is in the PDF: checked on the casebook with the most distinct reasons
    def reasons_of(cb):
        histories = cb["participant_history"] + [h for v in cb["visits"] for h in v["history"]] + \
            [h for ae in cb["adverse_events"] for h in ae["history"]]
        return {" ".join(h["reason"].split()) for h in histories if h.get("reason")}

    casebooks = [app.casebook(insp, r["id"]) for r in app.list_participants(insp)]
    cb = max(casebooks, key=lambda c: (len(reasons_of(c)), c["event_count"]))
    reasons = reasons_of(cb)
    assert len(reasons) >= 2
    r = client.get(f"/participants/{cb['participant']['id']}/casebook.pdf", headers=headers)
    text = _pdf_text(r.content)
    for reason in reasons:
        assert reason in text, reason
    # each item's every value is there, with the time it was recorded
    item_events = [h for v in cb["visits"] for h in v["history"]
                   if h["type"] in ("ItemRecorded", "ItemCorrected", "ItemCleared")]
    assert item_events
    for h in item_events:
        assert h["recorded"]["utc"] in text
