"""Reports over a directory of model versions: a decision's report shows the checksums of
the version that made it (not the champion's), over HTTP and from the command line; the
period summary reads the champion's manifest; a path without manifest keeps the single
artifact's message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.artifact_paths import default_artifact_dir
from models.artifacts import MANIFEST_FILE, load_manifest
from models.versions import POINTER_FILE
from service.cli import main
from service.settings import AUDIT_FILE
from tests.service.conftest import ClientFactory
from tests.service.test_cascade_api import tx

SCORING, ADMIN = {"X-API-Key": "s" * 24}, {"X-API-Key": "a" * 24}
COMPLIANCE = {"X-API-Key": "c" * 24}
SHIPPED = load_manifest(default_artifact_dir()).model_version
CHECKSUM = "SHA-256 of model.txt"


async def test_a_decision_report_shows_the_checksums_of_the_version_that_decided(
    make_client: ClientFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(default_artifact_dir(), root / "shipped")
    shutil.copytree(default_artifact_dir(), root / "next")
    manifest = root / "next" / MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace(SHIPPED, f"{SHIPPED}-next"))
    (root / POINTER_FILE).write_text(SHIPPED + "\n")
    client = await make_client(
        model_dir=root,
        sequence="off",
        model_poll_s=0,
        api_keys=(SCORING["X-API-Key"],),
        admin_api_keys=(ADMIN["X-API-Key"],),
        compliance_api_keys=(COMPLIANCE["X-API-Key"],),
    )
    answer = await (await client.post("/score", json=tx(0), headers=SCORING)).json()
    assert answer["model_version"] == SHIPPED
    promoted = await client.post(f"/models/{SHIPPED}-next/promote", headers=ADMIN)
    assert promoted.status == 200

    page = await client.get(
        f"/reports/decisions/{answer['transaction_id']}.html", headers=COMPLIANCE
    )
    assert page.status == 200
    assert CHECKSUM in await page.text()
    await client.close()

    audit = str(tmp_path / "var" / AUDIT_FILE)
    out = tmp_path / "decision.html"
    command = ["report", "decision", answer["transaction_id"], "--audit-file", audit]
    assert main([*command, "--out", str(out), "--model-dir", str(root)]) == 0
    assert CHECKSUM in out.read_text()
    summary = ["report", "summary", "--audit-file", audit, "--out", str(tmp_path / "s.html")]
    assert main([*summary, "--model-dir", str(root)]) == 0

    # Neither an artifact nor a directory of versions: the single artifact's message.
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main([*summary, "--model-dir", str(tmp_path / "empty")]) != 0
    assert "manifest.json: missing from the artifact" in capsys.readouterr().err
