"""RISKSCORE_FEATURE_STATE_URL takes one Redis server or a cluster, plain or over TLS, and
refuses any other scheme by name."""

from __future__ import annotations

import pytest

from service.cli.errors import UserError, load_settings

VARIABLE = "RISKSCORE_FEATURE_STATE_URL"


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@redis.internal:6380/0?ssl_ca_certs=/etc/ca.pem",
        "redis+cluster://r1:7000,r2:7000,r3:7000",
        "rediss+cluster://:pw@r1:7000,r2:7000/0?ssl_cert_reqs=required",
    ],
)
def test_a_server_or_a_cluster_is_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv(VARIABLE, url)
    assert load_settings().scoring.feature_state_url == url


@pytest.mark.parametrize(
    "url", ["redis-cluster://r1:7000", "rediscluster://r1:7000", "http://r1:6379/0"]
)
def test_another_scheme_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv(VARIABLE, url)
    with pytest.raises(UserError, match=f"^invalid configuration: {VARIABLE}: "):
        load_settings()
