"""The study's data dictionary (issue 14.9): every form, item code, label, data type, allowed values or
range, unit and whether it is required, and the visit schedule per arm; as JSON (``GET /study/metadata``)
and as the ``MetaDataVersion`` of an ODM 1.3.2 document (``GET /study/metadata.xml``).

One list, not two: the visit items come from ``domain.crf.visit_item_definitions``, built from the very
tuple ``domain.visit.ITEM_CODES`` that ``PUT /visits/{id}/items/{code}`` validates against; the schedule
from ``domain.schedule.RULES``, which randomisation plans from; the ODM object identifiers and the
other forms (demographics, eligibility, consent, randomisation, AE) from ``application.odm``, which the
ODM export writes. Pure: no store is read, so it is the same for every caller.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from application.odm import FORMS, GROUPS, MDV_OID, NS, SOURCE_SYSTEM, STUDY_EVENTS, STUDY_OID, _esc, _q, _yn
from application.views import iso
from domain.crf import FORM_LABELS, METADATA_ROUTE, REQUIRED_RULE, visit_item_definitions
from domain.schedule import (
    ANCHOR_RULE,
    INFUSION,
    MANUFACTURING_DAYS_DEFAULT,
    RULES,
    UNSCHEDULED,
    VISIT_LABELS,
    VisitRule,
)
from domain.scoring import ACR_EULAR_RULE_ID, ACR_EULAR_THRESHOLD, MRSS_RULE_ID
from domain.trial import ARM_LABELS, ARMS

STUDY = {"id": "NCT05214014", "oid": STUDY_OID, "metadata_version_oid": MDV_OID,
         "title": "Autologous regulatory T cells in systemic sclerosis (phase 1, open label, randomised)"}
#: the ODM item group of each visit form
VISIT_FORM_GROUP = {"acr_eular": "ACR", "mrss": "MRSS"}
MRSS_UNIT_OID = "MU.MRSS_SITE_SCORE"
MRSS_CODELIST_OID = "CL.MRSS_SITE_SCORE"


def _offset_text(rule: VisitRule, offset: int) -> str:
    return f"{rule.base}{'+' if offset >= 0 else '-'}{abs(offset)}"


def visit_schedule(manufacturing_days: int = MANUFACTURING_DAYS_DEFAULT) -> dict[str, Any]:
    """The visit schedule per arm (docs/domain.md §5): codes, target days and windows (inclusive)."""
    arms = {}
    for arm in ARMS:
        visits = []
        for rule in RULES:
            if arm not in rule.arms:
                continue
            offset = manufacturing_days if rule.code == INFUSION else rule.offset
            visits.append({
                "code": rule.code, "label": VISIT_LABELS[rule.code], "base": rule.base,
                "target_day": offset, "target": _offset_text(rule, offset),
                "window_days_before": rule.before, "window_days_after": rule.after,
                "window": f"{_offset_text(rule, offset - rule.before)} .. {_offset_text(rule, offset + rule.after)}",
            })
        arms[arm] = {"label": ARM_LABELS[arm], "visits": visits}
    return {
        "anchor_rule": ANCHOR_RULE,
        "bases": {"R": "the randomisation date (at the site)",
                  "D": f"Day 0: the infusion date of an infused Group 1 participant, otherwise R + {manufacturing_days} "
                       "(the planned manufacturing interval)"},
        "manufacturing_days": manufacturing_days,
        "arms": arms,
        "unscheduled": {"code": UNSCHEDULED, "label": VISIT_LABELS[UNSCHEDULED],
                        "note": "added when needed (POST /participants/{id}/visits); no target or window"},
        "visit_date_rule": "a visit's items are recorded once its date held is recorded (POST /visits/{id}/held); "
                           "the date may not be in the future; outside the window it is recorded with a protocol "
                           "deviation",
    }


def _other_forms() -> list[dict[str, Any]]:
    """The forms that are not visit item pages: the participant's, the visit date's and the AE's fields."""
    result = []
    for form, (name, repeating, groups) in FORMS.items():
        if form in VISIT_FORM_GROUP.values():
            continue
        fields = [{"field": m.name, "label": m.question, "data_type": m.data_type, "odm_oid": m.oid,
                   "item_group": f"IG.{g}"} for g, _ in groups for m in GROUPS[g].values()]
        result.append({"odm_oid": f"F.{form}", "label": name, "repeating": repeating, "fields": fields})
    return result


