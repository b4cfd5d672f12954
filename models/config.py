"""The fast model's shape and training settings: one default, chosen on validation folds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FastModelConfig:
    """LightGBM settings for the fast path.

    The shape is capped on purpose: exact SHAP runs for every decision and its cost grows
    with trees x leaves x depth^2, so depth buys accuracy at a latency price (see README).
    """

    # A cap; early stopping usually keeps fewer. On the validation folds 300 gained
    # +0.0003 AP over 200 while exact SHAP per decision costs ~1.5x
    # (service.benchmarks.shape_tradeoff).
    num_trees: int = 200
    max_depth: int = 4
    num_leaves: int = 15
    learning_rate: float = 0.05
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 30
    # The last days of the training window held out for early stopping. Two handbook days
    # hold ~110 frauds; one day's ~55 made the chosen tree count swing from 27 to 296.
    validation_days: int = 2
    # Histogram bins per feature. LightGBM's default 255 equal-count bins lump the top
    # ~0.4 % of amounts into one bin, hiding a sharp amount rule (the handbook's "> 220"):
    # validation AP 0.695 -> 0.724. Finer bins cost training time only; trees keep exact
    # thresholds, so serving and SHAP are unaffected.
    max_bin: int = 4095
    seed: int = 42
    # One thread: on a busy 2-core machine LightGBM's spinning threads made fits 15x slower.
    num_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def lightgbm_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": "binary",
            "metric": "average_precision",
            "max_depth": self.max_depth,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "num_threads": self.num_threads,
            # Same data, same seed => same trees: artifacts are reproducible.
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        params.update(self.extra)
        return params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
