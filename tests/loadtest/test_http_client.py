"""The HTTP target against a real aiohttp server: latency from intended send time under a
stall, statuses as errors, the API key header, an unreachable server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from loadtest.http_client import Endpoint, HttpTarget
from loadtest.net import TargetError
from loadtest.recorder import Recorder
from loadtest.runner import batched
from loadtest.schedule import Plan, fixed_rate, run_schedule

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def _bodies(n: int = 1000) -> list[dict[str, object]]:
    return [{"transaction_id": f"t{i}", "amount": 1.0} for i in range(n)]


async def _run(server: TestServer, rate: float, duration_s: float, **target: object) -> Recorder:
    recorder = Recorder()
    endpoint = Endpoint.parse(str(server.make_url("/")), "/score")
    http = HttpTarget(endpoint, recorder, **target)  # type: ignore[arg-type]
    plan = Plan(duration_s=duration_s, drain_timeout_s=5.0)
    await run_schedule(recorder, http, _bodies(), fixed_rate(rate), plan)
    http.close()
    return recorder


async def test_latency_of_requests_sent_during_a_stall_includes_the_wait(
    aiohttp_server: ServerFactory,
) -> None:
    release = asyncio.Event()
    arrived_before_release: list[float] = []
    released_at: list[float] = []
    # The stall ends when the 20th request has arrived, not after a fixed time: on a busy
    # machine fewer requests reach the server in a fixed interval, and the test must not
    # depend on how many did.
    held_count = 20

    async def score(request: web.Request) -> web.Response:
        await request.read()
        if not release.is_set():
            arrived_before_release.append(time.perf_counter())
            if len(arrived_before_release) == held_count:
                released_at.append(time.perf_counter())
                release.set()
            else:
                await release.wait()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/score", score)
    server = await aiohttp_server(app)

    recorder = await _run(server, rate=100.0, duration_s=0.6)

    assert recorder.sent == 60
    assert recorder.completed == 60
    assert not recorder.errors
    # Open loop: requests kept arriving while the server held every one of them.
    assert len(arrived_before_release) == held_count
    intended = np.asarray(recorder.sample_offsets) + recorder.measure_from
    latency_s = np.asarray(recorder.sample_latency_ms) / 1000.0
    held = intended < released_at[0]
    assert held.sum() >= held_count
    # Each held request's latency covers the whole wait from its *intended* send time
    # (HDR keeps 3 digits; 1 ms of slack for the sample's rounding to microseconds).
    waited = released_at[0] - intended[held]
    assert np.all(latency_s[held] >= waited - 1e-3)
    # The first one waited the longest: the whole stall, counted from its intended send.
    assert latency_s.max() >= waited.max() - 1e-3
    assert recorder.histogram.get_max_value() / 1e6 == pytest.approx(latency_s.max(), rel=1e-2)


async def test_error_statuses_are_counted_by_status(aiohttp_server: ServerFactory) -> None:
    seen = 0

    async def score(request: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        await request.json()
        if seen % 4 == 0:
            raise web.HTTPServiceUnavailable()
        if seen % 5 == 0:
            return web.json_response({"error": {"type": "validation_error"}}, status=422)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/score", score)
    server = await aiohttp_server(app)
    recorder = await _run(server, rate=200.0, duration_s=0.2)

    assert recorder.sent == 40
    assert dict(recorder.errors) == {"503": 10, "422": 6}
    assert recorder.completed == 24


async def test_the_api_key_goes_in_its_header(aiohttp_server: ServerFactory) -> None:
    keys: list[str | None] = []

    async def score(request: web.Request) -> web.Response:
        keys.append(request.headers.get("X-Key"))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/score", score)
    server = await aiohttp_server(app)
    recorder = await _run(server, rate=100.0, duration_s=0.05, headers={"X-Key": "k1"})

    assert recorder.completed == 5
    assert keys == ["k1"] * 5


async def test_a_server_gone_makes_every_request_an_error() -> None:
    recorder = Recorder()
    with_port = Endpoint("127.0.0.1", _closed_port(), "/score")
    target = HttpTarget(with_port, recorder)
    await run_schedule(recorder, target, _bodies(), fixed_rate(100.0), Plan(duration_s=0.1))

    assert recorder.sent == 10
    assert recorder.completed == 0
    assert dict(recorder.errors) == {"ConnectionRefusedError": 10}
    with pytest.raises(TargetError, match="cannot connect"):
        with_port.check_reachable()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/", "http://HOST:PORT"),
        ("localhost:8080", "http://HOST:PORT"),
        ("http://h:x/", "bad port"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        Endpoint.parse(url, "/score")


def test_the_path_joins_the_base_url() -> None:
    assert Endpoint.parse("http://127.0.0.1:8080/", "/score") == Endpoint(
        "127.0.0.1", 8080, "/score"
    )
    assert Endpoint.parse("http://h/api", "score/batch").path == "/api/score/batch"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_batches_go_to_the_batch_endpoint_and_item_errors_count(
    aiohttp_server: ServerFactory,
) -> None:
    sizes: list[int] = []

    async def batch(request: web.Request) -> web.Response:
        items = (await request.json())["transactions"]
        sizes.append(len(items))
        results = [{"transaction_id": t["transaction_id"]} for t in items]
        if len(sizes) % 2 == 0:
            results[0] = {"index": 0, "error": {"type": "validation_error"}}
        return web.json_response({"results": results})

    app = web.Application()
    app.router.add_post("/score/batch", batch)
    server = await aiohttp_server(app)
    recorder = Recorder()
    endpoint = Endpoint.parse(str(server.make_url("/")), "/score/batch")
    target = HttpTarget(endpoint, recorder, inspect_body=True)
    bodies = batched(iter(_bodies()), 5)
    await run_schedule(recorder, target, bodies, fixed_rate(100.0), Plan(duration_s=0.1))

    assert sizes == [5] * 10
    assert recorder.sent == 10
    assert dict(recorder.errors) == {"batch_item_error": 5}
    assert recorder.completed == 5


async def test_on_answer_sees_every_answer_with_its_body_and_status(
    aiohttp_server: ServerFactory,
) -> None:
    async def score(request: web.Request) -> web.Response:
        body = await request.json()
        if body["transaction_id"] == "t3":
            return web.json_response({"error": {"type": "validation_error"}}, status=422)
        return web.json_response({"transaction_id": body["transaction_id"], "stage": "fast"})

    app = web.Application()
    app.router.add_post("/score", score)
    server = await aiohttp_server(app)
    answers: list[tuple[float, float, int, bytes]] = []

    def keep(intended: float, at: float, status: int, body: bytes) -> None:
        answers.append((intended, at, status, body))

    recorder = await _run(server, rate=100, duration_s=0.1, on_answer=keep)

    assert recorder.completed + sum(recorder.errors.values()) == len(answers) == 10
    assert recorder.errors == {"422": 1}
    assert all(at >= intended for intended, at, _, _ in answers)
    received = {(status, body) for _, _, status, body in answers}
    assert (422, b'{"error": {"type": "validation_error"}}') in received
    assert (200, b'{"transaction_id": "t0", "stage": "fast"}') in received
