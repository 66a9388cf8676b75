"""R14, R27: the human-readable casebook as HTML and PDF shows data in context and every change."""

from __future__ import annotations

import io
from html.parser import HTMLParser

from pypdf import PdfReader

from tests.export.conftest import ok, z


class _Rows(HTMLParser):
    """Collects the text of each table row and of each h3."""

    def __init__(self):
        super().__init__()
        self.rows, self.headings, self._row, self._cell, self._h3 = [], [], None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "h3":
            self._h3 = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "h3" and self._h3 is not None:
            self.headings.append("".join(self._h3))
            self._h3 = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._h3 is not None:
            self._h3.append(data)


def _parse(html: str) -> _Rows:
    p = _Rows()
    p.feed(html)
    return p


def test_html_casebook_shows_labels_units_rules_and_every_change_R14(client, story):
    pid, inv = story["pid"], story["inv"]
    r = client.get(f"/participants/{pid}/casebook.html", headers=inv)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    doc = _parse(r.text)
    assert any(h.startswith("BL") and "Baseline / randomisation" in h for h in doc.headings)
    assert "Modified Rodnan skin score (rule mrss/17-sites-v1)" in r.text
    assert "ACR/EULAR 2013 SSc classification criteria (rule acr_eular_2013/category-maxima-v1)" in r.text
    item_rows = [row for row in doc.rows if len(row) == 4 and row[1] == "mrss.face"]
    assert item_rows and item_rows[0][0] == "mRSS: Face" and item_rows[0][2] == "3" and "0-3" in item_rows[0][3]
    changes = [row for row in doc.rows if len(row) == 10 and row[6].startswith("mRSS: Face")]
    assert [(c[7], c[8]) for c in changes] == [("(none)", "2"), ("2", "3")]
    correction = changes[1]
    assert correction[9] == "Re-examined by the same examiner"
    assert correction[4].startswith("investigator / MINSK") and correction[1].endswith("Z")
    assert "Europe/Minsk" in correction[2] and "+03:00" in correction[2]
    assert any(row[6].startswith("Year of birth") and row[7] == "1970" and row[8] == "1971" for row in doc.rows if len(row) == 10)
    assert any(row[6].startswith("Toxicity grade") and (row[7], row[8]) == ("1", "2") for row in doc.rows if len(row) == 10)
    assert any(h.startswith("Nausea (DELETED") for h in doc.headings)
    assert "No electronic signatures recorded." in r.text


def test_html_as_of_shows_the_casebook_as_recorded_then(client, story):
    pid, inv = story["pid"], story["inv"]
    r = client.get(f"/participants/{pid}/casebook.html", params={"as_of": z(story["marks"]["first_entry"])}, headers=inv)
    assert r.status_code == 200
    assert "Re-examined by the same examiner" not in r.text and "None recorded." in r.text


def test_pdf_casebook_contains_the_changes_R14(client, story):
    pid, inv = story["pid"], story["inv"]
    r = client.get(f"/participants/{pid}/casebook.pdf", headers=inv)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text = " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(r.content)).pages).split())
    for needle in ("Casebook of participant", "Re-examined by the same examiner", "Recorded on the wrong visit",
                   "Grade 2 per the clinic note", "Transcription error from the ID card", "mRSS: Face",
                   "Baseline / randomisation", "mrss/17-sites-v1"):
        assert needle in text, needle
    r = client.get(f"/participants/{pid}/casebook.pdf", params={"as_of": z(story["marks"]["first_entry"])}, headers=inv)
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(r.content)).pages)
    assert "Re-examined by the same examiner" not in text


def test_signature_manifestations_are_rendered_R27():
    """Signature events (branch sign) carry the manifestation; every display shows it."""
    from application.casebook_html import _signatures

    html = _signatures([{"signature_id": "s1", "printed_name": "Dr Ada Investigator", "role": "investigator",
                         "meaning": "approval", "legal_statement": "I approve this record.",
                         "signed_at": "2026-03-14T09:05:40.000000Z", "valid": False, "invalidated_by": {"type": "ItemCorrected"}}])
    for needle in ("Dr Ada Investigator", "2026-03-14T09:05:40.000000Z UTC", "approval", "I approve this record.", "INVALID"):
        assert needle in html
