"""The capacity table: what a target rate of payments needs, from per-decision costs.

    python -m service.benchmarks.capacity --consumer-cpu-us 450 --redis-cpu-us 150
        [--rates 1000,10000,100000] [--busy 0.6] [--commit-window-ms 1.0]

Scoring processes: the rate times one decision's CPU in a consumer (decode, features with
the Redis round trips, model, SHAP, record, publish, commit), over the share of a core a
process may keep busy. Redis shards: the same with the server's CPU per payment (its two
Function calls; Redis runs commands on one core per shard). Partitions: twice the
processes, so the group can grow without repartitioning (adding partitions moves
customers between partitions, and with them the order of their payments). PostgreSQL:
one decision row per payment, and at most one commit per process per commit window.

>>> rows = capacity_rows([1000], consumer_cpu_us=400, redis_cpu_us=150, busy=0.5)
>>> rows[0]["processes"], rows[0]["redis_shards"], rows[0]["partitions"]
(1, 1, 2)
"""

from __future__ import annotations

import argparse
import math


def capacity_rows(
    rates: list[int],
    *,
    consumer_cpu_us: float,
    redis_cpu_us: float,
    busy: float = 0.6,
    commit_window_ms: float = 1.0,
) -> list[dict[str, int]]:
    rows = []
    for rate in rates:
        processes = math.ceil(rate * consumer_cpu_us / 1e6 / busy)
        commits = min(rate, int(processes * 1000 / commit_window_ms))
        rows.append(
            {
                "payments_per_s": rate,
                "processes": processes,
                "partitions": 2 * processes,
                "redis_shards": math.ceil(rate * redis_cpu_us / 1e6 / busy),
                "postgres_rows_per_s": rate,
                "postgres_commits_per_s": commits,
            }
        )
    return rows


def markdown(rows: list[dict[str, int]]) -> str:
    lines = [
        "| payments/s | scoring processes (cores) | partitions | Redis shards "
        "| PostgreSQL rows/s | commits/s (at most) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['payments_per_s']:,} | {r['processes']:,} | {r['partitions']:,} "
        f"| {r['redis_shards']:,} | {r['postgres_rows_per_s']:,} "
        f"| {r['postgres_commits_per_s']:,} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.capacity",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--consumer-cpu-us", type=float, required=True)
    parser.add_argument("--redis-cpu-us", type=float, required=True)
    parser.add_argument("--rates", default="1000,10000,100000")
    parser.add_argument("--busy", type=float, default=0.6, help="share of a core kept busy")
    parser.add_argument("--commit-window-ms", type=float, default=1.0)
    args = parser.parse_args()
    rows = capacity_rows(
        [int(r) for r in args.rates.split(",")],
        consumer_cpu_us=args.consumer_cpu_us,
        redis_cpu_us=args.redis_cpu_us,
        busy=args.busy,
        commit_window_ms=args.commit_window_ms,
    )
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
