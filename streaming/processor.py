"""The consumer-group loop: poll a batch, score it, publish decisions, then commit.

Order of effects for every batch, which is what makes a crash at any point safe:

1. decode each record; one that cannot be decoded goes to the dead-letter topic with its
   original bytes and headers naming the error and where it came from;
2. hand the valid transactions to the scoring callable, which returns only once every
   decision is durable in the audit store (a re-delivered transaction gets its recorded
   decision back, it is not scored twice);
3. publish one decision per transaction (key = transaction id) and wait for the broker's
   acknowledgement of everything sent;
4. commit the batch's offsets.

A crash before 4 re-delivers the batch: decisions are re-published unchanged, nothing is
decided twice. A failure that is not the records' fault (:class:`RetryableError`: store
or broker unavailable) retries the same batch with backoff; the partition is never skipped.
Partitions are processed in offset order, so a customer's payments (keyed by customer id)
are decided in order. Rebalances happen inside ``poll``, between batches, when everything
polled so far is committed.

Backpressure: while ``busy()`` says the scorer's queue is deep (HTTP load shares it),
fetching is paused (``consumer.pause``) and ``poll`` only keeps the group membership
alive; it resumes once the queue has drained. Records wait in the topic meanwhile: the
Kafka path never refuses or drops a payment, it only takes it later.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    MessageSizeTooLargeError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from features.card_numbers import (
    CardNumberPolicy,
    bytes_contain_card_number,
    tokenised_fields,
)
from features.schema import Transaction
from streaming.codec import REFUSE, RecordError, decode_label, decode_transaction
from streaming.config import StreamConfig

log = logging.getLogger(__name__)


class RetryableError(RuntimeError):
    """Processing failed for a reason that is not the records' (store, broker): retry."""


