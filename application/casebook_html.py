"""The human-readable casebook (R14, R27): a casebook dict (application.casebook) as one HTML page.

Plain XHTML with inline CSS that both browsers and the PDF renderer (infrastructure.pdf) understand:
data in context (visit, form and item labels, units, rule versions of scores), every change with
who, role, when (UTC and site-local time), old -> new and why, and each signature's manifestation
(printed name, UTC date and time, meaning, legal statement).
"""

from __future__ import annotations

from html import escape
from typing import Any

from domain.crf import AE_LABELS, PARTICIPANT_LABELS

CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 9pt; }
h1 { font-size: 15pt; } h2 { font-size: 12pt; margin-top: 14pt; border-bottom: 1px solid #444; }
h3 { font-size: 10pt; margin-top: 10pt; }
table { border-collapse: collapse; width: 100%; margin-bottom: 6pt; }
th, td { border: 1px solid #999; padding: 2pt 3pt; text-align: left; vertical-align: top; }
th { background: #e8e8e8; }
.meta td { border: none; } .sig { border: 1px solid #333; padding: 4pt; margin: 4pt 0; }
.invalid { color: #a00; } .small { font-size: 7.5pt; color: #333; }
"""


def _v(value: Any) -> str:
    if value is None:
        return "<i>(none)</i>"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return escape(", ".join(f"{k}: {v}" for k, v in value.items()))
    return escape(str(value))


def _history(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='small'>No recorded changes.</p>"
    out = ["<table class='history'><tr><th>#</th><th>Recorded (UTC)</th><th>Site local time</th><th>Who</th>"
           "<th>Role / site</th><th>Event</th><th>Field</th><th>Old</th><th>New</th><th>Reason</th></tr>"]
    for h in rows:
        actor = h["actor"]
        reason = h.get("reason") or ("first entry" if h["version"] == 1 else "")
        if h.get("reason_code"):
            reason = f"[{h['reason_code']}] {reason}"
        if h.get("query_id"):
            reason += f" (query {h['query_id']})"
        changes = h["changes"] or [{"field": "", "label": "", "old_value": None, "new_value": None}]
        for i, c in enumerate(changes):
            first = i == 0
            out.append(
                "<tr class='change'>"
                f"<td>{h['version'] if first else ''}</td>"
                f"<td>{escape(h['recorded']['utc']) if first else ''}</td>"
                f"<td>{escape((h['recorded']['local'] or '') + ' ' + (h['recorded']['zone'] or '')) if first else ''}</td>"
                f"<td>{escape(actor['full_name']) if first else ''}</td>"
                f"<td>{escape(actor['role'] + ' / ' + actor['site']) if first else ''}</td>"
                f"<td>{escape(h['type']) + ' (' + escape(h.get('source') or '') + ')' if first else ''}</td>"
                f"<td>{escape(c.get('label') or c['field'])}{'<br/><span class=small>' + escape(c['unit']) + '</span>' if c.get('unit') else ''}</td>"
                f"<td>{_v(c['old_value'])}</td><td>{_v(c['new_value'])}</td>"
                f"<td>{escape(reason) if first else ''}</td></tr>"
            )
    out.append("</table>")
    return "".join(out)


def _signatures(sigs: list[dict[str, Any]]) -> str:
    out = []
    for s in sigs:
        state = "valid" if s.get("valid", True) else "INVALID (unsigned since a later change: " + escape(str(s.get("invalidated_by"))) + ")"
        out.append(
            f"<div class='sig signature'><b>Electronically signed by {escape(str(s['printed_name']))}</b> "
            f"({escape(str(s.get('role')))}) on {escape(str(s['signed_at']))} UTC.<br/>"
            f"Meaning: <b>{escape(str(s['meaning']))}</b>.<br/>{escape(str(s.get('legal_statement') or ''))}<br/>"
            f"<span class='{'small' if s.get('valid', True) else 'invalid'}'>Signature {escape(str(s['signature_id']))}: {state}</span></div>"
        )
    return "".join(out)


def render_casebook_html(cb: dict[str, Any], *, study: str = "NCT05214014") -> str:
    p = cb["participant"]
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'/><title>Casebook {escape(p['screening_number'])}</title>"
           f"<style>{CSS}</style></head><body>",
           f"<h1>Casebook of participant {escape(p['screening_number'])} &#8212; {escape(study)}</h1>",
           "<table class='meta'>",
           f"<tr><td>Participant id</td><td>{escape(p['id'])}</td></tr>",
           f"<tr><td>Site</td><td>{escape(p['site'])} (local time zone {escape(str(cb.get('site_zone')))})</td></tr>",
           f"<tr><td>As recorded at</td><td>{escape(cb['as_of'] or 'now (' + cb['generated_at'] + ')')}</td></tr>",
           f"<tr><td>Valid at (clinical date)</td><td>{escape(cb['valid_at'] or 'all dates')}</td></tr>",
           f"<tr><td>Replay rule</td><td class='small'>{escape(cb['rule'])}</td></tr>",
           f"<tr><td>Generated</td><td>{escape(cb['generated_at'])} from {cb['event_count']} recorded events</td></tr>",
           "</table>"]
    out.append("<h2>Participant</h2><table><tr><th>Field</th><th>Value</th></tr>")
    for key, label in PARTICIPANT_LABELS.items():
        if key.startswith("eligibility."):
            _, group, code = key.split(".")
            value = (p.get("eligibility") or {}).get(group, {}).get(code)
        else:
            value = p.get(key)
        out.append(f"<tr><td>{escape(label)}</td><td>{_v(value)}</td></tr>")
    out.append("</table><h3>Participant record: history</h3>")
    out.append(_history(cb["participant_history"]))
    out.append("<h2>Visits</h2>")
    for v in cb["visits"]:
        out.append(f"<h3 class='visit'>{escape(v['code'])} &#8212; {escape(v['label'])}</h3>"
                   f"<p>Target {_v(v['target_date'])}, window {_v(v['window_start'])} to {_v(v['window_end'])}; "
                   f"held on {_v(v['held_on'])}; status {escape(v['status'])}.</p>")
        for d in v["deviations"]:
            out.append(f"<p class='small'>Protocol deviation: {escape(d['description'])}</p>")
        for form, label in (("acr_eular", cb["forms"]["acr_eular"]), ("mrss", cb["forms"]["mrss"])):
            items = [i for i in v["item_details"] if i["form"] == form]
            if not items:
                continue
            out.append(f"<p><b>Form: {escape(label)}</b></p><table><tr><th>Item</th><th>Code</th><th>Value</th><th>Unit</th></tr>")
            out += [f"<tr><td>{escape(i['label'])}</td><td>{escape(i['item_code'])}</td><td>{_v(i['value'])}</td>"
                    f"<td class='small'>{escape(i['unit'] or '')}</td></tr>" for i in items]
            out.append("</table>")
        acr, mrss = v["scores"]["acr_eular"], v["scores"]["mrss"]
        if acr:
            out.append(f"<p>ACR/EULAR 2013 total score: <b>{_v(acr['total_score'])}</b> (meets criteria: "
                       f"{_v(acr['meets_criteria'])}; indeterminate: {_v(acr['indeterminate'])}); rule {escape(acr['rule'])}</p>")
        if mrss:
            out.append(f"<p>mRSS total: <b>{_v(mrss['total'])}</b> (complete: {_v(mrss['complete'])}); rule {escape(mrss['rule'])}</p>")
        out.append(_signatures(v["signatures"]))
        out.append(_history(v["history"]))
    out.append("<h2>Adverse events</h2>")
    if not cb["adverse_events"]:
        out.append("<p>None recorded.</p>")
    for ae in cb["adverse_events"]:
        title = escape(str(ae.get("aeterm"))) + (" (DELETED: entered in error)" if ae["deleted"] else "")
        out.append(f"<h3 class='ae'>{title}</h3><table><tr><th>Field</th><th>Value</th></tr>")
        out += [f"<tr><td>{escape(label)}</td><td>{_v(ae.get(key))}</td></tr>" for key, label in AE_LABELS.items() if key != "deleted"]
        c = ae["classification"]
        out.append(f"<tr><td>Classification</td><td>serious {_v(c['serious'])}, related {_v(c['related_to_treg'])}, "
                   f"SUSAR {_v(c['susar'])}; {escape(c['rule'])}</td></tr></table>")
        out.append(_signatures(ae["signatures"]))
        out.append(_history(ae["history"]))
    out.append("<h2>Signatures</h2>")
    out.append(_signatures(cb["signatures"]) or "<p>No electronic signatures recorded.</p>")
    out.append("</body></html>")
    return "".join(out)
