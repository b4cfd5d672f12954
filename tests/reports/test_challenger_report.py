"""The challenger report over a real store: challenger rows written beside the decisions of
the filled store, read by a real `riskscore serve` (and the CLI), and every figure of the
page checked against the comparison recomputed here from the raw rows and labels."""

from __future__ import annotations

import json
import re
import urllib.request
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from explain.audit.challenger_log import ChallengerScore
from explain.audit.sqlite_store import SQLiteAuditStore
from explain.records import DecisionRecord, Explanation
from explain.reports.challenger_compare import ACTIONS, Comparer, Comparison
from explain.reports.page_parts import percent
from models.train.label_policy import LabelPolicy
from service.cli import main
from service.settings import AUDIT_FILE
from tests.reports.challenger_rows import cell, measure, shadowed_of
from tests.reports.conftest import Filled, as_compliance, as_scoring, stored_records
from tests.service.test_serve_process import _serving

VERSION = "fast-challenger-test"
OTHER = "fast-older-challenger"
PERIOD = "from=2024-01-02&to=2024-01-05"  # the 2nd to the 5th, inclusive
START, END = datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC)
UNSHADOWED_EVERY = 7  # every seventh decision has no challenger row (dropped, say)


def _opposite(explanation: Explanation) -> Explanation:
    """Another exact explanation: every contribution turned round, still adding up."""
    attributions = [{**a, "contribution": -a["contribution"]} for a in explanation.attributions]
    total = sum(a["contribution"] for a in attributions)
    return Explanation.model_validate(
        {
            "method": explanation.method,
            "base_value": explanation.base_value,
            "raw_score": explanation.base_value + total,
            "attributions": attributions,
        }
    )


def _challenger_score(i: int, record: DecisionRecord) -> float:
    # Some agree exactly, some are turned round, some halved: every kind of disagreement.
    return [record.score, 1.0 - record.score, record.score / 2][i % 3]


def _verdict(i: int, record: DecisionRecord, version: str) -> ChallengerScore:
    score = _challenger_score(i, record)
    action = "decline" if score >= 0.6 else "review" if score >= 0.3 else "approve"
    return ChallengerScore(
        transaction_id=record.transaction_id,
        model_version=version,
        event_time_ms=record.transaction.epoch_ms,
        score=score,
        action=action,
        review_threshold=0.3,
        decline_threshold=0.6,
        reasons_json=json.dumps([r.model_dump() for r in record.reasons]),
        explanation_json=_opposite(record.explanation).model_dump_json(),
        sequence_score=None,
        scored_at_ms=record.transaction.epoch_ms + 5,
    )


def shadow_rows(audit_file: Path) -> list[tuple[DecisionRecord, ChallengerScore | None]]:
    """Challenger rows for most decisions of the store, written through the store's own
    group-commit writer; a few rows of an older challenger too, on other payments' days."""
    records = sorted(stored_records(audit_file), key=lambda r: r.transaction_id)
    pairs: list[tuple[DecisionRecord, ChallengerScore | None]] = []
    for i, record in enumerate(records):
        shadowed = i % UNSHADOWED_EVERY != 0
        pairs.append((record, _verdict(i, record, VERSION) if shadowed else None))
    older = [_verdict(i, r, OTHER) for i, r in enumerate(records[:30])]
    with closing(SQLiteAuditStore(audit_file)) as store:
        rows = [row for _, row in pairs if row is not None] + older
        outcomes = store.submit_challenger_scores(rows).result(timeout=60)
        assert outcomes == [True] * len(rows)
    return pairs


def _expected(
    pairs: list[tuple[DecisionRecord, ChallengerScore | None]], labels: dict[str, bool]
) -> Comparison:
    """The comparison recomputed from the rows written and the labels sent (the arithmetic
    itself is checked by hand in test_challenger_compare.py and test_challenger_store.py)."""
    comparer = Comparer(VERSION, LabelPolicy(datetime.now(UTC), timedelta(days=7)))
    inside = [(r, row) for r, row in pairs if START <= r.transaction.timestamp < END]
    inside.sort(key=lambda pair: (pair[0].transaction.epoch_ms, pair[0].transaction_id))
    comparer.add(
        [shadowed_of(r, row, labels.get(r.transaction_id)) for r, row in inside if row is not None]
    )
    comparer.add_unshadowed(sum(row is None for _, row in inside))
    return comparer.result()


