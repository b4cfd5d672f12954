"""Accuracy against per-decision cost for a few fast-model shapes: informs the default.

Every decision pays for a prediction and an exact TreeSHAP explanation (LightGBM's
``pred_contrib``), whose cost grows with trees x leaves x depth^2. For each shape this
runs the handbook validation protocol (mean AP over its folds) and times single-row
``predict`` and ``pred_contrib`` calls on one thread with the most recent fold's model,
on rows of that fold's assessment week -- the way the service scores one payment.

    python -m service.benchmarks.shape_tradeoff --data FILE [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from features.data import DataError, load_transactions
from models.config import FastModelConfig
from models.evaluation import (
    HANDBOOK_VALIDATION,
    CoverageError,
    Fold,
    FoldResult,
    PreparedHistory,
    run_fold,
)
from models.evaluation import prepare as prepare_history

# Rows timed per shape: enough for a stable median on a busy machine.
TIMED_ROWS = 1000
_WARMUP_CALLS = 50


@dataclass(frozen=True)
class Shape:
    """Tree count and size; ``max_depth = -1`` lets leaf-wise growth go as deep as it likes."""

    name: str
    num_trees: int
    max_depth: int
    num_leaves: int

    def config(self, base: FastModelConfig) -> FastModelConfig:
        return replace(
            base, num_trees=self.num_trees, max_depth=self.max_depth, num_leaves=self.num_leaves
        )


SHAPES: tuple[Shape, ...] = (
    Shape("100 x depth 3 (7 leaves)", 100, 3, 7),
    Shape("200 x depth 4 (15 leaves)", 200, 4, 15),
    Shape("300 x depth 4 (15 leaves)", 300, 4, 15),
    Shape("300 x depth 5 (31 leaves)", 300, 5, 31),
    Shape("200 x 31 leaves, any depth", 200, -1, 31),
    Shape("500 x 63 leaves, any depth", 500, -1, 63),
)


@dataclass(frozen=True)
class ShapeResult:
    shape: Shape
    trees: tuple[int, ...]  # grown per fold (early stopping may stop before num_trees)
    ap: float  # mean over the validation folds
    predict_us: float  # p50 of one single-row predict call
    contrib_us: float  # p50 of one single-row pred_contrib call
    timed_trees: int  # trees of the model that was timed
    timed_depth: int  # deepest leaf of the model that was timed

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape.name,
            "num_trees": self.shape.num_trees,
            "max_depth": self.shape.max_depth,
            "num_leaves": self.shape.num_leaves,
            "trees_grown": list(self.trees),
            "validation_ap": self.ap,
            "predict_us_p50": self.predict_us,
            "pred_contrib_us_p50": self.contrib_us,
            "timed_model_trees": self.timed_trees,
            "timed_model_max_depth": self.timed_depth,
        }


def measure_shape(
    prepared: PreparedHistory, shape: Shape, base: FastModelConfig, rows: int = TIMED_ROWS
) -> ShapeResult:
    """Validation AP of ``shape`` and the single-row cost of its most recent fold's model."""
    config = shape.config(base)
    results: list[FoldResult] = []
    timed: lgb.Booster | None = None
    folds = sorted(HANDBOOK_VALIDATION.folds(), key=lambda f: f.start, reverse=True)
    for fold in folds:
        result, booster = run_fold(prepared, fold, config)
        results.append(result)
        if timed is None:
            timed = booster
    assert timed is not None
    sample = _assessment_rows(prepared, folds[0], rows)
    return ShapeResult(
        shape=shape,
        trees=tuple(r.trees for r in results),
        ap=float(np.mean([r.ap for r in results])),
        predict_us=single_row_us(timed, sample, contrib=False),
        contrib_us=single_row_us(timed, sample, contrib=True),
        timed_trees=timed.num_trees(),
        timed_depth=_max_depth(timed),
    )


def single_row_us(booster: lgb.Booster, rows: np.ndarray, contrib: bool) -> float:
    """Median microseconds of one ``predict`` call on a single row, one thread."""
    calls = [rows[i : i + 1] for i in range(len(rows))]
    for row in calls[:_WARMUP_CALLS]:
        booster.predict(row, pred_contrib=contrib, num_threads=1)
    elapsed = np.empty(len(calls), dtype=np.float64)
    for i, row in enumerate(calls):
        start = time.perf_counter_ns()
        booster.predict(row, pred_contrib=contrib, num_threads=1)
        elapsed[i] = time.perf_counter_ns() - start
    return float(np.median(elapsed) / 1000.0)


def _assessment_rows(prepared: PreparedHistory, fold: Fold, count: int) -> np.ndarray:
    days = prepared.days
    first = np.datetime64(fold.assessment_first, "D")
    last = np.datetime64(fold.assessment_last, "D")
    week = np.flatnonzero((days >= first) & (days <= last))
    # Spread over the week rather than its first hour, so amounts and histories vary.
    picked = week[np.linspace(0, len(week) - 1, num=min(count, len(week))).astype(np.int64)]
    return np.ascontiguousarray(prepared.features[picked])


def _max_depth(booster: lgb.Booster) -> int:
    def depth(node: dict[str, Any]) -> int:
        if "leaf_index" in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    trees = booster.dump_model()["tree_info"]
    return max((depth(tree["tree_structure"]) for tree in trees), default=0)


def format_table(results: Sequence[ShapeResult]) -> str:
    header = (
        f"{'shape':<30}{'trees grown (per fold)':<26}{'AP':>7}"
        f"{'predict µs':>13}{'pred_contrib µs':>17}{'timed model':>15}"
    )
    lines = [header]
    for r in results:
        grown = "/".join(str(t) for t in r.trees)
        model = f"{r.timed_trees}t d{r.timed_depth}"
        lines.append(
            f"{r.shape.name:<30}{grown:<26}{r.ap:>7.3f}"
            f"{r.predict_us:>13.1f}{r.contrib_us:>17.1f}{model:>15}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.shape_tradeoff",
        description=(
            "For a few LightGBM shapes: mean average precision over the handbook validation "
            "folds, and p50 single-row predict / exact-SHAP (pred_contrib) latency on one "
            "thread. Other settings are the default FastModelConfig's."
        ),
    )
    parser.add_argument("--data", required=True, type=Path, metavar="FILE", help="labelled history")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    base = FastModelConfig()
    try:
        history = load_transactions(args.data)
        prepared = prepare_history(history, HANDBOOK_VALIDATION)
    except (DataError, CoverageError) as exc:
        print(f"shape_tradeoff: error: {exc}", file=sys.stderr)
        return 2
    results = []
    for shape in SHAPES:
        print(f"measuring {shape.name} ...", file=sys.stderr, flush=True)
        results.append(measure_shape(prepared, shape, base))
    print(format_table(results))
    if args.json is not None:
        payload = {
            "protocol": HANDBOOK_VALIDATION.name,
            "timed_rows": TIMED_ROWS,
            "base_config": base.to_dict(),
            "shapes": [r.to_json() for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
