"""The second stage on the redis backend: the customers' sequences live in Redis beside
their windows, so another process with an empty audit store sees the same sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import redis

from service.app_keys import SCORER
from tests.redis_server import RedisServer
from tests.service.conftest import ClientFactory
from tests.service.test_cascade_api import ROOMY, everything_in_band, tx

__all__ = ["everything_in_band"]  # the fixture, used by name below


async def test_sequences_are_shared_through_redis(
    make_client: ClientFactory,
    everything_in_band: Path,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    url = redis_server.url(5)
    redis.Redis.from_url(url).flushdb()
    first = await make_client(
        sequence_model_dir=everything_in_band, feature_state_url=url, data_dir=tmp_path / "one"
    )
    for i in range(5):
        response = await first.post("/score", json=tx(i), headers=ROOMY)
        assert response.status == 200, await response.json()
    last_ms = int(np.datetime64("2025-06-02T08:04:00", "ms").astype(np.int64))
    before = first.app[SCORER].sequence_view("c-1", last_ms)
    assert before is not None and len(before.transaction_ids) == 5
    await first.close()
    # A process with an empty audit store: nothing to refill from, yet the same sequence.
    second = await make_client(
        sequence_model_dir=everything_in_band, feature_state_url=url, data_dir=tmp_path / "two"
    )
    after = second.app[SCORER].sequence_view("c-1", last_ms)
    assert after is not None
    assert after.transaction_ids == before.transaction_ids
    np.testing.assert_array_equal(after.values, before.values)
    response = await second.post("/score", json=tx(5), headers=ROOMY)
    body = await response.json()
    assert response.status == 200 and body["stage"] == "sequence", body
    record = await (await second.get(f"/decisions/{tx(5)['transaction_id']}")).json()
    assert [a["transaction_id"] for a in record["sequence"]["attributions"]] == [
        tx(i)["transaction_id"] for i in (4, 3, 2, 1, 0)
    ]
    await second.close()