def check_page(page: str, expected: Comparison) -> None:
    """Every figure of the page against the comparison recomputed by the test."""
    assert cell(page, "challenger version") == expected.version
    cells = [
        ("decisions in the period", expected.decisions),
        ("measured fraud", expected.measured_fraud),
        ("declined by the champion, no label (left out)", expected.declined_unlabelled),
        ("unlabelled past the 7-day label delay (legitimate)", expected.taken_legitimate),
        ("unlabelled within the 7-day label delay (left out)", expected.within_delay),
        ("served by a list or rule, not the model", expected.overridden),
    ]
    for header, figure in cells:
        assert cell(page, header) == f"{figure:,}", header
    for header, part in [
        ("shadowed (scored by the challenger too)", expected.shadowed),
        ("labelled, of the shadowed", expected.labelled),
        ("measured against labels", expected.measured),
    ]:
        assert cell(page, header).startswith(f"{part:,} ("), header
    assert measure(page, "average precision (measured)") == (
        "n/a" if expected.champion.ap is None else f"{expected.champion.ap:.4f}",
        "n/a" if expected.challenger.ap is None else f"{expected.challenger.ap:.4f}",
    )
    for name, of in [
        ("precision of declines (measured)", lambda s: percent(s.quality.precision)),
        ("recall of declines (measured)", lambda s: percent(s.quality.recall)),
        ("decline rate (every shadowed decision)", lambda s: percent(s.decline_rate)),
        ("measured declines", lambda s: f"{s.quality.labelled_declines:,}"),
        ("declines labelled fraud", lambda s: f"{s.quality.true_declines:,}"),
        ("declines (every shadowed decision)", lambda s: f"{s.declines:,}"),
    ]:
        assert measure(page, name) == (of(expected.champion), of(expected.challenger))
    for ours in ACTIONS:
        row = re.search(rf"<tr><td>champion {ours}</td>((?:<td[^>]*>[^<]*</td>){{4}})</tr>", page)
        assert row, ours
        counts = re.findall(r">([\d,]+)<", row.group(1))
        assert counts[:3] == [f"{expected.agreement[(ours, t)]:,}" for t in ACTIONS]
    shown = re.findall(r"<h3>\d+\. <a href='decisions/([^']+)\.html'>", page)
    assert shown == [d.transaction_id for d in expected.disagreements]


@pytest.fixture
def shadowed(data_dir: Path, filled: Filled) -> Comparison:
    pairs = shadow_rows(data_dir / AUDIT_FILE)
    expected = _expected(pairs, filled.labels)
    # The period holds every kind of case the page has to count.
    assert 0 < expected.labelled < expected.shadowed < expected.decisions
    assert expected.declined_unlabelled > 0 and expected.taken_legitimate > 0
    assert 0 < expected.measured_fraud < expected.measured
    return expected


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.mark.slow
def test_a_served_challenger_report_shows_the_comparison_of_the_store(
    data_dir: Path, shadowed: Comparison
) -> None:
    with _serving(data_dir, extra_env={"RISKSCORE_KAFKA": "off"}) as (base, _):
        status, content_type, page = _get(f"{base}/reports/challenger.html?{PERIOD}")
        other_status, _, other = _get(f"{base}/reports/challenger.html?{PERIOD}&version={OTHER}")
        bad_status, _, bad = _get(f"{base}/reports/challenger.html?from=2024-01-05&to=2024-01-02")

    assert status == 200 and content_type.startswith("text/html"), page
    check_page(page, shadowed)
    assert shadowed.champion.ap is not None and len(shadowed.disagreements) == 10
    # The older challenger is named, with a link to its own comparison.
    assert f"version={OTHER}" in page
    assert other_status == 200 and cell(other, "challenger version") == OTHER
    assert f"version={VERSION}" in other
    assert bad_status == 422
    assert json.loads(bad)["error"]["fields"] == [
        {"field": "from", "message": "'from' (2024-01-05) must be before 'to' (2024-01-02)"}
    ]


