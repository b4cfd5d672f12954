"""Shared fixtures: where the handbook benchmark data is, and whether it must be there."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresServer, PostgresUnavailable, throwaway_postgres

REPO_ROOT = Path(__file__).resolve().parents[1]
HANDBOOK_FILES = ("transactions_dev.csv.gz", "features_reference_2018-07.csv.gz")


def _handbook_location() -> Path:
    configured = os.environ.get("RISKSCORE_HANDBOOK_DIR")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "datasets" / "handbook"


@pytest.fixture(scope="session")
def handbook_dir() -> Path:
    """The handbook data directory; skips (or fails, when CI requires it) if absent.

    A user's clone has no benchmark data, so those tests skip with a reason; CI sets
    RISKSCORE_REQUIRE_HANDBOOK=1 so that a missing data set fails instead of hiding.
    """
    location = _handbook_location()
    missing = [name for name in HANDBOOK_FILES if not (location / name).is_file()]
    if missing:
        message = (
            f"handbook data not found at {location} (missing {', '.join(missing)}); "
            "set RISKSCORE_HANDBOOK_DIR to the directory holding it"
        )
        if os.environ.get("RISKSCORE_REQUIRE_HANDBOOK") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return location


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session; fails (never skips) without the
    server binaries, naming the command that installs them."""
    try:
        with throwaway_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t{next(_DATABASES)}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.url(name)


_DATABASES = itertools.count(1)


# The real redis-server of the feature-state tests (tests/redis_server.py); the same on a
# throwaway 3-primary Redis Cluster, and both as one parameter (tests/redis_cluster.py).
from tests.redis_cluster import redis_cluster, redis_target  # noqa: E402, F401
from tests.redis_server import redis_server  # noqa: E402, F401
