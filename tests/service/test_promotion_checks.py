"""What a promotion refuses, in the process (real app, real client, real artifacts): a
version whose inputs are not the features computed here, whatever error its load raises,
a promotion with no admin key configured; what a process following the champion file does
when it cannot follow."""

from __future__ import annotations

import errno
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from models.artifact_paths import default_artifact_dir
from models.artifacts import MANIFEST_FILE, DateWindow, load_manifest, write_artifact
from models.config import FastModelConfig
from models.errors import ArtifactError
from models.train.booster import fit_booster
from models.versions import POINTER_FILE, ModelDirectory
from service.app import SCORER
from service.model_promotion import ModelPromotion
from tests.service.conftest import ClientFactory
from tests.service.test_cascade_api import tx

SCORING_KEY, ADMIN_KEY = "s" * 24, "a" * 24
ADMIN = {"X-API-Key": ADMIN_KEY}
SCORING = {"X-API-Key": SCORING_KEY}
SHIPPED = load_manifest(default_artifact_dir()).model_version


def _narrow_version(target: Path) -> str:
    """A valid artifact that reads only the first five of the shipped model's features."""
    names = load_manifest(default_artifact_dir()).feature_names[:5]
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, len(names)))
    y = (x[:, 0] > 1.0).astype(np.int8)
    config = FastModelConfig(num_trees=5, min_data_in_leaf=20, num_threads=1, seed=7)
    booster = fit_booster(x, y, list(names), config)
    manifest = write_artifact(
        target,
        booster,
        training_window=DateWindow(start=date(2024, 1, 1), end=date(2024, 1, 31)),
        validation_window=None,
        data_name=None,
        data_sha256=None,
        rows={"train": 400},
        metrics={},
        config=config.to_dict(),
        thresholds=load_manifest(default_artifact_dir()).thresholds,
        created_at=datetime(2020, 1, 1, tzinfo=UTC),  # older: never the default champion
    )
    return manifest.model_version


def _copy(root: Path, name: str, model_version: str | None = None) -> None:
    """The shipped fast model as version ``name`` (default model_version: shipped-name)."""
    shutil.copytree(default_artifact_dir(), root / name)
    manifest = root / name / MANIFEST_FILE
    new = model_version or f"{SHIPPED}-{name}"
    manifest.write_text(manifest.read_text().replace(SHIPPED, new))


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(default_artifact_dir(), root / "shipped")
    (root / POINTER_FILE).write_text(SHIPPED + "\n")
    return root


async def _client(
    make_client: ClientFactory, root: Path, **overrides: Any
) -> TestClient[Any, web.Application]:
    keys = {"api_keys": (SCORING_KEY,), "admin_api_keys": (ADMIN_KEY,), **overrides}
    return await make_client(model_dir=root, sequence="off", model_poll_s=0, **keys)


def _promotion(client: TestClient[Any, web.Application]) -> ModelPromotion:
    promotion = client.app[SCORER].promotion
    assert promotion is not None
    return promotion


async def _scores(client: TestClient[Any, web.Application], i: int) -> str:
    answer = await client.post("/score", json=tx(i), headers=SCORING)
    assert answer.status == 200, await answer.text()
    return str((await answer.json())["model_version"])


async def test_a_version_reading_other_features_is_refused_and_scoring_goes_on(
    make_client: ClientFactory, model_root: Path
) -> None:
    narrow = _narrow_version(model_root / "narrow")
    client = await _client(make_client, model_root)

    refused = await client.post(f"/models/{narrow}/promote", headers=ADMIN)
    assert refused.status == 422, await refused.text()
    error = (await refused.json())["error"]
    assert error["type"] == "invalid_artifact"
    assert "reads the features" in error["message"]
    assert await _scores(client, 0) == SHIPPED
    assert (model_root / POINTER_FILE).read_text().strip() == SHIPPED

    # A process following a champion file that names it refuses it too.
    (model_root / POINTER_FILE).write_text(narrow + "\n")
    with pytest.raises(ArtifactError, match="reads the features"):
        await _promotion(client).follow()
    assert await _scores(client, 1) == SHIPPED


async def test_without_admin_keys_no_promotion_is_possible(
    make_client: ClientFactory, model_root: Path
) -> None:
    # No key at all configured: the service asks for none, so promotion must be off.
    client = await make_client(model_dir=model_root, sequence="off", model_poll_s=0)
    refused = await client.post("/models/shipped/promote")
    assert refused.status == 403
    assert "RISKSCORE_ADMIN_API_KEYS" in (await refused.json())["error"]["message"]
    assert (model_root / POINTER_FILE).read_text().strip() == SHIPPED


