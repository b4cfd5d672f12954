"""The collector-pause benchmark runs end to end on a small history (its figures are in the
README; no timing is asserted here)."""

from __future__ import annotations

import gc

from service.benchmarks.gc_pause import measure


def test_the_benchmark_times_a_full_collection_before_and_after_a_freeze() -> None:
    result = measure(days=3, customers=200, new=100)
    assert result["new_payments_since_freeze"] == 100
    assert result["payments_in_state"] > 100
    # What the freeze put out of reach is the state built before it.
    assert result["frozen_objects"] > 0
    for side in ("whole_state", "after_a_freeze"):
        assert result[side]["runs"] == 3 and result[side]["median_ms"] > 0
    assert gc.get_freeze_count() == 0  # nothing left frozen in the caller's process
