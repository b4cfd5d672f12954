"""Open-loop HTTP load against a running `riskscore serve`: fixed arrival rates, bounded time.

    python -m loadtest.http_openloop --url http://127.0.0.1:8080 --rates 200,500,1000 \
        --duration 20 [--api-key KEY] [--json OUT]

Requests leave on a fixed schedule (``i / rate`` seconds after the start) whether or not
earlier ones have been answered, as payments arrive in production. Latency is measured
from each request's *scheduled* time, so a server (or client) falling behind shows up in
the figures instead of silently lowering the rate. The payloads are a simulated stream,
continued in time order from one rate to the next, each with a fresh transaction id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from features.data import frame_from_pandas
from features.simulator import SimulationConfig, simulate

MAX_DURATION_S = 30.0


@dataclass
class RunResult:
    rate: float
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    lag_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ms = np.asarray(self.latencies_ms)
        ok = self.statuses.get("200", 0)
        sent = sum(self.statuses.values())
        out: dict[str, Any] = {
            "rate_per_s": self.rate,
            "duration_s": self.duration_s,
            "sent": sent,
            "ok": ok,
            "errors": sent - ok,
            "statuses": self.statuses,
            "achieved_per_s": sent / self.duration_s if self.duration_s else 0.0,
            "max_send_lag_ms": max(self.lag_ms, default=0.0),
        }
        if ms.size:
            p50, p90, p99 = np.percentile(ms, [50, 90, 99])
            out.update(p50_ms=p50, p90_ms=p90, p99_ms=p99, max_ms=float(ms.max()))
        return out


def payload_stream(count: int, seed: int) -> list[dict[str, object]]:
    """``count`` simulated payments in time order (more customers than a day can exhaust)."""
    days = 10
    while True:
        config = SimulationConfig(
            customers=5000, terminals=10000, days=days, start=date(2025, 3, 1), seed=seed
        )
        frame = frame_from_pandas(simulate(config), source="simulated")
        payloads = list(frame.payloads(f"load-{seed}-"))
        if len(payloads) >= count:
            return payloads[:count]
        days *= 2


async def run_rate(
    session: aiohttp.ClientSession,
    url: str,
    payloads: list[dict[str, object]],
    rate: float,
    headers: dict[str, str],
) -> RunResult:
    """Send ``payloads`` at ``rate`` per second; wait for every answer."""
    result = RunResult(rate=rate, duration_s=len(payloads) / rate)

    async def one(body: dict[str, object], scheduled: float) -> None:
        try:
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                status = str(response.status)
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        result.latencies_ms.append((time.perf_counter() - scheduled) * 1000.0)
        result.statuses[status] = result.statuses.get(status, 0) + 1

    start = time.perf_counter() + 0.05
    tasks = []
    for i, body in enumerate(payloads):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.lag_ms.append(max(0.0, -delay) * 1000.0)
        tasks.append(asyncio.create_task(one(body, scheduled)))
    await asyncio.gather(*tasks)
    return result


async def run(
    base_url: str, rates: list[float], duration: float, api_key: str | None, seed: int
) -> list[dict[str, Any]]:
    warmup = 200
    counts = [int(rate * duration) for rate in rates]
    payloads = payload_stream(warmup + sum(counts), seed)
    headers = {"X-API-Key": api_key} if api_key else {}
    url = f"{base_url.rstrip('/')}/score"
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    summaries = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open connections and warm the server's caches; not measured.
        await run_rate(session, url, payloads[:warmup], 100.0, headers)
        offset = warmup
        for rate, count in zip(rates, counts, strict=True):
            result = await run_rate(session, url, payloads[offset : offset + count], rate, headers)
            offset += count
            summary = result.summary()
            summaries.append(summary)
            print(_line(summary), flush=True)
    return summaries


def _line(s: dict[str, Any]) -> str:
    if "p50_ms" not in s:
        return f"{s['rate_per_s']:>6.0f}/s: no answers ({s['statuses']})"
    return (
        f"{s['rate_per_s']:>6.0f}/s for {s['duration_s']:.0f} s: sent {s['sent']}, "
        f"errors {s['errors']}, p50 {s['p50_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms, "
        f"p99 {s['p99_ms']:.2f} ms, max {s['max_ms']:.1f} ms "
        f"(client send lag max {s['max_send_lag_ms']:.1f} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.http_openloop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="service base URL")
    parser.add_argument(
        "--rates", default="200,500,1000", help="comma-separated arrival rates (requests/s)"
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help=f"seconds per rate (at most {MAX_DURATION_S})"
    )
    parser.add_argument("--api-key", help="sent as X-API-Key when the service requires keys")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed of the payloads")
    parser.add_argument("--json", type=Path, help="also write the summaries as JSON")
    args = parser.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if not rates or min(rates) <= 0:
        parser.error("--rates must be positive")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S}]")
    summaries = asyncio.run(run(args.url, rates, args.duration, args.api_key, args.seed))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
