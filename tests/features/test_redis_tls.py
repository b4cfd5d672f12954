"""The feature state over TLS: a redis-server (and a Redis Cluster) with a self-signed
certificate, reached with a ``rediss://`` (``rediss+cluster://``) URL whose query names
the certificate authority (passed through to the client as it is, as the README's "TLS
and credentials" says)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.redis_cluster_state import open_redis_state
from features.redis_state import RedisFeatureState
from features.state import FeatureStateUnavailable
from tests.redis_cluster import ClusterTls, start_cluster, stop_cluster
from tests.redis_server import RedisServer, free_port, start_redis, stop_redis

PASSWORD = "tls-test-password"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, its own authority, and its key."""
    cert, key = directory / "server.pem", directory / "server.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks only TLS and needs a password: its port and the CA file."""
    directory = tmp_path_factory.mktemp("redis-tls")
    cert, key = _self_signed(directory)
    tls_port = free_port()
    server: RedisServer = start_redis(
        directory,
        *("--port", "0", "--tls-port", str(tls_port), "--requirepass", PASSWORD),
        *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
    )
    try:
        yield tls_port, cert
    finally:
        stop_redis(server)


def test_a_rediss_url_with_its_certificate_authority_reaches_the_state(
    tls_redis: tuple[int, Path],
) -> None:
    port, ca = tls_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    state = RedisFeatureState(url)
    try:
        x = state.update_raw("tls-1", "c", "t", 86_400_000, 86_400_000, 42.0)
        assert x[list(state.feature_names).index("TX_AMOUNT")] == 42.0
        assert state.problem() is None
    finally:
        state.close()


def test_an_untrusted_certificate_is_refused_naming_the_url_without_its_password(
    tls_redis: tuple[int, Path],
) -> None:
    port, _ = tls_redis
    # The system's authorities do not know the self-signed certificate.
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=required"
    with pytest.raises(FeatureStateUnavailable, match="certificate verify failed") as error:
        RedisFeatureState(url)
    assert PASSWORD not in str(error.value)


def test_plain_text_is_not_answered_by_a_tls_only_server(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    with pytest.raises(FeatureStateUnavailable):
        RedisFeatureState(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", timeout_s=1.0)


def test_a_rediss_cluster_url_reaches_every_node_over_tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The cluster's nodes speak TLS only (to clients and on the cluster bus) and want the
    password: the options of the one URL reach every node the client finds."""
    directory = tmp_path_factory.mktemp("redis-cluster-tls")
    cert, key = _self_signed(directory)
    cluster = start_cluster(directory, tls=ClusterTls(cert, key, PASSWORD))
    try:
        url = cluster.url()
        assert url.startswith(f"rediss+cluster://:{PASSWORD}@")
        state = open_redis_state(url)
        try:
            n = 30  # customers and terminals over every primary's slots
            update = state.update_many(
                [f"tls-{i}" for i in range(n)],
                [f"c-{i}" for i in range(n)],
                [f"t-{i}" for i in range(n)],
                [86_400_000] * n,
                [86_400_000] * n,
                [42.0] * n,
            )
            assert update.refused == []
            assert (update.values[:, list(state.feature_names).index("TX_AMOUNT")] == 42.0).all()
            assert state.problem() is None
        finally:
            state.close()
        for node in cluster.node_clients():
            with node:
                assert node.info("commandstats")["cmdstat_fcall"]["calls"] > 0
        # Without the authority, the first node already refuses the client.
        untrusted = url.replace(f"ssl_ca_certs={cert}&", "")
        with pytest.raises(FeatureStateUnavailable, match="certificate verify failed") as error:
            open_redis_state(untrusted)
        assert PASSWORD not in str(error.value)
    finally:
        stop_cluster(cluster)
