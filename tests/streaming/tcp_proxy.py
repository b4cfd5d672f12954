"""A TCP proxy that can cut every connection and refuse new ones (a broker outage), or reset
a connection when the client sends a request of a given Kafka API (a fault at one phase)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator

from streaming.broker import EmbeddedBroker, free_port

# Kafka request keys (a request starts with int32 size, int16 api_key).
PRODUCE, FETCH, METADATA, OFFSET_COMMIT, FIND_COORDINATOR, JOIN_GROUP = 0, 1, 3, 8, 10, 11
HEARTBEAT, SYNC_GROUP, API_VERSIONS = 12, 14, 18


class OutageProxy:
    def __init__(self, listen_port: int, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._faults: Counter[int] = Counter()  # API key -> connections still to reset
        self._after: set[int] = set()  # keys whose requests reach the broker before the reset
        self.resets: Counter[int] = Counter()  # API key -> connections reset
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            if not self._open.is_set():
                client.close()  # the "broker" is down: connection refused in effect
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def reset_on(self, api_key: int, times: int = 1, after_request: bool = False) -> None:
        """Reset the next ``times`` connections that send an ``api_key`` request (the client
        gets ECONNRESET, as from a broker that went away): before the broker sees the
        request, or ``after_request`` it got it whole, so that only its answer is lost."""
        with self._lock:
            self._faults[api_key] += times
            if after_request:
                self._after.add(api_key)
            else:
                self._after.discard(api_key)

    def disarm(self, api_key: int) -> None:
        """Forget the resets of ``api_key`` not spent yet."""
        with self._lock:
            self._faults[api_key] = 0

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to broker, one whole request at a time, so that its key can be read."""
        with contextlib.suppress(OSError):
            while (head := self._read(client, 4)) is not None:
                (size,) = struct.unpack(">i", head)
                body = self._read(client, size)
                if body is None:
                    break
                (api_key,) = struct.unpack(">h", body[:2])
                with self._lock:
                    fault = self._faults[api_key] > 0
                    if fault:
                        self._faults[api_key] -= 1
                        self.resets[api_key] += 1
                    after = api_key in self._after
                if fault and after:
                    upstream.sendall(head + body)
                    # The broker's answer then finds the client gone and ends the pipe.
                    self._reset(client)
                    return
                if fault:
                    self._reset(client)
                    self._reset(upstream)
                    return
                upstream.sendall(head + body)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _reset(s: socket.socket) -> None:
        # Linger 0: close sends RST, not FIN.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    @staticmethod
    def _read(source: socket.socket, n: int) -> bytes | None:
        data = bytearray()
        while len(data) < n:
            chunk = source.recv(min(n - len(data), 1 << 20))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`restore`."""
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._server.close()


@contextlib.contextmanager
def behind_proxy() -> Iterator[tuple[EmbeddedBroker, OutageProxy]]:
    """A broker whose every client connection, bootstrap and after, goes through a proxy
    (it advertises the proxy's address)."""
    proxy_port = free_port()
    with EmbeddedBroker(advertised_port=proxy_port) as broker:
        proxy = OutageProxy(proxy_port, broker.port)
        try:
            yield broker, proxy
        finally:
            proxy.close()
