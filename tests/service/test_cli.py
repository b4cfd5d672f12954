"""The `riskscore` command line as a user runs it: help, the demo, features, clear errors."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.data import HANDBOOK_COLUMNS
from features.definitions import DEFAULT_FEATURES, HANDBOOK_FEATURE_NAMES
from features.simulator import SimulationConfig, simulate, write_csv
from service.cli import main

SUBCOMMANDS = (
    "serve",
    "consume",
    "produce",
    "tail",
    "demo",
    "simulate",
    "features",
    "train",
    "evaluate",
)


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_explains_itself(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_a_command_imports_only_its_own_module() -> None:
    # `riskscore tail` needs Kafka, not LightGBM, pandas or the report renderer: importing
    # every command's module cost ~6.5 s of CPU before any command ran.
    code = (
        "import sys\n"
        "from service.cli import main\n"
        "try:\n"
        "    main(['tail', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('lightgbm', 'pandas', 'torch', 'onnxruntime', 'explain.reports.html')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_demo_scores_a_fresh_history_with_the_shipped_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    metrics = {
        line.split()[0]: float(line.split()[-1])
        for line in out.splitlines()
        if line.strip().startswith(("ROC", "average"))
    }
    # The shipped model ranks unseen simulated fraud far better than chance.
    assert metrics["ROC"] > 0.9
    assert metrics["average"] > 0.5
    assert "decline" in out
    # The approve row's frauds are frauds let through, and the table says so.
    assert "fraud caught" not in out
    assert "share of all fraud" in out and "let through (approve):" in out


@pytest.fixture(scope="module")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "history.csv.gz"
    write_csv(simulate(SimulationConfig(customers=100, terminals=200, days=20, seed=1)), path)
    return path


def test_features_writes_every_row_with_handbook_names(small_history: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.csv.gz"
    assert main(["features", "--data", str(small_history), "--out", str(out)]) == 0
    with gzip.open(out, "rt") as handle:
        written = pd.read_csv(handle)
    source = pd.read_csv(small_history)
    assert list(written.columns) == ["TRANSACTION_ID", *[d.name for d in DEFAULT_FEATURES]]
    assert set(HANDBOOK_FEATURE_NAMES) <= set(written.columns)
    assert written["TRANSACTION_ID"].tolist() == source["TRANSACTION_ID"].tolist()
    assert written["TX_AMOUNT"].tolist() == source["TX_AMOUNT"].tolist()
    assert not written.isna().any().any()


def test_features_reports_a_missing_file_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["features", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err


def test_features_reports_a_file_of_the_wrong_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TRANSACTION_ID,TX_AMOUNT\n1,2.0\n")
    assert main(["features", "--data", str(bad), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing column" in err and "TX_DATETIME" in err


def test_features_reports_a_negative_amount_with_its_row(
    small_history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(small_history)
    frame.loc[3, "TX_AMOUNT"] = -5.0
    bad = tmp_path / "negative.csv"
    frame[list(HANDBOOK_COLUMNS)].to_csv(bad, index=False)
    assert main(["features", "--data", str(bad), "--out", str(tmp_path / "o.csv")]) == 2
    assert "row 5" in capsys.readouterr().err


def test_produce_names_a_missing_file_before_looking_for_a_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No broker listens on this port either: the file is the first thing wrong, so it is
    # the one named.
    monkeypatch.setenv("RISKSCORE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    missing = tmp_path / "no-such-history.csv"
    code = main(["produce", "--data", str(missing)])
    assert code != 0
    err = capsys.readouterr().err
    assert "no-such-history.csv" in err
    assert "broker" not in err.lower()
