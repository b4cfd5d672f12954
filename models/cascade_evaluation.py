"""The cascade under the handbook's protocol: fast only, teacher, student and cascade.

Per fold (first training day S; assessment S+14..S+20, as for the fast model):

- fast: the fold's fast model exactly as ``models.evaluation`` trains it (days S..S+6);
- teacher and student: trained on ``sequence_history_days`` labelled days ending at S+4
  (a week holds too few frauds for a transformer; every one of those labels is known by
  S+6, as in the all-history variant), early-stopped on S+5..S+6;
- band and rule: fitted on S+5..S+6 against a fast model trained on S..S+4 (so the fast
  scores they see are out-of-sample, like the ones the cascade meets in assessment), then
  applied with the fold's fast model on the assessment week.

Reported per model and fold: ROC AUC, AP and CP@100 over the assessed rows (the same rows
as the fast model's), AP and AUC inside the band; for the cascade the escalated share; the
student's AP retention (student AP / teacher AP) and the latencies of both in ONNX Runtime.
Needs torch (training).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from features.data import TransactionFrame
from models.config import FastModelConfig
from models.evaluation import (
    DEFAULT_CONFIG,
    EvaluationProtocol,
    EvaluationResult,
    Fold,
    FoldResult,
    ModelResult,
    PreparedHistory,
    Training,
    _day_number,
    _fit,
    known_compromised,
    run_fold,
)
from models.metrics import (
    CARD_PRECISION_K,
    MeanStd,
    average_precision,
    card_precision_at_k,
    roc_auc,
    sigmoid,
)
from models.sequence import make_session
from models.train.cascade_fit import cascade_scores
from models.train.sequence_stage import sequence_data, train_sequence_stage
from models.train.sequence_trainer import SequenceData, SequenceTrainingConfig, predict_logits

MODELS = ("fast", "teacher", "student", "cascade")
SEQUENCE_HISTORY_DAYS = 35
VALIDATION_DAYS = 2


@dataclass(frozen=True)
class CascadeFold:
    """Everything one fold adds beyond the four models' metric rows."""

    fold: Fold
    escalated_share: float
    band: tuple[float, float]
    in_band: dict[str, dict[str, float]]  # model -> {"ap", "auc"}
    in_band_rows: int
    in_band_frauds: int
    ap_retention: float
    latency_ms: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.fold.start.isoformat(),
            "escalated_share": self.escalated_share,
            "band": list(self.band),
            "in_band": {m: {k: _json(v) for k, v in d.items()} for m, d in self.in_band.items()},
            "in_band_rows": self.in_band_rows,
            "in_band_frauds": self.in_band_frauds,
            "ap_retention": _json(self.ap_retention),
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class CascadeEvaluation:
    result: EvaluationResult
    folds: tuple[CascadeFold, ...]

    def to_json(self) -> dict[str, Any]:
        out = self.result.to_json()
        cascade = out["results"]["cascade"]
        cascade["escalated_share"] = _summary([f.escalated_share for f in self.folds])
        for model in MODELS:
            out["results"][model]["in_band_ap"] = _summary(
                [f.in_band[model]["ap"] for f in self.folds]
            )
        out["results"]["student"]["ap_retention"] = _summary([f.ap_retention for f in self.folds])
        out["cascade_folds"] = [f.to_json() for f in self.folds]
        return out


def evaluate_cascade(
    history: TransactionFrame,
    prepared: PreparedHistory,
    protocol: EvaluationProtocol,
    config: FastModelConfig = DEFAULT_CONFIG,
    sequence_config: SequenceTrainingConfig | None = None,
    progress: bool = True,
    on_fold: Callable[[CascadeFold], None] | None = None,
) -> CascadeEvaluation:
    """Run every fold of ``protocol`` for the four models (see the module docstring)."""
    sequence_config = sequence_config or SequenceTrainingConfig()
    data = sequence_data(history, prepared.features, sequence_config.length)
    rows: dict[str, list[FoldResult]] = {m: [] for m in MODELS}
    extras = []
    for fold in protocol.folds():
        fold_rows, extra = _run_fold(
            prepared, data, fold, protocol, config, sequence_config, progress
        )
        for model in MODELS:
            rows[model].append(fold_rows[model])
        extras.append(extra)
        if on_fold:
            on_fold(extra)
    models = {m: ModelResult(m, tuple(r)) for m, r in rows.items()}
    return CascadeEvaluation(EvaluationResult(protocol, models), tuple(extras))


