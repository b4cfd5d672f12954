"""`riskscore bench`: benchmarks of the scoring core in this process (scorer, explain) and
of a running service driven by the load generator's clients (cascade, stream)."""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from models.artifact_paths import default_artifact_dir
from models.band_override import band_widened_copy
from service.cli.arguments import non_negative_int, positive_int
from service.cli.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmark the scoring core, in this process or as a running service",
        description=(
            "scorer and explain run in this process; cascade and stream start the service "
            "and drive it with the load generator's clients (the loadtest extra). Open-loop "
            "HTTP and Kafka load at any rate: riskscore-loadtest."
        ),
    )
    kinds = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    scorer = kinds.add_parser(
        "scorer",
        help="per-stage latency of the Scorer against plain Booster.predict",
        description=(
            "Scores a simulated stream one transaction at a time through the full Scorer "
            "(features, model, exact SHAP, reasons, durable SQLite audit write) and reports "
            "p50/p90/p99/max per stage, plus plain Booster.predict on the same rows and model; "
            "then the same stream on fresh state in batches of --batch. Both passes report "
            "the process's CPU time per decision (all threads, fsync waits excluded)."
        ),
    )
    scorer.add_argument("--count", type=positive_int, default=5000, help="transactions timed")
    scorer.add_argument("--model", type=Path, help="artifact directory (default: shipped)")
    scorer.add_argument("--seed", type=int, default=11, help="simulation seed")
    scorer.add_argument(
        "--batch", type=positive_int, default=64, help="batch size of the batched pass"
    )
    scorer.add_argument("--json", type=Path, help="also write the figures as JSON")
    scorer.set_defaults(run=run_scorer)
    explain = kinds.add_parser(
        "explain",
        help="fast exact TreeSHAP against pred_contrib and plain predict",
        description=(
            "On the shipped model and on a 500-tree, 63-leaf model trained on simulated data "
            "(about half a minute): per-row p50/p99 of Booster.predict, the compiled "
            "predictor, LightGBM's pred_contrib and the fast exact explainer, batch "
            "throughput, the largest difference between the explainers, table memory."
        ),
    )
    explain.add_argument("--calls", type=positive_int, default=2000, help="timed calls per row")
    explain.add_argument("--model", type=Path, help="artifact directory (default: shipped)")
    explain.add_argument("--json", type=Path, help="also write the figures as JSON")
    explain.set_defaults(run=run_explain)
    stream = kinds.add_parser(
        "stream",
        help="Kafka path throughput and end-to-end latency (embedded broker)",
        description=(
            "Starts an embedded broker and one consumer with the shipped model and a real "
            "SQLite store; drains a backlog of --count transactions (throughput, time per "
            "step), then publishes at --rate per second for --seconds and reports the time "
            "from send to decision on the decisions topic."
        ),
    )
    stream.add_argument("--count", type=positive_int, default=30_000, help="backlog size")
    stream.add_argument("--rate", type=positive_int, default=5000, help="latency run rate")
    stream.add_argument("--seconds", type=positive_int, default=10, help="latency run length")
    stream.add_argument("--json", type=Path, help="also write the figures as JSON")
    stream.set_defaults(run=run_stream)
    cascade = kinds.add_parser(
        "cascade",
        help="the second stage over HTTP, normal and with an injected delay",
        description=(
            "Starts `riskscore serve` three times (Kafka off, fresh audit store): once as "
            "shipped, once with --delay-ms injected into the second stage, and once with that "
            "delay and the band widened to every score (a copy of the shipped sequence "
            "artifact), so that every payment escalates and must fall back. Sends each a week of "
            "simulated history in batches, then replays the same stream open-loop at --rate "
            "(the first --warmup payments not counted) and reports, per phase, the share "
            "escalated to the "
            "second stage, which stage decided, the fallback reasons and the client-side "
            "latency from scheduled send to answer, with the count over budget + 5 ms."
        ),
    )
    cascade.add_argument("--count", type=positive_int, default=2000, help="payments per phase")
    cascade.add_argument("--rate", type=positive_int, default=100, help="payments per second")
    cascade.add_argument("--delay-ms", type=float, default=200.0, help="injected delay")
    cascade.add_argument("--budget-ms", type=float, default=50.0, help="latency budget")
    cascade.add_argument(
        "--warmup", type=non_negative_int, default=300, help="payments sent first and not counted"
    )
    cascade.add_argument("--json", type=Path, help="also write the figures as JSON")
    cascade.set_defaults(run=run_cascade)
    promote = kinds.add_parser(
        "promote",
        help="model versions promoted back and forth under a steady open-loop load",
        description=(
            "Starts `riskscore serve` (Kafka off) on a directory of two versions (the shipped "
            "model, and its copy under another version name), sends a week of simulated "
            "history, then the timed stream open-loop at --rate for --seconds, promoting the "
            "other version --promotions times. Reports errors, answers per version and the "
            "client-side latency of payments scheduled during a swap (the promotion and "
            "--window-s after it) against the steady ones, with the load average (needs the "
            "loadtest extra)."
        ),
    )
    promote.add_argument("--rate", type=positive_int, default=100, help="payments per second")
    promote.add_argument("--seconds", type=positive_int, default=40, help="measured run length")
    promote.add_argument("--promotions", type=positive_int, default=4, help="promotions")
    promote.add_argument(
        "--window-s", type=float, default=1.0, help="seconds after a promotion counted as swap"
    )
    promote.add_argument("--json", type=Path, help="also write the figures as JSON")
    promote.set_defaults(run=run_promote)
    shadow = kinds.add_parser(
        "shadow",
        help="p99 with the shadow challenger off and on, at the same open-loop rate",
        description=(
            "Starts `riskscore serve` (Kafka off) on a directory of two versions twice, each "
            "time with a fresh audit store: first without a challenger, then with the second "
            "version as challenger. Sends a week of simulated history, then the same timed "
            "stream open-loop at --rate for --seconds. Reports p50/p99/max of each phase, "
            "the difference of the p99s, the shadow's counters, and the share of the measured "
            "decisions with a challenger row in the store, with the load average (needs the "
            "loadtest extra). It measures latency: run it on a machine as quiet as you can."
        ),
    )
    shadow.add_argument("--rate", type=positive_int, default=100, help="payments per second")
    shadow.add_argument("--seconds", type=positive_int, default=30, help="measured run length")
    shadow.add_argument(
        "--alternate-s",
        type=float,
        default=None,
        help="one service instead, the shadow switched on and off every S seconds "
        "(robust to a load that drifts between phases)",
    )
    shadow.add_argument("--json", type=Path, help="also write the figures as JSON")
    shadow.set_defaults(run=run_shadow)
    overload = kinds.add_parser(
        "overload",
        help="shedding with 429 at 3x capacity: admitted and refused latency, loss, recovery",
        description=(
            "Starts `riskscore serve` (Kafka off, fresh audit store; pinned to the last core "
            "and the load generator to the first, where taskset allows) and sends it "
            "simulated payments open-loop on /score: --probe-rate for --probe-s seconds to a "
            "first server with admission control off (the 200 answers per second of wall "
            "time, the drain included, are the capacity; --capacity skips the probe), then, "
            "to a second server with admission control on, --factor x capacity (at most "
            "--ceiling) for --seconds, then half the capacity for --after-s seconds. Prints "
            "JSON: admitted (200) and refused (429) latency from scheduled send, any other "
            "error, acknowledged payments missing from the audit store, and the seconds "
            "after the overload until each second's p99 was back within --slo-ms."
        ),
    )
    overload.add_argument("--probe-rate", type=float, default=3000.0, help="offered in the probe")
    overload.add_argument("--probe-s", type=float, default=5.0, help="probe length, seconds")
    overload.add_argument("--factor", type=float, default=3.0, help="overload x capacity")
    overload.add_argument("--ceiling", type=float, default=11_000.0, help="most offered per s")
    overload.add_argument("--seconds", type=float, default=30.0, help="overload length")
    overload.add_argument("--after-s", type=float, default=15.0, help="recovery phase length")
    overload.add_argument("--slo-ms", type=float, default=50.0, help="admitted p99 target")
    overload.add_argument(
        "--capacity", type=float, help="skip the probe: this many payments/s is the capacity"
    )
    overload.add_argument("--json", type=Path, help="also write the figures to this file")
    overload.set_defaults(run=run_overload)
    audit = kinds.add_parser(
        "audit",
        help="durable audit writes: SQLite against PostgreSQL",
        description=(
            "Records --count synthetic decisions (the real shape: 24 features) per number of "
            "concurrent waiters on one event loop, each awaited until durable, into a fresh "
            "SQLite file and, with --postgres-url, into that PostgreSQL database (its tables "
            "are created; the decisions stay). Reports durable decisions/s, submit-to-durable "
            "p50/p99, decisions per commit and the event loop's lag."
        ),
    )
    audit.add_argument("--count", type=positive_int, default=5000, help="decisions per run")
    audit.add_argument(
        "--waiters", default="1,16,64", help="concurrent waiters per run (default: %(default)s)"
    )
    audit.add_argument("--postgres-url", metavar="URL", help="a scratch PostgreSQL database")
    audit.add_argument("--json", type=Path, help="also write the figures as JSON")
    audit.set_defaults(run=run_audit)
    crash = kinds.add_parser(
        "crash",
        help="kill -9 of `riskscore serve` under HTTP load: acknowledged means durable",
        description=(
            "Starts `riskscore serve` (Kafka off) on a fresh data directory --kills times; "
            "each time sends payments at --rate per second for about --seconds and kills it "
            "with SIGKILL while requests are in flight. Then starts it once more and sends "
            "every payment again: each one answered 200 before must come back as a replay "
            "with the same answer (lost: decided anew; changed: another answer)."
        ),
    )
    crash.add_argument("--kills", type=positive_int, default=20, help="SIGKILLs")
    crash.add_argument("--rate", type=positive_int, default=200, help="payments per second")
    crash.add_argument("--seconds", type=float, default=1.5, help="load per round (mean)")
    crash.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    crash.set_defaults(run=run_crash)
    sigterm = kinds.add_parser(
        "sigterm",
        help="SIGTERM of `riskscore serve` under HTTP load: no failed in-flight request",
        description=(
            "Starts `riskscore serve` (Kafka off); --concurrency clients each send their next "
            "payment once answered, for --seconds; then SIGTERM with each client's request "
            "in flight and no more sent: every one "
            "must be answered 200, the process must exit 0 within 30 s, and after a restart "
            "every acknowledged payment is a replay."
        ),
    )
    sigterm.add_argument("--concurrency", type=positive_int, default=32, help="clients")
    sigterm.add_argument("--seconds", type=float, default=3.0, help="load before the signal")
    sigterm.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    sigterm.set_defaults(run=run_sigterm)


