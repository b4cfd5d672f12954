"""How long a full garbage collection holds the process, with the feature state it serves.

A full collection walks every tracked object, and the in-process feature state is most of
them, so its pause grows with the state. The service settles its heap after the warm
start and again every ``REFREEZE_S`` while serving (``service/heap_settling.py``): a full
collection then walks only what survived since the last freeze. This fills an engine with
a simulated history (``--customers`` customers paying about twice a day for ``--days``
days), then times ``gc.collect()``:

* ``whole state``: nothing frozen — what a full collection cost before;
* ``after a freeze``: the state frozen, then ``--new`` more payments applied (what comes
  in within one freeze interval at the rate the figure is meant for) — what it costs now.

Run: ``python -m service.benchmarks.gc_pause [--days 30] [--customers 10000] [--new 30000]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

from features.data import frame_from_pandas
from features.online import OnlineFeatureEngine
from features.rebuild import rebuild_state
from features.simulator import SimulationConfig, simulate
from service.heap_settling import refreeze

REPEATS = 3


def _full_collection_ms() -> dict[str, Any]:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000.0)
    return {"median_ms": statistics.median(times), "max_ms": max(times), "runs": REPEATS}


def measure(days: int, customers: int, new: int, seed: int = 5) -> dict[str, Any]:
    config = SimulationConfig(
        customers=customers, terminals=2 * customers, days=days, start=date(2025, 1, 1), seed=seed
    )
    frame = frame_from_pandas(simulate(config, progress=True), source="simulated")
    if len(frame) <= new:
        raise SystemExit(f"the history holds {len(frame)} payments: ask for fewer --new")
    base, later = frame.take(slice(0, len(frame) - new)), frame.take(slice(len(frame) - new, None))
    gc.unfreeze()
    engine = OnlineFeatureEngine()
    rebuild_state(base, engine)
    tracked_before = len(gc.get_objects())
    whole = _full_collection_ms()
    refreeze()
    rebuild_state(later, engine)
    after = _full_collection_ms()
    result = {
        "payments_in_state": len(frame),
        "tracked_objects_whole_state": tracked_before,
        "frozen_objects": gc.get_freeze_count(),
        "new_payments_since_freeze": new,
        "whole_state": whole,
        "after_a_freeze": after,
        "ratio_of_medians": whole["median_ms"] / max(after["median_ms"], 1e-9),
    }
    gc.unfreeze()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmarks.gc_pause",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--days", type=int, default=30, help="days of simulated history (30)")
    parser.add_argument("--customers", type=int, default=10_000, help="customers (10,000)")
    parser.add_argument(
        "--new", type=int, default=30_000, help="payments after the freeze (30,000)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = measure(args.days, args.customers, args.new)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
