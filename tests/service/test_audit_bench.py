"""The audit benchmark measures what it says: every decision durable, grouped commits."""

from __future__ import annotations

from pathlib import Path

from service.benchmarks.audit_bench import measure, postgres_opener, sqlite_opener, table


def test_audit_bench_records_every_decision_on_both_stores(
    tmp_path: Path, postgres_url: str
) -> None:
    stores = {"sqlite": sqlite_opener(tmp_path), "postgresql": postgres_opener(postgres_url)}
    rows = measure(stores, 64, [1, 8])
    assert [(r["store"], r["waiters"]) for r in rows] == [
        ("none (idle loop)", 0),
        ("sqlite", 1),
        ("sqlite", 8),
        ("postgresql", 1),
        ("postgresql", 8),
    ]
    for row in rows[1:]:
        assert row["durable"]["n"] == 64
        # One waiter cannot share a commit; eight can (and sometimes do not).
        most = 1.0 if row["waiters"] == 1 else 8.0
        assert 1.0 <= row["decisions_per_commit"] <= most
    for opener in stores.values():
        with opener() as store:  # type: ignore[attr-defined]
            assert store.counts()["decisions"] == 1 + 2 * 64  # the warm-up, then two runs
    assert "| postgresql | 8 |" in table(rows)
