"""The Kafka path end to end on one machine: `riskscore consume` in its own process (as
deployed) with the shipped model and a real SQLite store, driven by the load generator's
Kafka client (``riskscore bench stream``; the caller provides the broker and its topics).

1. Throughput: a backlog of transactions is published first, then the consumer starts and
   drains it (decode → features → fast model → exact SHAP → durable audit → decision
   published and acknowledged → commit); the consumer's own totals give the time per step.
2. Latency: transactions published open-loop at a fixed rate; for each, the time from its
   scheduled send to its decision being read on the ``decisions`` topic.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from features.simulated_stream import payload_stream
from loadtest.kafka_mode import KafkaTarget, KafkaTopics
from loadtest.recorder import Recorder
from loadtest.runner import RunConfig, run_loop, run_once
from loadtest.schedule import Plan, Target, drain
from loadtest.server_process import BenchError, riskscore_command, riskscore_env, server, tail
from loadtest.workload import Workload

BACKLOG_TIMEOUT_S = 600.0
LATENCY_DRAIN_TIMEOUT_S = 120.0
STEPS = {
    "decode": "decode_s",
    "score (features, model, SHAP, durable audit)": "score_s",
    "publish (send, broker ack)": "publish_s",
    "commit": "commit_s",
}


def measure(
    bootstrap_servers: str,
    count: int = 30_000,
    rate: float = 5000.0,
    seconds: float = 10.0,
    topics: KafkaTopics | None = None,
) -> dict[str, Any]:
    """Both parts against the broker at ``bootstrap_servers``, whose topics exist."""
    topics = topics or KafkaTopics()
    latency_n = int(rate * seconds)
    bodies = payload_stream(count + latency_n, seed=13)
    with tempfile.TemporaryDirectory(prefix="riskscore-stream-bench-") as tmp:
        env = riskscore_env(
            data_dir=str(Path(tmp) / "var"),
            kafka_bootstrap_servers=bootstrap_servers,
            kafka_group_id=topics.group_id,
            kafka_transactions_topic=topics.transactions,
            kafka_decisions_topic=topics.decisions,
            kafka_dead_letter_topic=topics.dead_letters,
            kafka_session_timeout_ms="6000",
            log_level="WARNING",
        )
        log = Path(tmp) / "consume.log"
        backlog, paced = bodies[:count], bodies[count:]
        drive = _drive(bootstrap_servers, topics, backlog, paced, rate, seconds, env, log)
        figures = run_loop(drive)
        summary = _stream_summary(log)
    decided = max(summary["decisions"], 1)
    return {
        "backlog": count,
        **figures,
        "step_us_per_tx": {name: summary[key] / decided * 1e6 for name, key in STEPS.items()},
        "consumer_batches": summary["batches"],
        "consumer_decisions": summary["decisions"],
    }


async def _drive(
    servers: str,
    topics: KafkaTopics,
    backlog: list[dict[str, Any]],
    paced: list[dict[str, Any]],
    rate: float,
    seconds: float,
    env: dict[str, str],
    log: Path,
) -> dict[str, Any]:
    published = KafkaTarget(servers, Recorder(), topics)
    published.start()
    try:
        _submit_all(published, backlog)
        published.flush()  # the whole backlog is on the broker before the consumer starts
        with server(riskscore_command("consume"), env, None, log) as consumer:
            deadline = time.monotonic() + BACKLOG_TIMEOUT_S
            # A second at a time: a consumer that fails to start ends the wait at once.
            while published.recorder.outstanding and time.monotonic() < deadline:
                if consumer.poll() is not None:
                    ended = consumer.returncode
                    raise BenchError(f"the consumer exited with {ended}:\n{tail(log)}")
                await drain(published.recorder, 1.0)
            published.abandon(time.perf_counter())
            throughput = _throughput(published.recorder)
            latency = await _paced(servers, topics, paced, rate, seconds)
    finally:
        published.close()
    return {"throughput_tx_per_s": throughput, **latency}


def _submit_all(target: KafkaTarget, bodies: list[dict[str, Any]]) -> None:
    """Every body at once, all intended now: each decision's latency is then the time
    from the start of publishing to its arrival."""
    now = time.perf_counter()
    target.recorder.measure_from = now
    for body in bodies:
        target.recorder.on_send(now, now)
        target.submit(body, now)


def _throughput(recorder: Recorder) -> float:
    """Decisions per second from the first to the last (start-up and group join excluded)."""
    if recorder.errors or recorder.completed < 2:
        raise BenchError(f"the backlog was not drained: {dict(recorder.errors)}")
    seen = np.frombuffer(recorder.sample_latency_ms, dtype=np.float64) / 1000.0
    return float((seen.size - 1) / (seen.max() - seen.min()))


async def _paced(
    servers: str, topics: KafkaTopics, bodies: list[dict[str, Any]], rate: float, seconds: float
) -> dict[str, Any]:
    recorder = Recorder()

    def target(recorder: Recorder) -> Target:
        return KafkaTarget(servers, recorder, topics)

    plan = Plan(seconds, drain_timeout_s=LATENCY_DRAIN_TIMEOUT_S)
    config = RunConfig(plan, rate, progress=sys.stderr.isatty())
    report = await run_once(target, Workload([], []), iter(bodies), config, recorder)
    ms = np.frombuffer(recorder.sample_latency_ms, dtype=np.float64)
    if ms.size == 0:
        raise BenchError(f"no decision arrived at {rate:g}/s: {report['errors']}")
    return {
        "latency_rate_per_s": rate,
        "latency_n": int(ms.size),
        "latency_missing": report["sent"] - int(ms.size),
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p99_ms": float(np.percentile(ms, 99)),
        "latency_max_ms": float(ms.max()),
        "latency_errors": report["errors"],
        "consumer_lag": report.get("consumer_lag"),
    }


def _stream_summary(log: Path) -> dict[str, Any]:
    """The consumer's totals: the JSON line it prints when it stops."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith('{"stream_summary"'):
            summary: dict[str, Any] = json.loads(line)["stream_summary"]
            return summary
    raise BenchError(f"the consumer printed no totals:\n{tail(log)}")