async def test_a_model_version_in_two_directories_is_left_out_and_not_promoted(
    make_client: ClientFactory, model_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    twin = f"{SHIPPED}-twin"
    for name in ("twin-a", "twin-b"):
        _copy(model_root, name, twin)
    client = await _client(make_client, model_root)

    listed = await (await client.get("/models", headers=ADMIN)).json()
    assert [v["version"] for v in listed["versions"]] == [SHIPPED]
    assert "twin-a, twin-b" in caplog.text
    for key in (twin, "twin-b"):
        refused = await client.post(f"/models/{key}/promote", headers=ADMIN)
        assert refused.status == 422, await refused.text()
        assert "in 2 directories (twin-a, twin-b)" in (await refused.json())["error"]["message"]
    assert await _scores(client, 0) == SHIPPED


async def test_a_follower_that_failed_retries_later_and_shows_its_lag(
    make_client: ClientFactory, model_root: Path
) -> None:
    _copy(model_root, "next")
    model = model_root / "next" / "model.txt"
    good = model.read_bytes()
    model.write_bytes(good + b"\n")  # a copy still in progress: not its SHA-256 yet
    client = await _client(make_client, model_root)
    promotion = _promotion(client)

    async def metric(name: str) -> float:
        text = await (await client.get("/metrics")).text()
        return float(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])

    refused = 'riskscore_model_promotions_total{outcome="refused"}'
    (model_root / POINTER_FILE).write_text(f"{SHIPPED}-next\n")
    with pytest.raises(ArtifactError, match="SHA-256"):
        await promotion.follow()
    assert await metric("riskscore_model_pointer_mismatch") == 1
    listed = await (await client.get("/models", headers=ADMIN)).json()
    assert (listed["champion"]["version"], listed["champion_file"]) == (SHIPPED, f"{SHIPPED}-next")
    await promotion.follow()  # within the retry interval: not loaded again
    assert await metric(refused) == 1

    # The copy completes; once the retry interval is over the follower loads it.
    model.write_bytes(good)
    promotion.retry_failed_s = 0.0  # the interval (30 s) is over
    await promotion.follow()
    assert await _scores(client, 0) == f"{SHIPPED}-next"
    assert await metric("riskscore_model_pointer_mismatch") == 0

    # A champion file naming no version at all is refused (counted), not silently ignored.
    (model_root / POINTER_FILE).write_text("no-such-version\n")
    with pytest.raises(ArtifactError, match="not a version"):
        await promotion.follow()
    assert await metric(refused) == 2


async def test_any_load_failure_is_a_refusal_not_a_server_error(
    make_client: ClientFactory, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy(model_root, "next")
    client = await _client(make_client, model_root)

    # Errors other than ArtifactError (a library's own: LightGBM, ONNX Runtime, NumPy) are
    # hard to provoke with a valid artifact: one is raised where the version loads.
    def fails(*args: Any) -> Any:
        raise ValueError("buffer source array is read-only")

    monkeypatch.setattr("service.model_promotion.load_version", fails)
    refused = await client.post(f"/models/{SHIPPED}-next/promote", headers=ADMIN)
    assert refused.status == 422, await refused.text()
    assert (
        "ValueError: buffer source array is read-only" in (await refused.json())["error"]["message"]
    )
    assert await _scores(client, 0) == SHIPPED


def _read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing into the model directory fails as on a read-only mount (the tests run as a
    user whom file permissions do not stop, so the failure is raised where it would be)."""

    def refuse(*args: Any) -> str:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("models.versions.write_file", refuse)


async def test_an_unwritable_champion_file_is_a_503_and_changes_nothing(
    make_client: ClientFactory, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy(model_root, "next")
    client = await _client(make_client, model_root)
    _read_only(monkeypatch)

    refused = await client.post(f"/models/{SHIPPED}-next/promote", headers=ADMIN)
    assert refused.status == 503, await refused.text()
    error = (await refused.json())["error"]
    assert error["type"] == "champion_file_unwritable"
    assert "Read-only file system" in error["message"]
    assert await _scores(client, 0) == SHIPPED


def test_a_read_only_directory_without_champion_file_serves_its_newest_version(
    model_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (model_root / POINTER_FILE).unlink()
    _read_only(monkeypatch)
    assert ModelDirectory(model_root).champion().version == SHIPPED
    assert "without pinning it" in caplog.text
    assert not (model_root / POINTER_FILE).exists()
