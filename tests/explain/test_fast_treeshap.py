"""The fast exact explainer and compiled predictor equal LightGBM's own, on any model we train.

Both ways the explainer has of explaining a tree are checked against ``pred_contrib``:
block tables (trees at most ``BLOCK_BITS`` deep, within the memory bound) and quadrature
(deeper trees, or every tree when the bound is set to nothing), and a mix of both.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explain import treeshap_tables
from explain.fast_treeshap import FastTreeShap
from explain.treeshap_kernels import decision_values
from models.artifact_paths import default_artifact_dir
from models.fast import FastModel
from models.forest import (
    MISSING_NAN,
    MISSING_NONE,
    MISSING_ZERO,
    CompiledPredictor,
    Forest,
    UnsupportedModel,
)
from models.forest_kernels import ZERO_THRESHOLD, goes_left


@contextmanager
def table_bound(max_bytes: int) -> Iterator[None]:
    """Explainers built inside use at most ``max_bytes`` of block tables."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(treeshap_tables, "TABLE_MAX_BYTES", max_bytes)
        yield


def _random_model(
    seed: int, num_leaves: int, max_depth: int, trees: int, missing: str, k: int = 6
) -> tuple[lgb.Booster, np.ndarray]:
    """A binary LightGBM model on random data with NaN, zero or no missing values, and
    rows to explain: random ones (NaN, zeros, values either side of LightGBM's zero
    threshold), training ones, and ones holding the model's own thresholds."""
    rng = np.random.default_rng(seed)
    n = 600
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
    at_thresholds = _rows_at_thresholds(FastTreeShap(booster).forest, x[:30].copy())
    return booster, np.vstack([rows, x[:50], at_thresholds])


def _rows_at_thresholds(forest: Forest, rows: np.ndarray) -> np.ndarray:
    """``rows`` with, in turn, one feature set exactly to a split threshold (not to the
    thresholds within LightGBM's zero threshold: see the expected failure below)."""
    splits = np.flatnonzero((forest.feature >= 0) & (np.abs(forest.threshold) > ZERO_THRESHOLD))
    splits = splits[: len(rows)]
    feature, threshold = forest.feature[splits], forest.threshold[splits]
    rows[np.arange(len(splits)), feature] = threshold
    return rows


def _assert_equal_to_lightgbm(
    booster: lgb.Booster, rows: np.ndarray, explainer: FastTreeShap
) -> None:
    contributions, raw = explainer.explain(rows)
    reference = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(contributions, reference, rtol=0, atol=1e-9)
    expected_raw = booster.predict(rows, raw_score=True)
    np.testing.assert_allclose(raw, expected_raw, rtol=0, atol=1e-12)
    # The raw score is the compiled predictor's, to the bit.
    np.testing.assert_array_equal(raw, CompiledPredictor(explainer.forest).predict_raw(rows))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    num_leaves=st.integers(2, 48),
    max_depth=st.sampled_from([-1, 2, 3, 5, 8, 12]),
    trees=st.integers(1, 30),
    missing=st.sampled_from(["none", "nan", "zero"]),
    k=st.sampled_from([3, 4, 6]),
)
def test_equal_to_pred_contrib_on_random_models(
    seed: int, num_leaves: int, max_depth: int, trees: int, missing: str, k: int
) -> None:
    booster, rows = _random_model(seed, num_leaves, max_depth, trees, missing, k)
    default = FastTreeShap(booster)  # tables where the trees allow, quadrature elsewhere
    _assert_equal_to_lightgbm(booster, rows, default)
    with table_bound(0):
        quadrature_only = FastTreeShap(booster)
    assert quadrature_only.table_trees == 0
    _assert_equal_to_lightgbm(booster, rows, quadrature_only)


