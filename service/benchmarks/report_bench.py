"""The period report over a large audit store: fill a store in bulk, then time the report.

    python -m service.benchmarks.report_bench fill --out audit.sqlite3 --count 1000000
    python -m service.benchmarks.report_bench measure --audit-file audit.sqlite3 --repeats 3

``fill`` writes decisions straight into a fresh SQLite audit file in the store's own
layout (compact records, the shipped model's explanation schema, one label per ten
decisions), in large transactions: scoring a million payments through the service would
take far longer and measure the scorer, not the report. The records are the size and shape
of real ones: every feature's value and contribution as float64, three reasons worded as
the reason coder words them, scores and actions from the shipped thresholds, a few
fallbacks, and lognormal latencies, over 30 days (a pool of 50,000 distinct records,
cycled under new ids and event times).

``measure`` aggregates the whole store into the period report and renders its HTML, as
``riskscore report summary`` does, and prints the median wall time and the process's peak
resident memory (run it in a fresh process: ``fill`` in the same one would count too).
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from explain.audit import compact
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.reasons import ReasonCoder
from explain.reports.period_page import summary_page
from explain.reports.query import DecisionFilter
from explain.reports.summary import summarize
from models.artifact_paths import default_artifact_dir
from models.artifacts import load_manifest
from models.thresholds import action_between

_INSERT = (
    "INSERT INTO decisions (transaction_id, request_sha256, event_time_ms, local_time_ms,"
    " decided_at_ms, customer_id, terminal_id, amount, action, stage, score, model_version,"
    " record_json, fallback, record, latency_us, reason_positions, fallback_reason)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?)"
)
_LABEL = (
    "INSERT INTO labels (transaction_id, is_fraud, labelled_at_ms, received_at_ms, record_json)"
    " VALUES (?, ?, ?, ?, ?)"
)
_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_SPAN_MS = 30 * 86_400_000
_ENCODER = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class _Made:
    blob: bytes
    amount: float
    action: str
    score: float
    latency_us: int
    reason_positions: str
    fallback_reason: str | None


def _pool(
    coder: ReasonCoder,
    width: int,
    review: float,
    decline: float,
    schema_id: int,
    size: int,
    rng: np.random.Generator,
) -> list[_Made]:
    values = rng.gamma(2.0, 20.0, (size, width))
    contributions = rng.normal(0.0, 0.25, (size, width))
    raw = -6.5 + contributions.sum(axis=1) * 2.0
    scores = 1.0 / (1.0 + np.exp(-raw))
    latency = rng.lognormal(np.log(1.5), 0.6, size)
    fallback = rng.random(size) < 0.02
    reasons = coder.code_many(values, contributions)
    made = []
    for i in range(size):
        score = float(scores[i])
        action = action_between(score, review, decline)
        ticks = round(float(latency[i]) * compact.TICKS_PER_MS)
        reason = "budget" if fallback[i] else None
        record = compact.CompactRecord(
            compact.FORMAT,
            schema_id,
            "2024-01-01T00:00:00Z",
            "EUR",
            1_704_067_200_000_000,
            reason,
            list(reasons[i].indices),
            list(reasons[i].value_texts or ()),
            -6.5,
            float(raw[i]),
            values[i].tobytes(),
            contributions[i].tobytes(),
            review,
            decline,
            [2000, 3000, 4000, None],
            ticks,
            None,
        )
        positions = ",".join(map(str, reasons[i].indices))
        made.append(
            _Made(
                _ENCODER.encode(record),
                float(values[i, 0]) + 0.01,
                action,
                score,
                round(ticks / 10),
                positions,
                reason,
            )
        )
    return made


def fill(
    path: Path, count: int, seed: int = 5, chunk: int = 50_000, pool_size: int = 50_000
) -> None:
    """A fresh audit store at ``path`` with ``count`` realistic decisions."""
    if path.exists():
        raise SystemExit(f"{path} exists: fill writes a fresh store")
    SQLiteAuditStore(path).close()  # creates the file in the current layout
    manifest = load_manifest(default_artifact_dir())
    coder = ReasonCoder(manifest.feature_names, method="treeshap-lightgbm")
    width = len(manifest.feature_names)
    review, decline = manifest.thresholds.review, manifest.thresholds.decline
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a benchmark fixture: durability not needed
    conn.execute(
        "INSERT INTO explanation_schemas (key, schema_json) VALUES (?, ?)",
        (coder.schema.key, coder.schema.to_json()),
    )
    schema_id = conn.execute("SELECT max(id) FROM explanation_schemas").fetchone()[0]
    times = np.sort(rng.integers(_START_MS, _START_MS + _SPAN_MS, count))
    # A pool of distinct records, cycled: building each record in Python would make the
    # fill take far longer than the report it is for, and the report cannot tell.
    pool = _pool(coder, width, review, decline, schema_id, min(count, pool_size), rng)
    for start in range(0, count, chunk):
        rows = []
        labels = []
        for k in range(start, min(start + chunk, count)):
            made = pool[k % len(pool)]
            tid = f"tx-{k:08d}"
            event = int(times[k])
            rows.append(
                (
                    tid,
                    "0" * 64,
                    event,
                    event,
                    event + 2,
                    f"c-{k % 5000}",
                    f"t-{k % 10000}",
                    made.amount,
                    made.action,
                    "fast",
                    made.score,
                    manifest.model_version,
                    int(made.fallback_reason is not None),
                    made.blob,
                    made.latency_us,
                    made.reason_positions,
                    made.fallback_reason,
                )
            )
            if k % 10 == 0:
                fraud = int(made.action == "decline" or k % 1000 == 0)
                labels.append((tid, fraud, event, event, "{}"))
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows)
        conn.executemany(_LABEL, labels)
        conn.execute("COMMIT")
    conn.close()


def measure(path: Path, repeats: int) -> tuple[float, float, int, int]:
    """Median seconds of the period's aggregation and of drawing its page, decisions
    covered, and the process's peak RSS in MiB."""
    manifest = load_manifest(default_artifact_dir())
    reading, drawing = [], []
    total = 0
    with SQLiteAuditStore(path) as store:
        for _ in range(repeats):
            started = time.perf_counter()
            summary = summarize(store, DecisionFilter(), manifest.feature_distributions)
            read = time.perf_counter()
            summary_page(summary, DecisionFilter(), manifest)
            reading.append(read - started)
            drawing.append(time.perf_counter() - read)
            total = summary.total
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return statistics.median(reading), statistics.median(drawing), total, peak_mib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    filling = commands.add_parser("fill", help="a fresh audit store of N realistic decisions")
    filling.add_argument("--out", type=Path, required=True)
    filling.add_argument("--count", type=int, default=1_000_000)
    filling.add_argument("--seed", type=int, default=5)
    timing = commands.add_parser("measure", help="time the period report over the store")
    timing.add_argument("--audit-file", type=Path, required=True)
    timing.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "fill":
        started = time.perf_counter()
        fill(args.out, args.count, args.seed)
        print(f"{args.count} decisions -> {args.out} in {time.perf_counter() - started:.1f} s")
    else:
        reading, drawing, total, peak = measure(args.audit_file, args.repeats)
        print(
            f"period report over {total} decisions: median {reading + drawing:.2f} s"
            f" ({reading:.2f} s aggregating, {drawing:.2f} s drawing the page),"
            f" peak RSS {peak} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
