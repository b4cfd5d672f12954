"""FastModel loading and prediction, and ModelSlot's safe swap, on real artifacts."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from models.artifacts import MANIFEST_FILE, MODEL_FILE, DateWindow, write_artifact
from models.config import FastModelConfig
from models.errors import ArtifactError, ModelNotReady
from models.fast import FastModel, ModelSlot
from models.thresholds import choose_thresholds
from models.train.booster import fit_booster

NAMES = ["f0", "f1", "f2", "f3", "f4"]


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, len(NAMES)))
    x[rng.random(x.shape) < 0.02] = np.nan  # LightGBM's missing values must pass through
    y = np.nan_to_num(x[:, 0]) - x[:, 1] ** 2 / 4 + rng.normal(scale=0.5, size=3000) > 1.5
    return x, y.astype(np.int8)


def _artifact(out: Path, seed: int, num_trees: int = 30) -> tuple[Path, lgb.Booster]:
    x, y = _data(seed)
    config = FastModelConfig(num_trees=num_trees, min_data_in_leaf=20, num_threads=1, seed=seed)
    booster = fit_booster(x[:2500], y[:2500], NAMES, config)
    write_artifact(
        out,
        booster,
        training_window=DateWindow(start=date(2024, 1, 1), end=date(2024, 1, 31)),
        validation_window=None,
        data_name=None,
        data_sha256=None,
        rows={"train": 2500},
        metrics={},
        config=config.to_dict(),
        thresholds=choose_thresholds(y[2500:], booster.predict(x[2500:])),
    )
    return out, booster


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, lgb.Booster]:
    return _artifact(tmp_path_factory.mktemp("first"), seed=1)


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, lgb.Booster]:
    return _artifact(tmp_path_factory.mktemp("second"), seed=2, num_trees=12)


def test_predictions_equal_lightgbm_on_the_same_data(first: tuple[Path, lgb.Booster]) -> None:
    directory, booster = first
    model = FastModel.load(directory)
    from_file = lgb.Booster(model_file=str(directory / MODEL_FILE))
    x, _ = _data(seed=9)

    assert np.array_equal(model.predict_proba(x), booster.predict(x))
    assert np.array_equal(model.predict_proba(x), from_file.predict(x))
    assert np.array_equal(model.predict_raw(x), booster.predict(x, raw_score=True))


def test_raw_score_is_the_log_odds_of_the_probability(first: tuple[Path, lgb.Booster]) -> None:
    model = FastModel.load(first[0])
    x, _ = _data(seed=9)

    np.testing.assert_allclose(model.predict_proba(x), 1 / (1 + np.exp(-model.predict_raw(x))))


def test_predict_one_matches_the_batch(first: tuple[Path, lgb.Booster]) -> None:
    model = FastModel.load(first[0])
    x, _ = _data(seed=9)
    batch = model.predict_proba(x[:20])

    singles = [model.predict_one(row.tolist()) for row in x[:20]]

    assert singles == batch.tolist()
    assert isinstance(singles[0], float)


def test_model_exposes_its_manifest(first: tuple[Path, lgb.Booster]) -> None:
    directory, booster = first
    model = FastModel.load(directory)
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))

    assert model.version == manifest["model_version"]
    assert model.feature_names == NAMES
    assert model.thresholds.decline == manifest["thresholds"]["decline"]
    assert model.manifest.num_trees == booster.num_trees()


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 6), (1, 2, 5)])
def test_a_wrong_shape_is_refused(first: tuple[Path, lgb.Booster], shape: tuple[int, ...]) -> None:
    model = FastModel.load(first[0])

    with pytest.raises(ValueError, match=r"\(n, 5\) feature matrix"):
        model.predict_proba(np.zeros(shape))


def test_predict_one_refuses_a_row_of_the_wrong_length(first: tuple[Path, lgb.Booster]) -> None:
    model = FastModel.load(first[0])

    with pytest.raises(ValueError, match="feature matrix"):
        model.predict_one([0.0] * 4)


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in (MODEL_FILE, MANIFEST_FILE):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_a_tampered_model_is_not_loaded(first: tuple[Path, lgb.Booster], tmp_path: Path) -> None:
    directory = _copy(first[0], tmp_path / "copy")
    text = (directory / MODEL_FILE).read_text(encoding="utf-8")
    # A plausible attack: same file, one leaf value changed.
    (directory / MODEL_FILE).write_text(text.replace("leaf_value=", "leaf_value=9", 1))

    with pytest.raises(ArtifactError, match=r"model\.txt"):
        FastModel.load(directory)


def _rewrite_model(directory: Path, data: bytes) -> None:
    """Replace model.txt and fix its checksum, as a careless (not malicious) edit would."""
    (directory / MODEL_FILE).write_bytes(data)
    manifest_path = directory / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][MODEL_FILE] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


def test_a_checksummed_file_that_is_not_a_model_is_refused(
    first: tuple[Path, lgb.Booster], tmp_path: Path
) -> None:
    directory = _copy(first[0], tmp_path / "copy")
    _rewrite_model(directory, b"not a model\n")

    with pytest.raises(ArtifactError, match="not a LightGBM text model"):
        FastModel.load(directory)


def test_a_manifest_disagreeing_with_the_model_is_refused(
    first: tuple[Path, lgb.Booster], second: tuple[Path, lgb.Booster], tmp_path: Path
) -> None:
    directory = _copy(first[0], tmp_path / "copy")
    # The other model has the same features but a different number of trees.
    _rewrite_model(directory, (second[0] / MODEL_FILE).read_bytes())

    with pytest.raises(ArtifactError, match="trees"):
        FastModel.load(directory)


def test_feature_names_must_match_the_booster(
    first: tuple[Path, lgb.Booster], tmp_path: Path
) -> None:
    directory = _copy(first[0], tmp_path / "copy")
    manifest_path = directory / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["feature_names"] = list(reversed(NAMES))
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(ArtifactError, match="features"):
        FastModel.load(directory)


def test_an_empty_slot_is_not_ready() -> None:
    slot = ModelSlot()

    assert not slot.ready
    with pytest.raises(ModelNotReady):
        _ = slot.model


def test_swap_serves_the_new_model(
    first: tuple[Path, lgb.Booster], second: tuple[Path, lgb.Booster]
) -> None:
    slot = ModelSlot(FastModel.load(first[0]))

    new = slot.swap(second[0])

    assert slot.model is new
    assert slot.model.manifest.num_trees == second[1].num_trees()


def test_a_failed_swap_keeps_the_old_model_serving(
    first: tuple[Path, lgb.Booster], tmp_path: Path
) -> None:
    old = FastModel.load(first[0])
    slot = ModelSlot(old)
    broken = _copy(first[0], tmp_path / "broken")
    (broken / MODEL_FILE).write_bytes((broken / MODEL_FILE).read_bytes()[:-10])
    x, _ = _data(seed=9)

    with pytest.raises(ArtifactError, match=r"model\.txt"):
        slot.swap(broken)

    assert slot.model is old
    assert np.array_equal(slot.model.predict_proba(x), first[1].predict(x))


def test_a_failed_first_load_leaves_the_slot_empty(tmp_path: Path) -> None:
    slot = ModelSlot()

    with pytest.raises(ArtifactError):
        slot.swap(tmp_path)

    assert not slot.ready


def test_compiled_predictor_gives_lightgbms_raw_scores() -> None:
    import numpy as np

    from models.artifact_paths import default_artifact_dir
    from models.fast import FastModel

    compiled = FastModel.load(default_artifact_dir(), predictor="compiled")
    reference = FastModel.load(default_artifact_dir(), predictor="lightgbm")
    rows = np.random.default_rng(4).uniform(0, 400, size=(300, len(compiled.feature_names)))
    rows[::7, 0] = np.nan
    np.testing.assert_array_equal(compiled.predict_raw(rows), reference.predict_raw(rows))
