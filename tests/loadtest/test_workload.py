"""Reading transaction files, rewriting ids per run, the file's own pace."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from features.data import load_transactions
from loadtest.workload import WorkloadError, body_stream, load_workload, pace_offsets


def test_a_handbook_csv_becomes_score_bodies(history_csv: Path) -> None:
    workload = load_workload(history_csv)
    frame = load_transactions(history_csv)

    assert len(workload) == int((frame.amount > 0).sum())
    first = workload.bodies[0]
    assert set(first) == {"transaction_id", "timestamp", "customer_id", "terminal_id", "amount"}
    assert workload.offsets_s[0] == 0.0
    assert workload.offsets_s == sorted(workload.offsets_s)
    assert workload.offsets_s[-1] > 4 * 86400  # six simulated days


def test_ids_are_rewritten_per_run_and_stay_unique_over_passes(history_csv: Path) -> None:
    workload = load_workload(history_csv, limit=50)
    two_passes = list(itertools.islice(body_stream(workload, "abc"), 100))
    ids = [str(b["transaction_id"]) for b in two_passes]

    assert len(set(ids)) == 100
    assert ids[0] == f"lt-abc-{workload.bodies[0]['transaction_id']}"
    assert ids[50] == f"lt-abc.1-{workload.bodies[0]['transaction_id']}"
    # The other fields are the file's.
    assert {k: v for k, v in two_passes[50].items() if k != "transaction_id"} == {
        k: v for k, v in workload.bodies[0].items() if k != "transaction_id"
    }
    another_run = next(body_stream(workload, "xyz"))
    assert another_run["transaction_id"] != two_passes[0]["transaction_id"]


def test_same_ids_replays_the_file_as_it_is(history_csv: Path) -> None:
    workload = load_workload(history_csv, limit=5)
    replay = list(itertools.islice(body_stream(workload, None), 10))
    assert replay[:5] == workload.bodies
    assert replay[5:] == workload.bodies


def test_json_lines_are_read_as_bodies(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    rows = [
        {"transaction_id": f"j{i}", "timestamp": f"2025-01-01T00:00:0{i}+00:00", "amount": 1.0}
        for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    workload = load_workload(path)
    assert workload.bodies == rows
    assert workload.offsets_s == [0.0, 1.0, 2.0]
    assert list(itertools.islice(pace_offsets(workload, 2.0), 4)) == [0.0, 0.5, 1.0, 1.5]


def test_raw_bodies_are_sent_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "v2.jsonl"
    path.write_text(json.dumps({"inputs": [{"name": "x", "data": [1.0]}]}) + "\n")
    workload = load_workload(path, raw=True)
    assert next(body_stream(workload, "abc")) == {"inputs": [{"name": "x", "data": [1.0]}]}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("bad.csv", "a,b\n1,2\n", "missing column"),
        ("bad.jsonl", "{not json\n", "not JSON lines"),
        ("list.jsonl", "[1, 2]\n", "expected a JSON object"),
        ("noid.jsonl", '{"amount": 1}\n', "no transaction_id"),
        ("empty.jsonl", "\n", "no transactions"),
    ],
)
def test_bad_files_are_refused_with_a_reason(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorkloadError, match=message):
        load_workload(path)


def test_a_file_without_advancing_time_cannot_set_the_pace(tmp_path: Path) -> None:
    path = tmp_path / "flat.jsonl"
    path.write_text('{"transaction_id": "a"}\n{"transaction_id": "b"}\n')
    with pytest.raises(WorkloadError, match="timestamps do not advance"):
        next(pace_offsets(load_workload(path), 1.0))
