"""Faults under load, on loopback: `riskscore serve` killed with SIGKILL, or stopped with
SIGTERM, while a client sends it payments (``riskscore bench crash | sigterm``).

What counts is what the client was told. A payment answered 200 is *acknowledged*: its
decision must survive anything that happens to the process afterwards. After the runs the
service is started once more and every payment ever sent is sent again with the same id
and body: an acknowledged one must come back as a replay (``Idempotent-Replayed: true``)
with the very same answer — a new decision would mean it was lost, another answer that it
was decided twice. A payment that got no answer (the process died under it) may come back
either way: recorded before the kill, or never.

The service runs with Kafka off: this measures the HTTP service's own durability (the
audit store), not the embedded broker's.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.server_process import (
    BenchError,
    free_port,
    riskscore_command,
    riskscore_env,
    tail,
    wait_ready,
)

REPLAYED = "Idempotent-Replayed"
REQUEST_TIMEOUT_S = 30.0
CONNECTIONS = 64
# A payment's customer and terminal: a few hundred of each, so windows fill up.
CUSTOMERS = 300
TERMINALS = 600
# SIGTERM must end the process within this (the target; shutdown_timeout is 10 s).
EXIT_LIMIT_S = 30.0
# Twenty-one starts in a row on a busy machine: a start slower than the benchmarks' usual
# limit is slow, not broken (it is reported, in restart_ready_s).
READY_TIMEOUT_S = 600.0


@dataclass
class Answer:
    status: int | None  # None: no answer (connection reset, refused, timeout)
    body: bytes = b""
    replayed: bool = False


@dataclass
class CrashReport:
    kills: int
    rate: float
    sent: int = 0
    acknowledged: int = 0
    unanswered: int = 0
    other_status: dict[str, int] = field(default_factory=dict)
    lost: int = 0  # acknowledged, then decided anew after a restart
    changed: int = 0  # acknowledged, then replayed with another answer
    unanswered_recorded: int = 0  # no answer, yet recorded before the kill (a replay later)
    unanswered_decided_later: int = 0
    unverified: int = 0  # the payment sent again after the runs got no decision either
    restart_ready_s: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0 and self.changed == 0 and self.unverified == 0 and self.acknowledged > 0
        )


@dataclass
class SigtermReport:
    concurrency: int
    sent: int = 0
    in_flight_at_signal: int = 0
    acknowledged: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    exit_s: float = 0.0
    exit_code: int | None = None
    lost: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.failed == 0
            and self.lost == 0
            and self.exit_code == 0
            and self.exit_s < EXIT_LIMIT_S
            and self.acknowledged > 0
        )


def payments(prefix: str, seed: int = 7) -> Iterator[bytes]:
    """Endless distinct payments (ids ``prefix-N``), a second apart in event time."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    n = 0
    while True:
        yield json.dumps(
            {
                "transaction_id": f"{prefix}-{n}",
                "timestamp": (start + timedelta(seconds=n)).isoformat(),
                "customer_id": f"c-{rng.randrange(CUSTOMERS)}",
                "terminal_id": f"t-{rng.randrange(TERMINALS)}",
                "amount": round(rng.lognormvariate(3.5, 1.0), 2),
            }
        ).encode()
        n += 1


