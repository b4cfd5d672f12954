"""Rewrite the golden files (``tests/data/golden/*.json``) from the current code.

    python -m tests.golden.regenerate

The golden files pin what the service answers today, so that a rewrite of the decision
path can be shown to answer the same. Regenerating is **only** for a deliberate,
documented change of the API's output (a new field, a changed message, a retrained
model): say in the commit message what changed and why, and review the diff of the JSON
files line by line. Never regenerate to make a failing golden test pass after a change
that was meant to keep the output the same: the failure is the finding.

It runs the scenario of ``tests/golden/scenario.py`` once on a temporary audit store and
writes one file per step; ``pytest tests/golden`` then compares a fresh run with them.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.golden.scenario import GOLDEN_DIR, GOLDEN_FILES, collect, dump, golden_path


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="riskscore-golden-") as tmp:
        observed = asyncio.run(collect(Path(tmp) / "var"))
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in GOLDEN_FILES:
        text = dump(observed[name])
        golden_path(name).write_text(text, encoding="utf-8")
        total += len(text)
        print(f"wrote {golden_path(name)} ({len(text):,} bytes)")
    stray = sorted(p.name for p in GOLDEN_DIR.glob("*.json") if p.stem not in GOLDEN_FILES)
    if stray:
        print(f"not part of the scenario (delete them?): {', '.join(stray)}")
    print(f"{total:,} bytes in {len(GOLDEN_FILES)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
