"""`riskscore report`: the same exports and summaries from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest

from service.cli import main
from service.settings import AUDIT_FILE
from tests.reports.conftest import stored_records


def test_export_csv_matches_the_store(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.csv"
    records = stored_records(data_dir / AUDIT_FILE)

    code = main(["report", "export", "--audit-file", str(data_dir / AUDIT_FILE), "--out", str(out)])

    assert code == 0
    with out.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["transaction_id"] for row in rows] == [r.transaction_id for r in records]
    assert [float(row["score"]) for row in rows] == [r.score for r in records]
    assert f"{len(records)} decisions" in capsys.readouterr().out


def test_export_jsonl_takes_the_period_and_filters(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "part.jsonl"
    records = stored_records(data_dir / AUDIT_FILE)
    expected = [
        r.transaction_id
        for r in records
        if r.transaction.timestamp.day in (2, 3) and r.action == "approve"
    ]

    code = main(
        [
            "report",
            "export",
            "--audit-file",
            str(data_dir / AUDIT_FILE),
            "--format",
            "jsonl",
            "--from",
            "2024-01-02",
            "--to",
            "2024-01-03",
            "--action",
            "approve",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["transaction_id"] for line in lines] == expected
    assert 0 < len(expected) < len(records)


def test_summary_writes_a_self_contained_page(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "period.html"

    code = main(
        [
            "report",
            "summary",
            "--audit-file",
            str(data_dir / AUDIT_FILE),
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-08",
            "--out",
            str(out),
        ]
    )

    page = out.read_text()
    assert code == 0
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 5
    total = len(stored_records(data_dir / AUDIT_FILE))
    assert f">{total:,}</a></td>" in page.split("<th>decisions</th>", 1)[1][:400]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from", "2024-13-01"], "from"),
        (
            ["--from", "2024-01-05", "--to", "2024-01-01"],
            "--from: 'from' (2024-01-05) must be before 'to' (2024-01-01)",
        ),
        (["--min-score", "2"], "--min-score: "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    args = [
        "report",
        "export",
        "--audit-file",
        str(data_dir / AUDIT_FILE),
        "--out",
        str(tmp_path / "x.csv"),
    ]

    assert main([*args, *extra]) == 2

    err = capsys.readouterr().err.strip()
    assert err.startswith("riskscore report: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


def test_a_missing_store_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / AUDIT_FILE

    code = main(
        ["report", "summary", "--audit-file", str(missing), "--out", str(tmp_path / "s.html")]
    )

    assert code == 2
    assert "no audit store" in capsys.readouterr().err
    assert not missing.exists()


def test_help_explains_both_reports(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["report", "--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "export" in text and "summary" in text and "whole UTC day" in text


def _pdf_pages(path: Path) -> list[tuple[str, np.ndarray]]:
    """Each page's text and its picture (greyscale pixels) as a reader would see it."""
    document = pdfium.PdfDocument(path)
    try:
        pages = []
        for page in document:
            text = page.get_textpage().get_text_range()
            image = page.render(scale=1.0).to_pil().convert("L")
            pages.append((text, np.asarray(image)))
        return pages
    finally:
        document.close()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["decision", "tx-120"], ["Decision report", "tx-120", "Why", "reason code"]),
        (
            ["summary", "--from", "2024-01-01", "--to", "2024-01-08"],
            ["Period report", "Over time", "Top reasons", "Per day"],
        ),
    ],
)
def test_reports_are_written_as_pdf_to_file(
    data_dir: Path, tmp_path: Path, command: list[str], expected: list[str]
) -> None:
    out = tmp_path / "report.pdf"

    code = main(
        ["report", *command, "--pdf", "--audit-file", str(data_dir / AUDIT_FILE), "--out", str(out)]
    )

    assert code == 0
    pages = _pdf_pages(out)
    assert len(pages) >= 2  # the print stylesheet lays the page out on A4 sheets
    text = " ".join(t for t, _ in pages)
    for words in expected:  # the charts' text is drawn as paths; titles and tables are text
        assert words in text, words
    for _, pixels in pages:
        width = pixels.shape[1]
        assert 590 <= width <= 600  # A4 at 72 dpi
        assert (pixels < 128).mean() > 0.005  # ink on every page, not a blank sheet
    # The charts are drawn, not left out: dark pixels in wide runs (bars) exist.
    assert any((pixels < 100).sum() > 5000 for _, pixels in pages)


@pytest.mark.parametrize("report", ["summary", "export", "decision"])
def test_a_bad_setting_is_one_line_that_keeps_the_password(
    report: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As serve does: the variable and its rule, never a traceback echoing the value.
    monkeypatch.setenv("RISKSCORE_AUDIT_URL", "postgresl://audit:s3cret@db.example/rs")
    args = ["report", report, "--out", str(tmp_path / "out.html")]
    if report == "decision":
        args.insert(2, "tx-1")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RISKSCORE_AUDIT_URL" in err, err
    assert "s3cret" not in err