def test_the_cli_writes_the_same_comparison(
    data_dir: Path, shadowed: Comparison, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "challenger.html"
    args = ["--from", "2024-01-02", "--to", "2024-01-05", "--out", str(out)]

    code = main(["report", "challenger", "--audit-file", str(data_dir / AUDIT_FILE), *args])

    assert code == 0
    check_page(out.read_text(encoding="utf-8"), shadowed)
    printed = capsys.readouterr().out
    assert f"{shadowed.shadowed} of {shadowed.decisions} decisions compared" in printed


def test_a_store_without_challenger_rows_says_so(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.html"

    code = main(
        ["report", "challenger", "--audit-file", str(data_dir / AUDIT_FILE), "--out", str(out)]
    )

    assert code == 0
    page = out.read_text(encoding="utf-8")
    assert "nothing to compare" in page and cell(page, "challenger version") == "none"
    assert "challenger none: 0 of" in capsys.readouterr().out


_BAD_OPTIONS = [
    (["--from", "2024-01-05", "--to", "2024-01-01"], "--from: 'from' (2024-01-05) must be"),
    (["--from", "yesterday"], "--from: "),
    (["--version", "v" * 201], "--version: "),
    (["--to", "9999-12-31"], "--to: date out of range"),
    (["--label-delay-days", "soon"], "--label-delay-days: "),
]


def test_bad_cli_input_is_one_line_and_exit_2(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.html"
    args = ["report", "challenger", "--audit-file", str(data_dir / AUDIT_FILE), "--out", str(out)]
    for extra, message in _BAD_OPTIONS:
        assert main([*args, *extra]) == 2

        err = capsys.readouterr().err.strip()
        assert err.startswith("riskscore report: error:") and message in err, extra
        assert len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=tomorrow", "from"),
        ("to=2024-13-01", "to"),
        ("to=9999-12-31", "to"),  # its whole day would end after the last date there is
        (f"version={'v' * 201}", "version"),
        ("version=a&version=b", "version"),
        ("action=decline", "action"),  # not a filter of this report
        ("format=docx", "format"),
        ("label_delay_days=-1", "label_delay_days"),
    ],
)
async def test_bad_queries_are_422_naming_the_parameter(
    report_client: Any, query: str, field: str
) -> None:
    response = await report_client.get(f"/reports/challenger.html?{query}", headers=as_compliance())

    assert response.status == 422
    error = (await response.json())["error"]
    assert error["type"] == "validation_error"
    assert field in [f["field"] for f in error["fields"]]


async def test_only_the_compliance_role_reads_it_as_html_or_pdf(report_client: Any) -> None:
    refused = await report_client.get("/reports/challenger.html", headers=as_scoring())
    missing = await report_client.get("/reports/challenger.html")
    pdf = await report_client.get("/reports/challenger.html?format=pdf", headers=as_compliance())

    assert refused.status == 403 and missing.status == 401
    assert pdf.status == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert (await pdf.read()).startswith(b"%PDF-")


async def test_an_unknown_version_is_nothing_to_compare_with_the_others_named(
    shadowed: Comparison, report_client: Any
) -> None:
    response = await report_client.get(
        f"/reports/challenger.html?{PERIOD}&version=fast-never-shadowed", headers=as_compliance()
    )

    assert response.status == 200
    page = await response.text()
    assert cell(page, "challenger version") == "fast-never-shadowed"
    assert cell(page, "decisions in the period") == f"{shadowed.decisions:,}"
    assert "nothing to compare" in page
    assert f"version={VERSION}" in page and f"version={OTHER}" in page
