"""The challenger report over a store of shadowed decisions: fill, then time the reading.

    python -m service.benchmarks.challenger_bench --decisions 20000 --repeats 3
    python -m service.benchmarks.challenger_bench --decisions 20000 --postgres URL

Fills a fresh store (a temporary SQLite file, or the given empty PostgreSQL database)
through the store's own writer: ``--decisions`` decisions over a day with 30 features
each (values, exact SHAP contributions, three reasons), a challenger row for four in five,
a label for one in two. Then reads the comparison as ``riskscore report challenger``
does (counts, the busiest version's rows, the disagreements shown) ``--repeats`` times and
prints the median and the slowest wall time, and the counting statement's alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from explain.audit.challenger_log import ChallengerScore
from explain.audit.postgres_store import PostgresAuditStore
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.audit.store import AuditStore
from explain.decision import Decision, Reasons, encode_json, to_record
from explain.records import Action, LabelRecord
from explain.reports.challenger_source import read_comparison
from explain.reports.query import ChallengerPeriod
from explain.schema import ExplanationSchema
from features.schema import Transaction

FEATURES = 30
START = datetime(2024, 3, 1, tzinfo=UTC)
_SCHEMA = ExplanationSchema(
    "tree_shap",
    tuple(f"f{i:02d}" for i in range(FEATURES)),
    tuple(f"feature {i}" for i in range(FEATURES)),
)


def _action(score: float) -> Action:
    return "decline" if score >= 0.9 else "review" if score >= 0.5 else "approve"


def _decision(i: int, rng: np.random.Generator) -> Decision:
    event = START + timedelta(seconds=i * 86_400 / 100_000)
    score = float(rng.beta(0.5, 4.0))
    contributions = rng.normal(0.0, 0.3, FEATURES)
    top = tuple(int(j) for j in np.argsort(-np.abs(contributions))[:3])
    reasons = [
        {
            "code": f"f{j:02d}",
            "value": 1.0,
            "contribution": float(contributions[j]),
            "direction": "raises" if contributions[j] > 0 else "lowers",
            "text": f"feature {j}: 1.0",
        }
        for j in top
    ]
    return Decision(
        transaction=Transaction(
            transaction_id=f"tx-{i:08d}",
            timestamp=event,
            customer_id=f"c-{i % 997}",
            terminal_id=f"t-{i % 101}",
            amount=10.0 + i % 500,
        ),
        request_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
        decided_at=event + timedelta(milliseconds=3),
        score=score,
        action=_action(score),
        stage="fast",
        fallback=False,
        fallback_reason=None,
        model_version="fast-champion",
        reasons=Reasons(top, ("1.0",) * len(top), encode_json(reasons)),
        schema=_SCHEMA,
        base_value=-2.0,
        raw_score=-2.0 + float(contributions.sum()),
        values=rng.normal(0.0, 1.0, FEATURES),
        contributions=contributions,
        review_threshold=0.5,
        decline_threshold=0.9,
        timings_ms={"features": 0.1, "model": 0.2, "explain": 0.3},
        latency_ms=0.7,
    )


def _challenger(decision: Decision, rng: np.random.Generator) -> ChallengerScore:
    score = float(np.clip(decision.score + rng.normal(0.0, 0.1), 0.0, 1.0))
    return ChallengerScore(
        transaction_id=decision.transaction_id,
        model_version="fast-challenger",
        event_time_ms=decision.transaction.epoch_ms,
        score=score,
        action=_action(score),
        review_threshold=0.5,
        decline_threshold=0.9,
        reasons_json=decision.reasons.json.decode(),
        explanation_json=to_record(decision).explanation.model_dump_json(),
        sequence_score=None,
        scored_at_ms=decision.transaction.epoch_ms + 5,
    )


def fill(store: AuditStore, count: int) -> None:
    rng = np.random.default_rng(7)
    for start in range(0, count, 2000):
        decisions = [_decision(i, rng) for i in range(start, min(start + 2000, count))]
        assert all(store.submit_many(decisions).result(timeout=300))
        rows = [_challenger(d, rng) for k, d in enumerate(decisions) if (start + k) % 5]
        assert all(store.submit_challenger_scores(rows).result(timeout=300))
        for d in decisions[::2]:
            label = LabelRecord(
                transaction_id=d.transaction_id,
                is_fraud=bool(rng.random() < d.score),
                received_at=START + timedelta(days=2),
            )
            store.submit_label(label)
    store.submit_label(
        LabelRecord(transaction_id="tx-00000000", is_fraud=False, received_at=START)
    ).result(timeout=300)


def measure(store: AuditStore, repeats: int) -> None:
    period = ChallengerPeriod.model_validate({})
    counting: list[float] = []
    whole: list[float] = []
    for _ in range(repeats):
        began = time.perf_counter()
        store.shadow_counts(START - timedelta(days=1), START + timedelta(days=30))
        counting.append(time.perf_counter() - began)
        began = time.perf_counter()
        reading = read_comparison(store, period)
        whole.append(time.perf_counter() - began)
    result = reading.comparison
    print(
        json.dumps(
            {
                "decisions": result.decisions,
                "shadowed": result.shadowed,
                "repeats": repeats,
                "counts_median_s": round(statistics.median(counting), 3),
                "report_median_s": round(statistics.median(whole), 3),
                "report_max_s": round(max(whole), 3),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        if args.postgres:
            store: AuditStore = PostgresAuditStore(args.postgres)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            store = SQLiteAuditStore(folder / "audit.sqlite3")
        stack.callback(store.close, timeout=60)
        fill(store, args.decisions)
        measure(store, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
