"""What the redis feature-state backend adds per decision over the in-process one.

    python -m service.benchmarks.feature_state_bench --url redis://127.0.0.1:6379/15
        [--data HISTORY.csv.gz] [--count N] [--blocks B] [--json OUT]

``--url`` names one server or a cluster (``redis+cluster://HOST:PORT[,HOST:PORT...]``:
each payment's calls then go out as a cluster pipeline, one write per node it touches).

Both backends get the same payments one at a time, as the scorer hands a lone payment to
the state (``update_all`` of one), with each payment's label fed 7 days after it, as
in production. The history is cut into ``--blocks`` consecutive blocks and each block is
run on the memory backend, then on the redis one: a machine whose load changes
during the run then weighs on both alike. Reports p50/p99 per payment and per label,
and the difference of the medians (the cost the backend adds to a decision).

The Redis database named by ``--url`` (every node of a cluster) is emptied first: give
it one of its own. The load average (1 minute) is reported before and after the run,
since the machine's other work weighs on every figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from features.data import TransactionFrame, frame_from_pandas, load_transactions
from features.definitions import LABEL_DELAY
from features.online import OnlineFeatureEngine
from features.redis_cluster_state import open_redis_state
from features.simulator import SimulationConfig, simulate
from features.state import FeatureState
from loadtest.durations import summary_ms


class _Timed:
    """One backend fed block after block, with its per-payment and per-label times."""

    def __init__(self, state: FeatureState, history: TransactionFrame) -> None:
        self.state = state
        self.updates: list[float] = []
        self.labels: list[float] = []
        self.values = np.empty((len(history), len(state.feature_names)))
        self._rows = list(history.iter_rows())
        self._labels = history.label.tolist() if history.label is not None else []
        self._next_label = 0
        self._delay_ms = int(LABEL_DELAY.total_seconds() * 1000)

    def run(self, start: int, end: int) -> None:
        state, rows, clock = self.state, self._rows, time.perf_counter
        for row in range(start, end):
            tid, customer, terminal, t, local, amount = rows[row]
            while (
                self._labels
                and self._next_label < row
                and rows[self._next_label][3] + self._delay_ms <= t
            ):
                label_id = rows[self._next_label][0]
                began = clock()
                state.record_label(label_id, self._labels[self._next_label] == 1)
                self.labels.append(clock() - began)
                self._next_label += 1
            began = clock()
            update = state.update_many([tid], [customer], [terminal], [t], [local], [amount])
            self.updates.append(clock() - began)
            self.values[row] = update.values[0]


def measure(history: TransactionFrame, url: str, blocks: int) -> dict[str, object]:
    redis_state = open_redis_state(url)
    redis_state._client.flushdb()  # the benchmark's own database, emptied (see --help)
    memory = _Timed(OnlineFeatureEngine(), history)
    shared = _Timed(redis_state, history)
    load_before = os.getloadavg()[0]
    bounds = np.linspace(0, len(history), blocks + 1).astype(int).tolist()
    for start, end in itertools.pairwise(bounds):
        memory.run(start, end)
        shared.run(start, end)
    redis_state.close()
    mem, red = summary_ms(memory.updates), summary_ms(shared.updates)
    return {
        "payments": len(history),
        "memory_update": mem,
        "redis_update": red,
        "memory_label": summary_ms(memory.labels),
        "redis_label": summary_ms(shared.labels),
        "added_per_decision_us": (red["p50_ms"] - mem["p50_ms"]) * 1000.0,
        "max_abs_difference": float(np.max(np.abs(memory.values - shared.values))),
        "load_average": [load_before, os.getloadavg()[0]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.feature_state_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        required=True,
        help="redis://HOST:PORT/DB or redis+cluster://HOST:PORT[,HOST:PORT...], emptied first",
    )
    parser.add_argument("--data", type=Path, help="handbook-schema history (default: simulated)")
    parser.add_argument("--count", type=int, default=20_000, help="payments replayed")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks per backend")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.data is not None:
        history = load_transactions(args.data)
    else:
        config = SimulationConfig(customers=500, terminals=1000, days=40, seed=3)
        history = frame_from_pandas(simulate(config), "simulated")
    history = history.take(slice(0, args.count))
    result = measure(history, args.url, max(1, args.blocks))
    for name in ("memory_update", "redis_update", "memory_label", "redis_label"):
        s = result[name]
        assert isinstance(s, dict)
        if s.get("n"):
            print(
                f"{name:<15} n={s['n']:>7,}  p50 {s['p50_ms'] * 1000:8.1f} µs  "
                f"p99 {s['p99_ms'] * 1000:8.1f} µs"
            )
    print(f"added per decision (p50 difference): {result['added_per_decision_us']:.1f} µs")
    print(f"largest difference between the backends' features: {result['max_abs_difference']}")
    load = result["load_average"]
    assert isinstance(load, list)
    before, after = load
    print(f"load average (1 min): {before:.1f} before, {after:.1f} after")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