@pytest.mark.parametrize("missing", ["none", "nan", "zero"])
def test_tables_quadrature_and_a_mix_of_both_in_one_model(missing: str) -> None:
    # 14 leaves on 3 features: trees either side of BLOCK_BITS deep, and most paths split
    # on a feature more than once.
    booster, rows = _random_model(7, num_leaves=14, max_depth=-1, trees=40, missing=missing, k=3)
    everything = FastTreeShap(booster)
    shallow = everything.table_trees
    assert shallow > 0 and everything.quadrature_trees > 0
    assert _has_repeated_split(everything)
    with table_bound(everything.table_bytes // 3):
        mixed = FastTreeShap(booster)
    assert 0 < mixed.table_trees < shallow
    for explainer in (everything, mixed):
        _assert_equal_to_lightgbm(booster, rows, explainer)


def _has_repeated_split(explainer: FastTreeShap) -> bool:
    f = explainer.forest
    prev = treeshap_tables.tree_paths(f.tree_start, f.feature, f.left, f.parent, f.count)[0]
    return bool((prev >= 0).any())


@pytest.fixture(scope="module")
def shipped() -> FastModel:
    return FastModel.load(default_artifact_dir())


def _shipped_rows(shipped: FastModel) -> np.ndarray:
    rng = np.random.default_rng(1)
    rows = rng.uniform(0, 300, size=(500, len(shipped.feature_names)))
    # Values exactly on split thresholds must go the way LightGBM sends them.
    return _rows_at_thresholds(shipped.forest, rows)


def test_shipped_model_is_all_tables_and_exact_at_its_thresholds(shipped: FastModel) -> None:
    explainer = FastTreeShap(shipped.booster)
    assert explainer.table_trees == shipped.forest.num_trees
    assert explainer.quadrature_trees == 0
    _assert_equal_to_lightgbm(shipped.booster, _shipped_rows(shipped), explainer)


def test_shipped_model_without_tables_is_the_same(shipped: FastModel) -> None:
    with table_bound(0):
        explainer = FastTreeShap(shipped.booster)
    assert explainer.table_trees == 0
    assert explainer.quadrature_trees == shipped.forest.num_trees
    _assert_equal_to_lightgbm(shipped.booster, _shipped_rows(shipped), explainer)


def test_raw_score_is_the_compiled_predictions_to_the_bit(shipped: FastModel) -> None:
    rows = _shipped_rows(shipped)
    rows[::7, 3] = np.nan
    _, raw = FastTreeShap(shipped.booster).explain(rows)
    np.testing.assert_array_equal(raw, shipped.predict_raw(rows))
    np.testing.assert_array_equal(raw, CompiledPredictor(shipped.forest).predict_raw(rows))


def test_deep_wide_model_and_batches() -> None:
    booster, rows = _random_model(3, num_leaves=63, max_depth=-1, trees=60, missing="nan")
    explainer = FastTreeShap(booster)
    assert explainer.quadrature_trees > 0
    _assert_equal_to_lightgbm(booster, rows, explainer)
    one_by_one = np.vstack([explainer.contributions(row.reshape(1, -1)) for row in rows])
    np.testing.assert_array_equal(one_by_one, explainer.contributions(rows))


def test_a_value_at_minus_the_zero_threshold() -> None:
    # LightGBM's dense-row input drops values with |v| <= kZeroThreshold (they count as 0),
    # so v = -1e-35f at a split on -1e-35f goes right, not left as a plain comparison would.
    booster, rows = _random_model(102, 4, -1, 10, "nan", 3)
    forest = FastTreeShap(booster).forest
    assert (forest.threshold == -ZERO_THRESHOLD).any()
    row = rows[128:129].copy()
    row[0, 0] = -ZERO_THRESHOLD
    contributions, raw = FastTreeShap(booster).explain(row)
    np.testing.assert_allclose(raw, booster.predict(row, raw_score=True), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(CompiledPredictor.from_booster(booster).predict_raw(row), raw)
    reference = booster.predict(row, pred_contrib=True)
    np.testing.assert_allclose(contributions, reference, rtol=0, atol=1e-9)


def test_decision_values_are_lightgbms_decisions() -> None:
    specials = [
        np.nan,
        0.0,
        -0.0,
        ZERO_THRESHOLD,
        -ZERO_THRESHOLD,
        1e-36,
        2e-35,
        -2e-35,
        np.inf,
        -np.inf,
        0.5,
        -0.5,
        1.0,
        -1.0,
    ]
    thresholds = [0.0, -0.0, 1e-35, -1e-35, 0.5, -0.5, 1.0, -1.0, 1e300, -1e300]
    values = np.array(specials + thresholds)
    xv = np.empty(treeshap_tables.VARIANTS * len(values))
    decision_values(values, xv)
    rules = itertools.product([MISSING_NONE, MISSING_ZERO, MISSING_NAN], [False, True])
    for missing_type, default_left in rules:
        variant = int(
            treeshap_tables.decision_variant(np.array([missing_type]), np.array([default_left]))[0]
        )
        for j, threshold in itertools.product(range(len(values)), thresholds):
            expected = goes_left(values[j], threshold, default_left, missing_type)
            assert (xv[variant * len(values) + j] <= threshold) == expected, (
                values[j],
                threshold,
                missing_type,
                default_left,
            )


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_leaf_table_is_the_shapley_formula(d: int) -> None:
    rng = np.random.default_rng(d)
    z = rng.uniform(0, 1, d)
    table = np.empty((1 << d, d))
    treeshap_tables.leaf_contributions(1.7, z, d, table)
    for pattern in range(1 << d):
        o = np.array([0.0 if (pattern >> j) & 1 else 1.0 for j in range(d)])
        for i in range(d):
            others = [j for j in range(d) if j != i]
            expected = 0.0
            for size in range(d):
                for subset in itertools.combinations(others, size):
                    inside = np.prod([o[j] for j in subset])
                    outside = np.prod([z[j] for j in others if j not in subset])
                    weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
                    expected += weight * 1.7 * (o[i] - z[i]) * inside * outside
            assert table[pattern, i] == pytest.approx(expected, abs=1e-15)


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


def test_wrong_shape_is_refused(shipped: FastModel) -> None:
    explainer = FastTreeShap(shipped.booster)
    with pytest.raises(ValueError, match="feature matrix"):
        explainer.contributions(np.zeros((1, 3)))
