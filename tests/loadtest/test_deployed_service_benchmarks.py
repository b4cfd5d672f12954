"""`riskscore bench cascade` and `riskscore bench stream`, run small against a real service
(`riskscore serve`, `riskscore consume` on an embedded broker) through the load
generator's clients: the figures they print and write, and counts that add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_bench_cascade_against_a_real_service(tmp_path: Path) -> None:
    out = tmp_path / "cascade.json"
    count = 60
    # No warm-up: the service's counters, read before and after, then count the same
    # payments as the client.
    result = _bench(
        "cascade", "--count", str(count), "--rate", "100", "--warmup", "0", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{count} payments (after 0 not counted) at 100/s, budget 50 ms")
    assert lines[3].startswith("| normal | ") and lines[4].startswith("| +200 ms injected | ")
    assert lines[5].startswith("| +200 ms injected, every payment escalated | ")

    figures = json.loads(out.read_text())
    assert (figures["count"], figures["warmup"], figures["rate"]) == (count, 0, 100.0)
    assert figures["history_sent_first"] > 10_000  # a week of the simulated population
    for name in ("normal", "slow_second_stage", "slow_every_payment"):
        phase = figures[name]
        assert phase["errors"] == {}
        assert phase["statuses"] == {"200": count}
        assert sum(phase["stages"].values()) == count
        assert phase["latency_all"]["n"] == count
        # The service's own time to decide is inside the client's time for each answer.
        assert 0 < phase["server_decided"]["max_ms"] <= phase["latency_all"]["max_ms"]
        escalated = round(phase["escalated_share"] * count)
        assert phase["latency_escalated"].get("n", 0) == escalated
        assert sum(phase["fallback_reasons"].values()) == escalated
        # What the client read in the answers is what the service counted.
        server = phase["server"]
        assert server["decisions"] == count
        # Every /score request and each durable write was timed by the service too.
        tails = server["tails"]
        assert tails["score_requests"] == count
        assert 0 < tails["store_writes"] <= count
        assert 0 <= tails["score_over_50ms"] <= count and tails["store_over_10ms"] >= 0
        assert server["escalated_share"] == pytest.approx(phase["escalated_share"], abs=1e-4)
        client_fallbacks = {k: v for k, v in phase["fallback_reasons"].items() if k != "None"}
        assert server["fallback_reasons"] == client_fallbacks
    # Same payments, same state: the same ones are escalated in both phases.
    assert figures["slow_second_stage"]["escalated_share"] == figures["normal"]["escalated_share"]
    assert figures["normal"]["escalated_share"] > 0
    # 200 ms injected into a 50 ms budget: the second stage never decides.
    assert figures["slow_second_stage"]["stages"] == {"fast": count}
    assert "None" not in figures["slow_second_stage"]["fallback_reasons"]
    # With the band widened to every score, every payment escalates into the slowed stage
    # and every one falls back.
    every = figures["slow_every_payment"]
    assert (
        every["every_payment_escalated"]
        and not figures["slow_second_stage"]["every_payment_escalated"]
    )
    assert every["escalated_share"] == 1.0
    assert every["stages"] == {"fast": count}
    assert (
        sum(every["fallback_reasons"].values()) == count and "None" not in every["fallback_reasons"]
    )


@pytest.mark.slow
def test_bench_stream_against_a_real_consumer(tmp_path: Path) -> None:
    out = tmp_path / "stream.json"
    backlog, rate, seconds = 300, 100, 2
    result = _bench(
        "stream",
        *("--count", str(backlog), "--rate", str(rate), "--seconds", str(seconds)),
        *("--json", str(out)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("throughput: ")
    assert f"latency at {rate}/s: p50 " in result.stdout

    figures = json.loads(out.read_text())
    paced = rate * seconds
    assert figures["backlog"] == backlog
    assert figures["throughput_tx_per_s"] > 0
    assert figures["latency_errors"] == {}
    assert (figures["latency_n"], figures["latency_missing"]) == (paced, 0)
    # The consumer decided every payment sent, once: the backlog and the paced run.
    assert figures["consumer_decisions"] == backlog + paced
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p99_ms"] <= figures["latency_max_ms"]
    assert set(figures["step_us_per_tx"]) == {
        "decode",
        "score (features, model, SHAP, durable audit)",
        "publish (send, broker ack)",
        "commit",
    }
    assert all(us > 0 for us in figures["step_us_per_tx"].values())


def test_without_the_load_generator_a_benchmark_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As in a service-only install: the loadtest extra (httptools, hdrh) is not there.
    for name in [m for m in sys.modules if m == "loadtest" or m.startswith("loadtest.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "httptools", None)
    monkeypatch.setitem(sys.modules, "hdrh", None)

    assert main(["bench", "cascade", "--count", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install -e '.[loadtest]'" in err
    assert err.startswith("riskscore bench: error: this benchmark needs the load generator")


@pytest.mark.slow
def test_bench_promote_against_a_real_service(tmp_path: Path) -> None:
    out = tmp_path / "promote.json"
    result = _bench(
        "promote", "--rate", "20", "--seconds", "6", "--promotions", "2", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert [p["status"] for p in figures["promotions"]] == [200, 200]
    # Promoted to the second version, then back: both answered, every answer counted.
    versions = figures["versions_answered"]
    assert len(versions) == 2 and all(n > 0 for n in versions.values())
    assert sum(versions.values()) == figures["statuses"]["200"]
    assert figures["steady"]["n"] + figures["swap"]["n"] == sum(figures["statuses"].values())
    assert "p99 during a swap - steady p99:" in result.stdout


@pytest.mark.slow
def test_bench_shadow_against_a_real_service(tmp_path: Path) -> None:
    out = tmp_path / "shadow.json"
    result = _bench("shadow", "--rate", "20", "--seconds", "4", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    off, on = figures["off"], figures["on"]
    assert off["latency"]["n"] == on["latency"]["n"] == off["measured_decisions"] > 0
    # Off: no challenger, no rows; on: a row for every measured decision, none dropped.
    assert (
        off["with_challenger_row"] == 0
        and off["counters"]["riskscore_challenger_scored_total"] == 0
    )
    assert on["with_challenger_row"] == on["measured_decisions"]
    assert on["counters"]["riskscore_challenger_scored_total"] >= on["measured_decisions"]
    assert on["counters"]["riskscore_challenger_dropped_total{queue_full}"] == 0
    assert "p99 with the shadow on - off:" in result.stdout


@pytest.mark.slow
def test_bench_shadow_alternating_gives_each_state_its_durable_writes(tmp_path: Path) -> None:
    out = tmp_path / "shadow.json"
    result = _bench(
        "shadow", "--rate", "20", "--seconds", "6", "--alternate-s", "2", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for state in ("off", "on"):
        store = figures[state]["store_stage"]
        assert store["n"] > 0 and store["mean_ms"] > 0
        assert 0 <= store["over_0.1_s"] <= store["over_0.01_s"] <= 1
    assert figures["on"]["with_challenger_row"] == figures["on"]["measured_decisions"] > 0
    assert "durable write (stage store), shadow on:" in result.stdout
