"""Feature engine throughput: offline over a whole history, online one transaction at a time.

    python -m service.benchmarks.feature_bench --data HISTORY.csv.gz [--repeats 3] [--json OUT]

Reports the median of ``--repeats`` runs of each measurement, taken in the same process:
offline rows/s, online replay tx/s (transactions only) and online replay with labels fed
as they become known (one label per transaction, as in production).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from features.data import TransactionFrame, load_transactions
from features.offline import compute_features
from features.online import OnlineFeatureEngine
from features.rebuild import rebuild_state


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(history: TransactionFrame, repeats: int) -> dict[str, float]:
    n = len(history)
    # Compile the kernels once so that no run pays for it.
    warm = history.take(slice(0, min(n, 2000)))
    compute_features(warm)
    rebuild_state(warm)
    offline = [_timed(lambda: compute_features(history)) for _ in range(repeats)]
    online = [
        _timed(lambda: rebuild_state(history, OnlineFeatureEngine(), label_delay=None))
        for _ in range(repeats)
    ]
    labelled = [
        _timed(lambda: rebuild_state(history, OnlineFeatureEngine())) for _ in range(repeats)
    ]
    return {
        "rows": n,
        "offline_seconds": statistics.median(offline),
        "offline_rows_per_s": n / statistics.median(offline),
        "online_tx_per_s": n / statistics.median(online),
        "online_with_labels_tx_per_s": n / statistics.median(labelled),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.feature_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, help="handbook-schema history")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N rows")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    history = load_transactions(args.data)
    if args.limit:
        history = history.take(slice(0, args.limit))
    result = measure(history, max(1, args.repeats))
    print(f"rows                          {result['rows']:>12,}")
    print(f"offline, whole history        {result['offline_seconds']:>12.2f} s")
    print(f"offline throughput            {result['offline_rows_per_s']:>12,.0f} rows/s")
    print(f"online replay                 {result['online_tx_per_s']:>12,.0f} tx/s")
    print(f"online replay + label feed    {result['online_with_labels_tx_per_s']:>12,.0f} tx/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
