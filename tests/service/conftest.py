"""HTTP fixtures: the real app (shipped model, SQLite file in tmp_path) behind a real client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import WARM_START, create_app
from service.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data"
API_KEY = "k" * 24

ClientFactory = Callable[..., Awaitable[TestClient[Any, web.Application]]]


@pytest.fixture
def transaction() -> dict[str, Any]:
    """A fixed, valid transaction payload (a fresh dict each time: tests may edit it)."""
    return json.loads((DATA / "transaction.json").read_text())


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Path) -> ClientFactory:
    """Start the service on ``tmp_path`` (settings overridable); waits for its warm start."""

    async def make(**overrides: Any) -> TestClient[Any, web.Application]:
        settings = Settings.of(**{"data_dir": tmp_path / "var", "kafka": "off", **overrides})
        app = create_app(settings)
        client: TestClient[Any, web.Application] = await aiohttp_client(app)
        task = app.get(WARM_START)
        if task is not None:
            await task
        return client

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, web.Application]:
    return await make_client()
