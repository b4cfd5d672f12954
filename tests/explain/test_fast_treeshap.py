"""The fast exact explainer and compiled predictor equal LightGBM's own, on any model we train."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explain.fast_treeshap import FastTreeShap
from models.fast import FastModel
from models.forest import CompiledPredictor, UnsupportedModel
from models.registry import default_artifact_dir


def _random_model(seed: int, num_leaves: int, max_depth: int, trees: int, missing: str) -> tuple:
    """A binary LightGBM model on random data with NaN, zero or no missing values."""
    rng = np.random.default_rng(seed)
    n, k = 600, 6
    x = rng.normal(size=(n, k))
    x[:, 2] = rng.integers(0, 4, n)  # a few distinct values: ties at thresholds
    if missing == "nan":
        x[rng.random((n, k)) < 0.15] = np.nan
    elif missing == "zero":
        x[rng.random((n, k)) < 0.2] = 0.0
    y = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) ** 2 + rng.normal(size=n)) > 0.8
    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "max_depth": max_depth,
        "min_data_in_leaf": 3,
        "learning_rate": 0.3,
        "verbose": -1,
        "seed": seed,
        "deterministic": True,
        "zero_as_missing": missing == "zero",
        "use_missing": missing != "none",
    }
    booster = lgb.train(params, lgb.Dataset(x, y.astype(int)), num_boost_round=trees)
    rows = rng.normal(size=(50, k)) * 2
    rows[:, 2] = rng.integers(-1, 5, 50)
    rows[rng.random((50, k)) < 0.1] = np.nan
    rows[rng.random((50, k)) < 0.1] = 0.0
    # Either side of LightGBM's zero threshold (1e-35f, slightly above 1e-35).
    rows[rng.random((50, k)) < 0.05] = 1.0000000180025095e-35
    rows[rng.random((50, k)) < 0.05] = -1.0000000180025096e-35
    rows[rng.random((50, k)) < 0.05] = 1.00000002e-35
    return booster, np.vstack([rows, x[:50]])


def _assert_equal_to_lightgbm(booster: lgb.Booster, rows: np.ndarray) -> None:
    explainer = FastTreeShap(booster)
    contributions, raw = explainer.explain(rows)
    reference = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(contributions, reference, rtol=0, atol=1e-9)
    expected_raw = booster.predict(rows, raw_score=True)
    np.testing.assert_allclose(raw, expected_raw, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        CompiledPredictor.from_booster(booster).predict_raw(rows), expected_raw, rtol=0, atol=1e-12
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    num_leaves=st.integers(2, 48),
    max_depth=st.sampled_from([-1, 2, 3, 5, 8, 12]),
    trees=st.integers(1, 30),
    missing=st.sampled_from(["none", "nan", "zero"]),
)
def test_equal_to_pred_contrib_on_random_models(
    seed: int, num_leaves: int, max_depth: int, trees: int, missing: str
) -> None:
    booster, rows = _random_model(seed, num_leaves, max_depth, trees, missing)
    _assert_equal_to_lightgbm(booster, rows)


def test_equal_on_the_shipped_model_at_its_thresholds() -> None:
    model = FastModel.load(default_artifact_dir())
    explainer = FastTreeShap(model.booster)
    rng = np.random.default_rng(1)
    rows = rng.uniform(0, 300, size=(500, len(model.feature_names)))
    # Values exactly on split thresholds must go the way LightGBM sends them.
    forest = explainer.forest
    splits = np.flatnonzero(forest.feature >= 0)[:500]
    rows[np.arange(len(splits)), forest.feature[splits]] = forest.threshold[splits]
    _assert_equal_to_lightgbm(model.booster, rows)


def test_deep_wide_model_and_batches() -> None:
    booster, rows = _random_model(3, num_leaves=63, max_depth=-1, trees=60, missing="nan")
    _assert_equal_to_lightgbm(booster, rows)
    explainer = FastTreeShap(booster)
    one_by_one = np.vstack([explainer.contributions(row.reshape(1, -1)) for row in rows])
    np.testing.assert_array_equal(one_by_one, explainer.contributions(rows))


def test_categorical_models_are_refused() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(300, 2)).astype(float)
    y = (x[:, 0] == 3).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 2},
        lgb.Dataset(x, y, categorical_feature=[0]),
        num_boost_round=3,
    )
    with pytest.raises(UnsupportedModel, match="categorical"):
        FastTreeShap(booster)


def test_wrong_shape_is_refused() -> None:
    explainer = FastTreeShap(FastModel.load(default_artifact_dir()).booster)
    with pytest.raises(ValueError, match="feature matrix"):
        explainer.contributions(np.zeros((1, 3)))
