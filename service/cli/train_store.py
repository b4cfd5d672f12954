"""`riskscore train --from-store`: retrain the fast model on the audit store's decisions,
the feature vectors exactly as decided, with the labels received."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from explain.audit.store import AuditStoreError
from features.definitions import DEFAULT_FEATURES, feature_names
from models.artifacts import Manifest
from models.config import FastModelConfig
from models.errors import ArtifactError
from models.metrics import CARD_PRECISION_K
from models.train.fast_trainer import TrainingDataError
from models.train.label_policy import DEFAULT_LABEL_DELAY_DAYS
from models.train.store_trainer import (
    LabelPolicy,
    Windows,
    day_bounds_ms,
    train_from_store,
)
from service.cli.arguments import iso_date, non_negative_int
from service.cli.audit_cmd import audit_file_option, open_store
from service.cli.errors import UserError, load_settings
from service.training_set import read_window

HELP = f"""\
From the audit store (--from-store): the decisions of --train-from..--train-to, their
feature values exactly as decided (nothing recomputed: no training/serving skew), each with
the latest label known by --as-of (default: now). An unlabelled payment is taken as
legitimate once --label-delay-days (default {DEFAULT_LABEL_DELAY_DAYS}) have passed since it;
a more recent one could not have its label yet and is left out, counted. A declined payment
without a label is left out, counted: it never completed, so no chargeback could come.
Validation: the window's last --validation-days, or --validate-from..--validate-to (after
the training days), with the champion's scores as recorded on the same payments beside the
new model's. The artifact is a model version: copy DIR into the model directory and
`riskscore models promote VERSION`. The store is RISKSCORE_AUDIT_URL's PostgreSQL, else the
SQLite file in RISKSCORE_DATA_DIR (--audit-file names another).

  riskscore train --from-store --train-from 2024-04-01 --train-to 2024-04-28 \\
      --as-of 2024-05-06 --out models/fast-candidate"""


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        type=_moment,
        metavar="YYYY-MM-DD[THH:MM]",
        help="labels known at this time (UTC) are used, later ones are not (default: now)",
    )
    parser.add_argument(
        "--label-delay-days",
        type=non_negative_int,
        default=DEFAULT_LABEL_DELAY_DAYS,
        metavar="D",
        help="days after which an unlabelled payment counts as legitimate (default: %(default)s)",
    )
    for flag, text in (("--validate-from", "first"), ("--validate-to", "last")):
        parser.add_argument(
            flag,
            type=iso_date,
            metavar="YYYY-MM-DD",
            help=f"{text} day of a validation slice after the training days (store only)",
        )
    audit_file_option(parser)


def run_from_store(args: argparse.Namespace, config: FastModelConfig) -> Manifest:
    as_of = args.as_of or datetime.now(UTC)
    policy = LabelPolicy(as_of=as_of, delay=timedelta(days=args.label_delay_days))
    try:
        windows = Windows.of(
            args.train_from,
            args.train_to,
            config.validation_days,
            args.validate_from,
            args.validate_to,
        )
    except TrainingDataError as exc:
        raise UserError(str(exc)) from exc
    start_ms, end_ms = day_bounds_ms(windows.first, windows.last)
    if policy.as_of_ms < end_ms + int(policy.delay.total_seconds() * 1000):
        print(
            f"note: --as-of {policy.as_of:%Y-%m-%d %H:%M} is within the "
            f"{args.label_delay_days}-day label delay of the validation days: their unlabelled "
            "payments are left out, so validation leans on the labelled ones",
            file=sys.stderr,
        )
    store = open_store(load_settings(), args.audit_file)
    try:
        window = read_window(
            store, start_ms, end_ms, policy.as_of_ms, feature_names(DEFAULT_FEATURES)
        )
        return train_from_store(window, windows, policy, args.out, config)
    except (TrainingDataError, ArtifactError, AuditStoreError) as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(f"cannot write the artifact to {args.out}: {exc}") from exc
    finally:
        store.close()


def store_summary(manifest: Manifest, out: Path) -> str:
    """What the store held, what was left out and why, and the two models side by side."""
    rows, m = manifest.rows, manifest.metrics
    valid = manifest.validation_window
    k = CARD_PRECISION_K
    champions = ", ".join(manifest.config.get("champion_versions", [])) or "-"
    lines = [
        f"model     {manifest.model_version} ({manifest.num_trees} trees, "
        f"{len(manifest.feature_names)} features), from the audit store",
        f"window    {manifest.training_window.start}..{manifest.training_window.end}: "
        f"{rows['window_payments']:,} payments, {rows['labelled']:,} labelled, "
        f"{rows['unlabelled']:,} without a label "
        f"(labels known by {manifest.config['labels_known_by']})",
        f"excluded  {rows['declined_unlabelled_excluded']:,} declined without a label "
        "(no chargeback can come: excluded from training and validation, counted)",
        f"excluded  {rows['unlabelled_within_delay_excluded']:,} unlabelled within the "
        f"{manifest.config['label_delay_days']:g}-day label delay (label not known yet)",
        f"legit     {rows['unlabelled_taken_legitimate']:,} unlabelled past the delay, "
        "taken as legitimate",
        f"trained   {rows['train']:,} rows ({rows['train_fraud']:,} fraud)",
        f"validated {valid.start}..{valid.end}, " if valid else "validated -, ",
    ]
    lines[-1] += f"{rows['validation']:,} rows ({rows['validation_fraud']:,} fraud)"
    lines.append(f"{'':10}{'AP':>8}{'ROC AUC':>9}{f'CP@{k}':>8}")
    for name, prefix in (("new", "validation"), ("champion", "champion_validation")):
        lines.append(
            f"{name:<10}{_fmt(m.get(f'{prefix}_average_precision')):>8}"
            f"{_fmt(m.get(f'{prefix}_roc_auc')):>9}{_fmt(m.get(f'{prefix}_cp_at_{k}')):>8}"
        )
    lines.append(f"champion  scores as recorded by {champions}")
    t = manifest.thresholds
    lines.append(f"review    score >= {t.review:.4f}")
    lines.append(f"decline   score >= {t.decline:.4f}")
    lines.append(f"artifact  {out} (a model version: riskscore models promote VERSION)")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {text!r}"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
