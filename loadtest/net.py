"""Fail fast, in one line, when the target is not there at all."""

from __future__ import annotations

import socket


class TargetError(ValueError):
    """A target address that cannot be used, or a server that cannot be reached."""


def check_reachable(host: str, port: int, timeout_s: float = 3.0) -> None:
    """One TCP connection: a refused or unroutable address is an error before the run."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise TargetError(f"cannot connect to {host}:{port} ({exc})") from exc


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); TargetError naming the address otherwise."""
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit():
        raise TargetError(f"expected HOST:PORT, got {address!r}")
    return host, int(port)