class Service:
    """`riskscore serve` (Kafka off) on a free port over one data directory."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start and wait until ready; the seconds that took."""
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                riskscore_command("serve", "--host", "127.0.0.1", "--port", str(self.port)),
                env=riskscore_env(data_dir=str(self.data_dir), kafka="off"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_ready(f"{self.url}/readyz", self.process, self.log, READY_TIMEOUT_S)
        return time.monotonic() - started

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds until the process ended."""
        assert self.process is not None
        signalled = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=EXIT_LIMIT_S * 2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise BenchError(
                f"serve still running {EXIT_LIMIT_S * 2:.0f} s after SIGTERM"
            ) from None
        return code, time.monotonic() - signalled

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# These runs test durability, not latency: a roomy budget, so admission control does not
# refuse (429) what a loaded machine answers late — a refused payment proves nothing.
HEADERS = {"Content-Type": "application/json", "X-Deadline-Ms": "60000"}


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> Answer:
    try:
        async with session.post(url, data=body, headers=HEADERS) as response:
            return Answer(
                response.status, await response.read(), response.headers.get(REPLAYED) == "true"
            )
    except (aiohttp.ClientError, OSError, TimeoutError):
        return Answer(None)


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def _open_loop(
    url: str, bodies: Iterator[bytes], rate: float, seconds: float
) -> tuple[list[bytes], list[asyncio.Task[Answer]], aiohttp.ClientSession]:
    """Send at ``rate`` per second for ``seconds`` (each on schedule, not waiting for the
    previous answer); the bodies and their tasks, still running, and the session."""
    session = _session()
    sent: list[bytes] = []
    tasks: list[asyncio.Task[Answer]] = []
    start = time.monotonic()
    n = 0
    while (due := start + n / rate) < start + seconds:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule itself, not a wait for an outcome
        body = next(bodies)
        sent.append(body)
        tasks.append(asyncio.create_task(_post(session, f"{url}/score", body)))
        n += 1
    return sent, tasks, session


async def _crash_rounds(
    service: Service, kills: int, rate: float, seconds: tuple[float, float], report: CrashReport
) -> dict[bytes, Answer]:
    rng = random.Random(11)
    answers: dict[bytes, Answer] = {}
    bodies = payments("crash")
    for _ in range(kills):
        report.restart_ready_s.append(service.start())
        sent, tasks, session = await _open_loop(service.url, bodies, rate, rng.uniform(*seconds))
        service.kill()  # with requests still in flight
        results = await asyncio.gather(*tasks)
        await session.close()
        answers.update(zip(sent, results, strict=True))
    return answers


async def _resend(url: str, bodies: list[bytes]) -> list[Answer]:
    # At most one request per connection at a time: the client's timeout then measures
    # the service, not thousands of requests queued in the client for a free connection.
    session = _session()
    slots = asyncio.Semaphore(CONNECTIONS)

    async def post(body: bytes) -> Answer:
        async with slots:
            return await _post(session, f"{url}/score", body)

    try:
        return list(await asyncio.gather(*(post(b) for b in bodies)))
    finally:
        await session.close()


def crash(workdir: Path, kills: int = 20, rate: float = 200.0, seconds: float = 1.5) -> CrashReport:
    """``kills`` rounds of: start serve, send at ``rate`` for 0.5–1.5 × ``seconds``, SIGKILL.
    Then one more start, and every payment sent again (see the module doc)."""
    report = CrashReport(kills, rate)
    service = Service(workdir / "data", workdir / "serve.log")
    try:
        answers = asyncio.run(
            _crash_rounds(service, kills, rate, (0.5 * seconds, 1.5 * seconds), report)
        )
        report.restart_ready_s.append(service.start())
        bodies = list(answers)
        again = asyncio.run(_resend(service.url, bodies))
        service.terminate()
    finally:
        service.stop_quietly()
    report.sent = len(bodies)
    for first, second in zip((answers[b] for b in bodies), again, strict=True):
        if second.status != 200:
            report.unverified += 1  # sent again and not answered: cannot be classified
            continue
        if first.status == 200:
            report.acknowledged += 1
            if not second.replayed:
                report.lost += 1
            elif second.body != first.body:
                report.changed += 1
        elif first.status is None:
            report.unanswered += 1
            if second.replayed:
                report.unanswered_recorded += 1
            else:
                report.unanswered_decided_later += 1
        else:
            key = str(first.status)
            report.other_status[key] = report.other_status.get(key, 0) + 1
    return report


async def _sigterm_run(
    service: Service, concurrency: int, seconds: float, report: SigtermReport
) -> None:
    # Closed loop: each worker keeps one request on its connection, so at the signal every
    # outstanding request has reached the server (none waits in the client's own queue).
    session = _session()
    bodies = payments("term")
    stopping = False
    in_flight = 0
    done: list[tuple[bytes, Answer]] = []

    async def worker() -> None:
        nonlocal in_flight
        while not stopping:
            body = next(bodies)
            in_flight += 1
            answer = await _post(session, f"{service.url}/score", body)
            in_flight -= 1
            done.append((body, answer))

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(seconds)  # the load's length: workers run meanwhile
    stopping = True  # no request starts after this
    report.in_flight_at_signal = in_flight
    # SIGTERM off the event loop: the answers keep arriving while the process stops.
    code, exit_s = await asyncio.to_thread(service.terminate)
    await asyncio.gather(*workers)
    await session.close()
    report.sent, report.exit_code, report.exit_s = len(done), code, exit_s
    acknowledged = []
    for body, answer in done:
        if answer.status == 200:
            acknowledged.append((body, answer))
        else:
            report.failed += 1
            key = "no answer" if answer.status is None else str(answer.status)
            report.failures[key] = report.failures.get(key, 0) + 1
    report.acknowledged = len(acknowledged)
    service.start()
    again = await _resend(service.url, [b for b, _ in acknowledged])
    report.lost = sum(
        not (a.replayed and a.body == first.body)
        for a, (_, first) in zip(again, acknowledged, strict=True)
    )
    service.terminate()


def sigterm(workdir: Path, concurrency: int = 32, seconds: float = 3.0) -> SigtermReport:
    """``concurrency`` clients, each sending its next payment once answered, for
    ``seconds``; then SIGTERM with their requests in flight (and none sent after): every
    one must be answered 200 and the process must exit 0 in less than 30 s; after a
    restart every acknowledged payment is a replay."""
    report = SigtermReport(concurrency)
    service = Service(workdir / "data", workdir / "serve.log")
    try:
        service.start()
        asyncio.run(_sigterm_run(service, concurrency, seconds, report))
    finally:
        service.stop_quietly()
    return report


def describe(report: CrashReport | SigtermReport) -> str:
    """The report as the command prints it."""
    data: dict[str, Any] = asdict(report)
    if isinstance(report, CrashReport):
        ready = sorted(report.restart_ready_s)
        data["restart_ready_s"] = {
            "median": round(ready[len(ready) // 2], 2),
            "max": round(ready[-1], 2),
            "starts": len(ready),
        }
    data["ok"] = report.ok
    return json.dumps(data, indent=2)


def log_tail(workdir: Path) -> str:
    log = workdir / "serve.log"
    return tail(log) if log.exists() else ""


__all__ = ["CrashReport", "SigtermReport", "crash", "describe", "log_tail", "sigterm"]
