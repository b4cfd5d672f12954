"""What keeping the second stage's sequences in Redis adds per escalated decision.

    python -m service.benchmarks.sequence_store_bench --url redis://127.0.0.1:6379/15
        [--count N] [--blocks B] [--json OUT]

An escalated payment appends its position to its customer's sequence and reads the
sequence back (the view the second stage runs on): ``append_many`` of one payment with
its view asked for, on the in-process store and on the redis one, block after block
(alternating, so a machine whose load changes weighs on both alike). The feature vectors
are the memory engine's for a simulated history (500 customers, 40 days). Reports
p50/p99 per escalated payment and the difference of the medians.

The Redis database named by ``--url`` is emptied first: give it one of its own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from features.data import frame_from_pandas
from features.definitions import DEFAULT_FEATURES
from features.rebuild import rebuild_state
from features.redis_cluster_state import open_redis_state
from features.redis_sequences import RedisSequences
from features.sequence import DEFAULT_SEQUENCE_LENGTH, OnlineSequences, SequenceSpec, SequenceStore
from features.simulator import SimulationConfig, simulate
from loadtest.durations import summary_ms


def _run(
    store: SequenceStore, rows: list[tuple[str, str, int, float]], x: np.ndarray, times: list[float]
) -> None:
    clock = time.perf_counter
    for i, (tid, customer, t, amount) in enumerate(rows):
        began = clock()
        store.append_many([customer], [tid], [t], [amount], x[i : i + 1], [True])
        times.append(clock() - began)


def measure(url: str, count: int, blocks: int) -> dict[str, object]:
    config = SimulationConfig(customers=500, terminals=1000, days=40, seed=3)
    history = frame_from_pandas(simulate(config), "simulated").take(slice(0, count))
    features = rebuild_state(history)
    spec = SequenceSpec(DEFAULT_SEQUENCE_LENGTH, tuple(d.name for d in DEFAULT_FEATURES))
    state = open_redis_state(url)
    state._client.flushdb()  # the benchmark's own database, emptied (see --help)
    stores: dict[str, SequenceStore] = {
        "memory": OnlineSequences(spec),
        "redis": RedisSequences(state, spec),
    }
    times: dict[str, list[float]] = {name: [] for name in stores}
    rows = list(
        zip(
            history.transaction_id.tolist(),
            history.customer_id.tolist(),
            history.epoch_ms.tolist(),
            history.amount.tolist(),
            strict=True,
        )
    )
    bounds = np.linspace(0, len(rows), blocks + 1).astype(int).tolist()
    for start, end in itertools.pairwise(bounds):
        for name, store in stores.items():
            _run(store, rows[start:end], features[start:end], times[name])
    state.close()
    memory, redis = summary_ms(times["memory"]), summary_ms(times["redis"])
    return {
        "escalated_payments": len(rows),
        "sequence_length": spec.length,
        "memory": memory,
        "redis": redis,
        "added_per_escalated_decision_us": (redis["p50_ms"] - memory["p50_ms"]) * 1000.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.sequence_store_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="redis://HOST:PORT/DB, emptied first")
    parser.add_argument("--count", type=int, default=20_000, help="escalated payments")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks per store")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.url, args.count, max(1, args.blocks))
    for name in ("memory", "redis"):
        s = result[name]
        assert isinstance(s, dict)
        print(
            f"{name:<7} n={s['n']:>7,}  p50 {s['p50_ms'] * 1000:8.1f} µs  "
            f"p99 {s['p99_ms'] * 1000:8.1f} µs"
        )
    print(
        "added per escalated decision (p50 difference): "
        f"{result['added_per_escalated_decision_us']:.1f} µs"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
