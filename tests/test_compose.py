"""The at-scale topology as a file (deploy/compose.yaml): container images cannot be
pulled here, so the file is held to the settings instead — every RISKSCORE_* variable
is a setting with an allowed value, addresses name services and the ports they listen
on, no secret is written in the file, and each command is a riskscore command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.cli import build_parser
from service.settings import Settings, unknown_variables

COMPOSE = Path(__file__).resolve().parent.parent / "deploy" / "compose.yaml"
# ${NAME:?message} (required from the environment), ${NAME:-default}, ${NAME}.
SUBSTITUTION = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


def interpolate(value: str) -> str:
    """Compose's substitution, with a stand-in for every variable from the environment."""
    return SUBSTITUTION.sub(lambda m: f"from-env-{m.group(1).lower()}", value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<: *anchor) resolved
    assert isinstance(loaded, dict)
    return loaded


def riskscore_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("command", [None])[0] == "riskscore"
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: interpolate(str(v)) for k, v in service.get("environment", {}).items()}


def test_the_topology_has_a_broker_a_feature_state_a_database_and_many_scorers(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert {"kafka", "valkey", "postgres"} <= set(services)
    scorers = riskscore_services(compose)
    commands = {name: s["command"][1] for name, s in scorers.items()}
    assert sorted(commands.values()) == ["consume", "serve"]
    replicas = sum(s.get("deploy", {}).get("replicas", 1) for s in scorers.values())
    assert replicas >= 3


def test_every_riskscore_variable_is_a_setting_with_an_allowed_value(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for name, service in riskscore_services(compose).items():
        env = environment(service)
        assert env, name
        assert unknown_variables(env) == [], name
        for variable in [v for v in os.environ if v.startswith("RISKSCORE_")]:
            monkeypatch.delenv(variable)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        settings = Settings()  # raises, naming the variable, on a value not allowed
        assert settings.scoring.feature_state_url is not None, name
        assert settings.audit.url is not None, name
        assert settings.stream.bootstrap_servers is not None, name
        # The state is shared: replaying the audit store at start-up would be wasted.
        assert settings.scoring.warm_start is False, name
        # Each command is one the CLI knows, with options it accepts.
        build_parser().parse_args(service["command"][1:])


def _port_of(service: dict[str, Any], published: str) -> str:
    for mapping in service.get("ports", []):
        outside, inside = str(mapping).rsplit(":", 1)
        if outside.split(":")[-1] == published:
            return inside
    raise AssertionError(f"port {published} is not published")


def test_addresses_name_services_and_the_ports_they_listen_on(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = environment(services["kafka"])
    for name, service in riskscore_services(compose).items():
        env = environment(service)
        for server in env["RISKSCORE_KAFKA_BOOTSTRAP_SERVERS"].split(","):
            assert f"PLAINTEXT://{server}" in kafka["KAFKA_ADVERTISED_LISTENERS"], name
            assert f":{server.split(':')[1]}" in kafka["KAFKA_LISTENERS"], name
        state = urlsplit(env["RISKSCORE_FEATURE_STATE_URL"])
        assert (state.hostname, state.port) == ("valkey", 6379), name
        audit = urlsplit(env["RISKSCORE_AUDIT_URL"])
        assert (audit.hostname, audit.port) == ("postgres", 5432), name
        postgres = environment(services["postgres"])
        assert (audit.username, audit.path.lstrip("/")) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_DB"],
        )
        # The consumers' partitions: enough for every consumer to get some.
        replicas = service.get("deploy", {}).get("replicas", 1)
        assert int(env["RISKSCORE_KAFKA_PARTITIONS"]) >= replicas
    http = services["score-http"]
    env = environment(http)
    assert env["RISKSCORE_HOST"] == "0.0.0.0"  # reachable from outside its container
    assert _port_of(http, env["RISKSCORE_PORT"]) == env["RISKSCORE_PORT"]
    assert env["RISKSCORE_KAFKA"] == "off"
    assert environment(services["score-consumer"])["RISKSCORE_KAFKA"] == "on"


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for variable, value in service.get("environment", {}).items():
            url = urlsplit(str(value))
            if url.scheme and url.password is not None:
                assert url.password.startswith("${"), (name, variable)
            if "PASSWORD" in variable:
                assert str(value).startswith("${"), (name, variable)
    text = COMPOSE.read_text()
    assert 'requirepass", "${VALKEY_PASSWORD' in text
