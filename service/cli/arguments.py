"""Argument parsing shared by the subcommands: one reading of dates and numbers."""

from __future__ import annotations

import argparse
import re
from datetime import date
from pathlib import Path

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_iso_date(text: str) -> date:
    """A calendar date written exactly as YYYY-MM-DD; ValueError naming the problem."""
    # fromisoformat alone would also take '20240101' or '2024-W01-1'; we promise one form.
    if not _DATE.fullmatch(text):
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date ({exc})") from exc


def iso_date(text: str) -> date:
    """argparse ``type=`` for YYYY-MM-DD dates."""
    try:
        return parse_iso_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a positive integer, got 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def add_history_argument(
    parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, required: bool = True
) -> None:
    """``--data FILE``: a labelled history in the handbook schema."""
    parser.add_argument(
        "--data",
        required=required,
        type=Path,
        metavar="FILE",
        help="labelled history in the handbook schema (.csv or .csv.gz)",
    )
