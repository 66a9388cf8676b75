"""E.14 and F.23: the ODM archive is well-formed XML whatever text is stored, and a refused CLI export
never truncates an existing file."""

from __future__ import annotations

import os
import stat

from lxml import etree

from tests.conftest import PASSWORD
from tests.export.conftest import ae_body
from tests.export.odm_rules import check_rules, validate_xsd

CONTROL = "Rash\x01 with\x0b bell\x07 and\x1f unit sep\x08"  # (NUL: PostgreSQL text refuses it)


def _stored_with_control_characters(services, pid: str, inv_user: dict) -> str:
    """An AE whose term and reason hold C0 control characters, written below the API (as older code,
    which did not refuse them, could have stored it)."""
    app = services.app
    actor = app.actor_for(inv_user["id"])
    values = {k: v for k, v in ae_body(aeterm=CONTROL).items()}
    ae = app.report_adverse_event(actor, pid, values=values)
    app.correct_adverse_event(actor, ae["id"], field="aeterm", new_value="Rash\x02 again",
                              reason="clinic note says\x03 rash\x1b[31m")
    return ae["id"]


def test_odm_is_well_formed_whatever_text_is_stored_E14(client, services, add_user, tmp_path):
    inv_user = add_user("inv_odm_ctl", "investigator", "MINSK")
    token = client.post("/auth/token", data={"username": "inv_odm_ctl", "password": PASSWORD}).json()["access_token"]
    inv = {"Authorization": f"Bearer {token}"}
    from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE

    pid = client.post("/participants", json={"screening_number": "CTL-1", "site": "MINSK", "sex": "F",
                                             "birth_year": 1970}, headers=inv).json()["id"]
    assert client.post(f"/participants/{pid}/eligibility", json={"inclusion": INCLUSION_ALL_TRUE,
                       "exclusion": EXCLUSION_ALL_FALSE}, headers=inv).status_code == 200
    assert client.post(f"/participants/{pid}/consent", json={"consent_version": "ICF v1.0", "signed_on": "2026-01-05"},
                       headers=inv).status_code == 200
    _stored_with_control_characters(services, pid, inv_user)
    for params in ({"participant": pid}, {}):
        r = client.get("/exports/odm", params=params, headers=inv)
        assert r.status_code == 200, r.text
        path = tmp_path / "odm.xml"
        path.write_bytes(r.content)
        root = etree.parse(str(path)).getroot()  # lxml's parser is strict: one bad character and it raises
        terms = [v for v in root.xpath("//@Value") if v.startswith("Rash")]
        first = next(t for t in terms if t.startswith("Rash\ufffd with"))  # (the domain folds \x0b, \x1f as spaces)
        assert "bell\ufffd" in first and first.endswith("sep\ufffd")
        assert "Rash\ufffd again" in terms
        reasons = [t for t in root.xpath("//*[local-name()='ReasonForChange']/text()") if "clinic note" in t]
        assert reasons and "\ufffd" in reasons[0]
        validate_xsd(path)
        check_rules(path)


def test_a_refused_cli_export_leaves_an_existing_file_as_it_was_F23(services, add_user, tmp_path, monkeypatch):
    """F.23: the CLI writes the export to a temporary name and renames it when complete; a refused export
    (an admin may not export clinical data) leaves the file that was there byte for byte, and a written
    one is 0600."""
    from typer.testing import CliRunner

    from api.cli import cli

    add_user("adm_cli", "admin", "*")
    add_user("dm_cli", "data_manager", "*")
    monkeypatch.setenv("TRIALAUDIT_DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("TRIALAUDIT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("TRIALAUDIT_SITES", '{"MINSK": "Europe/Minsk", "GOMEL": "Europe/Minsk"}')
    out = tmp_path / "archive.xml"
    out.write_bytes(b"<previous export, keep me/>")
    result = CliRunner().invoke(cli, ["export", "odm", "--out", str(out), "--user", "adm_cli"], input=PASSWORD + "\n")
    assert result.exit_code != 0, result.output
    assert out.read_bytes() == b"<previous export, keep me/>"
    result = CliRunner().invoke(cli, ["export", "odm", "--out", str(out), "--user", "nobody"], input=PASSWORD + "\n")
    assert result.exit_code != 0 and out.read_bytes() == b"<previous export, keep me/>"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    result = CliRunner().invoke(cli, ["export", "odm", "--out", str(out), "--user", "dm_cli"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    etree.parse(str(out))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_bundle_files_are_private_E17(services, add_user, tmp_path, monkeypatch):
    """E.17: `trialaudit bundle` writes its files 0600 in directories made 0700."""
    from typer.testing import CliRunner

    from api.cli import cli

    inv = services.app.actor_for(add_user("inv_bundle", "investigator", "MINSK")["id"])
    pid = services.app.screen_participant(inv, screening_number="B-1", site="MINSK", sex="F", birth_year=1970)["id"]
    monkeypatch.setenv("TRIALAUDIT_DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("TRIALAUDIT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("TRIALAUDIT_SITES", '{"MINSK": "Europe/Minsk", "GOMEL": "Europe/Minsk"}')
    out = tmp_path / "bundles" / "b1"
    result = CliRunner().invoke(cli, ["bundle", "--out", str(out), "--participant", pid])
    assert result.exit_code == 0, result.output
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    for d in [out, out.parent, *(p for p in out.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
