"""CDISC ODM 1.3.2 export, ``FileType="Transactional"``, ``Archival="Yes"`` (R16, R20), written as text.

One domain event = one ODM transaction = one ``ClinicalData`` block, in recorded order. The element
that the event changes carries the explicit TransactionType and its ``AuditRecord`` (who as a User OID
per user and role, where as the site Location, when as the event's UTC timestamp with its zone, why,
and ``SourceID`` = ``evt:<notification id>:leaf:<Merkle leaf index>`` so an inspector can check each
transaction against the integrity log). Everything above it is ``Context``.

- Insert for a first value, Update for a change, Remove for a clear or a deletion; never Upsert.
  A visit or an AE is inserted whole (its forms and groups) by its creation event; the participant's
  creation event inserts the subject with its enrolment forms and the AE log.
- Signature events (branch ``sign``) put a ``Signature`` (with its ``SignatureDef``: meaning and legal
  statement, R27) on the signed record's element; invalidation is an audited Update.
- The whole-study export reads the notification log page by page up to the position at which it
  started, renders each event to text at once and writes it to a spooled temporary file (constant
  memory; never a tree), then emits the header, the AdminData it collected (users, locations,
  signature definitions), the spooled ClinicalData and the end tag. A small reorder window keeps the
  AuditRecords in increasing DateTimeStamp order when concurrent commits interleaved.

The value of an ACR/EULAR finding recorded as unknown (null) is written as ``Value=""``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from application.concealment import concealed_field
from application.views import iso
from domain.adverse_event import AdverseEvent
from domain.crf import ACR_EULAR_LABELS, AE_LABELS, MRSS_LABELS, PARTICIPANT_LABELS, VISIT_FIELD_LABELS
from domain.participant import Participant
from domain.safety import FIELDS as AE_FIELDS
from domain.safety import SPONSOR_CAUSALITY
from domain.schedule import UNSCHEDULED, VISIT_CODES, VISIT_LABELS
from domain.scoring import ACR_EULAR_CODES, ACR_EULAR_RULE_ID, MRSS_RULE_ID, MRSS_SITES
from domain.trial import EXCLUSION_CODES, INCLUSION_CODES
from domain.visit import Visit

NS = "http://www.cdisc.org/ns/odm/v1.3"
STUDY_OID = "ST.NCT05214014"
MDV_OID = "MDV.1"
MDV_EFFECTIVE = "2022-01-01"
SOURCE_SYSTEM = "trialaudit"
CLINICAL_TOPICS = ("trialaudit.Participant.", "trialaudit.Visit.", "trialaudit.AdverseEvent.")


class LeafLocator(Protocol):
    """What the export needs of the integrity log (infrastructure.merkle_store.MerkleLog)."""

    def leaves_of(self, originator_id: UUID) -> list[Any]: ...  # Leaf(leaf_index, notification_id, ...)
    def scan_leaves(self, after_leaf_index: int, limit: int) -> list[tuple[int, int, bytes]]: ...


# --------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class ItemMeta:
    oid: str
    name: str
    data_type: str
    question: str


def _oid_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()


def _item(ig: str, field_name: str, data_type: str, question: str) -> ItemMeta:
    return ItemMeta(f"IT.{ig}.{_oid_part(field_name)}", field_name, data_type, question)


_DATES = {"consent_signed_on", "held_on", "target_date", "window_start", "window_end", "actual_date"}
_INTS = {"birth_year", "allocation_slot"}
_PARTIAL = {"aestdat", "aeendat"}
_DATETIMES = {"aware_at", "due_at", "reported_at", "started_at"}


def _type(name: str) -> str:
    if name in _DATES:
        return "date"
    if name in _INTS or name.startswith("mrss."):
        return "integer"
    if name in _PARTIAL:
        return "partialDate"
    if name in _DATETIMES:
        return "datetime"
    if name.startswith(("acr_eular.", "eligibility.")) or name == "eligible":
        return "boolean"
    return "text"


#: item group -> {recorded field name -> ItemMeta}
GROUPS: dict[str, dict[str, ItemMeta]] = {
    "DM": {f: _item("DM", f, _type(f), PARTICIPANT_LABELS[f])
           for f in ("screening_number", "site", "sex", "birth_year", "withdrawal_reason")},
    "IE": {f: _item("IE", f.replace("eligibility.", ""), _type(f), PARTICIPANT_LABELS[f])
           for f in (*(f"eligibility.inclusion.{c}" for c in INCLUSION_CODES),
                     *(f"eligibility.exclusion.{c}" for c in EXCLUSION_CODES), "eligible")},
    "DS": {f: _item("DS", f, _type(f), PARTICIPANT_LABELS[f]) for f in ("consent_version", "consent_signed_on")},
    "RAND": {f: _item("RAND", f, _type(f), PARTICIPANT_LABELS[f]) for f in ("arm", "allocation_slot")},
    "VISIT": {f: _item("VISIT", f, _type(f), VISIT_FIELD_LABELS[f])
              for f in ("code", "target_date", "window_start", "window_end", "held_on")},
    "DEV": {f: _item("DEV", f, _type(f), q) for f, q in (
        ("kind", "Protocol deviation kind"), ("description", "Protocol deviation"), ("actual_date", "Actual date"))},
    "ACR": {f"acr_eular.{c}": _item("ACR", c, "boolean", ACR_EULAR_LABELS[c]) for c in ACR_EULAR_CODES},
    "MRSS": {f"mrss.{s}": _item("MRSS", s, "integer", "mRSS: " + MRSS_LABELS[s]) for s in MRSS_SITES},
    "AE": {f: _item("AE", f, _type(f), AE_LABELS[f]) for f in (*AE_FIELDS, SPONSOR_CAUSALITY)},
    "AEREP": {f: _item("AEREP", f, _type(f), q) for f, q in (
        ("kind", "Report kind"), ("recipient", "Recipient"), ("started_at", "Clock started (UTC)"),
        ("due_at", "Report due (UTC)"), ("reported_at", "Reported (UTC)"), ("reference", "Report reference"))},
}
#: form -> (name, repeating, item groups (oid suffix, repeating))
FORMS: dict[str, tuple[str, bool, tuple[tuple[str, bool], ...]]] = {
    "DM": ("Demographics and status", False, (("DM", False),)),
    "IE": ("Eligibility (registry criteria)", False, (("IE", False),)),
    "DS": ("Informed consent", False, (("DS", False),)),
    "RAND": ("Randomisation", False, (("RAND", False),)),
    "VISIT": ("Visit date and schedule", False, (("VISIT", False), ("DEV", True))),
    "ACR": (f"ACR/EULAR 2013 SSc classification criteria ({ACR_EULAR_RULE_ID})", False, (("ACR", False),)),
    "MRSS": (f"Modified Rodnan skin score ({MRSS_RULE_ID})", False, (("MRSS", False),)),
    "AE": ("Adverse event (CDASH)", True, (("AE", False), ("AEREP", True))),
}
VISIT_FORMS = ("VISIT", "ACR", "MRSS")
ENROL_FORMS = ("DM", "IE", "DS", "RAND")
#: study event -> (name, repeating, type, forms)
STUDY_EVENTS: dict[str, tuple[str, bool, str, tuple[str, ...]]] = {
    "ENROL": ("Enrolment: screening, eligibility, consent, randomisation", False, "Common", ENROL_FORMS),
    **{c: (VISIT_LABELS[c], c == UNSCHEDULED, "Unscheduled" if c == UNSCHEDULED else "Scheduled", VISIT_FORMS)
       for c in VISIT_CODES},
    "AE": ("Adverse events", False, "Common", ("AE",)),
}
_PARTICIPANT_FIELD_GROUP = {f: g for g in ("DM", "IE", "DS", "RAND") for f in GROUPS[g]}
_VISIT_FIELD_GROUP = {**{f: "VISIT" for f in GROUPS["VISIT"]}, **{f: "ACR" for f in GROUPS["ACR"]},
                      **{f: "MRSS" for f in GROUPS["MRSS"]}}


def metadata_xml() -> str:
    """Study / GlobalVariables / MetaDataVersion with every definition the clinical data refers to."""
    out = [f'<Study OID="{STUDY_OID}"><GlobalVariables><StudyName>NCT05214014</StudyName>'
           "<StudyDescription>Autologous regulatory T cells in systemic sclerosis (phase 1, open label, "
           "randomised)</StudyDescription><ProtocolName>NCT05214014</ProtocolName></GlobalVariables>",
           f'<MetaDataVersion OID="{MDV_OID}" Name="trialaudit CRF v1"><Protocol>']
    out += [f'<StudyEventRef StudyEventOID="SE.{se}" Mandatory="No"/>' for se in STUDY_EVENTS]
    out.append("</Protocol>")
    for se, (name, repeating, kind, forms) in STUDY_EVENTS.items():
        out.append(f'<StudyEventDef OID="SE.{se}" Name={_q(name)} Repeating="{_yn(repeating)}" Type="{kind}">')
        out += [f'<FormRef FormOID="F.{f}" Mandatory="No"/>' for f in forms]
        out.append("</StudyEventDef>")
    for form, (name, repeating, groups) in FORMS.items():
        out.append(f'<FormDef OID="F.{form}" Name={_q(name)} Repeating="{_yn(repeating)}">')
        out += [f'<ItemGroupRef ItemGroupOID="IG.{g}" Mandatory="No"/>' for g, _ in groups]
        out.append("</FormDef>")
    for form, (_, _, groups) in FORMS.items():
        for g, repeating in groups:
            out.append(f'<ItemGroupDef OID="IG.{g}" Name="{g}" Repeating="{_yn(repeating)}">')
            out += [f'<ItemRef ItemOID="{m.oid}" Mandatory="No"/>' for m in GROUPS[g].values()]
            out.append("</ItemGroupDef>")
    for g, items in GROUPS.items():
        for m in items.values():
            out.append(f'<ItemDef OID="{m.oid}" Name={_q(m.name)} DataType="{m.data_type}"><Question>'
                       f'<TranslatedText xml:lang="en">{_esc(m.question)}</TranslatedText></Question></ItemDef>')
    out.append("</MetaDataVersion></Study>")
    return "".join(out)


# --------------------------------------------------------------------------- text helpers
#: characters XML 1.0 cannot carry at all, not even as a character reference: C0 controls other than
#: tab, newline and carriage return, lone surrogates, U+FFFE and U+FFFF. Text stored before the API
#: refused control characters (or written below it) may hold them; the archive shows each as U+FFFD
#: (the event itself, unchanged, stays in the log and its Merkle leaf).
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _esc(text: Any) -> str:
    text = str(text)
    if NOT_XML.search(text):
        text = NOT_XML.sub("\ufffd", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _q(text: Any) -> str:
    return '"' + _esc(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;") + '"'


def _yn(flag: bool) -> str:
    return "Yes" if flag else "No"


def _value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


USER_TYPES = {"investigator": "Investigator", "coordinator": "Investigator", "monitor": "Sponsor",
              "data_manager": "Sponsor", "inspector": "Other", "admin": "Other", "system": "Other"}
EDIT_POINTS = {"monitor": "Monitoring", "data_manager": "DataManagement", "system": "DBAudit"}


def user_oid(actor: dict[str, Any]) -> str:
    """One User per account and role: ODM 1.3.2 has no role field, so the role is part of the user."""
    return f"USR.{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(actor.get('user_id')))}.{actor.get('role')}"


def location_oid(site: str | None) -> str:
    return "LOC.SPONSOR" if site in (None, "", "*") else f"LOC.{_oid_part(site)}"


# --------------------------------------------------------------------------- one event -> one transaction
@dataclass
class Subject:
    participant_id: str
    site: str


@dataclass
class OdmWriter:
    """Renders events to ClinicalData blocks and collects the AdminData those blocks refer to."""

    sites: dict[str, str]
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    locations: set[str] = field(default_factory=set)
    signature_defs: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: aggregate id -> (kind, subject key, site, study event OID, study event repeat key, form repeat key)
    owners: dict[UUID, tuple[str, str, str, str, str | None, str | None]] = field(default_factory=dict)
    #: visit items cleared and not yet given a value again (the next value is an Insert)
    removed: set[tuple[UUID, str]] = field(default_factory=set)
    transactions: int = 0
    last_timestamp: dt.datetime | None = None
    #: for a site-bound reader: leave out allocation slots and the rule's block structure (issue 13 E.19)
    conceal: bool = False

    def audit_record(self, e: Any, source_id: str) -> str:
        audit = e.audit
        actor = audit["actor"]
        uoid = user_oid(actor)
        if uoid not in self.users:
            self.users[uoid] = dict(actor)
        loc = location_oid(actor.get("site"))
        self.locations.add(actor.get("site") or "*")
        edit = EDIT_POINTS.get(actor.get("role"))
        edit_attr = f' EditPoint="{edit}"' if edit else ""
        parts = [f'<AuditRecord{edit_attr} UsedImputationMethod="No">',
                 f'<UserRef UserOID={_q(uoid)}/><LocationRef LocationOID="{loc}"/>',
                 f"<DateTimeStamp>{iso(e.timestamp)}</DateTimeStamp>"]
        reason = audit.get("reason")
        if reason:
            code = audit.get("reason_code")
            query = audit.get("query_id")
            text = (f"[{code}] " if code else "") + reason + (f" (query {query})" if query else "")
            parts.append(f"<ReasonForChange>{_esc(text)}</ReasonForChange>")
        parts.append(f"<SourceID>{source_id}</SourceID></AuditRecord>")
        return "".join(parts)

    def signature(self, e: Any) -> str:
        meaning = str(e.meaning)
        sd = f"SD.{_oid_part(meaning)}"
        self.signature_defs.setdefault(sd, (meaning, getattr(e, "legal_statement", "") or meaning))
        signer = getattr(e, "signer", None) or e.audit["actor"]
        uoid = user_oid(signer)
        self.users.setdefault(uoid, dict(signer))
        self.locations.add(signer.get("site") or "*")
        return (f'<Signature ID={_q("SIG." + str(e.signature_id))}><UserRef UserOID={_q(uoid)}/>'
                f'<LocationRef LocationOID="{location_oid(signer.get("site"))}"/><SignatureRef SignatureOID="{sd}"/>'
                f"<DateTimeStamp>{iso(e.timestamp)}</DateTimeStamp></Signature>")

    def learn(self, e: Any) -> None:
        """Remember which subject (and study event, form) an aggregate's later events belong to."""
        if isinstance(e, Participant.ParticipantScreened):
            self.owners[e.originator_id] = ("participant", str(e.originator_id), e.site, "SE.ENROL", None, None)
        elif isinstance(e, Visit.VisitScheduled):
            repeat = str(e.originator_id) if e.code == UNSCHEDULED else None
            self.owners[e.originator_id] = ("visit", e.participant_id, e.site, f"SE.{e.code}", repeat, None)
        elif isinstance(e, AdverseEvent.AdverseEventReported):
            self.owners[e.originator_id] = ("adverse_event", e.participant_id, e.site, "SE.AE", None, str(e.originator_id))

    def render(self, e: Any, notification_id: int, leaf_index: int | None) -> str | None:
        """The ClinicalData block of one clinical event; None for an event of another aggregate."""
        self.learn(e)
        owner = self.owners.get(e.originator_id)
        if owner is None:
            return None
        kind, subject, site, se_oid, se_repeat, form_repeat = owner
        self.locations.add(site)
        source_id = f"evt:{notification_id}:leaf:{'' if leaf_index is None else leaf_index}"
        ar = self.audit_record(e, source_id)
        sig = self.signature(e) if hasattr(e, "signature_id") and hasattr(e, "meaning") else ""
        body = self._body(e, kind, ar, sig)
        self.transactions += 1
        if self.last_timestamp is None or e.timestamp > self.last_timestamp:
            self.last_timestamp = e.timestamp
        se_attrs = f'StudyEventOID="{se_oid}"' + (f' StudyEventRepeatKey="{se_repeat}"' if se_repeat else "")
        head = f'<ClinicalData StudyOID="{STUDY_OID}" MetaDataVersionOID="{MDV_OID}">'
        site_ref = f'<SiteRef LocationOID="{location_oid(site)}"/>'
        if kind == "participant" and body[0] == "subject":
            # creation of the subject: inserted with its enrolment forms and the AE log
            forms = "".join(f'<FormData FormOID="F.{f}"><ItemGroupData ItemGroupOID="IG.{f}">{body[1] if f == "DM" else ""}'
                            f"</ItemGroupData></FormData>" for f in ENROL_FORMS)
            return (f'{head}<SubjectData SubjectKey="{subject}" TransactionType="Insert">{ar}{site_ref}'
                    f'<StudyEventData StudyEventOID="SE.ENROL">{forms}</StudyEventData>'
                    f'<StudyEventData StudyEventOID="SE.AE"/></SubjectData></ClinicalData>\n')
        level, inner = body
        if level == "subject-update":
            return (f'{head}<SubjectData SubjectKey="{subject}" TransactionType="Update">{ar}{sig}{site_ref}'
                    f"</SubjectData></ClinicalData>\n")
        if kind == "visit" and level == "event":  # the visit's creation, or a change to the whole visit
            return (f'{head}<SubjectData SubjectKey="{subject}" TransactionType="Context">{site_ref}'
                    f"<StudyEventData {se_attrs} {inner}</StudyEventData></SubjectData></ClinicalData>\n")
        if kind == "adverse_event" and level == "form":
            return (f'{head}<SubjectData SubjectKey="{subject}" TransactionType="Context">{site_ref}'
                    f'<StudyEventData {se_attrs}><FormData FormOID="F.AE" FormRepeatKey="{form_repeat}" {inner}'
                    f"</FormData></StudyEventData></SubjectData></ClinicalData>\n")
        # items (or a repeating group) inside one form
        form, group_xml = inner
        form_attrs = f'FormOID="F.{form}"' + (f' FormRepeatKey="{form_repeat}"' if form_repeat else "")
        return (f'{head}<SubjectData SubjectKey="{subject}" TransactionType="Context">{site_ref}'
                f"<StudyEventData {se_attrs}><FormData {form_attrs}>{group_xml}</FormData></StudyEventData>"
                f"</SubjectData></ClinicalData>\n")

    # ---------------------------------------------------------------- per aggregate
    def _items(self, group: str, values: Iterable[tuple[str, Any, str]], ar: str) -> str:
        out = []
        for name, value, tx in values:
            meta = GROUPS[group].get(name)
            if meta is None or (self.conceal and concealed_field(name)):
                continue
            val = "" if tx == "Remove" else f" Value={_q(_value(value))}"
            out.append(f'<ItemData ItemOID="{meta.oid}" TransactionType="{tx}"{val}>{ar}</ItemData>')
        return "".join(out)

    @staticmethod
    def _tx(old: Any, new: Any) -> str | None:
        if old is None and new is None:
            return None
        if old is None:
            return "Insert"
        if new is None:
            return "Remove"
        return "Update"

    def _body(self, e: Any, kind: str, ar: str, sig: str) -> tuple[str, Any]:
        changes = e.changes
        if kind == "participant":
            if isinstance(e, Participant.ParticipantScreened):
                return "subject", "".join(
                    f'<ItemData ItemOID="{GROUPS["DM"][c["field"]].oid}" Value={_q(_value(c["new_value"]))}/>'
                    for c in changes if c["field"] in GROUPS["DM"] and c["new_value"] is not None)
            by_group: dict[str, list] = {}
            for c in changes:
                g = _PARTICIPANT_FIELD_GROUP.get(c["field"])
                tx = self._tx(c["old_value"], c["new_value"])
                if g and tx:
                    by_group.setdefault(g, []).append((c["field"], c["new_value"], tx))
            if sig or not by_group:
                return "subject-update", None
            if len(by_group) == 1:
                (g, values), = by_group.items()
                return "items", (g, f'<ItemGroupData ItemGroupOID="IG.{g}">{self._items(g, values, ar)}</ItemGroupData>')
            return "subject-update", None
        if kind == "visit":
            if isinstance(e, Visit.VisitScheduled):
                items = "".join(f'<ItemData ItemOID="{GROUPS["VISIT"][c["field"]].oid}" Value={_q(_value(c["new_value"]))}/>'
                                for c in changes if c["field"] in GROUPS["VISIT"] and c["new_value"] is not None)
                forms = (f'<FormData FormOID="F.VISIT"><ItemGroupData ItemGroupOID="IG.VISIT">'
                         f'{items}</ItemGroupData></FormData>'
                         f'<FormData FormOID="F.ACR"><ItemGroupData ItemGroupOID="IG.ACR"/></FormData>'
                         f'<FormData FormOID="F.MRSS"><ItemGroupData ItemGroupOID="IG.MRSS"/></FormData>')
                return "event", f'TransactionType="Insert">{ar}{forms}'
            if sig or not changes or hasattr(e, "broken_by"):
                return "event", f'TransactionType="Update">{ar}{sig}'
            if isinstance(e, Visit.ProtocolDeviationRecorded):
                items = "".join(f'<ItemData ItemOID="{GROUPS["DEV"][f].oid}" Value={_q(_value(getattr(e, f)))}/>'
                                for f in ("kind", "description", "actual_date"))
                return "items", ("VISIT", f'<ItemGroupData ItemGroupOID="IG.DEV" ItemGroupRepeatKey="{e.originator_version}" '
                                          f'TransactionType="Insert">{ar}{items}</ItemGroupData>')
            values = []
            group = None
            for c in changes:
                name = c["field"]
                g = _VISIT_FIELD_GROUP.get(name)
                if g is None:
                    continue
                key = (e.originator_id, name)
                if isinstance(e, Visit.ItemRecorded):
                    tx = "Insert"
                elif isinstance(e, Visit.ItemCorrected):
                    tx = "Insert" if key in self.removed else "Update"
                    self.removed.discard(key)
                elif isinstance(e, Visit.ItemCleared):
                    tx = "Remove"
                    self.removed.add(key)
                else:
                    tx = self._tx(c["old_value"], c["new_value"])
                if tx:
                    group = group or g
                    if g == group:
                        values.append((name, c["new_value"], tx))
            if not values:
                return "event", f'TransactionType="Update">{ar}'
            return "items", (group, f'<ItemGroupData ItemGroupOID="IG.{group}">{self._items(group, values, ar)}</ItemGroupData>')
        # adverse events
        if isinstance(e, AdverseEvent.AdverseEventReported):
            items = "".join(f'<ItemData ItemOID="{GROUPS["AE"][c["field"]].oid}" Value={_q(_value(c["new_value"]))}/>'
                            for c in changes if c["field"] in GROUPS["AE"] and c["new_value"] is not None)
            return "form", f'TransactionType="Insert">{ar}<ItemGroupData ItemGroupOID="IG.AE">{items}</ItemGroupData>'
        if isinstance(e, AdverseEvent.AdverseEventDeleted):
            return "form", f'TransactionType="Remove">{ar}'
        if isinstance(e, AdverseEvent.ReportingClockStarted):
            items = "".join(f'<ItemData ItemOID="{GROUPS["AEREP"][f].oid}" Value={_q(_value(getattr(e, f)))}/>'
                            for f in ("kind", "recipient", "started_at", "due_at"))
            return "items", ("AE", f'<ItemGroupData ItemGroupOID="IG.AEREP" ItemGroupRepeatKey="{e.obligation}" '
                                   f'TransactionType="Insert">{ar}{items}</ItemGroupData>')
        if isinstance(e, AdverseEvent.ReportingClockRescheduled):
            values = [("started_at", e.started_at, "Update"), ("due_at", e.due_at, "Update")]
            return "items", ("AE", f'<ItemGroupData ItemGroupOID="IG.AEREP" ItemGroupRepeatKey="{e.obligation}">'
                                   f'{self._items("AEREP", values, ar)}</ItemGroupData>')
        if isinstance(e, AdverseEvent.ReportSubmitted):
            values = [("reported_at", e.reported_at, "Insert")] + ([("reference", e.reference, "Insert")] if e.reference else [])
            return "items", ("AE", f'<ItemGroupData ItemGroupOID="IG.AEREP" ItemGroupRepeatKey="{e.obligation}">'
                                   f'{self._items("AEREP", values, ar)}</ItemGroupData>')
        values = [(c["field"], c["new_value"], tx) for c in changes
                  if c["field"] in GROUPS["AE"] and (tx := self._tx(c["old_value"], c["new_value"]))]
        if sig or not values:
            return "form", f'TransactionType="Update">{ar}{sig}'
        return "items", ("AE", f'<ItemGroupData ItemGroupOID="IG.AE">{self._items("AE", values, ar)}</ItemGroupData>')

    # ---------------------------------------------------------------- the file around the blocks
    def header(self, *, file_oid: str, created: dt.datetime, as_of: dt.datetime | None, granularity: str,
               description: str) -> str:
        attrs = (f'xmlns="{NS}" ODMVersion="1.3.2" FileType="Transactional" Granularity="{granularity}" '
                 f'Archival="Yes" FileOID={_q(file_oid)} CreationDateTime="{iso(created)}"'
                 + (f' AsOfDateTime="{iso(as_of)}"' if as_of else "")
                 + f' SourceSystem="{SOURCE_SYSTEM}" Description={_q(description)}')
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM {attrs}>\n{metadata_xml()}\n{self.admin_data()}\n'

    def admin_data(self) -> str:
        out = [f'<AdminData StudyOID="{STUDY_OID}">']
        for uoid, actor in sorted(self.users.items()):
            role = actor.get("role")
            display = f"{actor.get('full_name')} ({role}, site {actor.get('site')})"
            login = actor.get("username") or actor.get("user_id")
            out.append(
                f'<User OID={_q(uoid)} UserType="{USER_TYPES.get(role, "Other")}"><LoginName>{_esc(login)}</LoginName>'
                f'<DisplayName>{_esc(display)}</DisplayName>'
                f'<FullName>{_esc(actor.get("full_name"))}</FullName><Organization>{_esc(role)}</Organization>'
                f'<LocationRef LocationOID="{location_oid(actor.get("site"))}"/></User>')
        for site in sorted({*self.locations, *self.sites, "*"}):
            name = "Sponsor / all sites" if site in ("*", "") else f"Site {site} ({self.sites.get(site, 'zone unknown')})"
            kind = "Sponsor" if site in ("*", "") else "Site"
            out.append(f'<Location OID="{location_oid(site)}" Name={_q(name)} LocationType="{kind}">'
                       f'<MetaDataVersionRef StudyOID="{STUDY_OID}" MetaDataVersionOID="{MDV_OID}" EffectiveDate="{MDV_EFFECTIVE}"/>'
                       "</Location>")
        for sd, (meaning, legal) in sorted(self.signature_defs.items()):
            out.append(f'<SignatureDef OID="{sd}" Methodology="Electronic"><Meaning>{_esc(meaning)}</Meaning>'
                       f"<LegalReason>{_esc(legal)}</LegalReason></SignatureDef>")
        out.append("</AdminData>")
        return "".join(out)


FOOTER = "</ODM>\n"


def reorder(blocks: Iterable[tuple[tuple, str]], window: int = 4096) -> Iterator[str]:
    """Emit blocks in key order when no block is displaced by more than ``window`` places."""
    heap: list[tuple[tuple, str]] = []
    for item in blocks:
        heapq.heappush(heap, item)
        if len(heap) > window:
            yield heapq.heappop(heap)[1]
    while heap:
        yield heapq.heappop(heap)[1]


def write_document(writer: OdmWriter, blocks: Iterable[str], header: Callable[[], str],
                   chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """Spool the ClinicalData blocks (constant memory), then yield header + AdminData, blocks, footer."""
    with tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+b") as spool:
        buffer: list[str] = []
        size = 0
        for block in blocks:
            buffer.append(block)
            size += len(block)
            if size >= chunk_size:
                spool.write("".join(buffer).encode())
                buffer, size = [], 0
        spool.write("".join(buffer).encode())
        yield header().encode()
        spool.seek(0)
        while chunk := spool.read(chunk_size):
            yield chunk
    yield FOOTER.encode()