def _run_fold(
    prepared: PreparedHistory,
    data: SequenceData,
    fold: Fold,
    protocol: EvaluationProtocol,
    config: FastModelConfig,
    sequence_config: SequenceTrainingConfig,
    progress: bool,
) -> tuple[dict[str, FoldResult], CascadeFold]:
    fast_result, booster = run_fold(prepared, fold, config, protocol.training)
    day = prepared.days.astype(np.int64)
    start = _day_number(fold.start)
    valid_from = _day_number(fold.training_last) - VALIDATION_DAYS + 1
    train_rows = np.flatnonzero((day >= valid_from - SEQUENCE_HISTORY_DAYS) & (day < valid_from))
    valid_rows = np.flatnonzero((day >= valid_from) & (day <= _day_number(fold.training_last)))
    # Out-of-sample fast scores for fitting the band: a fast model that never saw them.
    early_rows = day < valid_from
    if protocol.training is Training.WEEK:
        early_rows &= day >= start
    early = _fit(prepared, np.flatnonzero(early_rows), config)
    fast_raw_valid = np.asarray(early.predict(prepared.features[valid_rows], raw_score=True))
    stage = train_sequence_stage(
        data,
        prepared.feature_names,
        train_rows,
        valid_rows,
        fast_raw_valid,
        sequence_config,
        progress,
    )
    first, final = _day_number(fold.assessment_first), _day_number(fold.assessment_last)
    removed = known_compromised(prepared.days, prepared.cards, prepared.labels, fold)
    assessed = np.flatnonzero((day >= first) & (day <= final) & ~removed)
    fast_raw = np.asarray(booster.predict(prepared.features[assessed], raw_score=True))
    teacher = predict_logits(stage.teacher.net, data, assessed)
    session = make_session(stage.student_onnx)
    student = np.concatenate(
        [
            np.asarray(session.run(None, {"sequences": data.sequences(part)})[0])
            for part in np.array_split(assessed, max(1, len(assessed) // 4096))
        ]
    ).astype(np.float64)
    cascade, inside = cascade_scores(
        stage.cascade.band, stage.cascade.combination, fast_raw, student
    )
    scores = {
        "fast": sigmoid(fast_raw),
        "teacher": sigmoid(teacher),
        "student": sigmoid(student),
        "cascade": cascade,
    }
    labels = prepared.labels[assessed]
    days, cards = day[assessed], prepared.cards[assessed]
    fold_rows = {"fast": fast_result}
    for model in ("teacher", "student", "cascade"):
        s = scores[model]
        fold_rows[model] = replace(
            fast_result,
            trees=0,
            auc=roc_auc(labels, s),
            ap=average_precision(labels, s),
            cp_at_100=card_precision_at_k(days, cards, labels, s, CARD_PRECISION_K),
        )
    in_band = {
        m: {
            "ap": average_precision(labels[inside], s[inside]),
            "auc": roc_auc(labels[inside], s[inside]),
        }
        for m, s in scores.items()
    }
    teacher_ap, student_ap = fold_rows["teacher"].ap, fold_rows["student"].ap
    extra = CascadeFold(
        fold=fold,
        escalated_share=float(inside.mean()),
        band=(stage.cascade.band.low, stage.cascade.band.high),
        in_band=in_band,
        in_band_rows=int(inside.sum()),
        in_band_frauds=int(labels[inside].sum()),
        ap_retention=student_ap / teacher_ap if teacher_ap else math.nan,
        latency_ms=stage.latency_ms,
    )
    return fold_rows, extra


def _summary(values: list[float]) -> dict[str, float | None]:
    s = MeanStd.of(values)
    return {"mean": _json(s.mean), "std": _json(s.std)}


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
