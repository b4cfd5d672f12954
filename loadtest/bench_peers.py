"""Side by side on this machine: riskscore ``/score`` against Seldon MLServer serving the
same LightGBM model, loaded by the same tool with the same transaction stream.

    python -m loadtest.bench_peers --data transactions_dev.csv.gz [--rows 200000] \\
        [--start 250 --step 250 --max-rate 4000] [--duration 10] [--common-rate 250]

riskscore does the whole decision per request (online features, model, exact SHAP, a
durable audit record); MLServer gets the precomputed feature vector of the same
transaction (``features`` offline engine, same file, same order) on its V2 REST endpoint
and does plain inference. Each server is primed first (``--prime`` seconds at the first
rate, not measured). MLServer lives in its own virtual environment under
``.peers/`` (created on first use, never in the project's dependencies). Everything binds
to 127.0.0.1; with two or more cores the server runs on the last core and the load
generator on the first (``taskset``). For each server: one sweep (capacity at p99 ≤ 20 ms
and ≤ 50 ms, no errors), then a fixed run at the common rate. Results go to
``.peers/bench-<time>/`` and a Markdown table to the terminal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.data import DataError, TransactionFrame, load_transactions
from features.definitions import feature_names
from features.offline import compute_features
from loadtest.server_process import (
    BenchError,
    free_port,
    riskscore_command,
    riskscore_env,
    server,
)
from loadtest.sweep import capacity

MLSERVER_PACKAGES = ("mlserver==1.7.1", "mlserver-lightgbm==1.7.1")
MODEL_NAME = "riskscore-fast"
SLOS_MS = (20.0, 50.0)


def cores() -> tuple[list[str], list[str], str]:
    """taskset prefixes for (tool, server) and a sentence saying how they are placed."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2 or not shutil.which("taskset"):
        return [], [], "not pinned (one core or no taskset): tool and server share the cores"
    tool, server = str(available[0]), str(available[-1])
    return (
        ["taskset", "-c", tool],
        ["taskset", "-c", server],
        f"tool pinned to core {tool}, server to core {server} (taskset)",
    )


def default_model_dir() -> Path:
    """The shipped artifact's directory, found without importing the models package."""
    spec = importlib.util.find_spec("models")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("the models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "default_artifact"


def mlserver_venv(work: Path) -> Path:
    """MLServer's own virtual environment (created once); returns its ``mlserver``."""
    venv = work / "mlserver-venv"
    binary = venv / "bin" / "mlserver"
    if binary.is_file():
        return binary
    print(f"installing {' '.join(MLSERVER_PACKAGES)} into {venv} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *MLSERVER_PACKAGES], check=True
        )
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"MLServer could not be installed ({exc})") from exc
    return binary


