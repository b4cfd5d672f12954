"""`evaluate --cascade` on a simulated history (tiny nets, one fold): four models, the same
assessed rows, metrics inside the band, and the JSON shape other tools read."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from features.data import frame_from_pandas
from features.simulator import SimulationConfig, simulate
from models.cascade_evaluation import MODELS, CascadeEvaluation, evaluate_cascade
from models.config import FastModelConfig
from models.evaluation import EvaluationProtocol, evaluate_prepared, prepare
from models.train.sequence_trainer import SequenceTrainingConfig
from service.cli.evaluate_cmd import cascade_report

SIMULATION = SimulationConfig(customers=600, terminals=1000, days=75, seed=11)


@pytest.fixture(scope="module")
def evaluation() -> tuple[CascadeEvaluation, EvaluationProtocol]:
    history = frame_from_pandas(simulate(SIMULATION), "simulated")
    protocol = EvaluationProtocol("simulated", (SIMULATION.start + timedelta(days=45),))
    prepared = prepare(history, protocol)
    config = FastModelConfig(num_threads=1)
    result = evaluate_cascade(
        history, prepared, protocol, config, SequenceTrainingConfig().tiny(), progress=False
    )
    # The fast row must be the plain evaluation's, unchanged by the cascade run.
    plain = evaluate_prepared(prepared, protocol, config)
    assert result.result.models["fast"].folds == plain.models["fast"].folds
    return result, protocol


def test_json_has_four_models_with_the_same_metric_shape(
    evaluation: tuple[CascadeEvaluation, EvaluationProtocol],
) -> None:
    result, _ = evaluation
    data = result.to_json()
    assert set(data["results"]) == set(MODELS)
    for model in MODELS:
        for metric in ("auc", "ap", "cp_at_100", "in_band_ap"):
            assert set(data["results"][model][metric]) == {"mean", "std"}
        ap = data["results"][model]["ap"]["mean"]
        assert 0 < ap <= 1
    share = data["results"]["cascade"]["escalated_share"]["mean"]
    (fold,) = data["cascade_folds"]
    # Escalated as shipped: nothing when the guard closed the band.
    assert (0 < share <= 0.2) == fold["band_open"]
    assert fold["guard"]["verdict"] in ("open", "closed") and fold["guard"]["reason"]
    assert fold["ap_gain"] == pytest.approx(
        data["results"]["cascade"]["ap"]["mean"] - data["results"]["fast"]["ap"]["mean"]
    )
    assert data["results"]["student"]["ap_retention"]["mean"] > 0


def test_every_model_is_scored_on_the_same_assessed_rows(
    evaluation: tuple[CascadeEvaluation, EvaluationProtocol],
) -> None:
    result, _ = evaluation
    folds = {m: result.result.models[m].folds[0] for m in MODELS}
    assert len({(f.assessed_rows, f.assessed_frauds) for f in folds.values()}) == 1
    # The models really differ: otherwise the table would compare a model with itself.
    assert len({round(f.ap, 9) for f in folds.values()}) > 1


def test_the_cascade_changes_scores_only_inside_its_band(
    evaluation: tuple[CascadeEvaluation, EvaluationProtocol],
) -> None:
    result, _ = evaluation
    fold = result.folds[0]
    assert fold.in_band_rows > 0 and fold.in_band_frauds > 0
    assert 0 <= fold.band[0] < fold.band[1] <= 1
    assert fold.latency_ms["student_single_p50"] > 0
    text = cascade_report(result)
    assert str(fold.fold.start) in text and "retention" in text
    assert f"{fold.ap['cascade']:.4f}" in text and fold.guard["verdict"] in text
    assert np.isfinite(fold.in_band["cascade"]["ap"])
