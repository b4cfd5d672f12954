"""Exact TreeSHAP, both implementations: contributions plus base value equal the raw score."""

from __future__ import annotations

from datetime import date

import lightgbm as lgb
import numpy as np
import pytest

from explain.explainer import Explainer, LightGBMTreeShap
from explain.fast_treeshap import FastTreeShap
from features.data import frame_from_pandas
from features.offline import compute_features
from features.simulator import SimulationConfig, simulate
from models.artifact_paths import default_artifact_dir
from models.fast import FastModel


@pytest.fixture(scope="module")
def shipped() -> FastModel:
    return FastModel.load(default_artifact_dir())


@pytest.fixture(scope="module")
def simulated_features() -> np.ndarray:
    config = SimulationConfig(customers=300, terminals=600, days=40, start=date(2025, 1, 1), seed=3)
    history = frame_from_pandas(simulate(config), source="simulated")
    return compute_features(history)


def _random_rows(reference: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows drawn feature by feature across (and past) the observed range."""
    rng = np.random.default_rng(seed)
    low, high = reference.min(axis=0), reference.max(axis=0)
    span = np.maximum(high - low, 1.0)
    return rng.uniform(low - 0.5 * span, high + 0.5 * span, size=(n, reference.shape[1]))


def _check_additive(explainer: Explainer, model_raw: np.ndarray, x: np.ndarray) -> None:
    contributions = explainer.contributions(x)
    assert contributions.shape == (len(x), x.shape[1] + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), model_raw, rtol=0, atol=1e-9)
    # The base value is one number: the expected raw score, the same for every row.
    assert np.ptp(contributions[:, -1]) == 0.0


def test_shipped_model_is_additive_on_real_feature_rows(
    shipped: FastModel, simulated_features: np.ndarray
) -> None:
    x = simulated_features
    assert len(x) > 10_000
    for explainer in (LightGBMTreeShap(shipped.booster), FastTreeShap(shipped.booster)):
        _check_additive(explainer, shipped.predict_raw(x), x)


def test_shipped_model_is_additive_on_random_rows(
    shipped: FastModel, simulated_features: np.ndarray
) -> None:
    x = _random_rows(simulated_features, 5_000, seed=11)
    x[::17, 3] = np.nan  # missing values take the trees' default branches
    for explainer in (LightGBMTreeShap(shipped.booster), FastTreeShap(shipped.booster)):
        _check_additive(explainer, shipped.predict_raw(x), x)


def test_additive_on_a_deep_model(simulated_features: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    x = simulated_features[:5000]
    y = (x[:, 0] * rng.uniform(0.5, 1.5, len(x)) > np.median(x[:, 0])).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 63, "max_depth": 10, "verbose": -1, "seed": 1},
        lgb.Dataset(x, y),
        num_boost_round=60,
    )
    rows = _random_rows(x, 2_000, seed=12)
    for explainer in (LightGBMTreeShap(booster), FastTreeShap(booster)):
        _check_additive(explainer, booster.predict(rows, raw_score=True), rows)


def test_explainer_refuses_a_wrong_shape(shipped: FastModel) -> None:
    with pytest.raises(ValueError, match="feature matrix"):
        LightGBMTreeShap(shipped.booster).contributions(np.zeros((2, 3)))
