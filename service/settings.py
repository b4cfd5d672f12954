"""Service settings: environment variables prefixed ``RISKSCORE_``, defaults that run on a laptop.

Read once at start-up (``Settings()``) and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir

AUDIT_FILE = "audit.sqlite3"


class Settings(BaseSettings):
    """Everything `riskscore serve` can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="RISKSCORE_", frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 to accept connections from other machines."""

    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port to listen on (0 picks a free one)."""

    data_dir: Path = Path("var")
    """Where the audit store and other runtime files live (created if missing)."""

    model_dir: Path | None = None
    """The fast-model artifact to serve; unset serves the model shipped with riskscore."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body accepted; larger ones get 413."""

    max_batch_size: int = Field(default=500, ge=1)
    """Most transactions (or labels) in one batch request; more get 413."""

    reason_count: int = Field(default=3, ge=0, le=50)
    """Reason codes returned with each decision (the largest contributions by size)."""

    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated API keys; when set, every endpoint but /healthz needs one."""

    api_key_header: str = "X-API-Key"
    """Request header carrying the API key."""

    micro_batch_max: int = Field(default=64, ge=1, le=4096)
    """Most /score requests scored together when they arrive in the same turn of the event
    loop (adaptive micro-batching: no timer, an idle server scores each request at once)."""

    audit_commit_window_ms: float = Field(default=1.0, ge=0.0, le=100.0)
    """Group commit: how long the audit writer gathers decisions into one durable commit."""

    audit_max_batch: int = Field(default=512, ge=1)
    """Group commit: most decisions in one commit."""

    audit_busy_timeout_ms: int = Field(default=5000, ge=1)
    """How long an audit write waits for a lock held by another process before failing."""

    warm_start: bool = True
    """Rebuild the online feature state from the audit store at start-up."""

    explainer: Literal["fast", "lightgbm"] = "fast"
    """Exact TreeSHAP implementation: fast (tables built at model load) or lightgbm
    (LightGBM's pred_contrib, the reference); both give the same values."""

    predictor: Literal["compiled", "lightgbm"] = "compiled"
    """Fast-path prediction: compiled tree walking (same values) or Booster.predict."""

    predict_threads: int = Field(default=1, ge=1)
    """LightGBM threads per prediction; 1 is fastest for single payments."""

    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """Event loop of serve and consume: uvloop (faster socket handling) or Python's own."""

    shutdown_timeout_s: float = Field(default=10.0, gt=0.0)
    """On SIGTERM/SIGINT, how long in-flight requests get to finish."""

    kafka: Literal["on", "off"] = "on"
    """Consume transactions and labels from Kafka beside the HTTP API (off: HTTP only)."""

    kafka_bootstrap_servers: str | None = None
    """Kafka brokers (host:port,...); unset starts the embedded Tansu broker."""

    kafka_embedded_port: int = Field(default=9092, ge=0, le=65535)
    """Port of the embedded broker (0 picks a free one)."""

    kafka_group_id: str = "riskscore"
    """Consumer group of the scoring consumers."""

    kafka_transactions_topic: str = "transactions"
    """Transactions to score; producers key them by customer id."""

    kafka_decisions_topic: str = "decisions"
    """One decision per transaction, keyed by transaction id (the /score response JSON)."""

    kafka_dead_letter_topic: str = "transactions.dlq"
    """Records that cannot be processed, with headers naming the error and the source."""

    kafka_labels_topic: str = "labels"
    """Label feedback (the /labels body)."""

    kafka_partitions: int = Field(default=4, ge=1)
    """Partitions of topics riskscore creates."""

    kafka_max_batch: int = Field(default=500, ge=1)
    """Most records per polled batch."""

    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    """Consumer-group session timeout; a group join takes about this long."""

    sequence: Literal["on", "off"] = "on"
    """Second stage: the distilled sequence model for fast scores inside its ambiguous band."""

    sequence_model_dir: Path | None = None
    """The sequence-stage artifact; unset uses the one shipped with riskscore."""

    sequence_budget_ms: float = Field(default=50.0, gt=0.0, le=60_000.0)
    """Latency budget from a request's arrival; the X-Deadline-Ms header overrides it."""

    sequence_reserve_ms: float = Field(default=10.0, ge=0.0, le=1000.0)
    """Part of the budget kept for recording the decision after the second stage (a durable
    write's fsync reaches ~10 ms at p99 on an ordinary virtual disk)."""

    sequence_fault_delay_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)
    """Fault injection (tests, demos): delay added to every second-stage run."""

    sequence_fault_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fault injection (tests, demos): share of second-stage runs that fail."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging threshold."""

    compliance_api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated API keys of the compliance role: decision search, exports and
    reports (which scoring keys may not use); needs RISKSCORE_API_KEYS set too."""

    @field_validator("api_keys", "compliance_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        # An environment variable is one string: accept "key1,key2" rather than JSON.
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys", "compliance_api_keys")
    @classmethod
    def _long_enough(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        short = [key for key in keys if len(key) < 16]
        if short:
            raise ValueError("API keys must be at least 16 characters long")
        return keys

    @model_validator(mode="after")
    def _roles_apart(self) -> Settings:
        if self.compliance_api_keys and not self.api_keys:
            # With keys of one role only, the other role's endpoints would refuse everyone.
            raise ValueError(
                "compliance API keys need scoring API keys (RISKSCORE_API_KEYS) as well"
            )
        if set(self.api_keys) & set(self.compliance_api_keys):
            raise ValueError("a key cannot be both a scoring and a compliance API key")
        return self

    @property
    def audit_path(self) -> Path:
        return self.data_dir / AUDIT_FILE

    @property
    def artifact_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else default_artifact_dir()

    @property
    def sequence_artifact_dir(self) -> Path:
        if self.sequence_model_dir is not None:
            return self.sequence_model_dir
        return default_sequence_artifact_dir()


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README's configuration table."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default in ((), None) else str(default)
        description = " ".join((field.description or "").split())
        rows.append((f"RISKSCORE_{name.upper()}", shown, description))
    return rows
