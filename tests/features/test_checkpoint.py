"""Checkpoints of the in-process feature state: a restart from one continues exactly as
if the process had never stopped; a damaged, truncated or foreign file is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.checkpoint import (
    MAGIC,
    CheckpointError,
    capture,
    read_checkpoint,
    snapshot,
    to_arrays,
    write_checkpoint,
)
from features.data import TransactionFrame, frame_from_pandas
from features.definitions import DEFAULT_FEATURES
from features.online import OnlineFeatureEngine
from features.rebuild import rebuild_state
from features.simulator import SimulationConfig, simulate
from features.state import LabelOutcome


@pytest.fixture(scope="module")
def history() -> TransactionFrame:
    # 45 days: longer than every window, so old events and label references expire.
    return frame_from_pandas(
        simulate(SimulationConfig(customers=80, terminals=150, days=45, seed=11)), "simulated"
    )


def test_a_restart_from_a_checkpoint_continues_as_if_never_stopped(
    history: TransactionFrame, tmp_path: Path
) -> None:
    cut = len(history) * 2 // 3
    first, rest = history.take(slice(0, cut)), history.take(slice(cut, len(history)))
    uninterrupted = OnlineFeatureEngine()
    rebuild_state(first, uninterrupted)
    stopped = OnlineFeatureEngine()
    rebuild_state(first, stopped)
    assert stopped.stats()["label_refs"] > 0
    info = write_checkpoint(stopped, tmp_path / "state.checkpoint")
    assert info.covers_ms == int(first.epoch_ms.max()) and info.payments == cut
    restarted, read = read_checkpoint(tmp_path / "state.checkpoint")
    assert read.covers_ms == info.covers_ms
    expected = rebuild_state(rest, uninterrupted)
    got = rebuild_state(rest, restarted)
    np.testing.assert_array_equal(got, expected)
    # Labels of payments from before the checkpoint still reach their windows...
    early = first.transaction_id.tolist()[cut - 10]
    outcome = restarted.record_label(early, not first.label.tolist()[cut - 10])
    assert outcome == LabelOutcome.APPLIED
    assert uninterrupted.record_label(early, not first.label.tolist()[cut - 10]) == outcome
    # ...and their ids are still refused as duplicates.
    assert restarted.seen(early) and restarted.stats() == uninterrupted.stats()


def _damaged(path: Path, change: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[-100:-99] = change
    path.write_bytes(bytes(data))


def test_a_damaged_truncated_or_foreign_checkpoint_is_refused(
    history: TransactionFrame, tmp_path: Path
) -> None:
    engine = OnlineFeatureEngine()
    rebuild_state(history.take(slice(0, 500)), engine)
    path = tmp_path / "state.checkpoint"
    write_checkpoint(engine, path)
    good = path.read_bytes()
    _damaged(path, bytes([good[-100] ^ 1]))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        read_checkpoint(path)
    path.write_bytes(good[:-1])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(path)
    path.write_bytes(b"PK\x03\x04 an npz of someone else")
    with pytest.raises(CheckpointError, match="not a riskscore feature checkpoint"):
        read_checkpoint(path)
    path.write_bytes(good)
    with pytest.raises(CheckpointError, match="another feature plan"):
        read_checkpoint(path, DEFAULT_FEATURES[:5])
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "missing")
    # A header that is JSON of the wrong shape (the checksum covers the payload only).
    end = good.index(b"\n", len(MAGIC))
    for header in (b"[]", b"{}", b'{"payload_bytes": "many"}'):
        path.write_bytes(MAGIC + header + good[end:])
        with pytest.raises(CheckpointError, match="damaged header"):
            read_checkpoint(path)


def test_writing_replaces_the_file_whole_and_leaves_nothing_behind(
    history: TransactionFrame, tmp_path: Path
) -> None:
    engine = OnlineFeatureEngine()
    rebuild_state(history.take(slice(0, 300)), engine)
    path = tmp_path / "state.checkpoint"
    write_checkpoint(engine, path)
    rebuild_state(history.take(slice(300, 600)), engine)
    info = write_checkpoint(engine, path)
    assert [p.name for p in tmp_path.iterdir()] == ["state.checkpoint"]
    _, read = read_checkpoint(path)
    assert read.payments == info.payments == 600


def test_a_capture_is_the_state_of_its_instant_whatever_the_engine_does_after(
    history: TransactionFrame,
) -> None:
    # The service captures on the event loop and builds the arrays in a thread while
    # payments go on changing the engine: the arrays must be those of the captured instant.
    cut = len(history) // 2
    engine = OnlineFeatureEngine()
    rebuild_state(history.take(slice(0, cut)), engine)
    at_capture = snapshot(engine)
    captured = capture(engine)
    # Later payments evict entities, expire label references and reuse freed slots.
    rebuild_state(history.take(slice(cut, len(history))), engine)
    assert engine.stats() != OnlineFeatureEngine().stats()
    built = to_arrays(captured)
    assert built.keys() == at_capture.keys()
    for name, array in at_capture.items():
        np.testing.assert_array_equal(built[name], array, err_msg=name)
    assert not np.array_equal(snapshot(engine)["id_slots"], at_capture["id_slots"])
