"""The benchmarks' simulated streams: one home, the same payments on every run, and the
same payments the benchmarks sent before they shared it."""

from __future__ import annotations

import hashlib
import json

import pytest

from features.simulated_stream import FIRST_CALLS, payload_stream, timed_stream


def _digest(rows: list[dict[str, object]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.slow
def test_the_timed_stream_is_the_one_the_scorer_and_cascade_benchmarks_used() -> None:
    history, timed = timed_stream(200, seed=23)
    # Digests of the same call to the scorer benchmark's own function before it moved here
    # (history as request bodies; timed payments as validated transactions dumped to JSON).
    assert (len(history), len(timed)) == (157_446, 200 + FIRST_CALLS)
    assert _digest(list(history.payloads())) == "57b6e2d0f6a11690"
    assert _digest([tx.model_dump(mode="json") for tx in timed]) == "a96cfab16984802f"


def test_the_payload_stream_is_the_one_the_stream_benchmark_used() -> None:
    bodies = payload_stream(500, seed=13)
    assert len(bodies) == 500
    assert bodies[0]["transaction_id"] == "b-0"
    assert _digest(bodies) == "c760f2075b5eba33"  # the stream benchmark's, before the move


def test_a_stream_depends_on_its_seed_only() -> None:
    assert payload_stream(50, seed=13) == payload_stream(50, seed=13)
    assert payload_stream(50, seed=14) != payload_stream(50, seed=13)
