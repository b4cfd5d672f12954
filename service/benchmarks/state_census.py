"""Whether the Redis feature state applied each payment of a run exactly once: every
entity's hash keeps the number of events it ever applied (its next sequence number, the
first double of its ``m`` field), which must equal the run's payments of that entity. A
payment lost by an engine restart, or applied twice, makes its entities differ."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import redis

from features.definitions import Entity
from features.plan import compile_plan
from features.redis_keys import KeyNames, plan_digest

_BATCH = 1000


def _applied(client: redis.Redis, keys: list[bytes]) -> list[int]:
    """Events each key applied (0 for a key Redis does not hold)."""
    out: list[int] = []
    for start in range(0, len(keys), _BATCH):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + _BATCH]:
            pipe.hget(key, "m")
        for meta in pipe.execute():
            out.append(0 if meta is None else int(np.frombuffer(meta[:8], "<f8")[0]))
    return out


def state_mismatches(redis_url: str, payloads: Iterable[dict[str, Any]]) -> int:
    """Customers and terminals whose applied events in Redis differ from their payments."""
    keys = KeyNames(plan_digest(compile_plan()))
    entities = compile_plan().entities()
    expected: Counter[bytes] = Counter()
    for p in payloads:
        customer: Hashable = p["customer_id"]
        terminal: Hashable = p["terminal_id"]
        if Entity.CUSTOMER in entities:
            expected[keys.customer(customer)] += 1
        if Entity.TERMINAL in entities:
            expected[keys.terminal(terminal)] += 1
    names = list(expected)
    client = redis.Redis.from_url(redis_url)
    try:
        applied = _applied(client, names)
    finally:
        client.close()
    return sum(1 for name, n in zip(names, applied, strict=True) if n != expected[name])
