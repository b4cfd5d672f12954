"""`riskscore-loadtest`: open-loop replay of a transaction file into HTTP or Kafka.

    riskscore-loadtest http  --url http://127.0.0.1:8080 --data FILE --rate 1000 --duration 30
    riskscore-loadtest kafka --bootstrap-servers 127.0.0.1:9092 --data FILE --rate 500 --duration 30
    riskscore-loadtest self-test --rate 5000 --duration 10

Requests leave on a fixed schedule whether or not earlier ones were answered, and latency
counts from each request's *intended* send time, so a server that falls behind shows as
latency instead of a lower rate. Add --sweep to step the rate up until p99 exceeds --slo-ms
(or errors appear): the last rate that held is the capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.http_client import Endpoint, HttpTarget
from loadtest.kafka_mode import KafkaTarget, KafkaTargetError, KafkaTopics
from loadtest.net import TargetError, check_reachable, split_host_port
from loadtest.recorder import Recorder
from loadtest.report import format_report
from loadtest.runner import RunConfig, run_loop, run_once
from loadtest.schedule import Plan, Target
from loadtest.server_counters import ServerMetricsError, scrape, shares
from loadtest.sweep import format_server, format_sweep, sweep
from loadtest.workload import Workload, WorkloadError, body_stream, load_workload, run_token

PROG = "riskscore-loadtest"


class UsageError(Exception):
    """A bad argument or an unusable target: one line, exit status 2."""


def _positive(kind: type[float] | type[int]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value == float("inf"):  # NaN fails the first test
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value

    return parse


def _add_run_options(parser: argparse.ArgumentParser, data_required: bool = True) -> None:
    if data_required:
        parser.add_argument(
            "--data",
            required=True,
            type=Path,
            metavar="FILE",
            help="transactions: handbook-schema .csv/.csv.gz, or JSON lines of /score bodies",
        )
        parser.add_argument("--limit", type=_positive(int), help="read only the first N rows")
        parser.add_argument(
            "--speedup",
            type=_positive(float),
            metavar="K",
            help="instead of --rate: the file's own timestamps, K times faster",
        )
        parser.add_argument(
            "--same-ids",
            action="store_true",
            help="send the file's transaction ids unchanged (tests idempotent replays); by "
            "default each run rewrites them to lt-<token>-<id> so runs never collide",
        )
    parser.add_argument("--rate", type=_positive(float), help="requests per second (open loop)")
    parser.add_argument(
        "--duration", type=_positive(float), default=30.0, help="measured seconds (30)"
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds sent first and not measured (5)"
    )
    parser.add_argument(
        "--max-outstanding",
        type=_positive(int),
        default=10_000,
        help="unanswered requests allowed; more are not sent and count as 'dropped' errors",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for answers after the last send; the rest are 'timeout' errors",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the JSON report here")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="write a latency plot here")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    sweep_group = parser.add_argument_group("sweep (capacity search)")
    sweep_group.add_argument(
        "--sweep", action="store_true", help="step the rate from --rate up to --max-rate"
    )
    sweep_group.add_argument(
        "--rate-step", type=_positive(float), help="increment (default: --rate)"
    )
    sweep_group.add_argument(
        "--max-rate", type=_positive(float), help="last rate (default: 10 x --rate)"
    )
    sweep_group.add_argument(
        "--slo-ms", type=_positive(float), default=50.0, help="p99 objective of a held step (50)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    http = sub.add_parser(
        "http",
        help="POST each transaction to /score (or batches to /score/batch)",
        description="POST each transaction to BASE_URL/score on an open-loop schedule: "
        "requests leave at their scheduled times whether or not earlier ones were answered, "
        "and latency counts from each request's intended send time.",
    )
    http.add_argument("--url", required=True, metavar="BASE_URL", help="e.g. http://127.0.0.1:8080")
    http.add_argument(
        "--path", default=None, help="endpoint path (default /score, or /score/batch)"
    )
    http.add_argument(
        "--batch-size",
        type=_positive(int),
        default=1,
        help="transactions per request; above 1 posts {'transactions': [...]} to /score/batch "
        "and --rate counts requests",
    )
    http.add_argument(
        "--raw",
        action="store_true",
        help="the JSON lines are bodies of another API (e.g. a V2 inference request): send as is",
    )
    http.add_argument("--api-key", help="API key, sent in --api-key-header")
    http.add_argument("--api-key-header", default="X-API-Key", help="header of the key (X-API-Key)")
    http.add_argument(
        "--connections", type=_positive(int), default=256, help="most open connections (256)"
    )
    http.add_argument(
        "--server-metrics",
        metavar="URL",
        help="riskscore's /metrics (e.g. http://127.0.0.1:8080/metrics): read before and after "
        "each run to report the share of payments escalated to the second stage and the share "
        "that fell back",
    )
    _add_run_options(http)

    kafka = sub.add_parser(
        "kafka",
        help="publish to the transactions topic; time each decision on the decisions topic",
        description="Publish transactions (keyed by customer id) on an open-loop schedule and "
        "match each decision (keyed by transaction id) to its send; latency counts from the "
        "intended send time, and the scoring group's consumer lag is sampled every second.",
    )
    kafka.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT")
    kafka.add_argument("--topic", default="transactions", help="transactions topic")
    kafka.add_argument("--decisions-topic", default="decisions")
    kafka.add_argument("--dead-letter-topic", default="transactions.dlq")
    kafka.add_argument(
        "--group-id", default="riskscore", help="scoring consumer group whose lag is sampled"
    )
    _add_run_options(kafka)
    kafka.set_defaults(raw=False, batch_size=1)

    selftest = sub.add_parser(
        "self-test",
        help="the tool's own ceiling: open loop against a trivial local server",
        description="Start a trivial HTTP server (on another core where taskset allows), pin "
        "this process to one core, and load it: shows the rate the tool itself can offer.",
    )
    _add_run_options(selftest, data_required=False)
    selftest.set_defaults(raw=False, batch_size=1, speedup=None, same_ids=False)
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.rate is None and args.speedup is None:
        raise UsageError("give --rate R (requests/s) or --speedup K (the file's own pace)")
    if args.rate is not None and args.speedup is not None:
        raise UsageError("--rate and --speedup exclude each other")
    if args.sweep and args.rate is None:
        raise UsageError("--sweep steps up from --rate")
    if args.speedup is not None and args.batch_size > 1:
        raise UsageError("--speedup replays one transaction per request; drop --batch-size")
    if args.warmup < 0 or args.drain_timeout < 0:
        raise UsageError("--warmup and --drain-timeout cannot be negative")


def _http_factory(args: argparse.Namespace) -> tuple[Callable[[Recorder], Target], dict[str, Any]]:
    path = args.path or ("/score/batch" if args.batch_size > 1 else "/score")
    endpoint = Endpoint.parse(args.url, path)
    endpoint.check_reachable()
    headers = {args.api_key_header: args.api_key} if args.api_key else {}
    context = {
        "mode": "http",
        "url": f"{args.url.rstrip('/')}{path}",
        "batch_size": args.batch_size,
    }

    def make(recorder: Recorder) -> Target:
        return HttpTarget(
            endpoint,
            recorder,
            headers=headers,
            max_connections=args.connections,
            inspect_body=args.batch_size > 1,
        )

    return make, context


def _kafka_factory(args: argparse.Namespace) -> tuple[Callable[[Recorder], Target], dict[str, Any]]:
    for address in args.bootstrap_servers.split(","):
        check_reachable(*split_host_port(address))
    topics = KafkaTopics(args.topic, args.decisions_topic, args.dead_letter_topic, args.group_id)
    context = {"mode": "kafka", "bootstrap_servers": args.bootstrap_servers, "topic": args.topic}

    def make(recorder: Recorder) -> Target:
        return KafkaTarget(args.bootstrap_servers, recorder, topics)

    return make, context


async def _execute(
    args: argparse.Namespace,
    make: Callable[[Recorder], Target],
    workload: Workload,
    context: dict[str, Any],
) -> dict[str, Any]:
    plan = Plan(args.duration, args.warmup, args.max_outstanding, args.drain_timeout)
    # One stream for every step of a sweep: each step goes on through the file.
    bodies = body_stream(workload, None if args.same_ids else run_token())

    async def run_at(rate: float | None) -> dict[str, Any]:
        config = RunConfig(
            plan=plan,
            rate=rate,
            speedup=args.speedup or 1.0,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )
        metrics_url = getattr(args, "server_metrics", None)
        if metrics_url is None:
            return await run_once(make, workload, bodies, config, **context)
        before = await asyncio.to_thread(scrape, metrics_url)
        report = await run_once(make, workload, bodies, config, **context)
        report["server"] = shares(before, await asyncio.to_thread(scrape, metrics_url))
        return report

    if not args.sweep:
        return await run_at(args.rate)

    def show(report: dict[str, Any]) -> None:
        latency = report["latency_ms"]
        print(
            f"{report['target_rate']:,.0f}/s: p99 {latency['p99']} ms, "
            f"errors {sum(report['errors'].values())}{format_server(report)}",
            file=sys.stderr,
        )

    return await sweep(
        run_at,
        args.rate,
        args.rate_step or args.rate,
        args.max_rate or 10 * args.rate,
        args.slo_ms,
        show,
    )


def _self_test_workload() -> Workload:
    bodies: list[dict[str, object]] = [
        {"transaction_id": str(i), "customer_id": f"c-{i % 97}", "amount": 10.0 + i % 50}
        for i in range(1000)
    ]
    return Workload(bodies, [0.0] * len(bodies))


def _start_trivial_server() -> tuple[subprocess.Popen[str], int, str]:
    """The trivial server, on the last core if there are two or more; this process on the
    first. Returns the process, its port and how it was placed."""
    command = [sys.executable, "-m", "loadtest.trivial_server", "--port", "0"]
    cores = sorted(os.sched_getaffinity(0))
    placement = "not pinned (one core)"
    if len(cores) > 1 and shutil.which("taskset"):
        command = ["taskset", "-c", str(cores[-1]), *command]
        os.sched_setaffinity(0, {cores[0]})
        placement = f"tool on core {cores[0]}, server on core {cores[-1]}"
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("listening on "):
        server.kill()
        raise UsageError("the trivial server did not start")
    return server, int(line.split()[-1]), placement


def run(args: argparse.Namespace) -> dict[str, Any]:
    _check(args)
    if args.mode == "self-test":
        cores = os.sched_getaffinity(0)
        server, port, placement = _start_trivial_server()
        try:
            args.url, args.path, args.api_key, args.connections = (
                f"http://127.0.0.1:{port}",
                "/",
                None,
                256,
            )
            make, context = _http_factory(args)
            context.update(mode="self-test", placement=placement)
            return run_loop(_execute(args, make, _self_test_workload(), context))
        finally:
            server.terminate()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
            os.sched_setaffinity(0, cores)  # the caller may go on (tests do)
    try:
        workload = load_workload(args.data, raw=args.raw, limit=args.limit)
    except WorkloadError as exc:
        raise UsageError(str(exc)) from exc
    if args.mode == "http":
        make, context = _http_factory(args)
        if args.server_metrics:
            scrape(args.server_metrics)  # unreadable: say so before the run, not after it
    else:
        make, context = _kafka_factory(args)
    context["data"] = args.data.name
    return run_loop(_execute(args, make, workload, context))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except (UsageError, TargetError, KafkaTargetError, ServerMetricsError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(format_sweep(result) if "steps" in result else format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.plot:
        from loadtest.plot import plot_report  # matplotlib takes a second to import

        last_held = result.get("steps", [result])
        plot_report(last_held[-1], args.plot)
    return 0
