"""Decisions and challenger rows small enough to check the comparison by hand."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from explain.audit.challenger_log import ChallengerScore, Shadowed
from explain.records import Action, DecisionRecord, Explanation
from explain.reports.challenger_compare import Comparer
from models.train.label_policy import LabelPolicy

# id, champion (model) score and action, challenger score and action, label
Rows = list[tuple[str, float, Action, float, Action, bool | None]]

EVENT = datetime(2024, 5, 1, 10, tzinfo=UTC)
# Reports made a day after the payments (no label delay passed: only labels count) and
# a month after (every unlabelled payment not declined counts as legitimate).
WITHIN_DELAY = LabelPolicy(as_of=EVENT + timedelta(days=1), delay=timedelta(days=7))
PAST_DELAY = LabelPolicy(as_of=EVENT + timedelta(days=30), delay=timedelta(days=7))

EXPLANATION = Explanation(
    method="test",
    base_value=-2.0,
    raw_score=-1.0,
    attributions=[
        {"feature": "TX_AMOUNT", "value": 10.0, "contribution": 0.75},
        {"feature": "TX_DURING_NIGHT", "value": 1.0, "contribution": 0.25},
    ],
)


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


def shadowed(
    row: tuple[str, float, Action, float, Action, bool | None],
    served: Action | None = None,
    event: datetime = EVENT,
) -> Shadowed:
    """A row as the store reads it: the champion's model action as given, its served one
    ``served`` (a list or rule) or the same."""
    tid, ours, our_action, theirs, their_action, label = row
    return Shadowed(
        transaction_id=tid,
        event_time_ms=int(event.timestamp() * 1000),
        champion_version="champion-1",
        champion_score=ours,
        champion_action=served or our_action,
        champion_model_action=our_action,
        challenger_score=theirs,
        challenger_action=their_action,
        label=label,
    )


def compare(rows: Rows, top: int = 10, policy: LabelPolicy | None = None) -> Comparer:
    comparer = Comparer("challenger-2", policy or WITHIN_DELAY, top=top)
    comparer.add([shadowed(row) for row in rows])
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


def shadowed_of(record: DecisionRecord, row: ChallengerScore, label: bool | None) -> Shadowed:
    """What the store's light reading should give for a decision and its challenger row,
    worked out here from the full record (its thresholds on its score)."""
    cut = record.thresholds
    model: Action = (
        "decline"
        if record.score >= cut.decline
        else "review"
        if record.score >= cut.review
        else "approve"
    )
    return Shadowed(
        transaction_id=record.transaction_id,
        event_time_ms=record.transaction.epoch_ms,
        champion_version=record.model_version,
        champion_score=record.score,
        champion_action=record.action,
        champion_model_action=model,
        challenger_score=row.score,
        challenger_action=row.action,
        label=label,
    )


def cell(page: str, header: str) -> str:
    found = re.search(rf"<tr><th>{re.escape(header)}</th><td[^>]*>(.*?)</td></tr>", page)
    assert found, header
    return found.group(1)


def measure(page: str, measure: str) -> tuple[str, str]:
    found = re.search(
        rf"<tr><td>{re.escape(measure)}</td><td[^>]*>(.*?)</td><td[^>]*>(.*?)</td></tr>", page
    )
    assert found, measure
    return found.group(1), found.group(2)
