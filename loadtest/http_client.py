"""A lean HTTP/1.1 client for open-loop load: keep-alive connections, no per-request task.

aiohttp's client costs a task, a future and several layers per request, and tops out well
below the rates this tool must offer on one core. Here each connection is an asyncio
``Protocol`` carrying one request at a time; ``httptools`` (the C parser uvloop's servers
use) reads the responses; outcomes go straight to the recorder from the parser callback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from loadtest.net import TargetError, check_reachable
from loadtest.recorder import Recorder


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, base_url: str, path: str) -> Endpoint:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise TargetError(f"--url must look like http://HOST:PORT, got {base_url!r}")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise TargetError(f"--url has a bad port: {base_url!r}") from exc
        full = parts.path.rstrip("/") + "/" + path.lstrip("/")
        return cls(parts.hostname, port, full)

    def check_reachable(self) -> None:
        check_reachable(self.host, self.port)


# Each answer as it arrives: (intended send time, arrival time, HTTP status, body).
AnswerHook = Callable[[float, float, int, bytes], None]


class HttpTarget:
    """POSTs JSON bodies to one endpoint over up to ``max_connections`` connections;
    requests wait in a queue (their latency running) while every connection is busy.
    ``on_answer``, when given, sees every answer's body (benchmarks that count what the
    server decided); without it bodies are not kept."""

    def __init__(
        self,
        endpoint: Endpoint,
        recorder: Recorder,
        headers: dict[str, str] | None = None,
        max_connections: int = 256,
        inspect_body: bool = False,
        on_answer: AnswerHook | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.recorder = recorder
        self.max_connections = max_connections
        # Batch answers are 200 even when some items failed: look for their error entries.
        self.inspect_body = inspect_body
        self.on_answer = on_answer
        self.keep_body = inspect_body or on_answer is not None
        lines = [
            f"POST {endpoint.path} HTTP/1.1",
            f"Host: {endpoint.host}:{endpoint.port}",
            "Content-Type: application/json",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self._idle: list[_Connection] = []
        self._connections: set[_Connection] = set()
        self._pending: deque[tuple[bytes, float]] = deque()
        self._opening = 0
        self._closed = False

    def start(self) -> None:
        """Connections open on demand, the first ones during the warm-up."""

    def close(self) -> None:
        self.abandon(time.perf_counter())

    def submit(self, body: dict[str, object], intended: float) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        request = b"%s%d\r\n\r\n%s" % (self._head, len(data), data)
        if self._idle:
            self._idle.pop().send(request, intended)
            return
        self._pending.append((request, intended))
        if len(self._connections) + self._opening < self.max_connections:
            self._open()

    def abandon(self, now: float) -> None:
        self._closed = True
        while self._pending:
            self.recorder.on_abandoned(self._pending.popleft()[1], now)
        for connection in list(self._connections):
            if connection.intended is not None:
                self.recorder.on_abandoned(connection.intended, now)
                connection.intended = None
            connection.close()

    def _open(self) -> None:
        self._opening += 1
        loop = asyncio.get_running_loop()
        connect = loop.create_connection(
            lambda: _Connection(self), self.endpoint.host, self.endpoint.port
        )
        loop.create_task(connect).add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[tuple[asyncio.BaseTransport, _Connection]]) -> None:
        self._opening -= 1
        exc = None if task.cancelled() else task.exception()
        if exc is None or self._connections or self._opening:
            return  # success (connection_made took over), or other connections will serve
        # No connection at all: the server is gone; every waiting request fails with why.
        now = time.perf_counter()
        while self._pending:
            self.recorder.on_done(self._pending.popleft()[1], type(exc).__name__, now)

    def ready(self, connection: _Connection) -> None:
        if self._closed:
            connection.close()
        elif self._pending:
            connection.send(*self._pending.popleft())
        else:
            self._idle.append(connection)

    def added(self, connection: _Connection) -> None:
        self._connections.add(connection)

    def lost(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        if self._pending and not self._closed:
            self._open()  # its successor takes over the queue


class _Connection(asyncio.Protocol):
    def __init__(self, pool: HttpTarget) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.intended: float | None = None
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.pool.added(self)
        self.pool.ready(self)

    def send(self, request: bytes, intended: float) -> None:
        assert self.transport is not None
        self.intended = intended
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish("bad_response", time.perf_counter())
            self.close()

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if self.pool.keep_body:
            self.body += body

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        status = self.parser.get_status_code()
        error = None if 200 <= status < 300 else str(status)
        if error is None and self.pool.inspect_body and b'"error"' in self.body:
            error = "batch_item_error"
        if self.pool.on_answer is not None and self.intended is not None:
            self.pool.on_answer(self.intended, now, status, bytes(self.body))
        self.body.clear()
        self._finish(error, now)
        if self.parser.should_keep_alive():
            self.pool.ready(self)
        else:
            self.close()

    def _finish(self, error: str | None, now: float) -> None:
        intended, self.intended = self.intended, None
        if intended is not None:
            self.pool.recorder.on_done(intended, error, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(type(exc).__name__ if exc else "connection_closed", time.perf_counter())
        self.pool.lost(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
