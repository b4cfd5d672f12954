"""How long the in-process feature state takes to come back at start-up, with and
without a checkpoint.

    python -m service.benchmarks.report_bench fill --out audit.sqlite3 --count 1000000
    python -m service.benchmarks.checkpoint_bench --audit-file audit.sqlite3 [--repeats 2]

Each repeat: a warm start from the audit store alone (every payment any window can still
see replayed, then the labels), then a checkpoint written of that state (the snapshot's
hold on the event loop, and the file), then a warm start from the checkpoint into a
fresh engine (load, replay of the payments after it, labels again) — the two states
compared feature by feature on the next payments. Last, the second stage's sequences
refilled from the store once (both starts do it: the checkpoint holds the windows only).
The checkpoint covers the latest stored payment, as one written at shutdown does; one
written periodically leaves up to its interval of payments to replay as well.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from explain.audit.sqlite_store import SQLiteAuditStore
from features.checkpoint import capture, snapshot, to_arrays, write_snapshot
from features.definitions import DEFAULT_FEATURES
from features.online import OnlineFeatureEngine
from features.redis_keys import plan_digest
from features.sequence import DEFAULT_SEQUENCE_LENGTH, OnlineSequences, SequenceSpec
from service.warm_start import rebuild, rebuild_sequences

SEQUENCES = SequenceSpec(DEFAULT_SEQUENCE_LENGTH, tuple(d.name for d in DEFAULT_FEATURES))


def _probe(engine: OnlineFeatureEngine, latest_ms: int) -> np.ndarray:
    """Features of a few new payments of busy and unknown entities, to compare states."""
    rows = [
        engine.update_raw(f"probe-{i}", c, t, latest_ms + 1000 * i, latest_ms, 25.0 + i)
        for i, (c, t) in enumerate([("0", "0"), ("1", "1"), ("999999", "999999")])
    ]
    return np.array(rows)


def measure(audit_file: Path, repeats: int) -> dict[str, object]:
    store = SQLiteAuditStore(audit_file)
    latest = store.latest_event_ms()
    assert latest is not None, "the audit store is empty: fill it first"
    runs: dict[str, list[float]] = {
        "full": [],
        "whole_snapshot": [],
        "snapshot": [],
        "write": [],
        "from_checkpoint": [],
    }
    replayed_full = replayed_after = size = 0
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "feature-state.checkpoint"
        for _ in range(repeats):
            engine = OnlineFeatureEngine()
            began = time.perf_counter()
            replayed_full = rebuild(store, engine, None)
            runs["full"].append(time.perf_counter() - began)
            # What the event loop was held for before: the arrays built from the state.
            began = time.perf_counter()
            snapshot(engine)
            runs["whole_snapshot"].append(time.perf_counter() - began)
            began = time.perf_counter()
            captured = capture(engine)  # what the service does on the event loop now
            runs["snapshot"].append(time.perf_counter() - began)
            began = time.perf_counter()
            arrays = to_arrays(captured)  # and in a thread, with the hashing and writing
            size = write_snapshot(arrays, plan_digest(engine.plan), path).size_bytes
            runs["write"].append(time.perf_counter() - began)
            restarted = OnlineFeatureEngine()
            began = time.perf_counter()
            replayed_after = rebuild(store, restarted, None, checkpoint=path)
            runs["from_checkpoint"].append(time.perf_counter() - began)
            np.testing.assert_array_equal(_probe(restarted, latest), _probe(engine, latest))
        # The second stage's sequences are refilled from the store in both cases (the
        # checkpoint holds the windows only): timed once, on their own.
        began = time.perf_counter()
        rebuild_sequences(store, OnlineSequences(SEQUENCES), latest)
        sequences_s = time.perf_counter() - began
    store.close(10.0)
    return {
        "stored_decisions": store_count(audit_file),
        "replayed_without_checkpoint": replayed_full,
        "replayed_after_checkpoint": replayed_after,
        "checkpoint_bytes": size,
        "sequences_refill_s": sequences_s,
        "repeats": repeats,
        **{f"{name}_median_s": statistics.median(v) for name, v in runs.items()},
        **{f"{name}_s": v for name, v in runs.items()},
    }


def store_count(audit_file: Path) -> int:
    import sqlite3

    with sqlite3.connect(audit_file) as db:
        return int(db.execute("SELECT count(*) FROM decisions").fetchone()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.checkpoint_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--audit-file", type=Path, required=True, help="a filled SQLite store")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each warm start")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.audit_file, max(1, args.repeats))
    print(
        f"{result['stored_decisions']:,} stored decisions, checkpoint "
        f"{int(result['checkpoint_bytes']) / 1e6:.0f} MB"  # type: ignore[call-overload]
    )
    print(
        f"warm start without checkpoint: {result['full_median_s']:.1f} s "
        f"({result['replayed_without_checkpoint']:,} payments replayed)"
    )
    print(
        f"checkpoint: capture {result['snapshot_median_s']:.2f} s on the event loop "
        f"(arrays built there instead: {result['whole_snapshot_median_s']:.2f} s), "
        f"arrays, hash and file {result['write_median_s']:.2f} s in a thread"
    )
    print(
        f"warm start from the checkpoint: {result['from_checkpoint_median_s']:.1f} s "
        f"({result['replayed_after_checkpoint']:,} payments replayed)"
    )
    print(f"second-stage sequences refilled (both cases): {result['sequences_refill_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
