"""Fits the fast-path LightGBM booster: the one training routine every caller uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightgbm as lgb
import numpy as np

from models.config import FastModelConfig

DEFAULT_CONFIG = FastModelConfig()


def fit_booster(
    x_train: np.ndarray,
    y_train: np.ndarray,
    feature_names: Sequence[str],
    config: FastModelConfig = DEFAULT_CONFIG,
    x_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    callbacks: Sequence[Callable[[lgb.callback.CallbackEnv], None]] = (),
) -> lgb.Booster:
    """Train on (x_train, y_train); with a validation set, stop early on its AP.

    ``callbacks`` are LightGBM callbacks (e.g. a per-tree progress bar). Without a
    validation set (or one holding no fraud, where AP is undefined) the full
    ``config.num_trees`` are grown.
    """
    names = list(feature_names)
    train_set = lgb.Dataset(x_train, label=y_train, feature_name=names, free_raw_data=True)
    callbacks = list(callbacks)
    valid_sets = []
    if x_valid is not None and y_valid is not None and len(y_valid) and y_valid.any():
        valid_sets = [lgb.Dataset(x_valid, label=y_valid, reference=train_set, feature_name=names)]
        callbacks.append(lgb.early_stopping(config.early_stopping_rounds, verbose=False))
    booster = lgb.train(
        config.lightgbm_params(),
        train_set,
        num_boost_round=config.num_trees,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )
    if valid_sets and booster.best_iteration > 0:
        # Keep only the trees early stopping chose: serving and SHAP pay for every tree.
        booster = lgb.Booster(
            model_str=booster.model_to_string(num_iteration=booster.best_iteration)
        )
    return booster
