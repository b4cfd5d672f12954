"""How the streaming path connects: broker, topics, consumer group, batching."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def local_address(host: str) -> str:
    """Where this machine reaches a listener bound to ``host`` (any interface includes
    loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


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
    # TLS and SASL options, passed as they are to every Kafka client (KafkaSettings).
    client_options: dict[str, Any] = field(default_factory=dict, repr=False)  # a password


class KafkaSettings(BaseSettings):
    """Where and how the Kafka path connects (variables ``RISKSCORE_KAFKA_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="RISKSCORE_KAFKA_", frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    bootstrap_servers: str | None = None
    """Kafka brokers (host:port,...); unset starts the embedded Tansu broker."""

    embedded_port: int = Field(default=9092, ge=0, le=65535)
    """Port of the embedded broker (0 picks a free one)."""

    embedded_host: str = "127.0.0.1"
    """Interface the embedded broker listens on; 0.0.0.0 to reach it from other machines
    (or from outside a container)."""

    embedded_advertised_host: str | None = None
    """Host name the embedded broker tells clients to connect to; unset: the interface it
    listens on (127.0.0.1 when that is 0.0.0.0). Set it to the name clients outside use."""

    group_id: str = "riskscore"
    """Consumer group of the scoring consumers."""

    transactions_topic: str = "transactions"
    """Transactions to score; producers key them by customer id."""

    decisions_topic: str = "decisions"
    """One decision per transaction, keyed by transaction id (the /score response JSON)."""

    dead_letter_topic: str = "transactions.dlq"
    """Records that cannot be processed, with headers naming the error and the source."""

    labels_topic: str = "labels"
    """Label feedback (the /labels body)."""

    partitions: int = Field(default=4, ge=1)
    """Partitions of topics riskscore creates."""

    max_batch: int = Field(default=500, ge=1)
    """Most records per polled batch."""

    session_timeout_ms: int = Field(default=10_000, ge=1000)
    """Consumer-group session timeout; a group join takes about this long."""

    # -- TLS and credentials: passed through to kafka-python's clients as they are.

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How the Kafka clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or
    SASL_SSL (credentials over TLS)."""

    ssl_cafile: FilePath | None = None
    """PEM file of the certificate authority that signed the brokers' certificates (SSL,
    SASL_SSL); unset: the system's trusted authorities."""

    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism of the brokers (SASL_PLAINTEXT, SASL_SSL)."""

    sasl_username: str | None = None
    """SASL user name."""

    sasl_password: SecretStr | None = None
    """SASL password (never logged)."""

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        given = [self.sasl_mechanism, self.sasl_username, self.sasl_password]
        if sasl and None in given:
            raise ValueError(
                f"RISKSCORE_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "RISKSCORE_KAFKA_SASL_MECHANISM, RISKSCORE_KAFKA_SASL_USERNAME and "
                "RISKSCORE_KAFKA_SASL_PASSWORD"
            )
        if not sasl and any(v is not None for v in given):
            raise ValueError(
                "RISKSCORE_KAFKA_SASL_*: SASL credentials need "
                "RISKSCORE_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of every kafka-python client for TLS and credentials."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.ssl_cafile is not None:
            options["ssl_cafile"] = str(self.ssl_cafile)
        if self.sasl_mechanism is not None and self.sasl_password is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options

    @property
    def advertised_host(self) -> str:
        """The host clients reach the embedded broker by."""
        if self.embedded_advertised_host:
            return self.embedded_advertised_host
        return local_address(self.embedded_host)

    def client_servers(self) -> str:
        """Where a client of a running service (``produce``, ``tail``) finds its brokers:
        the configured ones, or the embedded broker ``riskscore serve`` starts with the
        same settings."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        return f"{self.advertised_host}:{self.embedded_port}"

    def topics(self) -> Topics:
        return Topics(
            transactions=self.transactions_topic,
            decisions=self.decisions_topic,
            dead_letters=self.dead_letter_topic,
            labels=self.labels_topic,
        )

    def stream_config(self, bootstrap_servers: str) -> StreamConfig:
        """The consumer's configuration, with the brokers actually used (the embedded
        broker's address when ``bootstrap_servers`` is unset)."""
        return StreamConfig(
            bootstrap_servers=bootstrap_servers,
            topics=self.topics(),
            group_id=self.group_id,
            max_batch=self.max_batch,
            session_timeout_ms=self.session_timeout_ms,
            client_options=self.client_options(),
        )
