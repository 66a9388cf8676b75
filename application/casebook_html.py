"""The human-readable casebook (R14, R27): a casebook dict (application.casebook) as one HTML page.

Plain XHTML with inline CSS that both browsers and the PDF renderer (infrastructure.pdf) understand:
data in context (visit, form and item labels, units, rule versions of scores), every change with
who, role, when (UTC and site-local time), old -> new and why, and each signature's manifestation
(printed name, UTC date and time, meaning, legal statement).
"""

from __future__ import annotations

from html import escape
from typing import Any

from application.casebook import describe_invalidation
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
    """A value as the HTML shows it: the text of ``_t``, escaped; none in italics."""
    return "<i>(none)</i>" if value is None else escape(_t(value))


def _history(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='small'>No recorded changes.</p>"
    out = ["<table class='history'><tr><th>#</th><th>Recorded (UTC)</th><th>Site local time</th><th>Who</th>"
           "<th>Role / site</th><th>Event</th><th>Field</th><th>Old</th><th>New</th><th>Reason</th></tr>"]
    for h in rows:
        actor = h["actor"]
        reason = reason_text(h)
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


def invalidation_text(s: dict[str, Any]) -> str:
    """Which change broke a signature, in words, never a raw mapping (R30)."""
    return s.get("invalidated_text") or describe_invalidation(s.get("invalidated_by"), s.get("invalidated_at"))


def _signatures(sigs: list[dict[str, Any]]) -> str:
    out = []
    for s in sigs:
        state = "valid" if s.get("valid", True) else "INVALID: " + escape(invalidation_text(s))
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


# --------------------------------------------------------------------------- the same casebook for the PDF
def _t(value: Any) -> str:
    """A value as plain text, as the HTML shows it."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


HISTORY_COLUMNS = [("#", 0.35), ("Recorded (UTC)", 1.45), ("Site local time", 1.55), ("Who", 1.35), ("Role / site", 1.0),
                   ("Event", 1.3), ("Field", 1.9), ("Old", 0.75), ("New", 0.75), ("Reason", 2.4)]


def reason_text(h: dict[str, Any]) -> str:
    """Why a change was made, as the casebook prints it: the reason (or "first entry"), its code and the
    query it answers."""
    reason = h.get("reason") or ("first entry" if h["version"] == 1 else "")
    if h.get("reason_code"):
        reason = f"[{h['reason_code']}] {reason}"
    if h.get("query_id"):
        reason += f" (query {h['query_id']})"
    return reason


def _history_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The rows of the HTML history table, as text: every change with who, when (UTC and site time), old ->
    new and the reason (with its code and any query)."""
    out = []
    for h in rows:
        actor = h["actor"]
        reason = reason_text(h)
        changes = h["changes"] or [{"field": "", "label": "", "old_value": None, "new_value": None}]
        for i, c in enumerate(changes):
            first = i == 0
            label = (c.get("label") or c["field"]) + (f"\n{c['unit']}" if c.get("unit") else "")
            out.append([
                str(h["version"]) if first else "", h["recorded"]["utc"] if first else "",
                ((h["recorded"]["local"] or "") + " " + (h["recorded"]["zone"] or "")).strip() if first else "",
                actor["full_name"] if first else "", f"{actor['role']} / {actor['site']}" if first else "",
                f"{h['type']} ({h.get('source') or ''})" if first else "", label,
                _t(c["old_value"]), _t(c["new_value"]), reason if first else "",
            ])
    return out


def _history_blocks(rows: list[dict[str, Any]]) -> list[tuple]:
    if not rows:
        return [("text", "No recorded changes.", "small")]
    return [("table", HISTORY_COLUMNS, _history_rows(rows))]


def _signature_blocks(sigs: list[dict[str, Any]]) -> list[tuple]:
    out: list[tuple] = []
    for s in sigs:
        valid = s.get("valid", True)
        out.append(("text", f"Electronically signed by {s['printed_name']} ({s.get('role')}) on {s['signed_at']} UTC. "
                            f"Meaning: {s['meaning']}. {s.get('legal_statement') or ''}", "bold"))
        out.append(("text", f"Signature {s['signature_id']}: " + ("valid" if valid else "INVALID: " + invalidation_text(s)),
                    "small" if valid else "alert"))
    return out


def casebook_blocks(cb: dict[str, Any], *, study: str = "NCT05214014") -> list[tuple]:
    """The HTML casebook's content as the plain document model of ``infrastructure.pdf.document_to_pdf``:
    the same sections, tables and texts, and every change of every item with its reason."""
    p = cb["participant"]
    out: list[tuple] = [
        ("title", f"Casebook of participant {p['screening_number']} \u2014 {study}"),
        ("table", [("", 1.0), ("", 5.0)], [
            ["Participant id", p["id"]], ["Site", f"{p['site']} (local time zone {cb.get('site_zone')})"],
            ["As recorded at", cb["as_of"] or f"now ({cb['generated_at']})"],
            ["Valid at (clinical date)", cb["valid_at"] or "all dates"], ["Replay rule", cb["rule"]],
            ["Generated", f"{cb['generated_at']} from {cb['event_count']} recorded events"]]),
        ("heading", "Participant"),
    ]
    values = []
    for key, label in PARTICIPANT_LABELS.items():
        if key.startswith("eligibility."):
            _, group, code = key.split(".")
            value = (p.get("eligibility") or {}).get(group, {}).get(code)
        else:
            value = p.get(key)
        values.append([label, _t(value)])
    out += [("table", [("Field", 1.0), ("Value", 2.0)], values), ("subheading", "Participant record: history")]
    out += _history_blocks(cb["participant_history"])
    out.append(("heading", "Visits"))
    for v in cb["visits"]:
        out.append(("subheading", f"{v['code']} \u2014 {v['label']}"))
        out.append(("text", f"Target {_t(v['target_date'])}, window {_t(v['window_start'])} to {_t(v['window_end'])}; "
                            f"held on {_t(v['held_on'])}; status {v['status']}."))
        out += [("text", f"Protocol deviation: {d['description']}", "small") for d in v["deviations"]]
        for form, label in (("acr_eular", cb["forms"]["acr_eular"]), ("mrss", cb["forms"]["mrss"])):
            items = [i for i in v["item_details"] if i["form"] == form]
            if items:
                out.append(("text", f"Form: {label}", "bold"))
                out.append(("table", [("Item", 3.0), ("Code", 1.6), ("Value", 0.6), ("Unit", 2.2)],
                            [[i["label"], i["item_code"], _t(i["value"]), i["unit"] or ""] for i in items]))
        acr, mrss = v["scores"]["acr_eular"], v["scores"]["mrss"]
        if acr:
            out.append(("text", f"ACR/EULAR 2013 total score: {_t(acr['total_score'])} (meets criteria: "
                                f"{_t(acr['meets_criteria'])}; indeterminate: {_t(acr['indeterminate'])}); rule {acr['rule']}"))
        if mrss:
            out.append(("text", f"mRSS total: {_t(mrss['total'])} (complete: {_t(mrss['complete'])}); rule {mrss['rule']}"))
        out += _signature_blocks(v["signatures"])
        out += _history_blocks(v["history"])
    out.append(("heading", "Adverse events"))
    if not cb["adverse_events"]:
        out.append(("text", "None recorded."))
    for ae in cb["adverse_events"]:
        out.append(("subheading", str(ae.get("aeterm")) + (" (DELETED: entered in error)" if ae["deleted"] else "")))
        c = ae["classification"]
        rows = [[label, _t(ae.get(key))] for key, label in AE_LABELS.items() if key != "deleted"]
        rows.append(["Classification", f"serious {_t(c['serious'])}, related {_t(c['related_to_treg'])}, "
                                       f"SUSAR {_t(c['susar'])}; {c['rule']}"])
        out.append(("table", [("Field", 1.0), ("Value", 2.0)], rows))
        out += _signature_blocks(ae["signatures"])
        out += _history_blocks(ae["history"])
    out.append(("heading", "Signatures"))
    out += _signature_blocks(cb["signatures"]) or [("text", "No electronic signatures recorded.")]
    return out
