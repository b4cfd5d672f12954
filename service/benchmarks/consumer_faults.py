"""`kill -9` one of several consumers again and again during a replay, or restart the
Redis or PostgreSQL under them: every payment gets one decision record and one distinct
published decision, none lost, and the shared feature state counts each payment once.

    python -m service.benchmarks.consumer_faults --redis-url redis://127.0.0.1:6379/14
        --postgres-url postgresql://riskscore@127.0.0.1:5432/riskscore
        [--count 50000] [--consumers 3] [--kills 10] [--partitions 6]
        [--restart-command CMD --restarts N] [--bootstrap-servers H:P] [--json OUT]

The consumers (`riskscore consume`, one group) start first; once each holds partitions,
the payments (a simulated stream, keyed by customer) are published and they drain them.
At ``--kills`` points, spread at random over the replay, one consumer chosen at random
gets SIGKILL and is started again at once, as an orchestrator would. Without
``--bootstrap-servers`` an embedded broker is started. At ``--restarts`` more points the
shell command ``--restart-command`` runs (it stops an engine, e.g. Redis with its AOF on or
PostgreSQL, and starts it again: the consumers retry meanwhile). Afterwards every entity
of the Redis feature state is checked to have applied exactly its payments (a payment lost
by a restart, or counted twice, shows).
The Redis database is emptied first: give it one of its own. The PostgreSQL database may
hold other runs (this run's payments have ids of their own).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import redis

from features.simulated_stream import payload_stream
from service.benchmarks.consumer_fleet import (
    AuditCounts,
    DeadLetters,
    Fleet,
    fresh_topics,
    produce,
    published,
    renamed,
    wait_decided,
    wait_members,
)
from service.benchmarks.state_census import state_mismatches
from streaming.broker import EmbeddedBroker

DEADLINE_S = 3600.0


@dataclass
class FaultReport:
    payments: int
    consumers: int
    kills: int
    restarts: int  # engine restarts (--restart-command) during the run
    restart_seconds: list[float]  # how long each restart command took (the engine down)
    seconds: float  # publishing began → every payment recorded
    records: int  # rows in the audit store for the run's payments
    distinct_records: int
    missing: int  # payments with neither a record nor a dead letter
    dead_letters: dict[str, int]  # payments refused instead of decided, by error type
    published: int  # decision messages on the topic (re-deliveries publish again)
    distinct_published: int
    differing_republished: int  # payments published twice with different bytes
    exit_codes: list[int]
    state_mismatches: int  # entities whose applied payments in Redis are not their payments

    @property
    def ok(self) -> bool:
        return (
            self.records == self.distinct_records == self.payments
            and self.missing == 0
            and not self.dead_letters
            and self.distinct_published == self.payments
            and self.differing_republished == 0
            and self.state_mismatches == 0
            and all(code == 0 for code in self.exit_codes)
        )


def run_faults(
    bootstrap_servers: str,
    redis_url: str,
    postgres_url: str,
    *,
    count: int,
    consumers: int,
    kills: int,
    partitions: int,
    restarts: int = 0,
    restart: Callable[[], None] | None = None,
    seed: int = 5,
) -> FaultReport:
    """The run; ``restart`` (stop an engine and start it again) is called at ``restarts``
    points, beside the ``kills``."""
    if restarts and restart is None:
        raise ValueError("restarts need a restart callable")
    prefix = f"f{uuid.uuid4().hex[:6]}-"
    payloads = renamed(payload_stream(count, seed), prefix)
    redis.Redis.from_url(redis_url).flushdb()
    topics = fresh_topics(bootstrap_servers, partitions)
    rng = np.random.default_rng(seed)
    margin = max(1, count // 20)
    chosen = rng.choice(np.arange(margin, count - margin), kills + restarts, replace=False)
    # Which points restart an engine (True) rather than kill a consumer: spread at random.
    kinds = rng.permutation([False] * kills + [True] * restarts).tolist()
    faults = sorted(zip(chosen.tolist(), kinds, strict=True))
    restart_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="riskscore-fleet-") as data_dir:
        fleet = Fleet(bootstrap_servers, topics, redis_url, postgres_url, Path(data_dir))
        counts = AuditCounts(postgres_url, prefix)
        dead = DeadLetters(bootstrap_servers, topics.dead_letters)
        deadline = time.monotonic() + DEADLINE_S
        try:
            for index in range(consumers):
                fleet.start(index)
            # Every consumer holds partitions before the replay begins (the kills then
            # hit a group at work, not one still forming).
            wait_members(fleet, consumers, deadline)
            started = time.monotonic()
            produce(bootstrap_servers, topics.transactions, payloads)
            for point, is_restart in faults:
                wait_decided(counts, point, fleet, deadline)
                if is_restart:
                    assert restart is not None
                    began = time.monotonic()
                    restart()
                    restart_seconds.append(round(time.monotonic() - began, 1))
                    continue
                victim = int(rng.integers(consumers))
                fleet.kill(victim)
                fleet.start(victim)
            finished = wait_decided(counts, count, fleet, deadline, dead=dead)
            # A consumer killed after recording but before publishing left decisions that
            # only a re-delivery publishes: the group settles (the restarted ones joined)
            # and the topic is read while the consumers still run.
            wait_members(fleet, consumers, deadline)
            out = published(bootstrap_servers, topics.decisions, count - dead.poll(), 300)
        finally:
            codes = fleet.stop()
        ids = counts.ids()
        counts.close()
        dead.poll()
        dead.close()
    wanted = {p["transaction_id"] for p in payloads}
    return FaultReport(
        payments=count,
        consumers=consumers,
        kills=kills,
        restarts=restarts,
        restart_seconds=restart_seconds,
        seconds=round(finished - started, 1),
        records=len(ids),
        distinct_records=len(set(ids)),
        missing=len(wanted - set(ids) - set(dead.errors)),
        dead_letters=dict(Counter(dead.errors.values())),
        published=sum(len(v) for v in out.values()),
        distinct_published=len(wanted & set(out)),
        differing_republished=sum(1 for v in out.values() if len(set(v)) > 1),
        exit_codes=codes,
        state_mismatches=state_mismatches(redis_url, payloads),
    )


def shell(command: str) -> Callable[[], None]:
    """A restart that runs ``command`` in a shell and fails the run if it fails."""

    def run() -> None:
        subprocess.run(command, shell=True, check=True)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.consumer_faults",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--redis-url", required=True, help="a Redis database of its own")
    parser.add_argument("--postgres-url", required=True, help="the audit database")
    parser.add_argument("--count", type=int, default=50_000, help="payments (default 50000)")
    parser.add_argument("--consumers", type=int, default=3, help="consumer processes (3)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs during the run (10)")
    parser.add_argument("--partitions", type=int, default=6, help="transactions partitions (6)")
    parser.add_argument(
        "--restart-command",
        help="a shell command that stops an engine (Redis, PostgreSQL) and starts it again",
    )
    parser.add_argument(
        "--restarts", type=int, default=0, help="times --restart-command runs during the run (0)"
    )
    parser.add_argument("--bootstrap-servers", help="Kafka brokers (default: embedded)")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    if args.restarts and not args.restart_command:
        parser.error("--restarts needs --restart-command")
    with ExitStack() as stack:
        servers = args.bootstrap_servers
        if servers is None:
            servers = stack.enter_context(EmbeddedBroker(port=0)).bootstrap_servers
        report = run_faults(
            servers,
            args.redis_url,
            args.postgres_url,
            count=args.count,
            consumers=args.consumers,
            kills=args.kills,
            partitions=args.partitions,
            restarts=args.restarts,
            restart=shell(args.restart_command) if args.restart_command else None,
        )
    text = json.dumps({**asdict(report), "ok": report.ok}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
