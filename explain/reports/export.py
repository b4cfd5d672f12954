"""Decision exports: one row per decision, as CSV or JSON Lines, produced line by line.

Rows carry what a reviewer needs beside the model's full reasoning: score, action, stage,
fallback, model version, the top reasons, and every feature's SHAP value as a JSON
object. Nothing is added that the decision record does not hold (no card data exists).

CSV is opened by reviewers in spreadsheets, which run a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula (OWASP "CSV injection"; tab and carriage return start one too in
some of them). Text cells that start so get a leading ``'``, which spreadsheets show as
text; numbers stay numbers (a negative ``base_value`` is written as it is). JSON Lines is
read by programs, not spreadsheets, and is written unchanged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

from explain.records import DecisionRecord

ExportFormat = Literal["csv", "jsonl"]
FORMATS: Final[tuple[ExportFormat, ...]] = ("csv", "jsonl")
CONTENT_TYPES: Final[dict[ExportFormat, str]] = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
}

COLUMNS: Final[tuple[str, ...]] = (
    "transaction_id",
    "timestamp",
    "decided_at",
    "customer_id",
    "terminal_id",
    "amount",
    "currency",
    "score",
    "action",
    "stage",
    "fallback",
    "fallback_reason",
    "model_version",
    "rules_version",
    "review_threshold",
    "decline_threshold",
    "top_reasons",
    "base_value",
    "raw_score",
    "shap",
    "latency_ms",
)


def export_row(record: DecisionRecord) -> dict[str, Any]:
    """The flat row of one decision; ``top_reasons`` and ``shap`` are JSON values."""
    tx = record.transaction
    return {
        "transaction_id": tx.transaction_id,
        "timestamp": tx.timestamp.isoformat(),
        "decided_at": record.decided_at.isoformat(),
        "customer_id": tx.customer_id,
        "terminal_id": tx.terminal_id,
        "amount": tx.amount,
        "currency": tx.currency,
        "score": record.score,
        "action": record.action,
        "stage": record.stage,
        "fallback": record.fallback,
        "fallback_reason": record.fallback_reason,
        "model_version": record.model_version,
        "rules_version": record.rules_version,
        "review_threshold": record.thresholds.review,
        "decline_threshold": record.thresholds.decline,
        "top_reasons": [reason.code for reason in record.reasons],
        "base_value": record.explanation.base_value,
        "raw_score": record.explanation.raw_score,
        "shap": record.explanation.shap(),
        "latency_ms": record.latency_ms,
    }


# What makes a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_STARTS: Final[tuple[str, ...]] = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A text cell a spreadsheet shows as text, never runs.

    >>> neutralise("=1+2")
    "'=1+2"
    >>> neutralise("c-42")
    'c-42'
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return neutralise(value)
    return "" if value is None else value


def _csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def export_lines(pages: Iterable[list[DecisionRecord]], fmt: ExportFormat) -> Iterator[list[str]]:
    """The export's text, one list of lines per page of decisions (CSV starts with its
    header). Lazy: a page is formatted only when the one before has been consumed."""
    if fmt == "csv":
        yield [_csv_line(COLUMNS)]
    for page in pages:
        rows = (export_row(record) for record in page)
        if fmt == "csv":
            yield [_csv_line(_csv_cell(row[c]) for c in COLUMNS) for row in rows]
        else:
            yield [json.dumps(row, separators=(",", ":")) + "\n" for row in rows]
