"""A supervisor restarting `riskscore serve` after `kill -9` (or an OOM kill) gets a
running service every time: the embedded broker did not outlive the killed process."""

from __future__ import annotations

from pathlib import Path

from tests.service.serve_restarts import kill_and_restart


def test_serve_starts_again_after_kill_9(tmp_path: Path) -> None:
    assert len(kill_and_restart(tmp_path, runs=3)) == 3
