"""`riskscore demo`: the shipped model on a period it never saw, with no downloaded data."""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from features.data import frame_from_pandas
from features.definitions import DEFAULT_FEATURES
from features.offline import compute_features
from features.simulator import SimulationConfig, simulate
from models.artifact_paths import default_artifact_dir
from models.artifacts import verify_artifact
from models.errors import ArtifactError
from models.fast import FastModel
from models.metrics import average_precision, card_precision_at_k, roc_auc
from models.train.build_default_artifact import build_default_artifact
from service.cli.errors import UserError

# A population and seed the shipped model was not trained on (it used seed 7).
DEMO_SIMULATION = SimulationConfig(
    customers=2000, terminals=4000, days=75, start=date(2025, 3, 1), seed=2025
)
# Scored period: the last two weeks, after 60 days that fill every feature window.
SCORED_DAYS = 14


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="score a fresh simulated history with the model and print its evaluation",
        description=(
            "End-to-end check on embedded defaults: verifies the model artifact (building the "
            "default one from simulated data if none is shipped), simulates a history with a "
            f"seed the model never saw, and scores its last {SCORED_DAYS} days: ROC AUC, "
            "average precision, Card Precision@100, and what the decision thresholds do."
        ),
    )
    parser.add_argument(
        "--model", type=Path, help="artifact directory (default: the model shipped with riskscore)"
    )
    parser.add_argument("--seed", type=int, default=DEMO_SIMULATION.seed, help="simulation seed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model_dir = args.model or _shipped_or_built()
    try:
        model = FastModel.load(model_dir)
    except ArtifactError as exc:
        raise UserError(str(exc)) from exc
    print(f"model {model.version} ({model.booster.num_trees()} trees) from {model_dir}")

    config = SimulationConfig(**{**DEMO_SIMULATION.__dict__, "seed": args.seed})
    history = frame_from_pandas(simulate(config, progress=True), source="simulated")
    with tqdm(total=len(DEFAULT_FEATURES), desc="features", unit="feature") as bar:
        x = compute_features(history, progress=bar.update)
    first_scored = np.datetime64(config.end - timedelta(days=SCORED_DAYS - 1))
    scored = history.day >= first_scored
    labels = history.require_labels()[scored]
    scores = model.predict_proba(x[scored])
    _print_table(history.day[scored], history.customer_id[scored], labels, scores, model)
    return 0


def _shipped_or_built() -> Path:
    target = default_artifact_dir()
    try:
        verify_artifact(target)
    except ArtifactError as exc:
        print(f"no usable shipped model ({exc}); building the default one from simulated data")
        build_default_artifact(target)
    return target


def action_table(actions: np.ndarray, labels: np.ndarray) -> list[str]:
    """Per action, the payments it took and the frauds among them: the share of all fraud
    that ended there (on the approve row, fraud let through) and the fraud rate of the
    action; then what was stopped and what let through, in words.

    >>> for line in action_table(np.array(["approve"] * 3 + ["decline"]), np.array([0, 0, 1, 1])):
    ...     print(line)
      action      share  payments  frauds  share of all fraud  fraud rate
      approve    75.00%         3       1               50.0%       0.333
      review      0.00%         0       0                0.0%           -
      decline    25.00%         1       1               50.0%       1.000
      fraud stopped (review or decline): 1 of 2 (50.0%); let through (approve): 1
    """
    frauds = int(labels.sum())
    lines = [
        f"  {'action':<9}{'share':>8}{'payments':>10}{'frauds':>8}"
        f"{'share of all fraud':>20}{'fraud rate':>12}"
    ]
    for action in ("approve", "review", "decline"):
        chosen = actions == action
        found = int(labels[chosen].sum())
        rate = f"{found / chosen.sum():.3f}" if chosen.any() else "-"
        lines.append(
            f"  {action:<9}{chosen.mean():>8.2%}{int(chosen.sum()):>10,}{found:>8,}"
            f"{found / max(frauds, 1):>20.1%}{rate:>12}"
        )
    missed = int(labels[actions == "approve"].sum())
    stopped = frauds - missed
    lines.append(
        f"  fraud stopped (review or decline): {stopped:,} of {frauds:,} "
        f"({stopped / max(frauds, 1):.1%}); let through (approve): {missed:,}"
    )
    return lines


def _print_table(
    days: np.ndarray, cards: np.ndarray, labels: np.ndarray, scores: np.ndarray, model: FastModel
) -> None:
    actions = np.array([model.thresholds.action(float(s)) for s in scores])
    frauds = int(labels.sum())
    print(f"\nscored {len(labels):,} payments over {SCORED_DAYS} days, {frauds:,} fraudulent")
    print(f"  ROC AUC              {roc_auc(labels, scores):.3f}")
    print(f"  average precision    {average_precision(labels, scores):.3f}")
    print(f"  card precision@100   {card_precision_at_k(days, cards, labels, scores):.3f}")
    print()
    print("\n".join(action_table(actions, labels)))
    t = model.thresholds
    print(f"\n  thresholds: review >= {t.review:.4f}, decline >= {t.decline:.4f}")
