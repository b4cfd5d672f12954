"""Training-window feature distributions and the drift index computed against them."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from models.artifact_paths import default_artifact_dir
from models.artifacts import verify_artifact
from models.distributions import (
    FeatureDistribution,
    describe,
    describe_columns,
    population_stability_index,
)


def test_deciles_of_a_continuous_feature_hold_a_tenth_each() -> None:
    values = np.random.default_rng(3).normal(size=10_000)

    distribution = describe(values)

    assert len(distribution.edges) == 9
    assert distribution.shares == pytest.approx([0.1] * 10, abs=1e-3)
    assert distribution.missing == 0.0


def test_tied_and_missing_values_get_no_empty_bins() -> None:
    values = np.array([0.0] * 70 + [1.0] * 20 + [np.nan] * 10)

    distribution = describe(values)

    assert distribution.edges == [0.0]
    assert distribution.shares == pytest.approx([70 / 90, 20 / 90], abs=1e-6)
    assert distribution.missing == pytest.approx(0.1)


def test_the_same_population_has_no_drift_and_a_shifted_one_has() -> None:
    rng = np.random.default_rng(5)
    reference = describe(rng.normal(size=20_000))

    same, same_missing = reference.bin_counts(rng.normal(size=20_000))
    shifted, shifted_missing = reference.bin_counts(rng.normal(loc=1.0, size=20_000))

    assert population_stability_index(reference, list(same), same_missing) < 0.01
    assert population_stability_index(reference, list(shifted), shifted_missing) > 0.25


def test_nothing_observed_has_no_index() -> None:
    reference = describe(np.arange(100.0))

    assert population_stability_index(reference, [0] * len(reference.shares), 0) is None


def test_inconsistent_bins_are_refused() -> None:
    with pytest.raises(ValidationError, match="one more entry"):
        FeatureDistribution(edges=[1.0], shares=[1.0], missing=0.0)
    with pytest.raises(ValidationError, match="ascending"):
        FeatureDistribution(edges=[2.0, 1.0], shares=[0.3, 0.3, 0.4], missing=0.0)


def test_columns_are_described_by_name() -> None:
    x = np.column_stack([np.arange(50.0), np.ones(50)])

    described = describe_columns(x, ["a", "b"])

    assert list(described) == ["a", "b"]
    assert described["b"].edges == []
    assert described["b"].shares == [1.0]


def test_the_shipped_artifact_carries_every_features_distribution() -> None:
    manifest = verify_artifact(default_artifact_dir())

    assert manifest.feature_distributions is not None
    assert list(manifest.feature_distributions) == manifest.feature_names
    for distribution in manifest.feature_distributions.values():
        assert sum(distribution.shares) + distribution.missing == pytest.approx(1.0, abs=1e-4)
