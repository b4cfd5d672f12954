"""`riskscore simulate`: write a synthetic labelled history in the handbook CSV schema."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import pandas as pd

from features.data import SCENARIO_COLUMN
from features.simulator import FraudScenario, SimulationConfig, simulate, write_csv

# `from service import cli` rather than `from service.cli import UserError`: the package
# imports this module before it defines UserError, so the name is looked up at run time.
from service import cli
from service.cli.arguments import parse_iso_date

_DEFAULTS = SimulationConfig()

DESCRIPTION = f"""\
Simulate card payments with labelled fraud and write them as a handbook-schema CSV
(TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TIME_SECONDS,
TX_TIME_DAYS, TX_FRAUD, TX_FRAUD_SCENARIO), ready for `riskscore features` and training.

Customers shop at terminals near home, mostly by day, some at night and on weekends.
Fraud scenarios (TX_FRAUD_SCENARIO):
  1  amount outlier: any payment over 220
  2  compromised terminal: all payments at it for 28 days
  3  leaked card: a third of the card's payments for 14 days, amount x5
  4  card testing: a leaked card's burst of 3-8 small payments (0.50-5.00) within
     minutes at a terminal the customer never uses
The fraud share is about 1 % (0.8 % with the defaults). The same options and seed
always give the same file.

Defaults: {_DEFAULTS.customers} customers, {_DEFAULTS.terminals} terminals, \
{_DEFAULTS.days} days from {_DEFAULTS.start.isoformat()}, seed {_DEFAULTS.seed}."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write a synthetic labelled transaction history (handbook CSV schema)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="output file, .csv or .csv.gz (gzip)"
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=_DEFAULTS.customers,
        metavar="N",
        help="number of customers (default: %(default)s)",
    )
    parser.add_argument(
        "--terminals",
        type=int,
        default=_DEFAULTS.terminals,
        metavar="M",
        help="number of terminals (default: %(default)s)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=_DEFAULTS.days,
        metavar="D",
        help="length of the period in days (default: %(default)s)",
    )
    parser.add_argument(
        "--start",
        default=_DEFAULTS.start.isoformat(),
        metavar="YYYY-MM-DD",
        help="first day of the period (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_DEFAULTS.seed,
        metavar="S",
        help="random seed, a non-negative integer (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    # Checked before simulating, so a typo costs a second rather than the whole run.
    out = _output_path(args.out)
    frame = simulate(config, progress=True)
    print(f"writing {len(frame):,} rows to {out} ...", file=sys.stderr)
    try:
        write_csv(frame, out)
    except OSError as exc:
        raise cli.UserError(f"cannot write {out}: {exc.strerror or exc}") from exc
    print(summary(frame, out))
    return 0


def summary(frame: pd.DataFrame, out: Path) -> str:
    """One line: rows, the fraud share overall and per scenario, and the file."""
    codes = frame[SCENARIO_COLUMN].to_numpy()
    total = max(len(codes), 1)
    shares = [
        f"{scenario.value} {scenario.name.lower().replace('_', ' ')} "
        f"{(codes == scenario).sum() / total:.2%}"
        for scenario in FraudScenario
        if scenario is not FraudScenario.GENUINE
    ]
    fraud = (codes != FraudScenario.GENUINE).sum() / total
    return f"{len(codes):,} rows, fraud {fraud:.2%} ({', '.join(shares)}) -> {out}"


def _config(args: argparse.Namespace) -> SimulationConfig:
    for flag in ("customers", "terminals", "days"):
        value = getattr(args, flag)
        if value < 1:
            raise cli.UserError(f"--{flag} must be a positive integer, got {value}")
    if args.seed < 0:
        raise cli.UserError(f"--seed must be a non-negative integer, got {args.seed}")
    try:
        return SimulationConfig(
            customers=args.customers,
            terminals=args.terminals,
            days=args.days,
            start=_parse_date(args.start),
            seed=args.seed,
        )
    except ValueError as exc:
        raise cli.UserError(str(exc)) from exc


def _parse_date(text: str) -> date:
    try:
        return parse_iso_date(text)
    except ValueError as exc:
        raise cli.UserError(f"--start: {exc}") from exc


def _output_path(text: str) -> Path:
    out = Path(text)
    if not out.name.lower().endswith((".csv", ".csv.gz")):
        raise cli.UserError(f"--out must end in .csv or .csv.gz, got {text!r}")
    if out.is_dir():
        raise cli.UserError(f"--out {text!r} is a directory")
    directory = out.parent
    if not directory.is_dir():
        raise cli.UserError(f"cannot write {text!r}: directory {str(directory)!r} does not exist")
    writable = os.access(out, os.W_OK) if out.exists() else os.access(directory, os.W_OK)
    if not writable:
        raise cli.UserError(f"cannot write {text!r}: permission denied")
    return out