def study_metadata(manufacturing_days: int = MANUFACTURING_DAYS_DEFAULT) -> dict[str, Any]:
    items = visit_item_definitions()
    forms = []
    for form, group in VISIT_FORM_GROUP.items():
        form_items = [{**i, "odm_oid": GROUPS[group][i["code"]].oid} for i in items if i["form"] == form]
        forms.append({
            "code": form, "label": FORM_LABELS[form], "odm_oid": f"F.{group}",
            "rule": {"acr_eular": ACR_EULAR_RULE_ID, "mrss": MRSS_RULE_ID}[form],
            "required_rule": REQUIRED_RULE[form],
            "entry": "PUT /visits/{visit_id}/items/{code} {\"value\", \"reason\"}: one item per request; a change "
                     "after the first entry needs a reason",
            "items": form_items,
        })
    return {
        "study": STUDY,
        "route": METADATA_ROUTE,
        "forms": forms,
        "item_codes": [i["code"] for i in items],
        "acr_eular_threshold": ACR_EULAR_THRESHOLD,
        "other_forms": _other_forms(),
        "schedule": visit_schedule(manufacturing_days),
        "odm": f"{METADATA_ROUTE}.xml",
    }


# --------------------------------------------------------------------------- ODM 1.3.2
def _window_alias(arm: str, code: str, schedule: dict[str, Any]) -> str:
    for v in schedule["arms"][arm]["visits"]:
        if v["code"] == code:
            name = _q(f"target {v['target']}, window {v['window']}")
            return f'<Alias Context="trialaudit:schedule:{arm}" Name={name}/>'
    return ""