def write_v2_bodies(history: TransactionFrame, model_dir: Path, out: Path) -> int:
    """One V2 inference request per payment (the rows ``payloads()`` sends), with the
    features in the model's order, computed by the offline engine in file order."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    order = [feature_names().index(name) for name in manifest["feature_names"]]
    matrix = compute_features(history)[:, order]
    rows = matrix[history.amount > 0]  # payloads() skips zero-amount card checks
    with out.open("w") as lines:
        for row in rows:
            body = {
                "inputs": [
                    {
                        "name": "features",
                        "shape": [1, len(row)],
                        "datatype": "FP64",
                        "data": row.tolist(),
                    }
                ]
            }
            lines.write(json.dumps(body, separators=(",", ":")) + "\n")
    return len(rows)


def riskscore_server(port: int, data_dir: Path, pin: list[str], log: Path) -> Any:
    env = riskscore_env(
        host="127.0.0.1", port=str(port), kafka="off", data_dir=str(data_dir), log_level="WARNING"
    )
    return server([*pin, *riskscore_command("serve")], env, f"http://127.0.0.1:{port}/readyz", log)


def mlserver_server(
    binary: Path, model_dir: Path, port: int, workers: int, root: Path, pin: list[str], log: Path
) -> Any:
    """MLServer on 127.0.0.1 only: REST on ``port``, gRPC on another loopback port (it
    cannot be switched off), the metrics server off."""
    model = root / MODEL_NAME
    model.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_dir / "model.txt", model / "model.txt")
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_endpoint": None,
        "parallel_workers": workers,
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": "./model.txt"},
    }
    (model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    ready = f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready"
    return server([*pin, str(binary), "start", str(root)], dict(os.environ), ready, log)


def load(pin: list[str], args: list[str], out: Path) -> dict[str, Any]:
    """One run of the load generator, in its own process, pinned; its JSON report."""
    tool = Path(sys.executable).parent / "riskscore-loadtest"
    command = [*pin, str(tool), "http", *args, "--quiet", "--json", str(out)]
    print("$", " ".join(command[len(pin) :]), flush=True)
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def audit_records(data_dir: Path) -> int:
    with sqlite3.connect(f"file:{data_dir / 'audit.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM decisions").fetchone()[0])


def measure(
    name: str, url_args: list[str], pin: list[str], args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    timing = ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    if args.prime > 0:
        # Unmeasured: state and caches build up, one-time costs (JIT compiles, first
        # allocations) are paid before the sweep, the same for both servers.
        prime = ["--duration", str(args.prime), "--warmup", "0", "--rate", str(args.start)]
        load(pin, [*url_args, *prime], out / f"{name}-prime.json")
    sweep_args = [
        *url_args,
        *timing,
        "--rate",
        str(args.start),
        "--sweep",
        "--rate-step",
        str(args.step),
        "--max-rate",
        str(args.max_rate),
        "--slo-ms",
        str(max(SLOS_MS)),
    ]
    swept = load(pin, sweep_args, out / f"{name}-sweep.json")
    common = load(
        pin, [*url_args, *timing, "--rate", str(args.common_rate)], out / f"{name}-common.json"
    )
    return {
        "capacity": {f"p99<={slo:g}ms": capacity(swept["steps"], slo) for slo in SLOS_MS},
        "steps": [
            {
                "rate": s["target_rate"],
                "errors": s["errors"],
                **s["latency_ms"],
                **({"server": s["server"]} if "server" in s else {}),
            }
            for s in swept["steps"]
        ],
        "common": {
            "rate": args.common_rate,
            "errors": common["errors"],
            **common["latency_ms"],
            **({"server": common["server"]} if "server" in common else {}),
        },
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| server | capacity, p99 ≤ 20 ms | capacity, p99 ≤ 50 ms | rate "
        "| p50 | p90 | p99 | p99.9 | max | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c, m = r["capacity"], r["common"]

        def fmt(v: float | None) -> str:
            return "none held" if v is None else f"{v:,.0f}/s"

        errors = sum(m["errors"].values())
        lines.append(
            f"| {name} | {fmt(c['p99<=20ms'])} | {fmt(c['p99<=50ms'])} | {m['rate']:g}/s | "
            f"{m['p50']} | {m['p90']} | {m['p99']} | {m['p999']} | {m['max']} | {errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, help="handbook-schema history")
    parser.add_argument("--rows", type=int, default=200_000, help="first N rows of the file")
    parser.add_argument("--start", type=float, default=250.0, help="first sweep rate (/s)")
    parser.add_argument("--step", type=float, default=250.0, help="sweep increment (/s)")
    parser.add_argument("--max-rate", type=float, default=4000.0, help="last sweep rate (/s)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured s per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured s per run")
    parser.add_argument(
        "--common-rate", type=float, default=250.0, help="rate of the side-by-side run"
    )
    parser.add_argument(
        "--mlserver-workers",
        type=int,
        default=0,
        help="MLServer parallel_workers: 0 infers in the server process (fastest for a "
        "small model on one core; its default 1 adds a worker process)",
    )
    parser.add_argument(
        "--prime", type=float, default=20.0, help="unmeasured s at --start before the sweep"
    )
    parser.add_argument("--work", type=Path, default=Path(".peers"), help="scratch directory")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (BenchError, DataError, subprocess.CalledProcessError) as exc:
        print(f"bench_peers: error: {exc}", file=sys.stderr)
        return 2


def steps_table(results: dict[str, dict[str, Any]]) -> str:
    """Each sweep step: p50 / p99, and for riskscore the escalated and fallen-back shares."""
    lines = [
        "| server | rate | p50 | p99 | errors | escalated | fell back |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for step in r["steps"]:
            server = step.get("server", {})

            def pct(key: str, server: dict[str, Any] = server) -> str:
                value = server.get(key)
                return "—" if value is None else f"{100 * value:.1f} %"

            lines.append(
                f"| {name} | {step['rate']:,.0f}/s | {step['p50']} | {step['p99']} "
                f"| {sum(step['errors'].values())} | {pct('escalated_share')} "
                f"| {pct('fallback_share')} |"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out.mkdir()
    tool_pin, server_pin, placement = cores()
    model_dir = default_model_dir()
    mlserver = mlserver_venv(args.work)
    history = load_transactions(args.data)
    history = history.take(slice(0, min(len(history), args.rows)))
    csv = out / "transactions.csv"
    write_csv(history, csv)
    v2 = out / "v2.jsonl"
    count = write_v2_bodies(history, model_dir, v2)
    print(f"{count:,} payments; {placement}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    port, data_dir = free_port(), out / "riskscore-data"
    with riskscore_server(port, data_dir, server_pin, out / "riskscore.log"):
        base = f"http://127.0.0.1:{port}"
        # The escalated and fallen-back shares per step: a capacity bought by falling back
        # more is not a capacity.
        url_args = ["--url", base, "--data", str(csv), "--server-metrics", f"{base}/metrics"]
        results["riskscore /score"] = measure("riskscore", url_args, tool_pin, args, out)
    results["riskscore /score"]["audit_records"] = audit_records(data_dir)

    port = free_port()
    with mlserver_server(
        mlserver,
        model_dir,
        port,
        args.mlserver_workers,
        out / "mlserver",
        server_pin,
        out / "mlserver.log",
    ):
        url_args = [
            "--url",
            f"http://127.0.0.1:{port}",
            "--path",
            f"/v2/models/{MODEL_NAME}/infer",
            "--raw",
            "--data",
            str(v2),
        ]
        results["MLServer V2 infer"] = measure("mlserver", url_args, tool_pin, args, out)

    summary = {
        "placement": placement,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "payments": count,
        "mlserver_parallel_workers": args.mlserver_workers,
        "results": results,
    }
    for slo in SLOS_MS:
        ours = results["riskscore /score"]["capacity"][f"p99<={slo:g}ms"]
        theirs = results["MLServer V2 infer"]["capacity"][f"p99<={slo:g}ms"]
        summary[f"ratio_p99<={slo:g}ms"] = round(ours / theirs, 2) if ours and theirs else None
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(table(results))
    print(steps_table(results))
    print({k: v for k, v in summary.items() if k.startswith("ratio")})
    print(f"details: {out}")
    return 0


def write_csv(history: TransactionFrame, out: Path) -> None:
    """The rows used, in the handbook schema, so both servers get the same stream."""
    times = history.epoch_ms.astype("datetime64[ms]").astype("datetime64[s]").astype(str)
    with out.open("w") as lines:
        lines.write("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT\n")
        for tx, at, customer, terminal, amount in zip(
            history.transaction_id.tolist(),
            np.char.replace(times, "T", " ").tolist(),
            history.customer_id.tolist(),
            history.terminal_id.tolist(),
            history.amount.tolist(),
            strict=True,
        ):
            lines.write(f"{tx},{at},{customer},{terminal},{amount!r}\n")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
