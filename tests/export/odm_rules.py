"""The ODM 1.3.2 rules the XSD cannot check (docs/regulatory.md §2.3), plus XSD validation with odmlib's bundled schema."""

from __future__ import annotations

import datetime as dt
import re

import xmlschema
from lxml import etree
from odmlib import schema_manager
from odmlib.odm_parser import ODMSchemaValidator

NS = {"o": "http://www.cdisc.org/ns/odm/v1.3"}
ZONED = re.compile(r"(Z|[+-]\d\d:\d\d)$")
_schema = None


def validate_xsd(path) -> None:
    """Raises on any XSD violation (both exception kinds odmlib can raise)."""
    global _schema
    from odmlib.exceptions import OdmlibSchemaValidationError  # noqa: F401  (either may be raised)

    ODMSchemaValidator(standard="odm", version="1.3.2").validate_file(str(path))
    if _schema is None:
        _schema = xmlschema.XMLSchema(schema_manager.get_schema_path("odm", "1.3.2"))
    errors = list(_schema.iter_errors(str(path)))
    assert not errors, errors[:3]


def _instant(text: str) -> dt.datetime:
    assert ZONED.search(text), f"timestamp without zone: {text}"
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_rules(path) -> dict[str, int]:
    """Returns counts; asserts every rule."""
    root = etree.parse(str(path)).getroot()
    assert root.get("FileType") == "Transactional" and root.get("Archival") == "Yes"
    created = _instant(root.get("CreationDateTime"))
    if root.get("AsOfDateTime"):
        _instant(root.get("AsOfDateTime"))
    typed = root.xpath("//*[@TransactionType]")
    assert not [e for e in typed if e.get("TransactionType") == "Upsert"], "Upsert in an archival file"
    for e in typed:
        if e.get("TransactionType") != "Context":
            assert e.find("o:AuditRecord", NS) is not None, f"{etree.QName(e).localname} {e.get('TransactionType')} without AuditRecord"
    for cd in root.findall("o:ClinicalData", NS):
        top = cd.find("o:SubjectData", NS)
        assert top is not None and top.get("TransactionType"), "the top-level TransactionType must be explicit"
    stamps = [_instant(t.text) for t in root.iter("{%s}DateTimeStamp" % NS["o"])]
    assert all(s <= created for s in stamps), "a DateTimeStamp after CreationDateTime"
    records = [_instant(a.find("o:DateTimeStamp", NS).text) for a in root.iter("{%s}AuditRecord" % NS["o"])]
    assert records == sorted(records), "AuditRecords not in increasing DateTimeStamp order"
    # per entity: transactions in temporal order
    last: dict[tuple, dt.datetime] = {}
    for item in root.iter("{%s}ItemData" % NS["o"]):
        ar = item.find("o:AuditRecord", NS)
        if ar is None:
            continue
        path_key = tuple((p.get("SubjectKey"), p.get("StudyEventOID"), p.get("StudyEventRepeatKey"), p.get("FormOID"),
                          p.get("FormRepeatKey"), p.get("ItemGroupOID"), p.get("ItemGroupRepeatKey")) for p in item.iterancestors())
        key = (path_key, item.get("ItemOID"))
        t = _instant(ar.find("o:DateTimeStamp", NS).text)
        assert key not in last or last[key] <= t, f"out of order on {key}"
        last[key] = t
    # OID references resolve
    defined = {e.get("OID") for e in root.xpath("//o:User|//o:Location|//o:SignatureDef|//o:StudyEventDef|//o:FormDef|"
                                                  "//o:ItemGroupDef|//o:ItemDef|//o:Study|//o:MetaDataVersion", namespaces=NS)}
    refs = {
        "UserOID": root.xpath("//o:UserRef/@UserOID", namespaces=NS),
        "LocationOID": root.xpath("//o:LocationRef/@LocationOID|//o:SiteRef/@LocationOID", namespaces=NS),
        "SignatureOID": root.xpath("//o:SignatureRef/@SignatureOID", namespaces=NS),
        "StudyEventOID": root.xpath("//@StudyEventOID", namespaces=NS),
        "FormOID": root.xpath("//@FormOID", namespaces=NS),
        "ItemGroupOID": root.xpath("//@ItemGroupOID", namespaces=NS),
        "ItemOID": root.xpath("//@ItemOID", namespaces=NS),
        "StudyOID": root.xpath("//@StudyOID", namespaces=NS),
        "MetaDataVersionOID": root.xpath("//@MetaDataVersionOID", namespaces=NS),
    }
    for kind, values in refs.items():
        missing = set(values) - defined
        assert not missing, f"unresolved {kind}: {sorted(missing)[:5]}"
    source_ids = root.xpath("//o:AuditRecord/o:SourceID/text()", namespaces=NS)
    assert all(re.fullmatch(r"evt:\d+:leaf:\d+", s) for s in source_ids), source_ids[:3]
    return {"transactions": len(root.findall("o:ClinicalData", NS)), "audit_records": len(records),
            "signatures": len(root.xpath("//o:ClinicalData//o:Signature", namespaces=NS))}
