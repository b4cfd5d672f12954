"""Training and serving compute the handbook's features exactly, on the real benchmark.

(a) the offline engine reproduces the handbook's published feature values;
(b) replaying the same history through the online engine, labels fed as they become
    known, gives the offline engine's values for every feature.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.data import TransactionFrame, load_transactions
from features.definitions import DEFAULT_FEATURES, HANDBOOK_FEATURE_NAMES
from features.offline import compute_features
from features.rebuild import rebuild_state

pytestmark = [pytest.mark.handbook, pytest.mark.slow]
TOLERANCE = 1e-9
REFERENCE_ROWS = 363_903


@pytest.fixture(scope="module")
def history(handbook_dir: Path) -> TransactionFrame:
    return load_transactions(handbook_dir / "transactions_dev.csv.gz")


@pytest.fixture(scope="module")
def offline(history: TransactionFrame) -> np.ndarray:
    return compute_features(history)


def test_offline_engine_reproduces_the_handbook_reference(
    handbook_dir: Path, history: TransactionFrame, offline: np.ndarray
) -> None:
    reference = pd.read_csv(handbook_dir / "features_reference_2018-07.csv.gz")
    assert len(reference) == REFERENCE_ROWS
    rows = pd.Index(history.transaction_id).get_indexer(reference["TRANSACTION_ID"])
    assert (rows >= 0).all(), "reference rows missing from the history"
    names = [d.name for d in DEFAULT_FEATURES]
    worst = {
        name: float(np.max(np.abs(offline[rows, names.index(name)] - reference[name].to_numpy())))
        for name in HANDBOOK_FEATURE_NAMES
    }
    assert max(worst.values()) <= TOLERANCE, worst


def test_online_replay_equals_offline_for_every_feature(
    history: TransactionFrame, offline: np.ndarray
) -> None:
    online = rebuild_state(history)
    # Running sums (online) and prefix sums (offline) round differently; above 1 the
    # tolerance is relative (a z-score of 288 agrees to 11 significant digits).
    worst = np.max(np.abs(online - offline) / np.maximum(1.0, np.abs(offline)), axis=0)
    bad = {d.name: float(w) for d, w in zip(DEFAULT_FEATURES, worst, strict=True) if w > TOLERANCE}
    assert not bad, bad
