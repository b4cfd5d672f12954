"""The bulk collectors expose exactly what prometheus_client's own metrics would."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service.bulk_metrics import FOLD_EVERY, BulkCounter, BulkHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#") and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_a_bulk_histogram_counts_as_a_prometheus_histogram_does() -> None:
    rng = np.random.default_rng(7)
    # Values on the bounds themselves, above the last one, and enough to fold twice.
    values = [*BUCKETS, 5.0, 0.0, *rng.exponential(0.05, 2 * FOLD_EVERY + 17).tolist()]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("x_seconds", "doc", ["stage"], BUCKETS)
    ours.register(bulk)
    reference = Histogram("x_seconds", "doc", ["stage"], buckets=BUCKETS, registry=theirs)
    for i, v in enumerate(values):
        stage = "a" if i % 3 else "b"
        bulk.observe((stage,), v)
        reference.labels(stage).observe(v)
    got, expected = _samples(ours), _samples(theirs)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        if "_sum" in name:  # summed in another order: equal to rounding
            assert abs(got[name] - value) <= 1e-9 * max(1.0, abs(value))
        else:
            assert got[name] == value, name


def test_a_bulk_counter_counts_as_a_prometheus_counter_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    bulk = BulkCounter("y", "doc", ["action", "stage"])
    ours.register(bulk)
    reference = Counter("y", "doc", ["action", "stage"], registry=theirs)
    for action, stage in [("approve", "fast")] * 3 + [("decline", "sequence")]:
        bulk.inc((action, stage))
        reference.labels(action, stage).inc()
    bulk.inc(("review", "fast"), 0.0)
    reference.labels("review", "fast")
    assert _samples(ours) == _samples(theirs)
