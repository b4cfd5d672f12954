"""Artifact layout, manifest and checksum verification, on real files."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from models.artifacts import (
    MANIFEST_FILE,
    MODEL_FILE,
    DateWindow,
    Manifest,
    load_manifest,
    read_verified,
    verify_artifact,
    write_artifact,
    write_manifest,
)
from models.config import FastModelConfig
from models.errors import ArtifactError, ModelError
from models.thresholds import choose_thresholds
from models.train.booster import fit_booster

NAMES = ["amount", "count_1d", "risk_7d", "night"]


def _booster() -> tuple[lgb.Booster, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, len(NAMES)))
    y = (x[:, 0] + 0.5 * x[:, 2] + rng.normal(scale=0.5, size=3000) > 2.0).astype(np.int8)
    config = FastModelConfig(num_trees=20, min_data_in_leaf=20, num_threads=1)
    return fit_booster(x[:2500], y[:2500], NAMES, config, x[2500:], y[2500:]), x, y


def _write(out: Path, booster: lgb.Booster, y: np.ndarray, x: np.ndarray) -> Manifest:
    return write_artifact(
        out,
        booster,
        training_window=DateWindow(start=date(2024, 1, 1), end=date(2024, 1, 31)),
        validation_window=DateWindow(start=date(2024, 1, 31), end=date(2024, 1, 31)),
        data_name="history.csv.gz",
        data_sha256="ab" * 32,
        rows={"train": 2500, "train_fraud": int(y[:2500].sum()), "validation": 500},
        metrics={"validation_average_precision": 0.5, "validation_roc_auc": None},
        config=FastModelConfig().to_dict(),
        thresholds=choose_thresholds(y[2500:], booster.predict(x[2500:])),
        created_at=datetime(2024, 2, 1, 12, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def trained() -> tuple[lgb.Booster, np.ndarray, np.ndarray]:
    return _booster()


@pytest.fixture
def artifact(tmp_path: Path, trained: tuple[lgb.Booster, np.ndarray, np.ndarray]) -> Path:
    booster, x, y = trained
    _write(tmp_path / "artifact", booster, y, x)
    return tmp_path / "artifact"


def test_write_records_the_checksum_of_the_model_file(artifact: Path) -> None:
    manifest = load_manifest(artifact)
    on_disk = hashlib.sha256((artifact / MODEL_FILE).read_bytes()).hexdigest()

    assert manifest.files == {MODEL_FILE: on_disk}
    assert verify_artifact(artifact) == manifest


def test_manifest_describes_the_booster(
    artifact: Path, trained: tuple[lgb.Booster, np.ndarray, np.ndarray]
) -> None:
    booster, _, _ = trained
    manifest = load_manifest(artifact)

    assert manifest.feature_names == NAMES
    assert manifest.num_trees == booster.num_trees()
    assert manifest.kind == "fast-lightgbm"
    assert manifest.lightgbm_version == lgb.__version__
    assert manifest.training_window.start == date(2024, 1, 1)
    assert manifest.metrics["validation_roc_auc"] is None


def test_model_version_is_date_and_model_hash_prefix(artifact: Path) -> None:
    manifest = load_manifest(artifact)

    assert re.fullmatch(r"fast-20240201-[0-9a-f]{8}", manifest.model_version)
    assert manifest.model_version.endswith(manifest.files[MODEL_FILE][:8])


def test_model_file_is_lightgbm_text_and_manifest_is_json(artifact: Path) -> None:
    assert (artifact / MODEL_FILE).read_text(encoding="utf-8").startswith("tree\n")
    assert json.loads((artifact / MANIFEST_FILE).read_text(encoding="utf-8"))["kind"] == (
        "fast-lightgbm"
    )


def test_writing_leaves_no_temporary_files(artifact: Path) -> None:
    assert sorted(p.name for p in artifact.iterdir()) == [MANIFEST_FILE, MODEL_FILE]


def test_rewriting_an_artifact_replaces_it(
    artifact: Path, trained: tuple[lgb.Booster, np.ndarray, np.ndarray]
) -> None:
    booster, x, y = trained
    smaller = lgb.Booster(model_str=booster.model_to_string(num_iteration=5))

    manifest = _write(artifact, smaller, y, x)

    assert verify_artifact(artifact).num_trees == manifest.num_trees == 5
    assert sorted(p.name for p in artifact.iterdir()) == [MANIFEST_FILE, MODEL_FILE]


def test_a_changed_byte_is_refused_naming_the_file(artifact: Path) -> None:
    model = artifact / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))

    with pytest.raises(ArtifactError, match=r"model\.txt: SHA-256 .* does not match"):
        verify_artifact(artifact)


def test_a_truncated_model_is_refused_naming_the_file(artifact: Path) -> None:
    model = artifact / MODEL_FILE
    model.write_bytes(model.read_bytes()[:-100])

    with pytest.raises(ArtifactError, match=r"model\.txt: .*truncated"):
        verify_artifact(artifact)


def test_a_missing_model_is_refused(artifact: Path) -> None:
    (artifact / MODEL_FILE).unlink()

    with pytest.raises(ArtifactError, match=r"model\.txt: missing"):
        verify_artifact(artifact)


def test_a_missing_manifest_is_refused(artifact: Path) -> None:
    (artifact / MANIFEST_FILE).unlink()

    with pytest.raises(ArtifactError, match=r"manifest\.json: missing"):
        load_manifest(artifact)


def _edit_manifest(artifact: Path, edit: dict[str, object]) -> None:
    path = artifact / MANIFEST_FILE
    document = json.loads(path.read_text(encoding="utf-8"))
    document.update(edit)
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize(
    "edit",
    [
        {"kind": "pickle"},
        {"files": {"../model.txt": "00" * 32}},
        {"files": {"other.txt": "00" * 32}},
        {"files": {MODEL_FILE: "not-a-checksum"}},
        {"feature_names": ["a", "a"]},
        {"unexpected": 1},
        {"created_at": "2024-02-01T12:00:00"},  # no time zone
    ],
    ids=["kind", "path-escape", "no-model", "bad-sha", "duplicate-names", "extra", "naive-time"],
)
def test_a_malformed_manifest_is_refused(artifact: Path, edit: dict[str, object]) -> None:
    _edit_manifest(artifact, edit)

    with pytest.raises(ArtifactError, match=r"manifest\.json: not a valid"):
        verify_artifact(artifact)


def test_a_manifest_that_is_not_json_is_refused(artifact: Path) -> None:
    (artifact / MANIFEST_FILE).write_text("{ truncated", encoding="utf-8")

    with pytest.raises(ArtifactError, match=r"manifest\.json"):
        load_manifest(artifact)


def test_read_verified_returns_exactly_the_checked_bytes(artifact: Path) -> None:
    manifest, contents = read_verified(artifact)

    assert set(contents) == set(manifest.files)
    assert hashlib.sha256(contents[MODEL_FILE]).hexdigest() == manifest.files[MODEL_FILE]


def test_the_manifest_can_be_extended_without_breaking_verification(artifact: Path) -> None:
    manifest = load_manifest(artifact)
    tradeoff = [{"max_depth": 4, "ap": 0.7, "shap_p99_ms": 1.2}]

    write_manifest(artifact, manifest.model_copy(update={"shape_tradeoff": tradeoff}))

    assert verify_artifact(artifact).shape_tradeoff == tradeoff


def test_an_out_dir_that_is_a_file_is_refused(
    tmp_path: Path, trained: tuple[lgb.Booster, np.ndarray, np.ndarray]
) -> None:
    booster, x, y = trained
    (tmp_path / "taken").write_text("x", encoding="utf-8")

    with pytest.raises(ArtifactError, match="not a directory"):
        _write(tmp_path / "taken", booster, y, x)


def test_artifact_errors_are_model_errors() -> None:
    assert issubclass(ArtifactError, ModelError)
