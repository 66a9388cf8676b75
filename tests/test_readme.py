"""The README is what a newcomer reads first (issue 14 items 10, 12, 13): it starts with the two commands, reads
in five minutes, links the pages it moved out, and its First steps work when pasted, whole, into a shell."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SIZE_LIMIT = 15_000  # bytes: about five minutes of reading; details go to docs/


def section(text: str, heading: str) -> str:
    """The text of the ``## heading`` section, up to the next second-level heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def fenced_blocks(text: str, language: str = "sh") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def json_values(text: str) -> list:
    """Every JSON object printed in ``text`` (the commands' other output is plain text)."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) >= 0:
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        values.append(value)
        i = end
    return values


def test_readme_starts_with_the_two_commands_and_reads_in_five_minutes():
    text = README.read_text(encoding="utf-8")
    first = fenced_blocks(text)[0]
    assert text.index("```sh") < 200, "the two commands come first"
    assert [line.split()[:2] for line in first.strip().splitlines()] == [["make", "run"], ["make", "test"]]
    assert len(text.encode()) < SIZE_LIMIT, f"README.md is {len(text.encode())} bytes; move details to docs/"
    for heading in ("First steps", "Command line", "Settings (environment)", "How it is built", "Threat model",
                    "Benchmarks"):
        section(text, heading)
    for page in ("docs/benchmarks.md", "docs/design.md"):
        assert f"]({page})" in text and (REPO / page).is_file()


def test_readme_documents_the_contract_names():
    """contract.md: the signature covers the bytes documented in the README; the commands are listed."""
    text = README.read_text(encoding="utf-8")
    layout = re.search(r"^### Signed tree head\n.*?^```\n(.*?)^```", text, re.S | re.M)
    assert layout and "tree-head/v1" in layout.group(1) and "root hash" in layout.group(1)
    for name in ("trialaudit serve", "trialaudit users add", "trialaudit verify", "TRIALAUDIT_DATABASE_URL",
                 "--site '*'", "/me/signature-acknowledgement", "/signature-enablement"):
        assert name in text, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_first_steps_work_when_pasted_whole_into_a_shell(store_url, tmp_path):
    """Issue 14 item 10 and 12: the First steps blocks (your own trial, then the two steps before signing), run
    as written by bash against a fresh store on a free port, print what the README says they print."""
    missing = [tool for tool in ("bash", "curl", "jq", "make") if not shutil.which(tool)]
    assert not missing, f"{missing} missing: `make test` installs curl and jq"
    blocks = fenced_blocks(section(README.read_text(encoding="utf-8"), "First steps"))
    assert len(blocks) == 2 and blocks[0].startswith("make install")
    env = {k: v for k, v in os.environ.items() if k != "TRIALAUDIT_DEMO"}
    env.update(PORT=str(_free_port()), TRIALAUDIT_DATABASE_URL=store_url, TRIALAUDIT_DATA_DIR=str(tmp_path / "keys"),
               TRIALAUDIT_WORKERS="1")
    script = tmp_path / "first-steps.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(blocks), encoding="utf-8")
    # Output to files: the server the block leaves running in the background keeps a pipe open after bash ends.
    with (tmp_path / "out").open("wb") as stdout, (tmp_path / "err").open("wb") as stderr:
        proc = subprocess.Popen(["bash", str(script)], cwd=REPO, env=env, stdout=stdout, stderr=stderr,
                                start_new_session=True)  # its background server is in this process group too
    try:
        proc.wait(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = (tmp_path / "out").read_text(errors="replace"), (tmp_path / "err").read_text(errors="replace")
    assert proc.returncode == 0, out + err
    assert "added alena (investigator, site MINSK)" in out and "added ada (admin, site *)" in out
    values = json_values(out)
    assert {"eligible": True} in values and {"consent_version": "ICF v1.0"} in values
    assert any(set(v) == {"arm"} and v["arm"] in ("treg_plus_standard", "standard") for v in values)
    correction = next(v for v in values if v.get("type") == "FieldCorrected")
    assert correction["changes"] == [{"field": "birth_year", "old_value": 1970, "new_value": 1971}]
    assert correction["reason"] == "transcription error; see clinic note"
    assert correction["actor"]["full_name"] == "Dr Alena Investigator"
    birth_years = [v["birth_year"] for v in values if set(v) == {"birth_year"}]
    assert birth_years == [1971, 1970], "the correction, then the participant as recorded before it"
    assert {"identity_verified": True, "enabled": False} in values  # step 1 of 2
    assert values[-1] == {"enabled": True}  # step 2: alena may sign


@pytest.mark.parametrize("page", ["docs/design.md", "docs/benchmarks.md"])
def test_moved_pages_keep_their_links_working(page):
    text = (REPO / page).read_text(encoding="utf-8")
    for link in re.findall(r"\]\(([^)#]+\.md)\)", text):
        assert (REPO / page).parent.joinpath(link).is_file(), link
