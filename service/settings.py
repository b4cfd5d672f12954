"""Service settings: environment variables prefixed ``RISKSCORE_``, defaults that run on a laptop.

Read once at start-up (``Settings()``) and passed down; nothing else reads the environment.
Grouped by area, each group a settings model of its own that the part needing it gets as
it is: ``http`` (the API), ``scoring`` (model, explainer, warm start), ``audit`` (the
store's group commit), ``stream`` (Kafka, :class:`streaming.config.KafkaSettings`) and
``second_stage``. Every group reads the same variables as before the grouping
(``RISKSCORE_PORT``, ``RISKSCORE_AUDIT_MAX_BATCH``, ``RISKSCORE_KAFKA_GROUP_ID``,
``RISKSCORE_SEQUENCE_BUDGET_MS`` ...); ``RISKSCORE_KAFKA`` and ``RISKSCORE_SEQUENCE`` are
switches of the whole.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from features.card_numbers import CardNumberPolicy, PanPolicyName
from features.currency import (
    CURRENCY_PATTERN,
    DEFAULT_CURRENCY,
    CurrencyRefused,
    Pricing,
    RateTable,
)
from models.artifact_paths import default_artifact_dir, default_sequence_artifact_dir
from streaming.config import KafkaSettings

AUDIT_FILE = "audit.sqlite3"
# Shorter API keys are refused: a key is a secret that must not be guessable.
MIN_API_KEY_CHARS = 16
# Variables with the prefix that riskscore reads outside these settings: the test suite's.
OTHER_VARIABLES = ("RISKSCORE_HANDBOOK_DIR", "RISKSCORE_REQUIRE_HANDBOOK")


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, frozen=True, extra="forbid", use_attribute_docstrings=True
    )


class HttpSettings(BaseSettings):
    """The HTTP API: where it listens, what it accepts, who may call it."""

    model_config = _config("RISKSCORE_")

    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 to accept connections from other machines."""

    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port to listen on (0 picks a free one)."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body accepted; larger ones get 413."""

    max_batch_size: int = Field(default=500, ge=1)
    """Most transactions (or labels) in one batch request; more get 413."""

    micro_batch_max: int = Field(default=64, ge=1, le=4096)
    """Most /score requests scored together when they arrive in the same turn of the event
    loop (adaptive micro-batching: no timer, an idle server scores each request at once)."""

    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated API keys; when set, every endpoint needs one but /healthz, /readyz
    and /metrics (see RISKSCORE_PROBES_NEED_KEY)."""

    probes_need_key: bool = False
    """With API keys set, /readyz and /metrics need a key too; by default they are open, as
    Kubernetes probes and Prometheus scrapers expect (/healthz is always open)."""

    api_key_header: str = "X-API-Key"
    """Request header carrying the API key."""

    compliance_api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated API keys of the compliance role: decision search, exports and
    reports (which scoring keys may not use); needs RISKSCORE_API_KEYS set too."""

    admin_api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated API keys of the admin role: changes of the allow and block lists
    (PUT/DELETE /lists/...) and model versions (GET /models, promotion), which no other
    role may change; without one those endpoints refuse everyone (403). Each list change
    records the key's SHA-256 digest, never the key. Without RISKSCORE_API_KEYS, the other
    endpoints stay open."""

    @field_validator("api_keys", "compliance_api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        # An environment variable is one string: accept "key1,key2" rather than JSON.
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys", "compliance_api_keys", "admin_api_keys")
    @classmethod
    def _long_enough(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < MIN_API_KEY_CHARS for key in keys):
            raise ValueError(f"each key needs at least {MIN_API_KEY_CHARS} characters")
        return keys

    @model_validator(mode="after")
    def _roles_apart(self) -> HttpSettings:
        if self.compliance_api_keys and not self.api_keys:
            # With keys of one role only, the other role's endpoints would refuse everyone.
            raise ValueError(
                "RISKSCORE_COMPLIANCE_API_KEYS: compliance API keys need scoring API keys "
                "(RISKSCORE_API_KEYS) as well"
            )
        if set(self.api_keys) & set(self.compliance_api_keys):
            raise ValueError(
                "RISKSCORE_API_KEYS, RISKSCORE_COMPLIANCE_API_KEYS: a key cannot be both a "
                "scoring and a compliance API key"
            )
        self._admin_keys_apart()
        return self

    def _admin_keys_apart(self) -> None:
        # Admin keys alone are allowed: the admin endpoints need one, the rest stays open.
        if set(self.admin_api_keys) & {*self.api_keys, *self.compliance_api_keys}:
            raise ValueError(
                "RISKSCORE_ADMIN_API_KEYS: an admin key cannot also be a scoring or a "
                "compliance API key"
            )


class ScoringSettings(BaseSettings):
    """The fast path: which model, how it predicts and explains, how state starts."""

    model_config = _config("RISKSCORE_")

    model_dir: Path | None = None
    """The fast-model artifact to serve, or a directory of versions (one artifact per
    subdirectory, its sequence artifact in its sequence/ subdirectory; the file champion
    names the one served); unset serves the model shipped with riskscore."""

    model_poll_s: float = Field(default=2.0, ge=0.0, le=3600.0)
    """With a directory of versions: how often each process reads its champion file and
    serves the version promoted by another process; 0 never (a restart then does)."""

    # -- the shadow challenger (service/shadow.py) --
    challenger_queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    """Decided payments waiting for the shadow challenger, at most; beyond it they are
    dropped and counted (riskscore_challenger_dropped_total{reason="queue_full"})."""

    reason_count: int = Field(default=3, ge=0, le=50)
    """Reason codes returned with each decision (the largest contributions by size)."""

    explainer: Literal["fast", "lightgbm"] = "fast"
    """Exact TreeSHAP implementation: fast (tables built at model load) or lightgbm
    (LightGBM's pred_contrib, the reference); both give the same values."""

    predictor: Literal["compiled", "lightgbm"] = "compiled"
    """Fast-path prediction: compiled tree walking (same values) or Booster.predict."""

    predict_threads: int = Field(default=1, ge=1)
    """LightGBM threads per prediction; 1 is fastest for single payments."""

    warm_start: bool = True
    """Rebuild the online feature state from the audit store at start-up."""

    checkpoint_interval_s: float = Field(default=300.0, ge=0, le=86_400)
    """In-process feature state: write a checkpoint (feature-state.checkpoint in
    RISKSCORE_DATA_DIR) this often and at shutdown, so a restart replays only the payments
    after it; 0 writes none."""

    feature_state_url: str | None = Field(default=None, pattern=r"^(redis|rediss)://")
    """Where the online feature state lives: unset keeps it in the process (memory);
    redis://HOST:PORT/DB (rediss:// for TLS) shares it in Redis >= 7 or Valkey, where it
    outlives the process and nothing is replayed at start-up."""

    signals_interval_s: float = Field(default=300.0, ge=0.0)
    """How often the drift (PSI per feature) and decline precision/recall gauges on
    /metrics are recomputed from the audit store; 0 switches them off."""

    signals_window_days: int = Field(default=7, ge=1, le=366)
    """The days of decisions those gauges cover, ending at the latest stored event time."""

    # -- currencies (features/currency.py) --
    currency: str = Field(default=DEFAULT_CURRENCY, pattern=CURRENCY_PATTERN)
    """Currency of a payment that names none; without a rate table, the only one accepted."""

    currency_rates: Path | None = None
    """Rate table (JSON or TOML: reference, version, rates): amounts are converted to its
    reference currency before features; a currency without a rate gets 422."""

    @model_validator(mode="after")
    def _rates_usable(self) -> ScoringSettings:
        self.pricing()  # a bad table stops start-up here, naming the file and the problem
        return self

    def pricing(self) -> Pricing:
        """Prices payments in one currency, as these settings say."""
        table = None if self.currency_rates is None else RateTable.load(self.currency_rates)
        try:
            return Pricing(self.currency, table)
        except CurrencyRefused as exc:
            raise ValueError(f"RISKSCORE_CURRENCY={self.currency}: {exc}") from None

    @property
    def artifact_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else default_artifact_dir()


class AuditSettings(BaseSettings):
    """The audit store: which one (the SQLite file, or PostgreSQL by URL), its group
    commit, timeouts and retention (``service/audit_backend.py`` opens it)."""

    model_config = _config("RISKSCORE_AUDIT_")

    url: SecretStr | None = None
    """PostgreSQL audit store, postgresql://user:password@host:port/database (needs the
    postgres extra); unset keeps the SQLite file in RISKSCORE_DATA_DIR."""

    commit_window_ms: float = Field(default=1.0, ge=0.0, le=100.0)
    """Group commit: how long the audit writer gathers decisions into one durable commit."""

    max_batch: int = Field(default=512, ge=1)
    """Group commit: most decisions in one commit."""

    busy_timeout_ms: int = Field(default=5000, ge=1)
    """SQLite: how long an audit write waits for a lock held by another process before failing."""

    connect_timeout_s: int = Field(default=5, ge=1, le=300)
    """PostgreSQL: how long connecting to the audit database may take before failing."""

    statement_timeout_ms: int = Field(default=30_000, ge=100)
    """PostgreSQL: the longest any audit statement may run before it is cancelled."""

    retention_days: int | None = Field(default=None, ge=1)
    """Keep decisions this many days; riskscore audit prune then removes older ones (whole
    months on PostgreSQL); unset keeps everything."""

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL (unset for the SQLite file)")
        return value


class SecondStageSettings(BaseSettings):
    """The sequence stage: its artifact, its latency budget, fault injection."""

    model_config = _config("RISKSCORE_SEQUENCE_")

    model_dir: Path | None = None
    """The sequence-stage artifact; unset uses the one shipped with riskscore."""

    budget_ms: float = Field(default=50.0, gt=0.0, le=60_000.0)
    """Latency budget from a request's arrival; the X-Deadline-Ms header overrides it."""

    reserve_ms: float = Field(default=10.0, ge=0.0, le=1000.0)
    """Part of the budget kept for recording the decision after the second stage (a durable
    write's fsync reaches ~10 ms at p99 on an ordinary virtual disk)."""

    fault_delay_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)
    """Fault injection (tests, demos): delay added to every second-stage run."""

    fault_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fault injection (tests, demos): share of second-stage runs that fail."""

    @property
    def artifact_dir(self) -> Path:
        if self.model_dir is not None:
            return self.model_dir
        return default_sequence_artifact_dir()


class AdmissionSettings(BaseSettings):
    """Overload: what is refused with 429 before it is scored (``service/admission.py``)."""

    model_config = _config("RISKSCORE_")

    admission_control: bool = True
    """Refuse with 429 and Retry-After a scoring request whose predicted wait (payments
    queued × measured time per decision) exceeds its budget (X-Deadline-Ms, else
    RISKSCORE_SEQUENCE_BUDGET_MS), instead of answering it late."""

    admission_service_ms: float = Field(default=1.0, gt=0.0, le=1000.0)
    """Time per decision assumed until the service has measured its own (within ~100
    answers)."""

    kafka_pause_in_flight: int = Field(default=64, ge=1)
    """The Kafka path stops fetching while this many payments are being decided in the
    process (checked between its batches, so these are HTTP payments: about what admission
    lets queue at saturation), and resumes once half of them are done; it never drops one."""

    api_key_rates: Annotated[tuple[tuple[str, float], ...], NoDecode] = ()
    """Per-API-key rate limits in payments per second, key:rate pairs comma-separated
    (each key one of RISKSCORE_API_KEYS); per process, so N workers allow N × the rate;
    keys not listed are not limited."""

    @field_validator("api_key_rates", mode="before")
    @classmethod
    def _parse_rates(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            key, sep, rate = item.rpartition(":")
            try:
                number = float(rate)
            except ValueError:
                number = float("nan")
            if not sep or not key or not 0.0 < number < float("inf"):
                raise ValueError(
                    "expected key:rate pairs separated by commas, each rate a number of "
                    f"payments per second above 0 (got {_masked(item)!r})"
                )
            pairs.append((key.strip(), number))
        return tuple(pairs)

    @property
    def rates(self) -> dict[str, float]:
        return dict(self.api_key_rates)


def _masked(item: str) -> str:
    """A key:rate pair with its key hidden: a key is a secret, even in an error."""
    key, sep, rate = item.rpartition(":")
    return f"{key[:2]}…{sep}{rate}" if sep else f"{item[:2]}…"


# Card numbers in ids (issue 15): one block, read by every place an id enters.
MIN_PAN_HMAC_KEY_CHARS = 32


class CardNumberSettings(BaseSettings):
    """Card numbers (PANs) in ids: refused, tokenised or allowed (features/card_numbers.py)."""

    model_config = _config("RISKSCORE_PAN_")

    policy: PanPolicyName = "refuse"
    """An id (transaction, customer, terminal; in bodies, paths, queries and Kafka records)
    holding a card number is refused (422 naming the field; a dead letter on Kafka),
    tokenised (replaced by a keyed HMAC-SHA256 token before anything is stored; needs
    RISKSCORE_PAN_HMAC_KEY) or allowed (for platforms whose ids are never card numbers)."""

    hmac_key: SecretStr | None = None
    """Secret key of the card-number tokens (RISKSCORE_PAN_POLICY=tokenise); keep it as
    long as the stored tokens must match new ones (a new key gives every card a new token)."""

    @model_validator(mode="after")
    def _key_for_tokens(self) -> CardNumberSettings:
        key = self.hmac_key.get_secret_value() if self.hmac_key is not None else ""
        if self.policy == "tokenise" and not key:
            raise ValueError(
                "RISKSCORE_PAN_HMAC_KEY: RISKSCORE_PAN_POLICY=tokenise needs a secret key "
                f"of at least {MIN_PAN_HMAC_KEY_CHARS} characters"
            )
        if key and len(key) < MIN_PAN_HMAC_KEY_CHARS:
            raise ValueError(
                f"RISKSCORE_PAN_HMAC_KEY: needs at least {MIN_PAN_HMAC_KEY_CHARS} characters"
            )
        return self

    def card_number_policy(self) -> CardNumberPolicy:
        key = self.hmac_key.get_secret_value().encode() if self.hmac_key is not None else None
        return CardNumberPolicy(self.policy, key if self.policy == "tokenise" else None)


# Rules and lists acting after the model (issue 17, item 3): one block.
class RulesSettings(BaseSettings):
    """Rules and allow/block lists after the model (models/rules/, README: Operating
    models, rules and lists)."""

    model_config = _config("RISKSCORE_")

    rules_file: FilePath | None = None
    """A rule file (one `name: condition -> action` a line, the action review or
    decline), loaded at start; an error stops the start naming its line and column. Every
    decision records its version."""

    lists_poll_ms: int = Field(default=1000, ge=50, le=60_000)
    """How often each process checks the audit store for list changes made elsewhere
    (another worker or consumer, `riskscore lists load`): the bound on how long a change
    takes to reach every process. The process that took the change applies it at once."""


class Settings(BaseSettings):
    """Everything `riskscore serve` and `riskscore consume` can be configured with."""

    model_config = _config("RISKSCORE_")

    data_dir: Path = Path("var")
    """Where the audit store and other runtime files live (created if missing)."""

    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """Event loop of serve and consume: uvloop (faster socket handling) or Python's own."""

    shutdown_timeout_s: float = Field(default=10.0, gt=0.0)
    """On SIGTERM/SIGINT, how long in-flight requests get to finish."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging threshold."""

    library_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """Logging threshold of the libraries (kafka-python, aiohttp, ...); INFO brings back
    kafka-python's connection and consumer-group messages."""

    log_format: Literal["text", "json"] = "text"
    """Log lines as text or as one JSON object a line (time, level, logger, message,
    transaction_id when the message is about one payment, exception)."""

    kafka: Literal["on", "off"] = "on"
    """Consume transactions and labels from Kafka beside the HTTP API (off: HTTP only)."""

    sequence: Literal["on", "off"] = "on"
    """Second stage: the distilled sequence model for fast scores inside its ambiguous band."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The groups read their own variables; RISKSCORE_HTTP, RISKSCORE_AUDIT ... mean
        # nothing (as before the grouping), rather than a group as JSON.
        return (
            init_settings,
            _EnvWithoutGroups(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    http: HttpSettings = Field(default_factory=HttpSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    stream: KafkaSettings = Field(default_factory=KafkaSettings)
    second_stage: SecondStageSettings = Field(default_factory=SecondStageSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    card_numbers: CardNumberSettings = Field(default_factory=CardNumberSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)

    @model_validator(mode="after")
    def _rated_keys_known(self) -> Settings:
        unknown = [k for k, _ in self.admission.api_key_rates if k not in self.http.api_keys]
        if unknown:
            raise ValueError(
                f"RISKSCORE_API_KEY_RATES: {len(unknown)} key(s) not among RISKSCORE_API_KEYS "
                "(a rate applies to a scoring API key)"
            )
        return self

    @property
    def audit_path(self) -> Path:
        return self.data_dir / AUDIT_FILE

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings as the environment gives them, ``values`` taking precedence, each named
        like its variable without ``RISKSCORE_`` (lowercase): ``Settings.of(port=0,
        sequence_budget_ms=20.0, kafka="off")`` — for tests and for embedding."""
        top: dict[str, Any] = {}
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            variable = f"RISKSCORE_{key.upper()}"
            for group in GROUPS:
                model = _group_model(group)
                prefix = str(model.model_config.get("env_prefix", ""))
                name = variable[len(prefix) :].lower()
                if variable.startswith(prefix) and name in model.model_fields:
                    grouped.setdefault(group, {})[name] = value
                    break
            else:
                top[key] = value
        groups: dict[str, Any] = {g: _group_model(g)(**fields) for g, fields in grouped.items()}
        return cls(**top, **groups)


