"""``python -m service.benchmarks.student_latency`` on the shipped student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.benchmarks.student_latency import main


def test_it_reports_single_and_batch_latency_of_the_shipped_student(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "student.json"
    assert main(["--repeats", "20", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) == {"student_single", "student_batch32"}
    for stats in figures.values():
        assert 0 < stats["p50"] <= stats["p99"]
    printed = capsys.readouterr().out
    assert "student_single: p50" in printed and "student_batch32: p50" in printed


def test_a_repeat_count_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--repeats", "0"])
    assert exit_info.value.code == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
