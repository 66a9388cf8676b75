"""R16, R20, R11: CDISC ODM 1.3.2 Transactional Archival exports, validated against the official XSD
(bundled by odmlib) and the rules the XSD cannot check; each export is itself on the audit trail."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.export.conftest import ok, z
from tests.export.odm_rules import NS, check_rules, validate_xsd


def _save(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_participant_export_is_valid_archival_odm_R16(client, story, tmp_path, services):
    pid, inv = story["pid"], story["inv"]
    r = client.get("/exports/odm", params={"participant": pid}, headers=inv)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    path = _save(tmp_path, "p.xml", r.content)
    validate_xsd(path)
    counts = check_rules(path)
    root = etree.parse(str(path)).getroot()
    assert root.get("Granularity") == "SingleSubject"
    events = ok(client.get(f"/participants/{pid}/casebook", headers=inv))["event_count"]
    assert counts["transactions"] == events  # one transaction per domain event
    types = root.xpath("//@TransactionType")
    assert {"Insert", "Update", "Remove", "Context"} <= set(types) and "Upsert" not in types
    # the cleared item is a Remove, its re-entry an Insert; the correction an Update with its reason
    puffy = root.xpath("//o:ItemData[@ItemOID='IT.ACR.PUFFY_FINGERS']", namespaces=NS)
    assert [i.get("TransactionType") for i in puffy] == ["Insert", "Remove", "Insert"]
    face = root.xpath("//o:ItemData[@ItemOID='IT.MRSS.FACE']", namespaces=NS)
    assert [(i.get("TransactionType"), i.get("Value")) for i in face] == [("Insert", "2"), ("Update", "3")]
    assert face[1].findtext("o:AuditRecord/o:ReasonForChange", namespaces=NS) == "Re-examined by the same examiner"
    deleted = root.xpath("//o:FormData[@FormOID='F.AE'][@TransactionType='Remove']", namespaces=NS)
    assert len(deleted) == 1 and deleted[0].get("FormRepeatKey") == story["deleted_ae"]
    # SourceID ties each transaction to the Merkle log: the leaf of that notification id
    log = services.integrity.log
    for sid in root.xpath("//o:AuditRecord/o:SourceID/text()", namespaces=NS)[:20]:
        _, nid, _, leaf = sid.split(":")
        assert log.leaves(int(leaf), 1)[0].notification_id == int(nid)
    users = root.xpath("//o:AdminData/o:User", namespaces=NS)
    assert any(u.get("UserType") == "Investigator" for u in users)
    assert root.xpath("//o:AdminData/o:Location[@OID='LOC.MINSK']/@LocationType", namespaces=NS) == ["Site"]


def test_as_of_export_stops_at_the_instant(client, story, tmp_path):
    pid, inv = story["pid"], story["inv"]
    r = client.get("/exports/odm", params={"participant": pid, "as_of": z(story["marks"]["first_entry"])}, headers=inv)
    path = _save(tmp_path, "asof.xml", r.content)
    validate_xsd(path)
    check_rules(path)
    assert b"Re-examined by the same examiner" not in r.content


def test_whole_study_export_streams_every_clinical_event_R16(client, story, randomised_participant, login, tmp_path, services):
    randomised_participant(site="GOMEL")
    insp = login("inspector1", "inspector", "*")
    r = client.get("/exports/odm", headers=insp)
    assert r.status_code == 200
    path = _save(tmp_path, "study.xml", r.content)
    validate_xsd(path)
    counts = check_rules(path)
    root = etree.parse(str(path)).getroot()
    assert root.get("Granularity") == "All"
    assert len(set(root.xpath("//o:SubjectData/@SubjectKey", namespaces=NS))) == 2
    app = services.app
    clinical = sum(1 for n in app.recorder.select_notifications(start=1, limit=100000)
                   if n.topic.startswith(("trialaudit.Participant.", "trialaudit.Visit.", "trialaudit.AdverseEvent.")))
    assert counts["transactions"] == clinical
    # a site-bound user's whole-study export holds only their site
    r = client.get("/exports/odm", headers=story["inv"])
    site_path = _save(tmp_path, "site.xml", r.content)
    validate_xsd(site_path)
    check_rules(site_path)
    site_root = etree.parse(str(site_path)).getroot()
    assert set(site_root.xpath("//o:SiteRef/@LocationOID", namespaces=NS)) == {"LOC.MINSK"}


def test_every_export_is_recorded_on_the_audit_trail_R11(client, story, login, services):
    insp = login("inspector2", "inspector", "*")
    before = _exports(services)
    assert client.get("/exports/odm", params={"participant": story["pid"]}, headers=insp).status_code == 200
    assert client.get("/exports/odm", headers=insp).status_code == 200
    assert client.get(f"/participants/{story['pid']}/casebook.html", headers=insp).status_code == 200
    after = _exports(services)[len(before):]
    assert [(e.scope, e.format) for e in after] == [
        ("participant", "cdisc-odm-1.3.2-transactional-archival"), ("study", "cdisc-odm-1.3.2-transactional-archival"),
        ("participant", "casebook-html")]
    assert all(e.audit["actor"]["role"] == "inspector" and e.participant_id in (None, story["pid"]) for e in after)


def _exports(services):
    app = services.app
    return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(
        start=1, limit=100000, topics=["trialaudit.ExportRecord.ExportRecorded"])]


def test_the_checker_catches_what_the_xsd_does_not(tmp_path, client, story):
    """A timestamp without zone and an Upsert pass the XSD's eye in places; the rule check refuses them."""
    content = client.get("/exports/odm", params={"participant": story["pid"]}, headers=story["inv"]).content
    bad = content.replace(b'TransactionType="Update"', b'TransactionType="Upsert"', 1)
    with pytest.raises(AssertionError, match="Upsert"):
        check_rules(_save(tmp_path, "upsert.xml", bad))
    text = content.decode()
    start = text.index("<DateTimeStamp>") + len("<DateTimeStamp>")
    naive = text[:start] + text[start:start + 26] + text[start + 27:]  # drop the Z
    with pytest.raises(AssertionError, match="zone"):
        check_rules(_save(tmp_path, "naive.xml", naive.encode()))


