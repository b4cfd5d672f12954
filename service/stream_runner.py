"""Runs the Kafka consumer beside the HTTP API in one process, sharing the one Scorer.

The consumer's blocking loop runs in its own thread; batches reach the scorer on the event
loop through :class:`~service.stream_bridge.ScorerBridge`. With the embedded broker (no
bootstrap servers configured), the broker is started first and stopped last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from service.scorer import Scorer
from service.settings import Settings
from service.stream_bridge import ScorerBridge
from streaming.backpressure import DepthGate
from streaming.broker import EmbeddedBroker, check_reachable, ensure_topics
from streaming.processor import StreamProcessor

log = logging.getLogger(__name__)
# A batch retried for longer than this makes the service unready (store or broker down).
RETRYING_UNREADY_S = 10.0
BROKER_PID_FILE = "kafka-broker.pid"


class StreamRunner:
    """Broker (if embedded) + topics + consumer thread; ``start`` and ``stop`` block."""

    def __init__(self, settings: Settings, scorer: Scorer, loop: asyncio.AbstractEventLoop):
        self._settings = settings
        self._scorer = scorer
        self._loop = loop
        self._stop = threading.Event()
        self.stopped = threading.Event()  # set when the consumer thread has ended
        self._thread: threading.Thread | None = None
        self.broker: EmbeddedBroker | None = None
        self.processor: StreamProcessor | None = None

    def start(self) -> None:
        kafka = self._settings.stream
        servers = kafka.bootstrap_servers
        if servers is not None:
            # Seconds, not the client's half-minute of retries, to say no broker answers.
            check_reachable(servers)
        else:
            self.broker = EmbeddedBroker(
                kafka.embedded_port,
                host=kafka.embedded_host,
                advertised_host=kafka.embedded_advertised_host,
                # Names the broker for the next start, should this process die without
                # stopping it: a broker left on the port is then recognised and replaced.
                pid_file=self._settings.data_dir / BROKER_PID_FILE,
            ).start()
            servers = self.broker.bootstrap_servers
            log.info("embedded Kafka-protocol broker on %s", servers)
        config = kafka.stream_config(servers)
        ensure_topics(servers, config.topics.all(), kafka.partitions, config.client_options)
        bridge = ScorerBridge(self._scorer, self._loop)
        # Deep queue (HTTP load shares the scorer): stop fetching rather than pile on.
        busy = DepthGate(
            lambda: self._scorer.in_flight, self._settings.admission.kafka_pause_in_flight
        )
        self.processor = StreamProcessor(
            config,
            bridge.score,
            bridge.labels,
            busy,
            card_numbers=self._settings.card_numbers.card_number_policy(),
        )
        self._thread = threading.Thread(
            target=self._run, name="riskscore-kafka-consumer", daemon=True
        )
        self._thread.start()
        log.info("consuming %s on %s", config.topics.transactions, servers)

    def _run(self) -> None:
        assert self.processor is not None
        # A failure is recorded in processor.error and shown by /readyz.
        try:
            with contextlib.suppress(Exception):
                self.processor.run(self._stop)
        finally:
            self.stopped.set()

    def problems(self) -> list[str]:
        if self.processor is None:
            return ["the Kafka consumer has not started"]
        if self.processor.error:
            return [f"the Kafka consumer stopped: {self.processor.error}"]
        if self._thread is not None and not self._thread.is_alive():
            return ["the Kafka consumer is not running"]
        since = self.processor.retrying_since
        if since is not None and time.monotonic() - since > RETRYING_UNREADY_S:
            return [
                f"the Kafka consumer has been retrying a batch for {time.monotonic() - since:.0f} s"
            ]
        return []

    def stop(self, timeout: float) -> None:
        """Stop polling, let the current batch finish and commit, close; then the broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "the Kafka consumer did not stop within %.0f s; its batch is not committed "
                    "and will be re-delivered",
                    timeout,
                )
        if self.broker is not None:
            self.broker.close()
