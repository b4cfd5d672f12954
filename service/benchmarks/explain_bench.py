"""Exact explanations against plain prediction, on the shipped model and a 500 x 63 one.

For each model, on real feature rows of a simulated history, all in one process: plain
``Booster.predict`` (one row), the compiled predictor, LightGBM's ``pred_contrib`` (the
reference exact TreeSHAP) and :class:`~explain.fast_treeshap.FastTreeShap`, one row at a
time (p50/p99 of many calls) and in batches of 64 and 512 rows; the largest difference
between the two explainers; table memory and load time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

import lightgbm as lgb
import numpy as np
from tqdm import tqdm

from explain.fast_treeshap import FastTreeShap
from features.data import frame_from_pandas
from features.offline import compute_features
from features.simulator import SimulationConfig, simulate
from models.fast import FastModel
from models.forest import CompiledPredictor

WIDE_TREES, WIDE_LEAVES = 500, 63


def _per_call_us(action: Callable[[], object], calls: int) -> np.ndarray:
    action()  # first call: compilation and caches are not what is measured
    out = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        action()
        out[i] = time.perf_counter() - started
    return out * 1e6


def simulated_rows(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a simulated history (for training and timing rows)."""
    config = SimulationConfig(
        customers=2000, terminals=4000, days=60, start=date(2025, 1, 1), seed=seed
    )
    history = frame_from_pandas(simulate(config, progress=True), source="simulated")
    return compute_features(history), history.require_labels()


def train_wide_model(x: np.ndarray, y: np.ndarray) -> lgb.Booster:
    """500 trees of 63 leaves, no early stopping: the large model of the comparison."""
    params = {
        "objective": "binary",
        "num_leaves": WIDE_LEAVES,
        "learning_rate": 0.05,
        "max_bin": 4095,
        "verbose": -1,
        "seed": 1,
        "deterministic": True,
    }
    with tqdm(total=WIDE_TREES, desc=f"training {WIDE_TREES}x{WIDE_LEAVES}", unit="tree") as bar:
        return lgb.train(
            params,
            lgb.Dataset(x, y),
            num_boost_round=WIDE_TREES,
            callbacks=[lambda env: bar.update(1)],
        )


def measure_model(booster: lgb.Booster, rows: np.ndarray, calls: int) -> dict[str, Any]:
    started = time.perf_counter()
    explainer = FastTreeShap(booster)
    load_s = time.perf_counter() - started
    predictor = CompiledPredictor(explainer.forest)
    one = rows[:1]
    sample = rows[: min(len(rows), calls)]
    contrib_calls = max(20, calls // 20)

    def cycle(fn: Callable[[np.ndarray], object], n: int) -> np.ndarray:
        it = iter(range(n))
        return _per_call_us(lambda: fn(sample[next(it) % len(sample)].reshape(1, -1)), n - 1)

    predict = cycle(lambda r: booster.predict(r, num_threads=1), calls)
    fast_predict = cycle(predictor.predict_raw, calls)
    contrib = cycle(lambda r: booster.predict(r, pred_contrib=True, num_threads=1), contrib_calls)
    fast = cycle(explainer.explain, calls)
    batches = {}
    for size in (64, 512):
        batch = rows[:size]
        seconds = np.median(_per_call_us(partial(explainer.explain, batch), 5)) / 1e6
        reference = partial(booster.predict, batch, pred_contrib=True, num_threads=1)
        ref_seconds = np.median(_per_call_us(reference, 2)) / 1e6
        batches[str(size)] = {
            "explainer_rows_per_s": size / seconds,
            "contrib_rows_per_s": size / ref_seconds,
        }
    check = rows[: min(len(rows), 2000)]
    diff = np.abs(explainer.contributions(check) - booster.predict(check, pred_contrib=True))
    del one
    p50 = float(np.median(predict))
    return {
        "trees": booster.num_trees(),
        "predict_p50_us": p50,
        "predict_p99_us": float(np.percentile(predict, 99)),
        "fast_predict_p50_us": float(np.median(fast_predict)),
        "fast_predict_p99_us": float(np.percentile(fast_predict, 99)),
        "contrib_p50_us": float(np.median(contrib)),
        "contrib_p99_us": float(np.percentile(contrib, 99)),
        "explainer_p50_us": float(np.median(fast)),
        "explainer_p99_us": float(np.percentile(fast, 99)),
        "explainer_batch_rows_per_s": batches["512"]["explainer_rows_per_s"],
        "batches": batches,
        "max_abs_diff": float(diff.max()),
        "explained_decision_over_predict": (float(np.median(fast_predict)) + float(np.median(fast)))
        / p50,
        "contrib_over_explainer": float(np.median(contrib)) / float(np.median(fast)),
        "tables_bytes": explainer.nbytes,
        "load_seconds": load_s,
    }


def measure(shipped: FastModel, calls: int = 2000) -> dict[str, Any]:
    x, y = simulated_rows()
    rows = x[-5000:]
    wide = train_wide_model(x[:-5000], y[:-5000])
    return {
        "models": {
            "shipped": measure_model(shipped.booster, rows, calls),
            f"{WIDE_TREES}x{WIDE_LEAVES}": measure_model(wide, rows, max(200, calls // 10)),
        }
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| model | trees | predict p50/p99 µs | compiled predict p50 µs | pred_contrib p50 µs "
        "| fast TreeSHAP p50/p99 µs | batch 64 / 512 rows/s | (predict+SHAP)/predict "
        "| pred_contrib/fast | max abs diff | tables MB | load s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in result["models"].items():
        b = m["batches"]
        lines.append(
            f"| {name} | {m['trees']} | {m['predict_p50_us']:.0f} / {m['predict_p99_us']:.0f} "
            f"| {m['fast_predict_p50_us']:.1f} | {m['contrib_p50_us']:.0f} "
            f"| {m['explainer_p50_us']:.0f} / {m['explainer_p99_us']:.0f} "
            f"| {b['64']['explainer_rows_per_s']:,.0f} / {b['512']['explainer_rows_per_s']:,.0f} "
            f"| {m['explained_decision_over_predict']:.2f}x "
            f"| {m['contrib_over_explainer']:.1f}x | {m['max_abs_diff']:.1e} "
            f"| {m['tables_bytes'] / 1e6:.1f} | {m['load_seconds']:.2f} |"
        )
    return "\n".join(lines)