def metadata_version_xml(manufacturing_days: int = MANUFACTURING_DAYS_DEFAULT) -> str:
    """``Study`` with ``BasicDefinitions`` and the ``MetaDataVersion``: the export's definitions (same OIDs)
    with what a form builder needs: mandatory items, range checks, the mRSS code list and unit, and each
    visit's target and window per arm (as ``Alias``, ODM 1.3.2 having no timing element)."""
    schedule = visit_schedule(manufacturing_days)
    visit_items = {i["code"]: i for i in visit_item_definitions()}
    by_oid = {GROUPS[g][code].oid: visit_items[code] for g in VISIT_FORM_GROUP.values() for code in GROUPS[g]}
    out = [f'<Study OID="{STUDY_OID}"><GlobalVariables><StudyName>NCT05214014</StudyName>'
           f"<StudyDescription>{_esc(STUDY['title'])}</StudyDescription><ProtocolName>NCT05214014</ProtocolName>"
           "</GlobalVariables>",
           f'<BasicDefinitions><MeasurementUnit OID="{MRSS_UNIT_OID}" Name="mRSS site score">'
           '<Symbol><TranslatedText xml:lang="en">0-3</TranslatedText></Symbol></MeasurementUnit></BasicDefinitions>',
           f'<MetaDataVersion OID="{MDV_OID}" Name="trialaudit CRF v1" '
           f'Description={_q("data dictionary; schedule rule " + ANCHOR_RULE)}><Protocol>']
    out += [f'<StudyEventRef StudyEventOID="SE.{se}" Mandatory="No"/>' for se in STUDY_EVENTS]
    out.append("</Protocol>")
    for se, (name, repeating, kind, forms) in STUDY_EVENTS.items():
        out.append(f'<StudyEventDef OID="SE.{se}" Name={_q(name)} Repeating="{_yn(repeating)}" Type="{kind}">')
        out += [f'<FormRef FormOID="F.{f}" Mandatory="No"/>' for f in forms]
        out += [_window_alias(arm, se, schedule) for arm in ARMS]
        out.append("</StudyEventDef>")
    for form, (name, repeating, groups) in FORMS.items():
        out.append(f'<FormDef OID="F.{form}" Name={_q(name)} Repeating="{_yn(repeating)}">')
        out += [f'<ItemGroupRef ItemGroupOID="IG.{g}" Mandatory="No"/>' for g, _ in groups]
        out.append("</FormDef>")
    for form, (_, _, groups) in FORMS.items():
        for g, repeating in groups:
            out.append(f'<ItemGroupDef OID="IG.{g}" Name="{g}" Repeating="{_yn(repeating)}">')
            out += [f'<ItemRef ItemOID="{m.oid}" Mandatory="{_yn(bool(by_oid.get(m.oid, {}).get("required")))}"/>'
                    for m in GROUPS[g].values()]
            out.append("</ItemGroupDef>")
    for g, items in GROUPS.items():
        for m in items.values():
            out.append(f'<ItemDef OID="{m.oid}" Name={_q(m.name)} DataType="{m.data_type}"><Question>'
                       f'<TranslatedText xml:lang="en">{_esc(m.question)}</TranslatedText></Question>')
            item = by_oid.get(m.oid)
            if item is not None and item["form"] == "mrss":
                out.append(f'<MeasurementUnitRef MeasurementUnitOID="{MRSS_UNIT_OID}"/>'
                           f'<RangeCheck Comparator="GE" SoftHard="Hard"><CheckValue>{item["range"]["min"]}</CheckValue>'
                           '<ErrorMessage><TranslatedText xml:lang="en">an mRSS site score is 0..3</TranslatedText>'
                           '</ErrorMessage></RangeCheck>'
                           f'<RangeCheck Comparator="LE" SoftHard="Hard"><CheckValue>{item["range"]["max"]}</CheckValue>'
                           '<ErrorMessage><TranslatedText xml:lang="en">an mRSS site score is 0..3</TranslatedText>'
                           f'</ErrorMessage></RangeCheck><CodeListRef CodeListOID="{MRSS_CODELIST_OID}"/>')
            elif item is not None:
                out.append('<RangeCheck Comparator="IN" SoftHard="Hard"><CheckValue>true</CheckValue>'
                           '<CheckValue>false</CheckValue><ErrorMessage><TranslatedText xml:lang="en">true (present), '
                           'false (absent) or empty (unknown)</TranslatedText></ErrorMessage></RangeCheck>')
            if item is not None:
                out.append(f'<Alias Context="trialaudit:item_code" Name={_q(item["code"])}/>')
            out.append("</ItemDef>")
    mrss = next(i for i in visit_items.values() if i["form"] == "mrss")
    out.append(f'<CodeList OID="{MRSS_CODELIST_OID}" Name="mRSS site score" DataType="integer">')
    out += [f'<CodeListItem CodedValue="{v}"><Decode><TranslatedText xml:lang="en">{_esc(label)}</TranslatedText>'
            "</Decode></CodeListItem>" for v, label in mrss["value_labels"].items()]
    out.append("</CodeList></MetaDataVersion></Study>")
    return "".join(out)


def metadata_document(now: dt.datetime | None = None, manufacturing_days: int = MANUFACTURING_DAYS_DEFAULT) -> str:
    """A complete ODM 1.3.2 document (``FileType="Snapshot"``) holding only the study's metadata."""
    now = now or dt.datetime.now(dt.timezone.utc)
    attrs = (f'xmlns="{NS}" ODMVersion="1.3.2" FileType="Snapshot" FileOID="trialaudit.metadata.{MDV_OID}" '
             f'CreationDateTime="{iso(now)}" SourceSystem="{SOURCE_SYSTEM}" '
             'Description="NCT05214014 data dictionary (forms, items, schedule)"')
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM {attrs}>\n{metadata_version_xml(manufacturing_days)}\n</ODM>\n'
