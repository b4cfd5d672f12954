"""`riskscore serve` killed or stopped under HTTP load, as `riskscore bench crash | sigterm`
run it (CI-sized: 4 kills instead of 20): what was acknowledged stays, once."""

from __future__ import annotations

from pathlib import Path

from loadtest.bench_faults import EXIT_LIMIT_S, crash, sigterm


def test_kill_9_under_load_loses_and_duplicates_no_acknowledged_decision(tmp_path: Path) -> None:
    report = crash(tmp_path, kills=4, rate=200.0, seconds=1.0)
    print(report)
    assert report.acknowledged > 0
    assert report.lost == 0  # acknowledged, then decided anew: the record was not durable
    assert report.changed == 0  # acknowledged, then replayed with another answer
    assert report.other_status == {}  # every answer was a decision or no answer at all
    assert report.unverified == 0  # every payment sent again after the runs was answered
    assert report.unanswered_recorded + report.unanswered_decided_later == report.unanswered
    assert len(report.restart_ready_s) == 5  # each start after a kill became ready


def test_sigterm_under_load_answers_every_request_in_flight(tmp_path: Path) -> None:
    report = sigterm(tmp_path, concurrency=16, seconds=2.0)
    print(report)
    assert report.in_flight_at_signal > 0
    assert report.failed == 0, report.failures
    assert report.acknowledged == report.sent
    assert report.exit_code == 0 and report.exit_s < EXIT_LIMIT_S
    assert report.lost == 0