def transient(exc: BaseException) -> bool:
    """A broker fault that waiting can cure: retriable by the client's own account, the
    group rebalanced or forgot this member (after a coordinator loss), or a socket error.
    Authorisation and request errors are not."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, KafkaError) and (
        bool(exc.retriable)
        or isinstance(
            exc,
            CommitFailedError
            | RebalanceInProgressError
            | UnknownMemberIdError
            | IllegalGenerationError,
        )
    )


@dataclass(frozen=True)
class EncodedDecision:
    """What the scoring callable returns for a transaction it decided."""

    transaction_id: str
    payload: bytes  # the decision JSON, as the HTTP API returns it


# Scores transactions in order; one result per transaction. Raises RetryableError.
BatchScorer = Callable[[list[Transaction]], list[EncodedDecision | RecordError]]
# Applies labels; None per label applied, or the label's error. Raises RetryableError.
LabelSink = Callable[[list[tuple[str, bool, datetime | None]]], list[RecordError | None]]


@dataclass
class StreamStats:
    """Running totals, for metrics and tests."""

    batches: int = 0
    records: int = 0
    decisions: int = 0
    labels: int = 0
    dead_letters: int = 0
    retries: int = 0
    commit_failures: int = 0
    pauses: int = 0  # times fetching was paused because the scorer was busy
    paused_polls: int = 0  # polls made while paused (membership kept, nothing fetched)
    reconnects: int = 0  # sessions of clients ended by a transient broker fault
    last_batch: int = 0
    last_commit_s: float = 0.0
    # Seconds spent per step, summed over batches: where the time goes.
    decode_s: float = 0.0
    score_s: float = 0.0
    publish_s: float = 0.0
    commit_s: float = 0.0
    lag: dict[str, int] = field(default_factory=dict)
    retrying_since: float | None = None  # see StreamProcessor.retrying_since


class StreamProcessor:
    """Runs the loop in the calling thread until ``stop`` is set; see the module doc."""

    def __init__(
        self,
        config: StreamConfig,
        score: BatchScorer,
        labels: LabelSink | None = None,
        busy: Callable[[], bool] | None = None,
        card_numbers: CardNumberPolicy = REFUSE,
    ) -> None:
        self.config = config
        self._card_numbers = card_numbers
        self._score = score
        self._labels = labels
        self._busy = busy
        self.paused = False
        self.stats = StreamStats()
        self.error: str | None = None

    @property
    def retrying_since(self) -> float | None:
        """When the current poll, batch or session first failed (monotonic), None while
        they succeed."""
        return self.stats.retrying_since

    @retrying_since.setter
    def retrying_since(self, value: float | None) -> None:
        self.stats.retrying_since = value

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: one session of clients after another. A transient broker fault
        that escapes a session (a connection reset, a timeout, a lost coordinator, in any
        phase) ends it and, after a backoff, starts a new one: the uncommitted batch is
        delivered again and its decisions, already durable, are re-published unchanged."""
        backoff = self.config.retry_backoff_s
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self._session(stop)
                    return
                except (KafkaError, OSError) as exc:
                    if not transient(exc):
                        raise
                    if time.monotonic() - started > self.config.retry_backoff_max_s:
                        # A session that ran a while was healthy: a fault days later
                        # starts the backoff again from its shortest wait.
                        backoff = self.config.retry_backoff_s
                    self.stats.reconnects += 1
                    if self.retrying_since is None:
                        self.retrying_since = time.monotonic()
                    log.warning(
                        "the broker connection failed (%s: %s); reconnecting in %.1f s",
                        *(type(exc).__name__, exc, backoff),
                    )
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.retry_backoff_max_s)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("stream processing stopped")
            raise

    def _session(self, stop: threading.Event) -> None:
        c = self.config
        topics = [c.topics.transactions] + ([c.topics.labels] if self._labels else [])
        consumer: KafkaConsumer | None = None
        producer: KafkaProducer | None = None
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=c.bootstrap_servers,
                group_id=c.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=c.session_timeout_ms,
                heartbeat_interval_ms=max(100, c.session_timeout_ms // 3),
                max_poll_records=c.max_batch,
                fetch_max_wait_ms=c.fetch_max_wait_ms,
                **c.client_options,
            )
            producer = KafkaProducer(
                bootstrap_servers=c.bootstrap_servers,
                acks="all",
                linger_ms=2,
                retries=5,
                # A send waits this long for metadata (broker down) before failing the batch
                # as retryable, instead of the client's default minute.
                max_block_ms=int(c.flush_timeout_s * 1000),
                **c.client_options,
            )
            consumer.subscribe(topics, listener=_PauseAssigned(self, consumer))
            poll_backoff = c.retry_backoff_s
            while not stop.is_set():
                self._apply_backpressure(consumer)
                try:
                    batch = consumer.poll(timeout_ms=c.poll_timeout_ms, max_records=c.max_batch)
                except KafkaError as exc:
                    if not exc.retriable:
                        raise  # e.g. not authorised for the topic: retrying cannot help
                    # The broker or the group's coordinator is unreachable (an outage, a
                    # restart): nothing was taken from the topic, so wait and poll again.
                    if self.retrying_since is None:
                        self.retrying_since = time.monotonic()
                    log.warning("polling failed (%s); polling again in %.1f s", exc, poll_backoff)
                    stop.wait(poll_backoff)
                    poll_backoff = min(poll_backoff * 2, c.retry_backoff_max_s)
                    continue
                self.retrying_since = None
                poll_backoff = c.retry_backoff_s
                if self.paused:
                    self.stats.paused_polls += 1
                if not batch:
                    continue
                if not self._process_until_done(batch, producer, stop):
                    break  # stopping mid-retry: nothing committed, the batch is re-delivered
                started = time.perf_counter()
                try:
                    consumer.commit(
                        {
                            tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)
                            for tp, records in batch.items()
                        }
                    )
                except KafkaError as exc:
                    # Not committed means re-delivered: the decisions are already durable
                    # and are re-published unchanged, so going on loses nothing.
                    self.stats.commit_failures += 1
                    log.warning("offset commit failed (%s); the batch will be re-delivered", exc)
                    continue
                self.stats.last_commit_s = time.perf_counter() - started
                self.stats.commit_s += self.stats.last_commit_s
                self._update_lag(consumer, batch)
        finally:
            # Closing clients of a broken connection may fail too; the error that ended the
            # session is the one to report.
            if producer is not None:
                with contextlib.suppress(KafkaError, OSError):
                    producer.close(timeout=5)
            if consumer is not None:
                with contextlib.suppress(KafkaError, OSError):
                    consumer.close(autocommit=False)

    def _apply_backpressure(self, consumer: KafkaConsumer) -> None:
        """Pause every assigned partition while the scorer is busy, resume when it is not.
        Checked before each poll, so partitions assigned by a rebalance are paused too."""
        if self._busy is None:
            return
        if self._busy():
            assigned = consumer.assignment()
            if not self.paused:
                self.stats.pauses += 1
                log.info("the scorer is busy: fetching paused")
            consumer.pause(*assigned)
            self.paused = True
        elif self.paused:
            consumer.resume(*consumer.paused())
            self.paused = False
            log.info("the scorer has drained: fetching resumed")

    def _process_until_done(
        self, batch: dict[TopicPartition, list[Any]], producer: KafkaProducer, stop: threading.Event
    ) -> bool:
        backoff = self.config.retry_backoff_s
        while True:
            try:
                self._process(batch, producer)
                return True
            except RetryableError as exc:
                self.stats.retries += 1
                if self.retrying_since is None:
                    self.retrying_since = time.monotonic()
                log.warning("batch failed (%s); retrying in %.1f s", exc, backoff)
                if stop.wait(backoff):
                    return False
                backoff = min(backoff * 2, self.config.retry_backoff_max_s)

    def _process(self, batch: dict[TopicPartition, list[Any]], producer: KafkaProducer) -> None:
        topics = self.config.topics
        txs: list[Transaction] = []
        tx_records: list[Any] = []
        tokenised: list[list[str]] = []
        labels: list[tuple[str, bool, datetime | None]] = []
        label_records: list[Any] = []
        sent = []
        started = time.perf_counter()
        for tp, records in batch.items():
            for record in records:
                if tp.topic == topics.labels:
                    decoded_label = decode_label(record.value, self._card_numbers.context())
                    if isinstance(decoded_label, RecordError):
                        sent.append(self._dead_letter(producer, record, decoded_label))
                    else:
                        labels.append(decoded_label.as_tuple())
                        label_records.append(record)
                    continue
                context = self._card_numbers.context()
                decoded = decode_transaction(record.value, context)
                if isinstance(decoded, RecordError):
                    sent.append(self._dead_letter(producer, record, decoded))
                else:
                    txs.append(decoded)
                    tx_records.append(record)
                    tokenised.append(tokenised_fields(context))
        decoded_at = time.perf_counter()
        self.stats.decode_s += decoded_at - started
        if txs:
            outcomes = self._score(txs)
            scored_at = time.perf_counter()
            self.stats.score_s += scored_at - decoded_at
            for tx, record, fields, outcome in zip(
                txs, tx_records, tokenised, outcomes, strict=True
            ):
                if isinstance(outcome, RecordError):
                    sent.append(self._dead_letter(producer, record, outcome, tx.transaction_id))
                else:
                    # As the HTTP answer's header: which ids of the payment became tokens.
                    noted = [(TOKENISED_HEADER, ", ".join(fields).encode())] if fields else None
                    sent.append(
                        self._send(
                            producer,
                            topics.decisions,
                            outcome.transaction_id.encode(),
                            outcome.payload,
                            noted,
                        )
                    )
                    self.stats.decisions += 1
        if labels and self._labels is not None:
            for record, error in zip(label_records, self._labels(labels), strict=True):
                if error is not None:
                    sent.append(self._dead_letter(producer, record, error))
                else:
                    self.stats.labels += 1
        flush_started = time.perf_counter()
        try:
            producer.flush(timeout=self.config.flush_timeout_s)
        except KafkaError as exc:
            raise RetryableError(f"the broker did not acknowledge the batch: {exc}") from exc
        self.stats.publish_s += time.perf_counter() - flush_started
        for future in sent:
            if future.failed():
                raise RetryableError(f"the broker did not acknowledge a record: {future.exception}")
        self.stats.batches += 1
        self.stats.last_batch = sum(len(r) for r in batch.values())
        self.stats.records += self.stats.last_batch

    def _dead_letter(
        self,
        producer: KafkaProducer,
        record: Any,
        error: RecordError,
        transaction_id: str | None = None,
    ) -> Any:
        self.stats.dead_letters += 1
        # One line per dead letter: someone has to look at it (a client's bug, a reused id).
        log.warning(
            "%s/%d@%d sent to %s: %s: %s",
            *(record.topic, record.partition, record.offset, self.config.topics.dead_letters),
            *(error.type, error.message),
            extra={
                "transaction_id": transaction_id,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
        )
        headers = [
            (key, value if value is not None else b"") for key, value in record.headers or []
        ]
        value = record.value if record.value is not None else b""
        key = record.key
        if self._card_numbers.redacts_dead_letters():
            value, key, headers = _redacted(value, key, headers)
        headers += [
            ("error.type", error.type.encode()),
            ("error.message", error.message.encode()),
            ("source.topic", record.topic.encode()),
            ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()),
        ]
        try:
            return self._send(producer, self.config.topics.dead_letters, key, value, headers)
        except MessageSizeTooLargeError:
            # Too large to forward whole (its own headers pushed it over): the dead letter
            # keeps the headers and says how large the value was.
            headers.append(("dead_letter.value_bytes", str(len(value)).encode()))
            return self._send(producer, self.config.topics.dead_letters, key, b"", headers)

    @staticmethod
    def _send(
        producer: KafkaProducer,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        try:
            return producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as exc:
            if not transient(exc):
                raise
            raise RetryableError(f"the broker is not reachable: {exc}") from exc

    def _update_lag(self, consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            high = consumer.highwater(tp)
            if high is not None:
                self.stats.lag[f"{tp.topic}/{tp.partition}"] = max(
                    0, high - (records[-1].offset + 1)
                )


class _PauseAssigned(ConsumerRebalanceListener):
    """Partitions assigned while fetching is paused start paused: ``poll`` fetches in the
    same call that joins the group, before the loop could pause them."""

    def __init__(self, processor: StreamProcessor, consumer: KafkaConsumer) -> None:
        self._processor = processor
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self._processor.paused and assigned:
            self._consumer.pause(*assigned)


REDACTED_HEADER = "dead_letter.redacted"
TOKENISED_HEADER = "card_number.tokenised"


def _redacted(
    value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """A dead letter without the card numbers of its record: a value, key or header that
    holds one is dropped whole (its bytes are not a card holder's to keep), and a header
    says what was dropped; the error headers added after this still say why it failed."""
    dropped = []
    if value and bytes_contain_card_number(value):
        value = b""
        dropped.append("value")
    if key and bytes_contain_card_number(key):
        key = None
        dropped.append("key")
    kept = []
    for name, header in headers:
        if bytes_contain_card_number(header) or bytes_contain_card_number(name.encode()):
            dropped.append("header")
        else:
            kept.append((name, header))
    if dropped:
        kept.append((REDACTED_HEADER, ("card number in " + ", ".join(dropped)).encode()))
    return value, key, kept
