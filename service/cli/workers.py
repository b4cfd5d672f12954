"""`riskscore serve --workers N`: N serving processes on one port, and the parent that
supervises them.

Each worker is an ordinary `riskscore serve` process listening with ``SO_REUSEPORT``, so
the kernel spreads new connections over them; nothing is shared in memory, so the feature
state and the audit store must be the shared backends (Redis, PostgreSQL). The parent
serves nothing: it starts the workers (and the embedded broker, once, when Kafka is on
without external brokers), restarts a worker that dies, forwards SIGTERM/SIGINT, and exits
non-zero when workers keep dying or one cannot start (a configuration error would only
repeat).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.settings import Settings

log = logging.getLogger("riskscore.workers")

# A worker that exits with this code failed to start (cli.main's code for a UserError):
# its siblings would fail the same way, so nothing is restarted. Only a worker's first run,
# and only within START_GRACE_S of its start, counts so: the same code later (a backend
# that became unreachable while serving) is a death like any other, restarted within the
# restart budget, so a passing Redis or PostgreSQL fault does not stop every worker.
START_FAILURE = 2
START_GRACE_S = 300.0
# More restarts than this within the window and the parent gives up (exit 1): a worker
# that dies again and again (out of memory, a crash on every request) must reach an
# operator rather than loop for ever.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def unshared_settings(settings: Settings) -> list[str]:
    """The settings that must name a shared backend before several processes can serve:
    the memory feature state and the SQLite file live in one process / on one machine."""
    missing = []
    if settings.scoring.feature_state_url is None:
        missing.append("RISKSCORE_FEATURE_STATE_URL=redis://HOST:PORT/DB")
    if settings.audit.url is None:
        missing.append("RISKSCORE_AUDIT_URL=postgresql://USER@HOST:PORT/DB")
    return missing


def refusal(settings: Settings, workers: int) -> str | None:
    """One line saying what to configure, or None when ``workers`` processes may run."""
    missing = unshared_settings(settings)
    if workers <= 1 or not missing:
        return None
    return (
        f"--workers {workers} needs the shared backends (the default feature state lives "
        f"in one process, the SQLite audit file on one machine): set {' and '.join(missing)}"
    )


def free_port(host: str) -> int:
    """A port the workers can all bind (``--port 0`` is resolved once, by the parent)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Supervisor:
    """Runs ``count`` copies of ``command`` (each gets ``--worker-index I``), restarting
    those that die, until SIGTERM/SIGINT; ``run`` returns the exit code."""

    command: Sequence[str]
    count: int
    env: dict[str, str]
    stop_timeout_s: float
    max_restarts: int = MAX_RESTARTS
    window_s: float = RESTART_WINDOW_S
    _restarts: deque[float] = field(default_factory=deque)
    # When each worker's first run started; a restarted worker is no longer in it.
    _first_runs: dict[int, float] = field(default_factory=dict)

    def run(self) -> int:
        return asyncio.run(self._supervise())

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *self.command, "--worker-index", str(index), env=self.env, preexec_fn=_die_with_parent
        )
        log.info("worker %d started (pid %d)", index, process.pid)
        return process

    async def _supervise(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        workers = {i: await self._spawn(i) for i in range(self.count)}
        self._first_runs = {i: time.monotonic() for i in workers}
        exits = {asyncio.create_task(p.wait()): i for i, p in workers.items()}
        stopping = asyncio.ensure_future(stop.wait())
        code = 0
        while True:
            done, _ = await asyncio.wait({stopping, *exits}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                break
            verdict = self._verdict(done, exits, workers)
            if verdict is not None:
                code = verdict
                break
            for ended in done:
                index = exits.pop(ended)
                self._first_runs.pop(index, None)
                workers[index] = await self._spawn(index)
                exits[asyncio.create_task(workers[index].wait())] = index
        stopping.cancel()
        return max(code, await self._stop_all(workers))

    def _verdict(
        self,
        done: set[asyncio.Task[int]],
        exits: dict[asyncio.Task[int], int],
        workers: dict[int, asyncio.subprocess.Process],
    ) -> int | None:
        """The parent's exit code when these deaths end the service, else None (restart)."""
        now = time.monotonic()
        for ended in done:
            index, returncode = exits[ended], ended.result()
            log.error(
                "worker %d (pid %d) exited with %s",
                index,
                workers[index].pid,
                f"signal {-returncode}" if returncode < 0 else f"code {returncode}",
            )
            started = self._first_runs.get(index)
            if (
                returncode == START_FAILURE
                and started is not None
                and now - started < START_GRACE_S
            ):
                log.error("worker %d could not start; stopping the others", index)
                return START_FAILURE
            self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > self.window_s:
            self._restarts.popleft()
        if len(self._restarts) > self.max_restarts:
            log.error(
                "workers died %d times within %.0f s; stopping",
                len(self._restarts),
                self.window_s,
            )
            return 1
        return None

    async def _stop_all(self, workers: dict[int, asyncio.subprocess.Process]) -> int:
        """SIGTERM to every worker still running; SIGKILL after the shutdown time (and a
        margin for closing the store); 1 if any did not stop cleanly."""
        running = [p for p in workers.values() if p.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        code = 0
        for process in running:
            try:
                returncode = await asyncio.wait_for(process.wait(), self.stop_timeout_s + 10)
            except TimeoutError:
                log.error("worker pid %d did not stop; killing it", process.pid)
                process.kill()
                returncode = await process.wait()
            code = code or (0 if returncode == 0 else 1)
        return code


def _die_with_parent() -> None:
    """In the worker, before it runs: SIGTERM when the parent dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG), so no orphan keeps serving on the port after its supervisor."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def worker_command(host: str, port: int) -> list[str]:
    """How the parent starts one worker: this same program, as `serve` on the port."""
    return [sys.executable, "-m", "service.cli", "serve", "--host", host, "--port", str(port)]


def worker_environment(bootstrap_servers: str | None) -> dict[str, str]:
    """The parent's environment, naming the parent's embedded broker when it runs one."""
    env = dict(os.environ)
    if bootstrap_servers is not None:
        env["RISKSCORE_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap_servers
    return env


def supervise(settings: Settings, workers: int) -> int:
    """The parent of ``workers`` serving processes; raises UserError (one line) when the
    configuration cannot be served by several processes."""
    from service.cli.errors import UserError
    from streaming.broker import BrokerError, EmbeddedBroker, ensure_topics

    problem = refusal(settings, workers)
    if problem is not None:
        raise UserError(problem)
    http, kafka = settings.http, settings.stream
    port = http.port or free_port(http.host)
    broker = None
    if settings.kafka == "on" and kafka.bootstrap_servers is None:
        # One embedded broker for all: each worker's consumer joins the same group on it,
        # as they would on external brokers. It lives as long as the parent.
        try:
            broker = EmbeddedBroker(
                kafka.embedded_port,
                host=kafka.embedded_host,
                advertised_host=kafka.embedded_advertised_host,
            ).start()
            ensure_topics(broker.bootstrap_servers, kafka.topics().all(), kafka.partitions)
        except BrokerError as exc:
            raise UserError(f"cannot start the embedded Kafka broker: {exc}") from exc
        log.info("embedded Kafka-protocol broker on %s", broker.bootstrap_servers)
    log.info("supervising %d workers on http://%s:%d", workers, http.host, port)
    try:
        return Supervisor(
            worker_command(http.host, port),
            workers,
            worker_environment(broker.bootstrap_servers if broker else None),
            settings.shutdown_timeout_s,
        ).run()
    finally:
        if broker is not None:
            broker.close()
