"""Decisions and challenger rows small enough to check the comparison by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from explain.records import Action, DecisionRecord, Explanation
from explain.reports.challenger_compare import Comparer

# id, champion score and action, challenger score and action, label
Rows = list[tuple[str, float, Action, float, str, bool | None]]

EXPLANATION = Explanation(
    method="test",
    base_value=-2.0,
    raw_score=-1.0,
    attributions=[
        {"feature": "TX_AMOUNT", "value": 10.0, "contribution": 0.75},
        {"feature": "TX_DURING_NIGHT", "value": 1.0, "contribution": 0.25},
    ],
)


@dataclass(frozen=True)
class Row:
    model_version: str
    score: float
    action: str
    explanation: Explanation = EXPLANATION


def record(transaction_id: str, score: float, action: Action) -> DecisionRecord:
    return DecisionRecord.model_validate(
        {
            "transaction": {
                "transaction_id": transaction_id,
                "timestamp": "2024-05-01T10:00:00Z",
                "customer_id": "c-1",
                "terminal_id": "t-1",
                "amount": 10.0,
            },
            "request_sha256": "0" * 64,
            "decided_at": datetime(2024, 5, 1, 10, tzinfo=UTC),
            "score": score,
            "action": action,
            "stage": "fast",
            "fallback": False,
            "model_version": "champion-1",
            "reasons": [],
            "explanation": EXPLANATION,
            "thresholds": {"review": 0.5, "decline": 0.8},
            "timings_ms": {},
            "latency_ms": 1.0,
        }
    )


def compare(rows: Rows, top: int = 10) -> Comparer:
    comparer = Comparer("challenger-2", top=top)
    for tid, ours, our_action, theirs, their_action, label in rows:
        comparer.add(
            record(tid, ours, our_action), Row("challenger-2", theirs, their_action), label
        )
    return comparer


# id, champion score and action, challenger score and action, label
PERIOD: Rows = [
    ("a", 0.90, "decline", 0.95, "decline", True),
    ("b", 0.85, "decline", 0.20, "approve", False),
    ("c", 0.10, "approve", 0.85, "decline", True),
    ("d", 0.20, "approve", 0.10, "approve", False),
    ("e", 0.95, "decline", 0.60, "review", None),
    ("f", 0.55, "review", 0.30, "approve", None),
]
