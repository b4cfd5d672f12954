"""The handbook slice through 3 processes sharing one Redis feature state, each holding
the customers of its partitions (as consumers of one group keyed by customer): how many
rows differ from the offline engine, by how much, and in which features.

    python -m service.benchmarks.multiprocess_parity --redis-url redis://127.0.0.1:6379/12
        --data transactions_dev.csv.gz [--days 21] [--processes 3] [--json OUT]

The 21-day slice is the one the one-process parity test replays
(``tests/features/test_redis_parity_handbook.py``). Each process replays its own customers'
payments in file order, with each label fed 7 days after its payment (by the same rule as
``features.rebuild``, within its own stream: the label goes with its payment's partition),
as fast as it can and unsynchronised with the others, so one terminal's payments reach
Redis from three processes in the order the three happen to run. Every value is compared
with the offline engine (``features.offline``) at |Δ| > 1e-9. The Redis database is
emptied first: give it one of its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import redis

from features.data import TransactionFrame, load_transactions
from features.offline import compute_features
from features.online import OnlineFeatureEngine
from features.rebuild import rebuild_state
from features.redis_cluster_state import open_redis_state

TOLERANCE = 1e-9
# The 24 features both online engines and the offline one compute, in their order.
NAMES = OnlineFeatureEngine().feature_names


def partition_of(customers: np.ndarray, processes: int) -> np.ndarray:
    """Which process holds each row's customer (a stable hash, as a key partitioner)."""
    return np.array([zlib.crc32(str(c).encode()) % processes for c in customers.tolist()])


def _replay(url: str, history: TransactionFrame, out: str, start: Any) -> None:
    start.wait()  # the processes begin together, as consumers of a running group do
    state = open_redis_state(url)
    try:
        np.save(out, rebuild_state(history, state))
    finally:
        state.close()


def replay_in_processes(url: str, history: TransactionFrame, processes: int) -> np.ndarray:
    """Every row's features as the process holding its customer computed them."""
    redis.Redis.from_url(url).flushdb()
    owner = partition_of(history.customer_id, processes)
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes)
    values = np.empty((len(history), len(NAMES)))
    with tempfile.TemporaryDirectory() as tmp:
        outs = [f"{tmp}/p{k}.npy" for k in range(processes)]
        workers = [
            context.Process(target=_replay, args=(url, history.take(owner == k), outs[k], start))
            for k in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
            if worker.exitcode != 0:
                raise RuntimeError(f"a replaying process failed ({worker.exitcode})")
        for k, out in enumerate(outs):
            values[owner == k] = np.load(out)
    return values


def compare(online: np.ndarray, offline: np.ndarray) -> dict[str, Any]:
    """Rows and values that differ, per feature: count, max |Δ|, median |Δ| of those."""
    delta = np.abs(online - offline)
    differs = delta > TOLERANCE
    per_feature = {}
    for j, name in enumerate(NAMES):
        column = delta[differs[:, j], j]
        if column.size:
            per_feature[name] = {
                "rows": int(column.size),
                "max_abs": float(column.max()),
                "median_abs": float(np.median(column)),
            }
    return {
        "rows": len(online),
        "rows_differing": int(differs.any(axis=1).sum()),
        "customer_rows_differing": int(
            differs[:, [n.startswith("CUSTOMER") for n in NAMES]].any(axis=1).sum()
        ),
        "per_feature": per_feature,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.multiprocess_parity",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--redis-url", required=True, help="a Redis database of its own")
    parser.add_argument("--data", type=Path, required=True, help="the handbook's history")
    parser.add_argument("--days", type=int, default=21, help="first days replayed (21)")
    parser.add_argument("--processes", type=int, default=3, help="replaying processes (3)")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    history = load_transactions(args.data)
    days = history.day
    history = history.take(days < days.min() + np.timedelta64(args.days, "D"))
    report = compare(
        replay_in_processes(args.redis_url, history, args.processes), compute_features(history)
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
