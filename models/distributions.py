"""Feature distributions of a training window, and how far a later period has drifted from them.

The manifest keeps, per feature, the cut points of its training-window deciles and the
share of rows in each bin (plus the share of missing values). A later period is binned with
the same cut points, so the two are compared bin by bin with the population stability
index (PSI): ``sum((p - q) * ln(p / q))``. Rule of thumb: below 0.1 stable, 0.1-0.25
shifting, above 0.25 drifted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_BINS = 10
# A drift flag above this PSI: the conventional "significant shift" level.
PSI_ALERT = 0.25
# Empty bins would make PSI infinite; a share this small stands in for zero on both sides.
_FLOOR = 1e-4


class FeatureDistribution(BaseModel):
    """One feature over the training window: bin ``i`` holds values in
    ``(edges[i-1], edges[i]]``; the first bin is open below and the last open above."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edges: list[float] = Field(description="Ascending interior cut points (training quantiles).")
    shares: list[float] = Field(description="Share of finite training values per bin.")
    missing: float = Field(ge=0.0, le=1.0, description="Share of non-finite (missing) values.")

    @model_validator(mode="after")
    def _consistent(self) -> FeatureDistribution:
        if len(self.shares) != len(self.edges) + 1:
            raise ValueError("shares must hold one more entry than edges")
        if any(b <= a for a, b in itertools.pairwise(self.edges)):
            raise ValueError("edges must be strictly ascending")
        return self

    def bin_counts(self, values: np.ndarray) -> tuple[np.ndarray, int]:
        """Counts of finite ``values`` per bin, and the number of non-finite ones."""
        finite = np.isfinite(values)
        index = np.searchsorted(np.asarray(self.edges), values[finite], side="left")
        return np.bincount(index, minlength=len(self.shares)), int((~finite).sum())


def describe(values: np.ndarray, bins: int = DEFAULT_BINS) -> FeatureDistribution:
    """The training distribution of one feature column, cut at its quantiles.

    >>> d = describe(np.array([0.0, 0.0, 1.0, 1.0]))
    >>> d.edges, d.shares, d.missing
    ([0.0], [0.5, 0.5], 0.0)
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return FeatureDistribution(edges=[], shares=[0.0], missing=1.0 if values.size else 0.0)
    # Observed values as cut points (not interpolations between them): a tied value never
    # straddles two bins.
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf")
    # Repeated quantiles (binary or heavily tied features) would make empty bins; the top
    # value as an edge would leave the last bin empty by construction.
    edges = [float(e) for e in np.unique(quantiles) if e < finite.max()]
    probe = FeatureDistribution(edges=edges, shares=[0.0] * (len(edges) + 1), missing=0.0)
    counts, _ = probe.bin_counts(finite)
    return FeatureDistribution(
        edges=edges,
        # Rounded: the manifest stays readable and small; PSI needs no more digits.
        shares=[round(float(c) / finite.size, 6) for c in counts],
        missing=round(1.0 - finite.size / values.size, 6),
    )


def describe_columns(
    x: np.ndarray, names: Sequence[str], bins: int = DEFAULT_BINS
) -> dict[str, FeatureDistribution]:
    """:func:`describe` for every column of a feature matrix, keyed by feature name."""
    return {name: describe(x[:, i], bins) for i, name in enumerate(names)}


def population_stability_index(
    expected: FeatureDistribution, counts: Sequence[int], missing: int
) -> float | None:
    """PSI of observed bin ``counts`` (and ``missing`` count) against ``expected``; None
    when nothing was observed.

    >>> d = FeatureDistribution(edges=[0.0], shares=[0.5, 0.5], missing=0.0)
    >>> population_stability_index(d, [50, 50], 0)
    0.0
    >>> round(population_stability_index(d, [90, 10], 0), 3)
    0.879
    """
    total = sum(counts) + missing
    if total == 0:
        return None
    expected_shares = [*expected.shares, expected.missing]
    observed = [*(c / total for c in counts), missing / total]
    psi = 0.0
    for p_raw, q_raw in zip(observed, expected_shares, strict=True):
        if p_raw == 0.0 and q_raw == 0.0:
            continue
        p, q = max(p_raw, _FLOOR), max(q_raw, _FLOOR)
        psi += (p - q) * math.log(p / q)
    return psi
