"""The URL of a Redis Cluster: ``redis+cluster://`` (``rediss+cluster://`` for TLS).

redis-py's ``RedisCluster.from_url`` takes a ``redis://`` URL of one node and finds the
others itself; one node named is one node that must be up at start-up. So the cluster
URL names as many nodes as wanted, comma-separated (the form other clients read, e.g.
``redis-cluster://`` in some, ``addr=`` in go-redis), and a scheme of its own says
"Cluster" without a second setting:

    redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/0][?OPTIONS]

The user and password, and the query options (``ssl_ca_certs``, ``ssl_cert_reqs``, ...,
as redis-py reads them from a plain URL), apply to every node. Cluster has database 0
only, so any other is refused.

>>> split_cluster_url("rediss+cluster://:pw@a:7000,b:7001/0?ssl_ca_certs=ca.pem")
('rediss://:pw@a:7000?ssl_ca_certs=ca.pem', [('b', 7001)])
>>> split_cluster_url("redis+cluster://[::1]:7000")
('redis://[::1]:7000', [])
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
DEFAULT_PORT = 6379


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def split_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]]:
    """The first node's plain URL (credentials and options kept) and the other nodes."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"not a cluster URL: it must start with {' or '.join(_schemes())}")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("Redis Cluster has database 0 only: leave the path out or write /0")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = [_node(text) for text in hosts.split(",")]
    host, port = nodes[0]
    first = f"{userinfo}{at}{_netloc(host, port)}"
    return urlunsplit((scheme, first, "", parts.query, "")), nodes[1:]


def cluster_client(url: str, **options: Any) -> Any:
    """redis-py's ``RedisCluster`` for a cluster URL; ``options`` go to every node's
    connections (timeouts)."""
    from redis.cluster import ClusterNode, RedisCluster

    first, others = split_cluster_url(url)
    startup_nodes = [ClusterNode(host, port) for host, port in others]
    return RedisCluster.from_url(first, startup_nodes=startup_nodes, **options)


def _node(text: str) -> tuple[str, int]:
    if not text:
        raise ValueError("a cluster URL names its nodes as HOST:PORT, comma-separated")
    if text.startswith("["):  # an IPv6 address, [::1]:7000
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host or (port and not port.isdigit()) or not 0 < int(port or DEFAULT_PORT) < 65536:
        raise ValueError(f"a cluster node must be HOST:PORT, not {text!r}")
    return host, int(port or DEFAULT_PORT)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _schemes() -> list[str]:
    return [f"{scheme}://" for scheme in CLUSTER_SCHEMES]
