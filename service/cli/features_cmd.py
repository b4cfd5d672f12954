"""`riskscore features`: the offline feature matrix of a history, as CSV."""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from features.data import DataError, load_transactions
from features.definitions import DEFAULT_FEATURES
from features.offline import compute_features
from service.cli.errors import UserError

# Rows per CSV write: large enough to be fast, small enough for a live progress bar.
_WRITE_CHUNK = 100_000


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "features",
        help="compute every model feature for a transaction history",
        description=(
            "Compute the offline feature matrix of a handbook-schema history (.csv or .csv.gz) "
            "and write TRANSACTION_ID plus one column per feature, in the model's order. The 15 "
            "handbook features keep the handbook's column names. Labels (TX_FRAUD) feed only the "
            "delayed terminal-risk windows, as if each label were known once its 7-day delay "
            "has passed."
        ),
    )
    parser.add_argument("--data", required=True, type=Path, help="input history (.csv/.csv.gz)")
    parser.add_argument("--out", required=True, type=Path, help="output CSV (.csv/.csv.gz)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        history = load_transactions(args.data)
    except DataError as exc:
        raise UserError(str(exc)) from exc
    if not args.out.parent.is_dir():
        raise UserError(f"output directory does not exist: {args.out.parent}")
    started = time.perf_counter()
    with tqdm(total=len(DEFAULT_FEATURES), desc="features", unit="feature") as bar:
        matrix = compute_features(history, progress=bar.update)
    elapsed = time.perf_counter() - started
    _write(args.out, history.transaction_id, matrix)
    print(
        f"{len(history):,} rows x {matrix.shape[1]} features in {elapsed:.1f} s "
        f"({len(history) / max(elapsed, 1e-9):,.0f} rows/s) -> {args.out}"
    )
    return 0


def _write(path: Path, transaction_ids: np.ndarray, matrix: np.ndarray) -> None:
    frame = pd.DataFrame(matrix, columns=[d.name for d in DEFAULT_FEATURES])
    frame.insert(0, "TRANSACTION_ID", transaction_ids)
    opener = gzip.open if path.suffix == ".gz" else open
    with (
        tqdm(total=len(frame), desc="writing", unit="row", unit_scale=True) as bar,
        opener(path, "wt", newline="") as handle,
    ):
        for start in range(0, len(frame), _WRITE_CHUNK):
            chunk = frame.iloc[start : start + _WRITE_CHUNK]
            chunk.to_csv(handle, index=False, header=start == 0)
            bar.update(len(chunk))
