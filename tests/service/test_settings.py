"""Settings grouped by area: every variable that worked before the grouping still works, and
reaches the group that uses it; bad values name their variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli.errors import UserError, load_settings
from service.settings import Settings, settings_table

# Every variable `riskscore serve` read before the settings were grouped.
VARIABLES = [
    "RISKSCORE_HOST",
    "RISKSCORE_PORT",
    "RISKSCORE_DATA_DIR",
    "RISKSCORE_MODEL_DIR",
    "RISKSCORE_MAX_BODY_BYTES",
    "RISKSCORE_MAX_BATCH_SIZE",
    "RISKSCORE_REASON_COUNT",
    "RISKSCORE_API_KEYS",
    "RISKSCORE_API_KEY_HEADER",
    "RISKSCORE_MICRO_BATCH_MAX",
    "RISKSCORE_AUDIT_COMMIT_WINDOW_MS",
    "RISKSCORE_AUDIT_MAX_BATCH",
    "RISKSCORE_AUDIT_BUSY_TIMEOUT_MS",
    # The PostgreSQL audit store and retention (issue 14).
    "RISKSCORE_WARM_START",
    "RISKSCORE_EXPLAINER",
    "RISKSCORE_PREDICTOR",
    "RISKSCORE_PREDICT_THREADS",
    "RISKSCORE_EVENT_LOOP",
    "RISKSCORE_SHUTDOWN_TIMEOUT_S",
    "RISKSCORE_KAFKA",
    "RISKSCORE_KAFKA_BOOTSTRAP_SERVERS",
    "RISKSCORE_KAFKA_EMBEDDED_PORT",
    "RISKSCORE_KAFKA_GROUP_ID",
    "RISKSCORE_KAFKA_TRANSACTIONS_TOPIC",
    "RISKSCORE_KAFKA_DECISIONS_TOPIC",
    "RISKSCORE_KAFKA_DEAD_LETTER_TOPIC",
    "RISKSCORE_KAFKA_LABELS_TOPIC",
    "RISKSCORE_KAFKA_PARTITIONS",
    "RISKSCORE_KAFKA_MAX_BATCH",
    "RISKSCORE_KAFKA_SESSION_TIMEOUT_MS",
    "RISKSCORE_SEQUENCE",
    "RISKSCORE_SEQUENCE_MODEL_DIR",
    "RISKSCORE_SEQUENCE_BUDGET_MS",
    "RISKSCORE_SEQUENCE_RESERVE_MS",
    "RISKSCORE_SEQUENCE_FAULT_DELAY_MS",
    "RISKSCORE_SEQUENCE_FAULT_ERROR_RATE",
    "RISKSCORE_LOG_LEVEL",
    "RISKSCORE_COMPLIANCE_API_KEYS",
]
# Added since: probes open by default, the embedded broker reachable from outside, logs.
ADDED = [
    "RISKSCORE_PROBES_NEED_KEY",
    "RISKSCORE_KAFKA_EMBEDDED_HOST",
    "RISKSCORE_KAFKA_EMBEDDED_ADVERTISED_HOST",
    "RISKSCORE_LIBRARY_LOG_LEVEL",
    "RISKSCORE_LOG_FORMAT",
    "RISKSCORE_AUDIT_URL",
    "RISKSCORE_AUDIT_CONNECT_TIMEOUT_S",
    "RISKSCORE_AUDIT_STATEMENT_TIMEOUT_MS",
    "RISKSCORE_AUDIT_RETENTION_DAYS",
    "RISKSCORE_FEATURE_STATE_URL",
    "RISKSCORE_SIGNALS_INTERVAL_S",
    "RISKSCORE_SIGNALS_WINDOW_DAYS",
    "RISKSCORE_ADMISSION_CONTROL",
    "RISKSCORE_ADMISSION_SERVICE_MS",
    "RISKSCORE_API_KEY_RATES",
    "RISKSCORE_KAFKA_PAUSE_IN_FLIGHT",
    "RISKSCORE_PAN_POLICY",
    "RISKSCORE_PAN_HMAC_KEY",
    "RISKSCORE_CHECKPOINT_INTERVAL_S",
    # Kafka TLS and credentials (README "Running at scale").
    "RISKSCORE_KAFKA_SECURITY_PROTOCOL",
    "RISKSCORE_KAFKA_SSL_CAFILE",
    "RISKSCORE_KAFKA_SASL_MECHANISM",
    "RISKSCORE_KAFKA_SASL_USERNAME",
    "RISKSCORE_KAFKA_SASL_PASSWORD",
    "RISKSCORE_CURRENCY",
    "RISKSCORE_CURRENCY_RATES",
    # Model versions and their promotion, rules and lists after the model, and the admin
    # role (issue 17).
    "RISKSCORE_ADMIN_API_KEYS",
    "RISKSCORE_MODEL_POLL_S",
    "RISKSCORE_RULES_FILE",
    "RISKSCORE_LISTS_POLL_MS",
    "RISKSCORE_CHALLENGER_QUEUE_SIZE",
]

KEY = "k" * 20


def test_the_variables_are_those_of_before() -> None:
    assert sorted(name for name, _, _ in settings_table()) == sorted(VARIABLES + ADDED)


def test_each_variable_reaches_its_group(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "RISKSCORE_PORT": "9",
        "RISKSCORE_DATA_DIR": str(tmp_path),
        "RISKSCORE_MODEL_DIR": str(tmp_path / "fast"),
        "RISKSCORE_API_KEYS": f"{KEY}, {KEY}2",
        "RISKSCORE_AUDIT_MAX_BATCH": "7",
        "RISKSCORE_WARM_START": "false",
        "RISKSCORE_KAFKA": "off",
        "RISKSCORE_KAFKA_GROUP_ID": "g",
        "RISKSCORE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "RISKSCORE_SEQUENCE": "off",
        "RISKSCORE_SEQUENCE_MODEL_DIR": str(tmp_path / "seq"),
        "RISKSCORE_SEQUENCE_BUDGET_MS": "12",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.http.port == 9
    assert settings.http.api_keys == (KEY, f"{KEY}2")
    assert settings.audit_path == tmp_path / "audit.sqlite3"
    assert settings.scoring.artifact_dir == tmp_path / "fast"
    assert settings.scoring.warm_start is False
    assert settings.audit.max_batch == 7
    assert (settings.kafka, settings.stream.group_id) == ("off", "g")
    assert settings.stream.stream_config("h:1").session_timeout_ms == 6000
    assert (settings.sequence, settings.second_stage.budget_ms) == ("off", 12.0)
    assert settings.second_stage.artifact_dir == tmp_path / "seq"


def test_of_names_values_like_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSCORE_HOST", "0.0.0.0")  # still read: values only take precedence
    settings = Settings.of(port=0, audit_busy_timeout_ms=50, kafka_max_batch=3, kafka="off")
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 0)
    assert settings.audit.busy_timeout_ms == 50
    assert (settings.kafka, settings.stream.max_batch) == ("off", 3)
    with pytest.raises(ValueError, match="extra"):
        Settings.of(no_such_setting=1)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RISKSCORE_PORT", "eighty"),
        ("RISKSCORE_AUDIT_MAX_BATCH", "0"),
        ("RISKSCORE_KAFKA_PARTITIONS", "0"),
        ("RISKSCORE_SEQUENCE_BUDGET_MS", "-1"),
        ("RISKSCORE_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError, match=f"^invalid configuration: {variable}: "):
        load_settings()


def test_the_groups_names_are_not_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for group in ("HTTP", "SCORING", "AUDIT", "STREAM", "SECOND_STAGE"):
        monkeypatch.setenv(f"RISKSCORE_{group}", "not json")  # meant nothing before either
    assert load_settings().http.port == 8080


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {"RISKSCORE_EVENT_LOOP": "x", "RISKSCORE_PORT": "99999", "RISKSCORE_AUDIT_MAX_BATCH": "0"}
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as refused:
        load_settings()
    assert all(f"{name}: " in str(refused.value) for name in bad)


def test_a_rule_over_several_variables_is_not_named_as_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RISKSCORE_COMPLIANCE_API_KEYS", KEY)
    with pytest.raises(UserError, match="compliance API keys need scoring API keys") as refused:
        load_settings()
    assert "RISKSCORE_SETTINGS" not in str(refused.value)
    # Named by the variable to set, not by an internal name ("settings: ...").
    assert str(refused.value).startswith("invalid configuration: RISKSCORE_COMPLIANCE_API_KEYS: ")


def test_a_short_api_key_names_the_variable_and_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSCORE_API_KEYS", "twelve-chars")
    with pytest.raises(UserError) as refused:
        load_settings()
    assert str(refused.value) == (
        "invalid configuration: RISKSCORE_API_KEYS: each key needs at least 16 characters"
    )


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("RISKSCORE_PORT", "eighty", "(allowed: 0 to 65535)"),
        ("RISKSCORE_MAX_BODY_BYTES", "10", "(allowed: a whole number, at least 1024)"),
        ("RISKSCORE_EXPLAINER", "exact", "(allowed: fast, lightgbm)"),
        ("RISKSCORE_SEQUENCE_BUDGET_MS", "0", "(allowed: a number, above 0 and at most 60000)"),
    ],
)
def test_a_bad_value_is_told_the_rule(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, rule: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"invalid configuration: {variable}: ") and message.endswith(rule)
    assert "Value error" not in message and ": :" not in message


def test_an_unknown_variable_is_reported_with_the_closest_known_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RISKSCORE_PORTT", "1")
    monkeypatch.setenv("RISKSCORE_AUDIT_MAX_BATHC", "1")
    monkeypatch.setenv("RISKSCORE_HANDBOOK_DIR", "data")  # read by the tests: known
    assert load_settings().http.port == 8080
    assert capsys.readouterr().err.splitlines() == [
        "riskscore: warning: RISKSCORE_AUDIT_MAX_BATHC is not a riskscore setting and is "
        "ignored (did you mean RISKSCORE_AUDIT_MAX_BATCH?)",
        "riskscore: warning: RISKSCORE_PORTT is not a riskscore setting and is ignored "
        "(did you mean RISKSCORE_PORT?)",
    ]


def test_audit_url_is_postgresql_and_its_password_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql://audit:s3cret-pw@db.example:5432/riskscore"
    monkeypatch.setenv("RISKSCORE_AUDIT_URL", url)
    settings = Settings()
    assert settings.audit.url is not None and settings.audit.url.get_secret_value() == url
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.audit)
    monkeypatch.setenv("RISKSCORE_AUDIT_URL", "mysql://audit@db/riskscore")
    with pytest.raises(ValueError, match="postgresql://"):
        Settings()
