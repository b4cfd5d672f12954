"""1 against 2 (or more) `riskscore consume` processes in one group on Redis + PostgreSQL
draining the same backlog: decisions per second, and what each decision costs in CPU.

    python -m service.benchmarks.consumer_scaling --redis-url redis://127.0.0.1:6379/13
        --postgres-url postgresql://riskscore@127.0.0.1:5432/riskscore
        [--count 20000] [--fleets 1,2] [--runs 1] [--partitions 6] [--json OUT]

Each run: its own topics, the Redis database emptied, ``n`` consumers started and joined
(model loaded, partitions held), then the payments published at once (the producer runs
far ahead of the consumers, so they drain a backlog). The rate is taken between the 10%
and 90% marks of the stored decisions, which leaves out the producer's first second and
the last partitions' tail. CPU per decision is the consumers' own (user + system, from
/proc) and redis-server's (``INFO cpu``) over the same span. Fleet sizes alternate run by
run, so a change in the machine's load weighs on all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from features.simulated_stream import payload_stream
from service.benchmarks.consumer_fleet import (
    AuditCounts,
    Fleet,
    fresh_topics,
    produce,
    renamed,
    wait_decided,
    wait_members,
)
from streaming.broker import EmbeddedBroker

DEADLINE_S = 3600.0
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far."""
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return total


def _redis_cpu_s(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_once(
    servers: str, redis_url: str, postgres_url: str, consumers: int, payloads: list[dict[str, Any]],
    partitions: int,
) -> dict[str, float]:  # fmt: skip
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    run = renamed(payloads, prefix)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    topics = fresh_topics(servers, partitions)
    count = len(run)
    with tempfile.TemporaryDirectory(prefix="riskscore-fleet-") as data_dir:
        fleet = Fleet(servers, topics, redis_url, postgres_url, Path(data_dir))
        counts = AuditCounts(postgres_url, prefix)
        deadline = time.monotonic() + DEADLINE_S
        try:
            for index in range(consumers):
                fleet.start(index)
            wait_members(fleet, consumers, deadline)
            produce(servers, topics.transactions, run)
            pids = [p.pid for p in fleet.processes.values()]
            low, high = count // 10, count - count // 10
            t0 = wait_decided(counts, low, fleet, deadline, poll_s=0.02)
            cpu0, redis0, n0 = _cpu_s(pids), _redis_cpu_s(client), counts.decided()
            t1 = wait_decided(counts, high, fleet, deadline, poll_s=0.02)
            cpu1, redis1, n1 = _cpu_s(pids), _redis_cpu_s(client), counts.decided()
            wait_decided(counts, count, fleet, deadline)
        finally:
            fleet.stop()
            counts.close()
    decided = n1 - n0
    return {
        "consumers": consumers,
        "decisions_per_s": decided / (t1 - t0),
        "consumer_cpu_us_per_decision": (cpu1 - cpu0) / decided * 1e6,
        "redis_cpu_us_per_decision": (redis1 - redis0) / decided * 1e6,
        "load_average": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.consumer_scaling",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--redis-url", required=True, help="a Redis database of its own")
    parser.add_argument("--postgres-url", required=True, help="the audit database")
    parser.add_argument("--count", type=int, default=20_000, help="payments per run (20000)")
    parser.add_argument("--fleets", default="1,2", help="consumer counts compared (1,2)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each fleet size (1)")
    parser.add_argument("--partitions", type=int, default=6, help="transactions partitions (6)")
    parser.add_argument("--bootstrap-servers", help="Kafka brokers (default: embedded)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    sizes = [int(n) for n in args.fleets.split(",")]
    payloads = payload_stream(args.count, seed=11)
    results: list[dict[str, float]] = []
    with ExitStack() as stack:
        servers = args.bootstrap_servers
        if servers is None:
            servers = stack.enter_context(EmbeddedBroker(port=0)).bootstrap_servers
        for _ in range(args.runs):
            for n in sizes:
                result = run_once(
                    servers, args.redis_url, args.postgres_url, n, payloads, args.partitions
                )
                print(json.dumps(result), flush=True)
                results.append(result)
    summary = {
        str(n): statistics.median(r["decisions_per_s"] for r in results if r["consumers"] == n)
        for n in sizes
    }
    out = {"runs": results, "median_decisions_per_s": summary}
    print(json.dumps({"median_decisions_per_s": summary}))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
