"""`riskscore bench`: in-process benchmarks of the scoring core."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.registry import default_artifact_dir
from service.cli.arguments import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmark the scoring core in-process",
        description="In-process benchmarks; HTTP and Kafka load tests live in riskscore-loadtest.",
    )
    kinds = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    scorer = kinds.add_parser(
        "scorer",
        help="per-stage latency of the Scorer against plain Booster.predict",
        description=(
            "Scores a simulated stream one transaction at a time through the full Scorer "
            "(features, model, exact SHAP, reasons, durable SQLite audit write) and reports "
            "p50/p90/p99/max per stage, plus plain Booster.predict on the same rows and model."
        ),
    )
    scorer.add_argument("--count", type=positive_int, default=5000, help="transactions timed")
    scorer.add_argument("--model", type=Path, help="artifact directory (default: shipped)")
    scorer.add_argument("--seed", type=int, default=11, help="simulation seed")
    scorer.add_argument("--json", type=Path, help="also write the figures as JSON")
    scorer.set_defaults(run=run_scorer)
    explain = kinds.add_parser(
        "explain",
        help="fast exact TreeSHAP against pred_contrib and plain predict",
        description=(
            "On the shipped model and on a 500-tree, 63-leaf model trained on simulated data "
            "(about half a minute): per-row p50/p99 of Booster.predict, the compiled "
            "predictor, LightGBM's pred_contrib and the fast exact explainer, batch "
            "throughput, the largest difference between the explainers, table memory."
        ),
    )
    explain.add_argument("--calls", type=positive_int, default=2000, help="timed calls per row")
    explain.add_argument("--model", type=Path, help="artifact directory (default: shipped)")
    explain.add_argument("--json", type=Path, help="also write the figures as JSON")
    explain.set_defaults(run=run_explain)


def run_scorer(args: argparse.Namespace) -> int:
    from service.benchmarks.scorer_bench import measure
    from service.benchmarks.stats import table

    result = measure(args.model or default_artifact_dir(), args.count, seed=args.seed)
    print(f"model {result['model_version']}, {result['transactions']} transactions timed")
    print(table(result["stages"]))
    print(
        "decision / plain predict: "
        f"p50 {result['ratio_decision_to_predict_p50']:.1f}x, "
        f"p99 {result['ratio_decision_to_predict_p99']:.1f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from models.fast import FastModel
    from service.benchmarks.explain_bench import measure, table

    result = measure(FastModel.load(args.model or default_artifact_dir()), calls=args.calls)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0
