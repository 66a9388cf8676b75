"""A real signature appears wherever the signed record is shown or exported (R27): the replayed casebook,
its HTML and PDF, and the ODM export, which still validates against the official XSD."""

from lxml import etree

from domain.visit import Visit
from tests.api.test_signatures_queries_locks import enable_signing
from tests.conftest import PASSWORD
from tests.export.odm_rules import check_rules, validate_xsd

NS = {"o": "http://www.cdisc.org/ns/odm/v1.3"}


def test_signature_manifestation_in_casebook_and_odm_R27(client, randomised_participant, login, tmp_path):
    pid, inv = randomised_participant()
    admin = login("admin1", "admin", "*")
    bl = str(Visit.id_for(pid, "BL"))
    assert client.post(f"/visits/{bl}/held", json={"date": "2026-01-05"}, headers=inv).status_code == 200
    assert client.put(f"/visits/{bl}/items/mrss.face", json={"value": 1}, headers=inv).status_code == 200
    enable_signing(client, admin, inv)
    r = client.post(f"/visits/{bl}/signatures", json={"meaning": "approval", "password": PASSWORD}, headers=inv)
    assert r.status_code == 201, r.text
    signed = client.get(f"/visits/{bl}", headers=inv).json()["signatures"][0]

    casebook = client.get(f"/participants/{pid}/casebook", headers=inv).json()
    shown = [s for s in casebook["signatures"] if s["meaning"] == "approval"]
    assert shown and shown[0]["legal_statement"] == signed["legal_statement"]

    html = client.get(f"/participants/{pid}/casebook.html", headers=inv).text
    assert signed["signer"] in html and signed["legal_statement"] in html and "approval" in html

    r = client.get("/exports/odm", params={"participant": pid}, headers=inv)
    assert r.status_code == 200
    path = tmp_path / "signed.xml"
    path.write_bytes(r.content)
    validate_xsd(path)
    check_rules(path)
    root = etree.parse(str(path)).getroot()
    signatures = root.xpath("//o:Signature", namespaces=NS)
    assert len(signatures) == 1
    sig_def = signatures[0].find("o:SignatureRef", NS).get("SignatureOID")
    (definition,) = root.xpath(f"//o:SignatureDef[@OID='{sig_def}']", namespaces=NS)
    assert definition.findtext("o:LegalReason", namespaces=NS) == signed["legal_statement"]
