"""`riskscore-loadtest` end to end: runs against a real (trivial) server, and one clear
line with exit status 2 for every bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.cli import main


@pytest.fixture(scope="module")
def trivial_url() -> Iterator[str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "loadtest.trivial_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()  # printed once it listens
    assert line.startswith("listening on "), line
    yield f"http://127.0.0.1:{line.split()[-1]}"
    server.terminate()
    server.wait()
    server.stdout.close()


def _fast(*extra: str) -> list[str]:
    return ["--duration", "0.5", "--warmup", "0.2", "--quiet", *extra]


def test_http_run_writes_report_and_plot(
    trivial_url: str, history_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "report.json", tmp_path / "run.png"
    argv = ["http", "--url", trivial_url, "--data", str(history_csv), "--rate", "200"]
    status = main([*argv, *_fast("--json", str(out), "--plot", str(png))])

    assert status == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "http"
    assert report["target_rate"] == 200.0
    assert report["sent"] == report["completed"] == 100
    assert report["errors"] == {}
    assert (
        0
        < report["latency_ms"]["p50"]
        <= report["latency_ms"]["p99"]
        <= report["latency_ms"]["max"]
    )
    assert len(report["timeseries"]) == 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "latency p99" in capsys.readouterr().out


def test_sweep_finds_the_capacity(trivial_url: str, history_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    argv = ["http", "--url", trivial_url, "--data", str(history_csv), "--rate", "100"]
    sweep = ["--sweep", "--rate-step", "100", "--max-rate", "300", "--slo-ms", "500"]
    assert main([*argv, *sweep, *_fast("--json", str(out))]) == 0

    result = json.loads(out.read_text())
    assert [s["target_rate"] for s in result["steps"]] == [100, 200, 300]
    assert result["capacity"] == 300
    assert [s["sent"] for s in result["steps"]] == [50, 100, 150]


def test_self_test_loads_a_trivial_server_and_restores_the_affinity(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    out = tmp_path / "self.json"
    assert main(["self-test", "--rate", "300", *_fast("--json", str(out))]) == 0

    report = json.loads(out.read_text())
    assert report["mode"] == "self-test"
    assert report["sent"] == report["completed"] == 150
    assert os.sched_getaffinity(0) == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["http", "--url", "http://127.0.0.1:1", "--data", "nowhere.csv", "--rate", "5"],
            "no such file",
        ),
        (["http", "--url", "nonsense", "--data", "{csv}", "--rate", "5"], "http://HOST:PORT"),
        (
            ["http", "--url", "http://127.0.0.1:{closed}", "--data", "{csv}", "--rate", "5"],
            "cannot connect",
        ),
        (["http", "--url", "http://127.0.0.1:1", "--data", "{csv}"], "give --rate"),
        (
            [
                "http",
                "--url",
                "http://127.0.0.1:1",
                "--data",
                "{csv}",
                "--rate",
                "5",
                "--speedup",
                "2",
            ],
            "exclude",
        ),
        (
            [
                "kafka",
                "--bootstrap-servers",
                "127.0.0.1:{closed}",
                "--data",
                "{csv}",
                "--rate",
                "5",
            ],
            "cannot connect",
        ),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    argv: list[str], message: str, history_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = _closed_port()
    filled = [a.format(csv=history_csv, closed=closed) for a in argv]
    assert main([*filled, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("riskscore-loadtest: error: ")
    assert message in err
    assert "\n" not in err


def test_bad_numbers_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["http", "--url", "http://h:1", "--data", "f.csv", "--rate", "-3"])
    assert exit_info.value.code == 2
    assert "must be a positive number" in capsys.readouterr().err


def test_help_explains_the_open_loop() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtest", "--help"], capture_output=True, text=True, check=True
    )
    assert "intended" in result.stdout
    assert "self-test" in result.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
