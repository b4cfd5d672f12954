"""Decision search, exports and report pages over a real store filled by the real scorer."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import socket
import struct
from collections import Counter
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from aiohttp import ClientSession, web

from explain.records import DecisionRecord
from models.artifact_paths import default_artifact_dir
from models.artifacts import MODEL_FILE, load_manifest
from service.app import WARM_START, create_app
from service.settings import AUDIT_FILE, Settings
from tests.reports.conftest import (
    COMPLIANCE_KEY,
    Filled,
    as_compliance,
    as_scoring,
    jsonl,
    stored_records,
)


async def _all_pages(client: Any, query: str, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        url = f"/decisions?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url, headers=as_compliance())
        assert response.status == 200, await response.text()
        body = await response.json()
        assert len(body["decisions"]) <= limit
        found += body["decisions"]
        if body["next_cursor"] is None:
            return found
        cursor = body["next_cursor"]


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["transaction"]["transaction_id"] for item in items]


async def test_pages_hold_every_decision_once_newest_first(
    report_client: Any, data_dir: Path
) -> None:
    expected = [r.transaction_id for r in stored_records(data_dir / AUDIT_FILE)]

    found = await _all_pages(report_client, "", limit=37)

    assert _ids(found) == expected
    assert len(expected) > 37 * 5  # several pages were needed


async def test_paging_stays_complete_while_decisions_arrive(
    report_client: Any, data_dir: Path
) -> None:
    before = [r.transaction_id for r in stored_records(data_dir / AUDIT_FILE)]
    first = await (await report_client.get("/decisions?limit=50", headers=as_compliance())).json()
    # New payments land on both sides of the cursor: newer than everything, and older
    # than the first page (late arrivals), while the client is between pages.
    newest = first["decisions"][0]["transaction"]["timestamp"]
    late = first["decisions"][-1]["transaction"]["timestamp"]
    arriving = [
        {
            "transaction_id": f"new-{i}",
            "timestamp": stamp,
            "customer_id": f"new-c{i}",
            "terminal_id": "new-t",
            "amount": 12.5,
        }
        for i, stamp in enumerate([newest, late, "2024-01-01T00:00:01Z"])
    ]
    response = await report_client.post(
        "/score/batch", json={"transactions": arriving}, headers=as_scoring()
    )
    assert all("action" in r for r in (await response.json())["results"])
    rest = first["decisions"]
    cursor = first["next_cursor"]
    while cursor:
        url = f"/decisions?limit=50&cursor={cursor}"
        page = await (await report_client.get(url, headers=as_compliance())).json()
        rest += page["decisions"]
        cursor = page["next_cursor"]

    seen = _ids(rest)
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(before) <= set(seen)  # nothing stored before paging began is skipped
    keys = [(d["transaction"]["timestamp"], d["transaction"]["transaction_id"]) for d in rest]
    stamps = [datetime.fromisoformat(t) for t, _ in keys]
    assert stamps == sorted(stamps, reverse=True)


def _matches(record: DecisionRecord, **f: Any) -> bool:
    tx = record.transaction
    return (
        ("start" not in f or tx.timestamp >= f["start"])
        and ("end" not in f or tx.timestamp < f["end"])
        and ("action" not in f or record.action == f["action"])
        and ("customer_id" not in f or tx.customer_id == f["customer_id"])
        and ("min_score" not in f or record.score >= f["min_score"])
        and ("stage" not in f or record.stage == f["stage"])
        and ("fallback" not in f or record.fallback == f["fallback"])
    )


FILTERS = [
    ("&action=review", {"action": "review"}),
    ("&action=decline", {"action": "decline"}),
    ("&customer_id=c-7", {"customer_id": "c-7"}),
    ("&min_score=0.005", {"min_score": 0.005}),
    ("&stage=fast&fallback=false", {"stage": "fast", "fallback": False}),
    ("&stage=sequence", {"stage": "sequence"}),
    (
        "&from=2024-01-03&to=2024-01-04",
        {"start": datetime(2024, 1, 3, tzinfo=UTC), "end": datetime(2024, 1, 5, tzinfo=UTC)},
    ),
    (
        "&from=2024-01-03T12:00:00Z&to=2024-01-06T00:00:00%2B02:00&action=approve",
        {
            "start": datetime(2024, 1, 3, 12, tzinfo=UTC),
            "end": datetime(2024, 1, 5, 22, tzinfo=UTC),
            "action": "approve",
        },
    ),
]


@pytest.mark.parametrize(("query", "spec"), FILTERS)
async def test_filters_select_what_the_store_holds(
    report_client: Any, data_dir: Path, query: str, spec: dict[str, Any]
) -> None:
    records = stored_records(data_dir / AUDIT_FILE)
    expected = [r.transaction_id for r in records if _matches(r, **spec)]

    found = await _all_pages(report_client, query, limit=100)

    assert _ids(found) == expected
    assert len(expected) > 0


async def test_the_fallback_filter_excludes(report_client: Any) -> None:
    response = await report_client.get("/decisions?fallback=true", headers=as_compliance())
    assert (await response.json())["decisions"] == []  # filled with a roomy budget: none


BAD_QUERIES = [
    ("from=yesterday", "from"),
    ("from=2024-02-30", "from"),
    ("from=2024-01-05&to=2024-01-02", "from"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("min_score=1.5", "min_score"),
    ("action=block", "action"),
    ("stage=slow", "stage"),
    ("fallback=maybe", "fallback"),
    ("cursor=!!!", "cursor"),
    ("colour=blue", "colour"),
    ("action=review&action=decline", "action"),
]


@pytest.mark.parametrize(("query", "field"), BAD_QUERIES)
@pytest.mark.parametrize(
    "path",
    ["/decisions", "/reports/decisions.csv", "/reports/summary.html", "/reports/decisions.html"],
)
async def test_bad_filters_are_422_naming_the_parameter(
    report_client: Any, path: str, query: str, field: str
) -> None:
    if path not in ("/decisions", "/reports/decisions.html") and field in ("limit", "cursor"):
        field = query.split("=")[0]  # exports and reports take no paging: unknown there
    response = await report_client.get(f"{path}?{query}", headers=as_compliance())

    assert response.status == 422
    error = (await response.json())["error"]
    assert error["type"] == "validation_error"
    assert field in [f["field"] for f in error["fields"]]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2024-05-02&to=2024-05-01", "'from' (2024-05-02) must be before 'to' (2024-05-01)"),
        (
            "from=2024-05-01T12:00:00Z&to=2024-05-01T06:00",
            "'from' (2024-05-01T12:00:00Z) must be before 'to' (2024-05-01T06:00)",
        ),
    ],
)
async def test_an_inverted_period_is_quoted_as_given(
    report_client: Any, query: str, message: str
) -> None:
    # The exclusive bound a date stands for (the next midnight) never leaks into the words.
    response = await report_client.get(f"/decisions?{query}", headers=as_compliance())
    error = (await response.json())["error"]
    assert error["message"] == "invalid query: from"
    assert error["fields"] == [{"field": "from", "message": message}]


async def test_exports_match_the_store_row_for_row(report_client: Any, data_dir: Path) -> None:
    records = stored_records(data_dir / AUDIT_FILE)

    as_csv = await report_client.get("/reports/decisions.csv", headers=as_compliance())
    as_jsonl = await report_client.get("/reports/decisions.jsonl", headers=as_compliance())

    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert as_jsonl.headers["Content-Type"].startswith("application/x-ndjson")
    rows = list(csv.DictReader(io.StringIO(await as_csv.text())))
    lines = jsonl(await as_jsonl.text())
    assert len(rows) == len(lines) == len(records)
    for record, row, line in zip(records, rows, lines, strict=True):
        assert row["transaction_id"] == line["transaction_id"] == record.transaction_id
        assert float(row["score"]) == line["score"] == record.score
        assert row["action"] == line["action"] == record.action
        assert row["stage"] == line["stage"] == record.stage
        assert row["fallback"] == "false" and line["fallback"] is False
        assert row["model_version"] == line["model_version"] == record.model_version
        assert json.loads(row["shap"]) == line["shap"] == record.explanation.shap()
        assert json.loads(row["top_reasons"]) == [r.code for r in record.reasons]


async def test_a_client_that_leaves_mid_export_is_one_info_line(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings.of(
        data_dir=data_dir, kafka="off", compliance_api_keys=(COMPLIANCE_KEY,), api_keys=("s" * 24,)
    )
    app = create_app(settings)
    # Served as `riskscore serve` serves (web.run_app): a handler is not cancelled when its
    # client leaves, it finds out on its next write. (The test client's server cancels.)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        await app[WARM_START]
        host, port = runner.addresses[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        # Closing with a reset, as a client that gives up does.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.write(
            b"GET /reports/decisions.csv HTTP/1.1\r\nHost: x\r\n"
            + f"X-API-Key: {COMPLIANCE_KEY}\r\n\r\n".encode()
        )
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
        # The export has ended when the metrics count its request (they do on its return).
        counted = 'riskscore_http_requests_total{route="/reports/decisions.csv",status="200"}'
        deadline = asyncio.get_running_loop().time() + 30
        async with ClientSession(f"http://{host}:{port}") as session:
            while counted not in await (await session.get("/metrics")).text():
                assert asyncio.get_running_loop().time() < deadline, "the export never ended"
                await asyncio.sleep(0.05)  # polling the condition above, bounded
    finally:
        await runner.cleanup()

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    [line] = [r for r in caplog.records if r.name == "service.report_handlers"]
    assert line.levelno == logging.INFO and line.exc_info is None
    assert "export cancelled by the client" in line.getMessage()


async def test_an_export_takes_the_filters(report_client: Any, data_dir: Path) -> None:
    records = stored_records(data_dir / AUDIT_FILE)
    expected = [
        r.transaction_id for r in records if r.score >= 0.01 and r.transaction.timestamp.day < 7
    ]

    response = await report_client.get(
        "/reports/decisions.jsonl?min_score=0.01&to=2024-01-06", headers=as_compliance()
    )

    exported = [line["transaction_id"] for line in jsonl(await response.text())]
    assert exported == expected
    assert 0 < len(exported) < len(records)


def _payment(transaction_id: str, customer_id: str) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "timestamp": "2024-01-09T10:00:00Z",
        "customer_id": customer_id,
        "terminal_id": "t-1",
        "amount": 10.0,
    }


REPORT_ENDPOINTS = [
    "/decisions",
    "/reports/decisions.html",
    "/reports/decisions.csv",
    "/reports/decisions.jsonl",
    "/reports/decisions/tx-5.html",
    "/reports/summary.html",
]


@pytest.mark.parametrize("path", REPORT_ENDPOINTS)
async def test_a_scoring_key_cannot_read_reports(report_client: Any, path: str) -> None:
    refused = await report_client.get(path, headers=as_scoring())
    allowed = await report_client.get(path, headers=as_compliance())

    assert refused.status == 403
    assert (await refused.json())["error"]["type"] == "forbidden"
    assert "compliance" in (await refused.json())["error"]["message"]
    assert allowed.status == 200


async def test_a_compliance_key_cannot_score_or_label(report_client: Any) -> None:
    transaction = _payment("by-compliance", "c-1")
    for path, body in [
        ("/score", transaction),
        ("/score/batch", {"transactions": [transaction]}),
        ("/labels", {"transaction_id": "tx-5", "is_fraud": True}),
    ]:
        response = await report_client.post(path, json=body, headers=as_compliance())
        assert response.status == 403, path
    # Nothing was decided on its behalf.
    missing = await report_client.get(
        f"/decisions/{transaction['transaction_id']}", headers=as_scoring()
    )
    assert missing.status == 404


async def test_both_roles_read_one_decision_and_readiness(report_client: Any) -> None:
    for headers in (as_scoring(), as_compliance()):
        assert (await report_client.get("/decisions/tx-5", headers=headers)).status == 200
        assert (await report_client.get("/readyz", headers=headers)).status == 200


async def test_reports_need_a_key(report_client: Any) -> None:
    assert (await report_client.get("/reports/summary.html")).status == 401


async def test_the_decision_report_shows_the_decision(report_client: Any, data_dir: Path) -> None:
    record = next(r for r in stored_records(data_dir / AUDIT_FILE) if r.action == "decline")
    manifest = load_manifest(default_artifact_dir())

    response = await report_client.get(
        f"/reports/decisions/{record.transaction_id}.html", headers=as_compliance()
    )

    page = await response.text()
    assert response.content_type == "text/html"
    assert page.count("<svg") == 1  # the waterfall
    assert "DECLINE" in page
    assert manifest.files[MODEL_FILE] in page
    assert f"{record.thresholds.decline:.6g}" in page
    for reason in record.reasons:
        assert reason.code in page
    # Self-contained: nothing is fetched from anywhere.
    assert "<script" not in page and "src=" not in page
    assert re.findall(r"url\((?!#)", page) == []  # only references inside the page
    assert re.findall(r"href='([^']*)'", page) == ["data:,"]


async def test_an_unknown_decision_report_is_404(report_client: Any) -> None:
    response = await report_client.get("/reports/decisions/nope.html", headers=as_compliance())

    assert response.status == 404
    assert "nope" in (await response.json())["error"]["message"]


async def test_client_supplied_ids_are_escaped(report_client: Any) -> None:
    hostile = _payment("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>')
    await report_client.post("/score", json=hostile, headers=as_scoring())

    response = await report_client.get(
        "/reports/decisions/%3Cscript%3Ealert(1)%3C%2Fscript%3E.html", headers=as_compliance()
    )

    page = await response.text()
    assert response.status == 200
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page


async def test_the_summary_counts_what_the_store_holds(
    report_client: Any, data_dir: Path, filled: Filled
) -> None:
    records = [r for r in stored_records(data_dir / AUDIT_FILE) if r.transaction.timestamp.day < 6]
    declined = {r.transaction_id for r in records if r.action == "decline"}
    labelled = {t: f for t, f in filled.labels.items() if t in {r.transaction_id for r in records}}

    response = await report_client.get(
        "/reports/summary.html?from=2024-01-01&to=2024-01-05", headers=as_compliance()
    )

    page = await response.text()
    assert response.status == 200
    assert page.count("<svg") == 5  # trends, scores, reasons, decline reasons, importance
    links = count_links(page)
    assert links[(len(records), ())] == 1  # the period's decisions, no narrower filter
    for action in ("approve", "review", "decline"):
        count = sum(r.action == action for r in records)
        if count:
            assert (count, (("action", action),)) in links
    assert f'<th>labelled decisions</th><td class="num">{len(labelled):,}</td>' in page
    true_declines = sum(1 for t, f in labelled.items() if f and t in declined)
    assert f'<th>declines labelled fraud</th><td class="num">{true_declines:,}</td>' in page
    assert "TX_AMOUNT" in page  # the drift table's code column
    assert "Population stability index" in page


async def test_listed_second_stage_decisions_carry_their_attributions(report_client: Any) -> None:
    # Not stored with the decision: computed when it is read, for lists as for one decision.
    found = await _all_pages(report_client, "&stage=sequence", limit=100)
    assert found
    for decision in found:
        attributions = decision["sequence"]["attributions"]
        assert all(isinstance(a["contribution"], float) for a in attributions)
        assert all(a["timestamp"] is not None and a["amount"] > 0 for a in attributions)


async def test_a_found_decision_has_the_shape_of_the_decision_read_by_id(
    report_client: Any, filled: Filled
) -> None:
    """One record shape: the same keys in the list and by id (null where absent), labels
    included in both."""
    labelled = next(iter(filled.labels))
    listed = await _all_pages(report_client, "", limit=1000)
    by_id = {item["transaction"]["transaction_id"]: item for item in listed}
    fast = next(item for item in listed if item["stage"] == "fast")
    sequence = next(item for item in listed if item["stage"] == "sequence")
    for tid in (
        labelled,
        fast["transaction"]["transaction_id"],
        sequence["transaction"]["transaction_id"],
    ):
        response = await report_client.get(f"/decisions/{tid}", headers=as_compliance())
        single = await response.json()
        assert single == by_id[tid]
    assert [label["is_fraud"] for label in by_id[labelled]["labels"]] == [filled.labels[labelled]]
    # Absent parts are there as null, in both views.
    assert fast["sequence"] is None and fast["fallback_reason"] is None
    assert sequence["sequence"] is not None


FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1:A2)"]


async def test_a_csv_export_never_carries_a_formula(report_client: Any) -> None:
    # Client-supplied ids that a spreadsheet would run (OWASP "CSV injection"); tab and
    # carriage return are refused at intake already (tests/explain for neutralise itself).
    for i, formula in enumerate(FORMULAS):
        payment = _payment(formula, formula) | {
            "terminal_id": formula,
            "timestamp": f"2024-01-09T10:0{i}:00Z",
        }
        assert (
            await report_client.post("/score", json=payment, headers=as_scoring())
        ).status == 200
    query = "from=2024-01-09T00:00:00&to=2024-01-10T00:00:00"

    as_csv = await report_client.get(f"/reports/decisions.csv?{query}", headers=as_compliance())
    as_jsonl = await report_client.get(f"/reports/decisions.jsonl?{query}", headers=as_compliance())

    rows = list(csv.DictReader(io.StringIO(await as_csv.text())))
    assert sorted(r["transaction_id"] for r in rows) == sorted("'" + f for f in FORMULAS)
    for row in rows:
        assert row["customer_id"] == row["terminal_id"] == row["transaction_id"]
        cells = [value for value in row.values() if value]
        assert not any(cell.startswith(("=", "+", "@")) for cell in cells)
        # Numeric columns stay numbers, negative ones included.
        assert float(row["base_value"]) < 0 and row["base_value"].startswith("-")
        assert float(row["score"]) >= 0.0
    # JSON Lines is for programs: the ids as sent.
    lines = jsonl(await as_jsonl.text())
    assert sorted(line["transaction_id"] for line in lines) == sorted(FORMULAS)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.found.append((self._href, data))
            self._href = None


def anchors(page: str) -> list[tuple[str, str]]:
    parser = _Anchors()
    parser.feed(page)
    return parser.found


PERIOD = {"from": "2024-01-01T00:00:00", "to": "2024-01-06T00:00:00"}


def count_links(page: str) -> Counter[tuple[int, tuple[tuple[str, str], ...]]]:
    """Links of the summary to the decision list: (count shown, filters beyond the period)."""
    out: Counter[tuple[int, tuple[tuple[str, str], ...]]] = Counter()
    for target, label in anchors(page):
        url = urlsplit(target)
        if url.path == "decisions.html" and label.replace(",", "").isdigit():
            params = parse_qsl(url.query)
            extra = tuple((k, v) for k, v in params if (k, v) not in PERIOD.items())
            out[int(label.replace(",", "")), extra] += 1
    return out


async def _listed(client: Any, target: str) -> list[str]:
    """Every transaction the decision list shows, following its next-page links."""
    found: list[str] = []
    url: str | None = f"/reports/{target}"
    while url is not None:
        response = await client.get(url, headers=as_compliance())
        assert response.status == 200, await response.text()
        links = anchors(await response.text())
        found += [label for href, label in links if href.startswith("decisions/")]
        following = [href for href, label in links if label == "next page"]
        url = f"/reports/{following[0]}" if following else None
    return found


async def test_every_count_of_the_summary_leads_to_its_decisions(
    report_client: Any, data_dir: Path
) -> None:
    records = [r for r in stored_records(data_dir / AUDIT_FILE) if r.transaction.timestamp.day < 6]
    response = await report_client.get(
        "/reports/summary.html?from=2024-01-01&to=2024-01-05", headers=as_compliance()
    )
    links = [
        (target, int(label.replace(",", "")))
        for target, label in anchors(await response.text())
        if target.startswith("decisions.html") and label.replace(",", "").isdigit()
    ]
    by_kind = {
        "day": [link for link in links if "action=decline" in link[0] and "T00" in link[0]],
        "reason": [link for link in links if "reason=" in link[0]],
        "stage": [link for link in links if "stage=" in link[0]],
    }
    assert all(by_kind.values()), by_kind
    for target, shown in [by_kind["day"][0], by_kind["reason"][0], *by_kind["stage"]]:
        listed = await _listed(report_client, f"{target}&limit=7")
        assert len(listed) == len(set(listed)) == shown, target
    # A reason link lists exactly the decisions with that reason among their top ones.
    target, _ = by_kind["reason"][0]
    code = dict(parse_qsl(urlsplit(target).query))["reason"]
    expected = [r.transaction_id for r in records if code in [x.code for x in r.reasons]]
    assert await _listed(report_client, target) == expected
    # And each row leads to the decision's own page.
    first = f"/reports/decisions/{quote(expected[0], safe='')}.html"
    page = await report_client.get(first, headers=as_compliance())
    assert page.status == 200 and expected[0] in await page.text()


async def test_report_pages_come_as_pdf(report_client: Any) -> None:
    for path in ("/reports/decisions/tx-120.html", "/reports/summary.html?from=2024-01-01"):
        sep = "&" if "?" in path else "?"
        response = await report_client.get(f"{path}{sep}format=pdf", headers=as_compliance())
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/pdf"
        assert (await response.read()).startswith(b"%PDF-")
    bad = await report_client.get("/reports/summary.html?format=docx", headers=as_compliance())
    assert bad.status == 422
    assert [f["field"] for f in (await bad.json())["error"]["fields"]] == ["format"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/reports/decisions.html?reason=TX_AMOUNT%27%3B--", "reason"),
        ("/decisions?reason=", None),  # empty means no filter
        ("/reports/summary.html?reason=TX_AMOUNT", "reason"),  # a period is not a list
        ("/reports/decisions/tx-5.html?nope=1", "nope"),
        ("/reports/decisions/tx-5.html?format=pdf&format=html", "format"),
    ],
)
async def test_report_pages_refuse_what_they_do_not_take(
    report_client: Any, path: str, field: str | None
) -> None:
    response = await report_client.get(path, headers=as_compliance())

    if field is None:
        assert response.status == 200
        return
    assert response.status == 422
    assert field in [f["field"] for f in (await response.json())["error"]["fields"]]
