"""The report: its keys, percentiles that match injected latencies, the per-second series,
the terminal table and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.plot import plot_report
from loadtest.recorder import Recorder
from loadtest.report import build_report, format_report, progress_line

START = 1000.0


def _recorded(latencies_ms: list[float], rate: float, errors: dict[int, str]) -> Recorder:
    """Request i intended at START + i / rate, answered after latencies_ms[i] (or failed)."""
    recorder = Recorder(measure_from=START)
    for i, latency in enumerate(latencies_ms):
        intended = START + i / rate
        recorder.on_send(intended, intended)
        recorder.on_done(intended, errors.get(i), intended + latency / 1000.0)
    return recorder


def test_percentiles_match_the_injected_latencies() -> None:
    # 1..1000 ms, once each, shuffled in time by a fixed permutation.
    latencies = [float((i * 389) % 1000 + 1) for i in range(1000)]
    report = build_report(_recorded(latencies, 500.0, {}), 500.0, 2.0, mode="test")

    assert set(report) >= {
        "target_rate",
        "achieved_rate",
        "sent",
        "completed",
        "errors",
        "latency_ms",
        "timeseries",
    }
    latency = report["latency_ms"]
    assert set(latency) >= {"p50", "p90", "p99", "p999", "max"}
    for name, expected in (("p50", 500), ("p90", 900), ("p99", 990), ("p999", 999), ("max", 1000)):
        assert latency[name] == pytest.approx(expected, rel=2e-3), name
    assert report["target_rate"] == 500.0
    assert report["achieved_rate"] == 500.0
    assert report["sent"] == report["completed"] == 1000
    assert report["errors"] == {}
    assert report["mode"] == "test"
    json.dumps(report)  # serialisable as it is


def test_errors_are_counted_by_kind_and_kept_out_of_the_latency() -> None:
    latencies = [5.0] * 300
    latencies[10] = latencies[20] = 900.0  # failed requests: their time must not count
    errors = {10: "503", 20: "503", 30: "ConnectionResetError"}
    report = build_report(_recorded(latencies, 100.0, errors), 100.0, 3.0)

    assert report["errors"] == {"503": 2, "ConnectionResetError": 1}
    assert report["sent"] == 300
    assert report["completed"] == 297
    assert report["achieved_rate"] == 99.0
    assert report["latency_ms"]["max"] == pytest.approx(5.0, rel=1e-3)


def test_the_series_has_one_entry_per_second_by_intended_time() -> None:
    # Second 0 fast, second 1 slow (a stall), second 2 fast with one error.
    latencies = [2.0] * 100 + [300.0] * 100 + [2.0] * 100
    report = build_report(_recorded(latencies, 100.0, {250: "503"}), 100.0, 3.0)

    series = report["timeseries"]
    assert [s["second"] for s in series] == [0, 1, 2]
    assert [s["sent"] for s in series] == [100, 100, 100]
    assert [s["errors"] for s in series] == [0, 0, 1]
    assert [s["completed"] for s in series] == [100, 100, 99]
    assert series[0]["p99_ms"] == pytest.approx(2.0)
    assert series[1]["p50_ms"] == pytest.approx(300.0)
    assert series[2]["max_ms"] == pytest.approx(2.0)


def test_warmup_answers_do_not_count() -> None:
    recorder = Recorder(measure_from=START)
    recorder.on_send(START - 0.5, START - 0.5)
    recorder.on_done(START - 0.5, None, START + 5.0)
    recorder.on_send(START + 0.1, START + 0.1)
    recorder.on_done(START + 0.1, None, START + 0.11)
    report = build_report(recorder, 1.0, 1.0)

    assert report["sent"] == report["completed"] == 1
    assert report["latency_ms"]["max"] == pytest.approx(10.0, rel=1e-3)


def test_an_empty_run_reports_no_latency() -> None:
    report = build_report(Recorder(measure_from=START), 10.0, 1.0)
    assert report["latency_ms"]["p99"] is None
    assert report["completed"] == 0
    assert "p99" in format_report(report)


def test_table_progress_and_plot(tmp_path: Path) -> None:
    latencies = [float(i % 50 + 1) for i in range(400)]
    recorder = _recorded(latencies, 200.0, {3: "503"})
    report = build_report(recorder, 200.0, 2.0, mode="http")

    table = format_report(report)
    assert "200/s" in table
    assert "503 1" in table
    assert f"{report['latency_ms']['p99']:,.2f} ms" in table
    assert "sent" in progress_line(recorder, 3.0)

    out = tmp_path / "run.png"
    plot_report(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