def run_scorer(args: argparse.Namespace) -> int:
    from service.benchmarks.scorer_bench import measure
    from service.benchmarks.stats import table

    result = measure(
        args.model or default_artifact_dir(), args.count, seed=args.seed, batch=args.batch
    )
    print(f"model {result['model_version']}, {result['transactions']} transactions timed")
    print(table(result["stages"]))
    print(
        "decision / plain predict: "
        f"p50 {result['ratio_decision_to_predict_p50']:.1f}x, "
        f"p99 {result['ratio_decision_to_predict_p99']:.1f}x"
    )
    print(
        "process CPU per durable decision (user; system in brackets): "
        f"{result['cpu_ms_per_decision_single']:.3f} ms "
        f"({result['system_ms_per_decision_single']:.3f}) one by one, "
        f"{result['cpu_ms_per_decision_batched']:.3f} ms "
        f"({result['system_ms_per_decision_batched']:.3f}) in batches of {result['batch_size']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from models.fast import FastModel
    from service.benchmarks.explain_bench import measure, table

    result = measure(FastModel.load(args.model or default_artifact_dir()), calls=args.calls)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _load_generator(name: str) -> ModuleType:
    """A benchmark of ``loadtest``, imported when asked for: its dependencies (HDR
    histograms, httptools) are the loadtest extra, which a service install leaves out."""
    try:
        return importlib.import_module(f"loadtest.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] in ("loadtest", "service", "features"):
            raise  # our own code is installed with riskscore: a bug, not a missing extra
        raise UserError(
            f"this benchmark needs the load generator ({exc.name} is missing): "
            "pip install -e '.[loadtest]'"
        ) from None


def _measured(bench: ModuleType, *args: object) -> dict[str, Any]:
    """``bench.measure(*args)``; a service that would not start or answer is one line."""
    from loadtest.server_process import BenchError

    try:
        result: dict[str, Any] = bench.measure(*args)
    except BenchError as exc:
        raise UserError(str(exc)) from None
    return result


def run_stream(args: argparse.Namespace) -> int:
    bench = _load_generator("bench_stream")
    from streaming.broker import EmbeddedBroker, ensure_topics
    from streaming.config import Topics

    # The broker is this process's (the composition root's): the benchmark only needs its
    # address and topics, and so does not depend on streaming.
    with EmbeddedBroker(port=0) as broker:
        ensure_topics(broker.bootstrap_servers, Topics().all(), partitions=4)
        result = _measured(
            bench, broker.bootstrap_servers, args.count, float(args.rate), float(args.seconds)
        )
    print(f"throughput: {result['throughput_tx_per_s']:,.0f} transactions/s (backlog {args.count})")
    for step, us in result["step_us_per_tx"].items():
        print(f"  {step:<48} {us:8.1f} µs/tx")
    print(
        f"latency at {args.rate}/s: p50 {result['latency_p50_ms']:.1f} ms, "
        f"p99 {result['latency_p99_ms']:.1f} ms, max {result['latency_max_ms']:.1f} ms "
        f"({result['latency_n']} transactions, {result['latency_missing']} missing)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_cascade(args: argparse.Namespace) -> int:
    bench = _load_generator("bench_cascade")
    with tempfile.TemporaryDirectory(prefix="riskscore-every-payment-") as scratch:
        every_payment = band_widened_copy(Path(scratch) / "sequence")
        result = _measured(
            bench,
            args.count,
            float(args.rate),
            args.delay_ms,
            args.budget_ms,
            args.warmup,
            every_payment,
        )
    print(bench.report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    bench = _load_generator("bench_promote")
    result = _measured(
        bench, float(args.rate), float(args.seconds), args.promotions, 5.0, args.window_s
    )
    print(bench.report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_shadow(args: argparse.Namespace) -> int:
    bench = _load_generator("bench_shadow")
    result = _measured(
        bench, float(args.rate), float(args.seconds), 5.0, _shadowed_count, args.alternate_s
    )
    print(bench.report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _shadowed_count(data_dir: Path, transaction_ids: list[str]) -> int:
    """How many of these ids have a challenger row in the SQLite audit store in ``data_dir``."""
    from service.audit_backend import open_audit_store
    from service.settings import Settings

    store = open_audit_store(Settings.of(data_dir=data_dir))
    try:
        return len({row.transaction_id for row in store.challenger_scores_of(transaction_ids)})
    finally:
        store.close()


def run_overload(args: argparse.Namespace) -> int:
    bench = _load_generator("bench_overload")
    result = _measured(
        bench,
        args.probe_rate,
        args.probe_s,
        args.factor,
        args.ceiling,
        args.seconds,
        args.after_s,
        args.slo_ms,
        _stored_count,
        args.capacity,
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


def _stored_count(data_dir: Path, transaction_ids: list[str]) -> int:
    """How many of these ids the SQLite audit store in ``data_dir`` holds."""
    from service.audit_backend import open_audit_store
    from service.settings import Settings

    store = open_audit_store(Settings.of(data_dir=data_dir))
    try:
        chunk = 500
        return sum(
            len(store.get_many(transaction_ids[i : i + chunk]))
            for i in range(0, len(transaction_ids), chunk)
        )
    finally:
        store.close()


def run_audit(args: argparse.Namespace) -> int:
    from service.benchmarks.audit_bench import measure, postgres_opener, sqlite_opener, table
    from service.cli.errors import UserError

    try:
        waiters = [int(w) for w in args.waiters.split(",")]
    except ValueError:
        raise UserError("--waiters: a comma-separated list of integers") from None
    if not waiters or min(waiters) < 1:
        raise UserError("--waiters: each must be at least 1")
    stores = {"sqlite": sqlite_opener()}
    if args.postgres_url:
        stores["postgresql"] = postgres_opener(args.postgres_url)
    result = measure(stores, args.count, waiters)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_crash(args: argparse.Namespace) -> int:
    return _fault_run(args, "crash", kills=args.kills, rate=args.rate, seconds=args.seconds)


def run_sigterm(args: argparse.Namespace) -> int:
    return _fault_run(args, "sigterm", concurrency=args.concurrency, seconds=args.seconds)


def _fault_run(args: argparse.Namespace, which: str, **options: Any) -> int:
    """One of ``loadtest.bench_faults``' runs; exit status 1 when its target is missed."""
    import tempfile

    from loadtest import bench_faults
    from loadtest.server_process import BenchError

    with tempfile.TemporaryDirectory(prefix=f"riskscore-{which}-") as scratch:
        workdir = args.dir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            report = getattr(bench_faults, which)(workdir, **options)
        except BenchError as exc:
            raise UserError(f"{exc}\n{bench_faults.log_tail(workdir)}") from None
    print(bench_faults.describe(report))
    return 0 if report.ok else 1
