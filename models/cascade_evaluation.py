"""The cascade under the handbook's protocol: fast only, teacher, student and cascade.

Per fold (first training day S; assessment S+14..S+20, as for the fast model):

- fast: the fold's fast model exactly as ``models.evaluation`` trains it (days S..S+6);
- teacher and student: trained on ``sequence_history_days`` labelled days ending at S+3
  (a week holds too few frauds for a transformer; every one of those labels is known by
  S+6, as in the all-history variant), early-stopped on S+4 alone;
- band and rule: chosen on S+5 alone, against a fast model trained on S..S+3 (so the fast
  scores they see are out-of-sample, like the ones the cascade meets in assessment);
- the guard: the chosen cascade's lift on S+6 alone (bootstrap lower bound above zero, or
  the band is closed, as the artifact builder does), see ``models/train/nested_split.py``;
  then the shipped band (fitted or empty) is applied with the fold's fast model on the
  assessment week.

Reported per model and fold: ROC AUC, AP and CP@100 over the assessed rows (the same rows
as the fast model's), AP and AUC inside the fitted band (whether or not the guard opened
it); for the cascade the escalated share, the guard's verdict and the AP gained per share
escalated; the student's AP retention (student AP / teacher AP) and the latencies of both
in ONNX Runtime. Needs torch (training).
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
from models.sequence_artifacts import Band
from models.train.cascade_fit import cascade_scores
from models.train.nested_split import nested_split
from models.train.sequence_stage import sequence_data, train_sequence_stage
from models.train.sequence_trainer import SequenceData, SequenceTrainingConfig, predict_logits

MODELS = ("fast", "teacher", "student", "cascade")
SEQUENCE_HISTORY_DAYS = 35
# Early stopping, band choice, guard: one day each (see models/train/nested_split.py).
VALIDATION_DAYS = 3


@dataclass(frozen=True)
class CascadeFold:
    """Everything one fold adds beyond the four models' metric rows."""

    fold: Fold
    escalated_share: float  # under the shipped band: 0 when the guard closed it
    band: tuple[float, float]  # the fitted band (in-band figures are on it)
    guard: dict[str, Any]  # the guard's verdict on its own day (GuardVerdict.to_json)
    ap: dict[str, float]  # model -> AP over every assessed row
    in_band: dict[str, dict[str, float]]  # model -> {"ap", "auc"}
    in_band_rows: int
    in_band_frauds: int
    ap_retention: float
    latency_ms: dict[str, float]

    @property
    def ap_gain(self) -> float:
        """Cascade AP minus fast AP over every assessed row."""
        return self.ap["cascade"] - self.ap["fast"]

    @property
    def ap_gain_per_share(self) -> float:
        """AP gained per unit share of traffic escalated (NaN when nothing is escalated)."""
        return self.ap_gain / self.escalated_share if self.escalated_share else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.fold.start.isoformat(),
            "escalated_share": self.escalated_share,
            "band": list(self.band),
            "band_open": self.guard["verdict"] == "open",
            "guard": {k: _json(v) if isinstance(v, float) else v for k, v in self.guard.items()},
            "ap_gain": _json(self.ap_gain),
            "ap_gain_per_share": _json(self.ap_gain_per_share),
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
        cascade["ap_gain"] = _summary([f.ap_gain for f in self.folds])
        cascade["bands_opened"] = sum(f.guard["verdict"] == "open" for f in self.folds)
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
    split = nested_split(valid_rows, day[valid_rows])
    # Out-of-sample fast scores for choosing and guarding the band: a fast model that never
    # saw those days.
    early_rows = day < valid_from
    if protocol.training is Training.WEEK:
        early_rows &= day >= start
    early = _fit(prepared, np.flatnonzero(early_rows), config)
    fast_raw_nested = (
        np.asarray(early.predict(prepared.features[split.choice], raw_score=True)),
        np.asarray(early.predict(prepared.features[split.guard], raw_score=True)),
    )
    stage = train_sequence_stage(
        data,
        prepared.feature_names,
        train_rows,
        split,
        fast_raw_nested,
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
    cascade, _ = cascade_scores(stage.cascade.band, stage.cascade.combination, fast_raw, student)
    # In-band figures on the fitted band, open or not: what the stage would have done there.
    fitted = Band(**(stage.cascade.report["fitted_band"] or Band.closed().model_dump()))
    would, inside = cascade_scores(fitted, stage.cascade.combination, fast_raw, student)
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
        for m, s in {**scores, "cascade": would}.items()
    }
    teacher_ap, student_ap = fold_rows["teacher"].ap, fold_rows["student"].ap
    shipped = stage.cascade.band
    extra = CascadeFold(
        fold=fold,
        escalated_share=_share_in(shipped, scores["fast"]),
        band=(fitted.low, fitted.high),
        guard=stage.guard.to_json(),
        ap={m: fold_rows[m].ap for m in MODELS},
        in_band=in_band,
        in_band_rows=int(inside.sum()),
        in_band_frauds=int(labels[inside].sum()),
        ap_retention=student_ap / teacher_ap if teacher_ap else math.nan,
        latency_ms=stage.latency_ms,
    )
    return fold_rows, extra


def _share_in(band: Band, fast_p: np.ndarray) -> float:
    return float(np.mean((fast_p >= band.low) & (fast_p < band.high)))


def _summary(values: list[float]) -> dict[str, float | None]:
    s = MeanStd.of(values)
    return {"mean": _json(s.mean), "std": _json(s.std)}


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
