"""Per-API-key rates: a token bucket per key, in payments per second, per process.

A bucket holds up to one second of its key's rate, and at least one payment (so a key may
burst to its rate at once after a quiet second), and refills continuously. A batch
request takes one token per payment. Keys without a rate, and requests without a key, are
not limited here. Each process keeps its own buckets: N worker processes behind one port
let a key through at up to N × its rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    rate: float  # tokens per second
    size: float  # most tokens held: a second's worth, at least one
    tokens: float
    updated: float


class RateLimits:
    """The buckets of the keys in ``rates`` (key → payments per second)."""

    def __init__(self, rates: Mapping[str, float]) -> None:
        self._rates = dict(rates)
        self._buckets: dict[str, _Bucket] = {}

    def rate_of(self, key: str | None) -> float | None:
        return None if key is None else self._rates.get(key)

    def take(self, key: str | None, tokens: int, now: float) -> float:
        """Take ``tokens`` for ``key``: 0.0 when granted, else the seconds until they would
        be (nothing is taken then)."""
        rate = self.rate_of(key)
        if rate is None or key is None:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            size = max(rate, 1.0)
            bucket = self._buckets[key] = _Bucket(rate, size, size, now)
        bucket.tokens = min(bucket.size, bucket.tokens + (now - bucket.updated) * bucket.rate)
        bucket.updated = now
        if bucket.tokens >= tokens:
            bucket.tokens -= tokens
            return 0.0
        # A batch larger than the bucket waits for a full bucket, then overdraws it.
        missing = min(float(tokens), bucket.size) - bucket.tokens
        if missing <= 0.0:
            bucket.tokens -= tokens
            return 0.0
        return missing / bucket.rate

    def give_back(self, key: str | None, tokens: int) -> None:
        """Return tokens taken for a request that was then refused for another reason."""
        bucket = None if key is None else self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(bucket.size, bucket.tokens + tokens)
