"""How the streaming path connects: broker, topics, consumer group, batching."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names; producers key ``transactions`` by customer id so that one customer's
    payments stay in one partition, in order."""

    transactions: str = "transactions"
    decisions: str = "decisions"
    dead_letters: str = "transactions.dlq"
    labels: str = "labels"

    def all(self) -> tuple[str, ...]:
        return (self.transactions, self.decisions, self.dead_letters, self.labels)


@dataclass(frozen=True)
class StreamConfig:
    """Consumer-group settings. Processing guarantee: at-least-once delivery; effects are
    exactly-once because the scorer's audit store is idempotent by transaction id."""

    bootstrap_servers: str
    topics: Topics = Topics()
    group_id: str = "riskscore"
    max_batch: int = 500
    poll_timeout_ms: int = 200
    # How long the broker may hold a fetch waiting for data: short, so that a payment that
    # arrives alone is not kept waiting for company.
    fetch_max_wait_ms: int = 20
    # A group (re)join takes about this long; tests use short ones.
    session_timeout_ms: int = 10_000
    # Backoff between retries of a batch that failed for reasons not its own.
    retry_backoff_s: float = 0.2
    retry_backoff_max_s: float = 5.0
    # Longest wait for the broker to acknowledge a batch's decisions before retrying it.
    flush_timeout_s: float = 30.0
