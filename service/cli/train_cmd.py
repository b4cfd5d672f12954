"""`riskscore train`: train the fast model on a date window and write a verified artifact."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from features.data import DataError, TransactionFrame, load_transactions
from models.artifacts import Manifest
from models.config import FastModelConfig
from models.errors import ArtifactError
from models.train.fast_trainer import WARMUP_DAYS, TrainingDataError, train_fast_model
from service.cli.arguments import (
    add_history_argument,
    iso_date,
    non_negative_int,
    positive_float,
    positive_int,
)
from service.cli.errors import UserError
from service.cli.train_store import HELP as STORE_HELP
from service.cli.train_store import add_store_options, run_from_store, store_summary

_DEFAULTS = FastModelConfig()

DESCRIPTION = f"""\
Train the fast-path LightGBM model on the transactions of a calendar window and write
an artifact directory: model.txt (LightGBM text) and manifest.json (version, features in
order, training window, SHA-256 of the data and of model.txt, validation metrics and
decision thresholds). The service refuses an artifact whose checksums do not match.

Features are computed from the whole history before the window, so leave at least
{WARMUP_DAYS} days of data before --train-from (30-day windows plus the 7-day label delay).
The last --validation-days days of the window are held out: early stopping, the reported
average precision / ROC AUC and the thresholds come from them.

Thresholds: decline = lowest score whose validation precision is >= 0.9 (with at least
5 frauds); review = the next-riskiest band below it, at most 2 % of validation traffic.

{STORE_HELP}

Example:
  riskscore simulate --out history.csv.gz --days 120
  riskscore train --data history.csv.gz --train-from 2024-02-07 --train-to 2024-04-29 \\
      --out artifacts/fast"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the fast LightGBM model and write a checksummed artifact",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    add_history_argument(source, required=False)
    source.add_argument(
        "--from-store",
        action="store_true",
        help="train on the audit store's decisions as decided, with the labels received",
    )
    parser.add_argument(
        "--train-from",
        required=True,
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="first calendar day of the training window",
    )
    parser.add_argument(
        "--train-to",
        required=True,
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="last calendar day of the training window (inclusive)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="artifact directory to write"
    )
    _int_option(
        parser, "--num-trees", _DEFAULTS.num_trees, "most trees; early stopping may keep fewer"
    )
    _int_option(parser, "--max-depth", _DEFAULTS.max_depth, "maximum depth of a tree")
    _int_option(parser, "--num-leaves", _DEFAULTS.num_leaves, "maximum leaves of a tree")
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=_DEFAULTS.learning_rate,
        metavar="R",
        help="shrinkage per tree (default: %(default)s)",
    )
    _int_option(
        parser,
        "--validation-days",
        _DEFAULTS.validation_days,
        "last days of the window held out for early stopping, metrics and thresholds",
    )
    _int_option(
        parser,
        "--threads",
        _DEFAULTS.num_threads,
        "LightGBM training threads; on a busy machine 1 can be much faster than more",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=_DEFAULTS.seed,
        metavar="S",
        help="random seed; same data and options give the same model (default: %(default)s)",
    )
    add_store_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = FastModelConfig(
        num_trees=args.num_trees,
        max_depth=args.max_depth,
        num_leaves=args.num_leaves,
        learning_rate=args.learning_rate,
        validation_days=args.validation_days,
        seed=args.seed,
        num_threads=args.threads,
    )
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {str(args.out)!r} exists and is not a directory")
    if args.from_store:
        print(store_summary(run_from_store(args, config), args.out))
        return 0
    store_only = [
        flag
        for flag, value in (
            ("--as-of", args.as_of),
            ("--validate-from", args.validate_from),
            ("--validate-to", args.validate_to),
            ("--audit-file", args.audit_file),
        )
        if value is not None
    ]
    if store_only:
        raise UserError(f"{', '.join(store_only)}: for --from-store only")
    try:
        history = load_transactions(args.data)
        _warn_short_warmup(history, args.train_from)
        manifest = train_fast_model(
            history, args.train_from, args.train_to, args.out, config, data_path=args.data
        )
    except (DataError, TrainingDataError, ArtifactError) as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(f"cannot write the artifact to {args.out}: {exc}") from exc
    print(summary(manifest, args.out))
    return 0


def _warn_short_warmup(history: TransactionFrame, train_from: date) -> None:
    if len(history) == 0:
        return  # the trainer reports the empty history
    first = date.fromisoformat(str(history.day.min()))
    if (train_from - first).days < WARMUP_DAYS:
        print(
            f"note: the data starts {first}, less than {WARMUP_DAYS} days before --train-from "
            f"{train_from}; the first training days see windows that are not yet full",
            file=sys.stderr,
        )


def summary(manifest: Manifest, out: Path) -> str:
    """What was trained, how well it validates, and where it went."""
    metrics = manifest.metrics
    t = manifest.thresholds
    window = manifest.training_window
    valid = manifest.validation_window
    lines = [
        f"model     {manifest.model_version} ({manifest.num_trees} trees, "
        f"{len(manifest.feature_names)} features)",
        f"trained   {window.start}..{window.end}, "
        f"{manifest.rows['train']:,} rows ({manifest.rows['train_fraud']:,} fraud)",
        f"validated {valid.start}..{valid.end}, " if valid else "validated -, ",
    ]
    lines[-1] += (
        f"{manifest.rows['validation']:,} rows ({manifest.rows['validation_fraud']:,} fraud): "
        f"AP {_fmt(metrics.get('validation_average_precision'))}, "
        f"ROC AUC {_fmt(metrics.get('validation_roc_auc'))}"
    )
    lines.append(f"review    score >= {t.review:.4f}")
    lines.append(f"decline   score >= {t.decline:.4f}")
    if t.rule.fallback:
        lines.append(f"note      {t.rule.fallback}")
    lines.append(f"artifact  {out}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _int_option(parser: argparse.ArgumentParser, flag: str, default: int, text: str) -> None:
    parser.add_argument(
        flag,
        type=positive_int,
        default=default,
        metavar="N",
        help=f"{text} (default: %(default)s)",
    )
