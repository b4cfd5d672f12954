"""A payment keeps the model bundle it started with: promoted while it is in its second
stage, it is still decided by its own version's fast model *and* sequence model, and the
next payment by the new version's pair — never one version's fast score combined by the
other's stage."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import weakref
from pathlib import Path

import pytest

from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir
from models.artifacts import MANIFEST_FILE
from models.versions import POINTER_FILE, SEQUENCE_DIR
from service.app import SCORER
from tests.service.conftest import ClientFactory
from tests.service.test_cascade_api import tx

SCORING_KEY, ADMIN_KEY = "s" * 24, "a" * 24
PATIENT = {"X-Deadline-Ms": "60000", "X-API-Key": SCORING_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
KEY = {"X-API-Key": SCORING_KEY}


def _version(root: Path, name: str) -> tuple[str, str]:
    """The shipped pair, renamed ``name``, its band widened to every score (every payment
    escalates); its fast and sequence model versions."""
    target = root / name
    shutil.copytree(default_artifact_dir(), target)
    shutil.copytree(default_sequence_artifact_dir(), target / SEQUENCE_DIR)
    fast = json.loads((target / MANIFEST_FILE).read_text())
    fast["model_version"] += f"-{name}"
    (target / MANIFEST_FILE).write_text(json.dumps(fast))
    seq_path = target / SEQUENCE_DIR / MANIFEST_FILE
    seq = json.loads(seq_path.read_text())
    seq["model_version"] += f"-{name}"
    seq["fast_model_version"] = fast["model_version"]
    seq["band"] = {"low": 0.0, "high": 1.0}
    seq_path.write_text(json.dumps(seq))
    return fast["model_version"], seq["model_version"]


async def test_a_promotion_never_pairs_one_versions_fast_score_with_the_others_stage(
    make_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    old, new = _version(root, "a"), _version(root, "b")
    (root / POINTER_FILE).write_text(old[0])
    client = await make_client(model_dir=root, api_keys=(SCORING_KEY,), admin_api_keys=(ADMIN_KEY,))
    scorer = client.app[SCORER]
    # The old version's stage waits at its fault-injection point until the promotion has
    # answered: the payment is in that stage during the whole promotion, however long the
    # promotion takes on a busy machine.
    gate, entered = asyncio.Event(), asyncio.Event()

    async def held() -> None:
        entered.set()
        await gate.wait()

    old_stage = scorer.bundle.cascade
    assert old_stage is not None
    monkeypatch.setattr(old_stage, "_inject", held)

    first = asyncio.create_task(client.post("/score", json=tx(0), headers=PATIENT))
    await entered.wait()  # the payment is past its fast path, in the old stage
    promoted = await client.post(f"/models/{new[0]}/promote", headers=ADMIN)
    assert promoted.status == 200, await promoted.text()
    assert scorer.in_flight == 1  # the first payment is still being decided
    gate.set()

    answer = await (await first).json()
    assert (answer["model_version"], answer["stage"]) == (old[0], "sequence")
    record = await (await client.get(f"/decisions/{tx(0)['transaction_id']}", headers=KEY)).json()
    assert record["sequence"]["model_version"] == old[1]

    second = await (await client.post("/score", json=tx(1), headers=PATIENT)).json()
    assert (second["model_version"], second["stage"]) == (new[0], "sequence")
    record = await (await client.get(f"/decisions/{tx(1)['transaction_id']}", headers=KEY)).json()
    assert record["sequence"]["model_version"] == new[1]


async def test_a_retired_stage_is_freed_not_kept_until_shutdown(
    make_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    first, used, last = _version(root, "a"), _version(root, "b"), _version(root, "c")
    (root / POINTER_FILE).write_text(first[0])
    monkeypatch.setattr("service.model_promotion.RETIRE_AFTER_S", 0.0)
    client = await make_client(model_dir=root, api_keys=(SCORING_KEY,), admin_api_keys=(ADMIN_KEY,))
    scorer = client.app[SCORER]
    assert (await client.post(f"/models/{used[0]}/promote", headers=ADMIN)).status == 200
    stage = scorer.bundle.cascade
    assert stage is not None
    answer = await (await client.post("/score", json=tx(0), headers=PATIENT)).json()
    assert (answer["model_version"], answer["stage"]) == (used[0], "sequence")

    assert (await client.post(f"/models/{last[0]}/promote", headers=ADMIN)).status == 200
    retired = weakref.ref(stage)
    del stage
    # Its retirement is due at once (RETIRE_AFTER_S = 0): wait for the loop to run it.
    while (alive := retired()) is not None and not alive._closed:
        await asyncio.sleep(0)
    del alive
    gc.collect()
    assert retired() is None
