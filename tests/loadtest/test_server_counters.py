"""`--server-metrics`: the escalated and fallen-back shares read from a real `riskscore serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.cli import main
from loadtest.server_counters import DecisionCounts, fallback_reasons, parse, server_tails, shares
from tests.service.test_serve_process import _free_port, _serving


@pytest.fixture(scope="module")
def riskscore_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("serve")
    with _serving(data_dir, extra_env={"RISKSCORE_KAFKA": "off"}) as (base, _):
        yield base


def test_a_run_reports_what_the_server_decided(
    riskscore_url: str, history_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = ["http", "--url", riskscore_url, "--data", str(history_csv), "--rate", "200"]
    argv += ["--server-metrics", f"{riskscore_url}/metrics", "--duration", "0.5", "--quiet"]
    assert main([*argv, "--warmup", "0.2"]) == 0
    text = capsys.readouterr().out
    assert main([*argv, "--warmup", "0", "--json", str(out)]) == 0

    assert "server (second stage)" in text and "escalated" in text
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    server = report["server"]
    # Counted between the run's two reads: exactly the payments this run sent.
    assert server["decisions"] == report["sent"] == 100
    assert 0.0 <= server["fallback_share"] <= server["escalated_share"] <= 1.0


def test_shares_count_fallbacks_as_escalated() -> None:
    before = DecisionCounts(decisions=10, second_stage=1, fallbacks=1)
    after = DecisionCounts(decisions=110, second_stage=9, fallbacks=3)
    assert shares(before, after) == {
        "decisions": 100,
        "escalated_share": 0.1,
        "fallback_share": 0.02,
    }
    assert shares(after, after)["escalated_share"] is None


def test_parse_sums_every_action() -> None:
    text = "\n".join(
        [
            "# TYPE riskscore_decisions_total counter",
            'riskscore_decisions_total{action="approve",stage="fast"} 7.0',
            'riskscore_decisions_total{action="decline",stage="sequence"} 2.0',
            'riskscore_decisions_total{action="review",stage="sequence"} 1.0',
            "# TYPE riskscore_fallbacks_total counter",
            'riskscore_fallbacks_total{reason="budget"} 1.0',
            'riskscore_fallbacks_total{reason="timeout"} 0.0',
        ]
    )
    assert parse(text) == DecisionCounts(
        decisions=10, second_stage=3, fallbacks=1, fallback_reasons={"budget": 1, "timeout": 0}
    )


def test_fallback_reasons_between_two_reads() -> None:
    before = DecisionCounts(fallbacks=1, fallback_reasons={"budget": 1.0})
    after = DecisionCounts(fallbacks=5, fallback_reasons={"budget": 3.0, "timeout": 2.0})
    assert fallback_reasons(before, after) == {"budget": 2, "timeout": 2}
    assert fallback_reasons(after, after) == {}


def test_unreadable_server_metrics_stop_the_run_before_it_starts(
    riskscore_url: str, history_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/metrics"
    argv = ["http", "--url", riskscore_url, "--data", str(history_csv), "--rate", "100"]
    assert main([*argv, "--server-metrics", dead, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read server metrics at {dead}" in err


def test_the_service_side_tails_between_two_reads() -> None:
    def exposition(score: tuple[int, int], store: tuple[int, int]) -> str:
        request = "riskscore_http_request_duration_seconds_bucket"
        return "\n".join(
            [
                "# TYPE riskscore_http_request_duration_seconds histogram",
                f'{request}{{le="0.025",route="/score"}} 1.0',
                f'{request}{{le="0.05",route="/score"}} {score[1]}.0',
                f'{request}{{le="+Inf",route="/score"}} {score[0]}.0',
                f'{request}{{le="+Inf",route="/lists"}} 99.0',
                "# TYPE riskscore_stage_duration_seconds histogram",
                f'riskscore_stage_duration_seconds_bucket{{le="0.01",stage="store"}} {store[1]}.0',
                f'riskscore_stage_duration_seconds_bucket{{le="+Inf",stage="store"}} {store[0]}.0',
                'riskscore_stage_duration_seconds_bucket{le="+Inf",stage="model"} 77.0',
            ]
        )

    before = parse(exposition(score=(10, 9), store=(10, 10)))
    after = parse(exposition(score=(110, 104), store=(60, 57)))
    assert server_tails(before, after) == {
        "score_requests": 100,
        "score_over_50ms": 5,
        "store_writes": 50,
        "store_over_10ms": 3,
    }
