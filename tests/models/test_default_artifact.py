"""The shipped default model: intact, loadable, consistent with the engine, reproducible."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from features.data import frame_from_pandas
from features.definitions import DEFAULT_FEATURES, feature_names
from features.offline import compute_features
from features.simulator import SimulationConfig, simulate
from models.artifact_paths import default_artifact_dir
from models.artifacts import MANIFEST_FILE, MODEL_FILE, verify_artifact
from models.config import FastModelConfig
from models.fast import FastModel
from models.metrics import average_precision
from models.train.build_default_artifact import build_default_artifact


def test_shipped_checksums_hold() -> None:
    directory = default_artifact_dir()
    manifest = verify_artifact(directory)

    for name, expected in manifest.files.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == expected


def test_it_loads_with_the_engines_features() -> None:
    model = FastModel.load(default_artifact_dir())

    assert model.feature_names == feature_names(DEFAULT_FEATURES)
    assert model.manifest.kind == "fast-lightgbm"
    assert model.version.endswith(model.manifest.files[MODEL_FILE][:8])


def test_it_is_small() -> None:
    directory = default_artifact_dir()
    size = sum((directory / name).stat().st_size for name in (MODEL_FILE, MANIFEST_FILE))

    assert size < 1_000_000


def test_its_thresholds_come_from_the_rule_not_a_fallback() -> None:
    thresholds = FastModel.load(default_artifact_dir()).thresholds

    assert thresholds.rule.fallback is None
    assert 0.0 < thresholds.review < thresholds.decline < 1.0
    assert thresholds.validation is not None
    assert thresholds.validation.decline_precision is not None
    assert thresholds.validation.decline_precision >= 0.9


def test_it_ranks_fraud_in_a_fresh_simulation() -> None:
    # A seed the model never saw: the model must generalise, not recall its training data.
    history = frame_from_pandas(
        simulate(SimulationConfig(customers=300, terminals=600, days=45, seed=101))
    )
    after_warmup = history.day >= np.datetime64("2024-02-07")
    model = FastModel.load(default_artifact_dir())

    scores = model.predict_proba(compute_features(history)[after_warmup])

    labels = history.require_labels()[after_warmup]
    assert labels.any()
    assert average_precision(labels, scores) > 0.6


def test_readme_documents_this_artifact() -> None:
    directory = default_artifact_dir()
    manifest = verify_artifact(directory)
    readme = (directory / "README.md").read_text(encoding="utf-8")

    assert manifest.model_version in readme
    assert "python -m models.train.build_default_artifact" in readme
    assert f"{manifest.num_trees} trees" in readme


def test_the_build_is_reproducible_and_installs_a_verified_artifact(tmp_path: Path) -> None:
    # The real build at a toy size: same inputs must give byte-identical files.
    simulation = SimulationConfig(customers=150, terminals=300, days=45, seed=4)
    config = FastModelConfig(num_trees=15, validation_days=3, num_threads=1)
    first, second = tmp_path / "first", tmp_path / "second"

    manifest = build_default_artifact(first, simulation, config, progress=False)
    build_default_artifact(second, simulation, config, progress=False)

    for name in (MODEL_FILE, MANIFEST_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert verify_artifact(first) == manifest
    assert manifest.training_window.start == date(2024, 2, 7)  # after the 37 warm-up days
    assert manifest.data_name == "simulated-c150-t300-d45-2024-01-01-seed4.csv.gz"
    # Nothing but the two artifacts is left beside them (no staging directories).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second"]


def test_the_build_refuses_a_history_too_short_to_train(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than 38 days"):
        build_default_artifact(
            tmp_path / "artifact", SimulationConfig(days=38, customers=50, terminals=100)
        )