def test_cli_export_odm_writes_a_valid_file_and_records_the_export(services, story, add_user, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import cli
    from tests.conftest import PASSWORD

    add_user("dmcli", "data_manager", "*")
    monkeypatch.setenv("TRIALAUDIT_DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("TRIALAUDIT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("TRIALAUDIT_SITES", '{"MINSK": "Europe/Minsk", "GOMEL": "Europe/Minsk"}')
    before = len(_exports(services))
    for args, name in (([], "all.xml"), (["--participant", story["pid"]], "one.xml")):
        out = tmp_path / name
        result = CliRunner().invoke(cli, ["export", "odm", "--out", str(out), "--user", "dmcli", *args], input=PASSWORD + "\n")
        assert result.exit_code == 0, result.output
        validate_xsd(out)
        check_rules(out)
    assert len(_exports(services)) == before + 2


def test_the_demo_trial_exports_valid_odm_and_casebooks(tmp_path, make_settings, sqlite_url):
    """Every kind of event the synthetic trial writes (reschedules, deviations, reporting clocks, sponsor
    causality, corrections) maps to a valid transaction, whole-study and per participant (R16)."""
    from api.container import build, setup_store
    from application.casebook_html import render_casebook_html
    from application.demo import generate
    from application.exports import OdmExports

    settings = make_settings(sqlite_url)
    setup_store(settings)
    svc = build(settings, follow=False)
    try:
        generate(svc.app, participants=8, seed=7)
        svc.projections.catch_up()
        app = svc.app
        dm = app.actor_for(str(app.user_by_name("demo.datamanager").id))
        exports = OdmExports(app, svc.integrity.log)
        path = _save(tmp_path, "demo.xml", b"".join(exports.study(dm)))
        validate_xsd(path)
        assert check_rules(path)["transactions"] > 100
        for row in app.list_participants(dm):
            one = _save(tmp_path, "one.xml", b"".join(exports.participant(dm, row["id"])))
            validate_xsd(one)
            check_rules(one)
            assert "Casebook of participant" in render_casebook_html(app.casebook(dm, row["id"]))
    finally:
        svc.close()
