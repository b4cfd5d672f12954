"""Exact SHAP contributions for the fast model, behind a one-method interface.

The reference is LightGBM's own exact TreeSHAP (``pred_contrib``): for each row it returns
one contribution per feature and, last, the base value (the expected raw score), and the
row sums to the model's raw score (log-odds). The service's default is
:class:`~explain.fast_treeshap.FastTreeShap`, equal to it to 1e-9 at a fraction of the
cost; both satisfy :class:`Explainer`.
"""

from __future__ import annotations

from typing import Protocol

import lightgbm as lgb
import numpy as np

from explain.fast_treeshap import FastTreeShap
from models.fast import FastModel


class Explainer(Protocol):
    """Computes exact SHAP values for rows of a feature matrix."""

    @property
    def method(self) -> str:
        """A short name recorded with every explanation, e.g. ``"treeshap-lightgbm"``."""
        ...

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """``(n, k + 1)``: the k feature contributions, then the base value, per row."""
        ...


EXPLAINERS = ("fast", "lightgbm")


def make_explainer(kind: str, model: FastModel) -> Explainer:
    """``fast``: :class:`~explain.fast_treeshap.FastTreeShap` (the default);
    ``lightgbm``: LightGBM's own ``pred_contrib``, the reference. Both are exact."""
    if kind == "fast":
        return FastTreeShap(model.forest)
    if kind == "lightgbm":
        return LightGBMTreeShap(model.booster)
    raise ValueError(f"unknown explainer {kind!r}; choose one of {', '.join(EXPLAINERS)}")


class LightGBMTreeShap:
    """LightGBM's built-in exact TreeSHAP (``Booster.predict(pred_contrib=True)``)."""

    method = "treeshap-lightgbm"

    def __init__(self, booster: lgb.Booster, num_threads: int = 1) -> None:
        self._booster = booster
        self._num_threads = num_threads
        self._num_features = booster.num_feature()

    def contributions(self, x: np.ndarray) -> np.ndarray:
        array = np.asarray(x, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != self._num_features:
            raise ValueError(
                f"expected an (n, {self._num_features}) feature matrix, got shape {array.shape}"
            )
        out = self._booster.predict(array, pred_contrib=True, num_threads=self._num_threads)
        return np.asarray(out, dtype=np.float64)