# The fields of Settings that are groups (each a settings model of its own), in order.
GROUPS = tuple(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
)


class _EnvWithoutGroups(EnvSettingsSource):
    """The environment, for the top-level settings only (not the groups' own names)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in GROUPS:
            return None, field_name, False
        return super().get_field_value(field, field_name)


def _group_model(group: str) -> type[BaseSettings]:
    model = Settings.model_fields[group].annotation
    assert isinstance(model, type) and issubclass(model, BaseSettings)
    return model


def settings_models() -> list[type[BaseSettings]]:
    """The whole and each of its groups."""
    return [Settings, *(_group_model(g) for g in GROUPS)]


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README's configuration table."""
    rows = []
    for model in settings_models():
        prefix = model.model_config.get("env_prefix", "")
        for name, field in model.model_fields.items():
            if model is Settings and name in GROUPS:
                continue
            default = field.default
            shown = "" if default in ((), None) else str(default)
            description = " ".join((field.description or "").split())
            rows.append((f"{prefix}{name.upper()}", shown, description))
    return rows


def allowed_values(model: type[BaseSettings], name: str) -> str:
    """What a setting accepts, in words, from its type and constraints: the README's
    "allowed" column and the rule quoted when a value is refused.

    >>> allowed_values(HttpSettings, "port")
    '0 to 65535'
    >>> allowed_values(Settings, "kafka")
    '`on`, `off`'
    """
    field = model.model_fields[name]
    annotation = field.annotation
    if name in ("api_keys", "compliance_api_keys", "admin_api_keys"):
        return f"keys of at least {MIN_API_KEY_CHARS} characters, comma-separated"
    if model is AdmissionSettings and name == "api_key_rates":
        return "`key:rate` pairs (payments/s), comma-separated"
    if model is CardNumberSettings and name == "hmac_key":
        return f"a secret of at least {MIN_PAN_HMAC_KEY_CHARS} characters"
    if model is AuditSettings and name == "url":
        return "a `postgresql://` URL"
    if model is ScoringSettings and name == "feature_state_url":
        return "a `redis://` or `rediss://` URL"
    if model is ScoringSettings and name == "currency":
        return "an ISO 4217 code (`EUR`, `USD`, ...)"
    if model is ScoringSettings and name == "currency_rates":
        return "a `.json` or `.toml` file"
    choices = [a for a in (annotation, *get_args(annotation)) if get_origin(a) is Literal]
    if choices:  # a Literal, or an optional one
        return ", ".join(f"`{value}`" for value in get_args(choices[0]))
    if annotation is bool:
        return "`true`, `false`"
    # annotated_types' Ge(ge=0), Le(le=65535) ...: the bound is the attribute of its name.
    bounds = {
        type(m).__name__: _plain(getattr(m, type(m).__name__.lower(), None)) for m in field.metadata
    }
    number = "a whole number" if annotation is int else "a number"
    if "Ge" in bounds and "Le" in bounds:
        return f"{bounds['Ge']} to {bounds['Le']}"
    words = {"Ge": "at least", "Gt": "above", "Le": "at most", "Lt": "below"}
    parts = [f"{word} {bounds[kind]}" for kind, word in words.items() if kind in bounds]
    if parts:
        return f"{number}, {' and '.join(parts)}"
    if annotation in (int, float):
        return number
    if FilePath in get_args(annotation):
        return "a file"
    return "a directory" if Path in (annotation, *get_args(annotation)) else "any text"


def _plain(bound: object) -> object:
    """60000.0 as 60000: limits read as people write them."""
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound


def known_variables() -> dict[str, tuple[type[BaseSettings], str]]:
    """Every variable a setting reads: its settings model and field name."""
    known: dict[str, tuple[type[BaseSettings], str]] = {}
    for model in settings_models():
        prefix = str(model.model_config.get("env_prefix", ""))
        for name in model.model_fields:
            if not (model is Settings and name in GROUPS):
                known[f"{prefix}{name.upper()}"] = (model, name)
    return known


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``RISKSCORE_*`` variable that no setting reads (a typo would
    otherwise be silently ignored), naming the closest known one."""
    known = [*known_variables(), *OTHER_VARIABLES]
    warnings = []
    for variable in sorted(environ):
        if not variable.startswith("RISKSCORE_") or variable in known:
            continue
        # Compared without the shared prefix, which would make every name look close.
        names = {name.removeprefix("RISKSCORE_"): name for name in known}
        close = difflib.get_close_matches(variable.removeprefix("RISKSCORE_"), names, n=1)
        hint = f" (did you mean {names[close[0]]}?)" if close else ""
        warnings.append(f"{variable} is not a riskscore setting and is ignored{hint}")
    return warnings
