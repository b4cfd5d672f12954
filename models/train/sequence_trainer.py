"""Train the sequence stage: teacher, distilled student, ONNX export, band and combination.

1. Rows: every fraud of the training part and a fixed number of genuine payments per
   fraud, drawn with a fixed seed. Fraud is under 1% of payments; sampling the genuine
   ones (rather than weighting) is the deliberate imbalance choice here, because it also
   makes epochs ~10× cheaper. Scores are recalibrated afterwards by the combination rule,
   fitted on unsampled validation rows.
2. Teacher: the larger transformer, early-stopped on validation average precision.
3. Student: the small transformer, trained on the same rows against the teacher's soft
   targets at temperature T and the hard labels: ``α T² BCE(s/T, σ(t/T)) + (1-α) BCE(s, y)``.
4. Export: the student to ONNX twice (batch fixed at 1, dynamic batch), checked against
   torch on validation sequences.
5. Cascade: on the validation days, the band of fast probabilities where the student runs
   and the logistic combination of both scores inside it (:mod:`models.train.cascade_fit`).
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from features.sequence import DEFAULT_SEQUENCE_LENGTH, assemble
from models.metrics import average_precision, roc_auc
from models.train.sequence_net import (
    STUDENT_SHAPE,
    TEACHER_SHAPE,
    NetShape,
    SequenceNet,
    input_scaling,
)

ONNX_TOLERANCE = 1e-4  # max |logit difference| between ONNX Runtime and torch
ONNX_OPSET = 17


@dataclass(frozen=True)
class SequenceTrainingConfig:
    """Options of a sequence-stage training run (defaults: the shipped model)."""

    length: int = DEFAULT_SEQUENCE_LENGTH
    teacher: NetShape = TEACHER_SHAPE
    student: NetShape = STUDENT_SHAPE
    negatives_per_fraud: int = 10
    teacher_epochs: int = 5
    student_epochs: int = 6
    patience: int = 2
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 2.0
    alpha: float = 0.7
    seed: int = 0
    threads: int = 2
    quantise: bool = True  # try int8; shipped only if faster and within tolerance

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: v for k, v in self.__dict__.items() if not isinstance(v, NetShape)
        }
        out["teacher"] = self.teacher.to_dict()
        out["student"] = self.student.to_dict()
        return out

    def tiny(self) -> SequenceTrainingConfig:
        """A few-second variant for tests and CI: same code path, small nets, short runs."""
        small = NetShape(d_model=16, heads=2, layers=1, feedforward=32)
        return replace(
            self,
            length=min(self.length, 8),
            teacher=NetShape(d_model=32, heads=2, layers=2, feedforward=64),
            student=small,
            teacher_epochs=2,
            student_epochs=2,
            quantise=False,
        )


@dataclass
class SequenceData:
    """Everything a batch of sequences is gathered from (see ``features.sequence``)."""

    features: np.ndarray  # (rows, features) of the whole history
    epoch_ms: np.ndarray
    index: np.ndarray  # (rows, length) from sequence_index
    labels: np.ndarray

    def sequences(self, rows: np.ndarray) -> np.ndarray:
        return assemble(self.features, self.epoch_ms, self.index[rows])


@dataclass
class TrainedNet:
    net: SequenceNet
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    validation: dict[str, float | None] = field(default_factory=dict)


def sample_rows(labels: np.ndarray, rows: np.ndarray, per_fraud: int, seed: int) -> np.ndarray:
    """All frauds among ``rows`` plus ``per_fraud`` genuine rows per fraud (seeded)."""
    rows = np.asarray(rows)
    fraud = rows[labels[rows] == 1]
    genuine = rows[labels[rows] == 0]
    take = min(len(genuine), per_fraud * max(len(fraud), 1))
    picked = np.random.default_rng(seed).choice(genuine, size=take, replace=False)
    return np.sort(np.concatenate([fraud, picked]))


def train_teacher(
    data: SequenceData,
    train_rows: np.ndarray,
    valid_rows: np.ndarray,
    config: SequenceTrainingConfig,
    progress: bool = True,
) -> TrainedNet:
    torch.manual_seed(config.seed)
    sample = data.sequences(train_rows[:: max(1, len(train_rows) // 20_000)])
    mean, std = input_scaling(sample)
    net = SequenceNet(config.teacher, config.length, sample.shape[-1], mean, std)
    targets = data.labels[train_rows].astype(np.float32)
    return _fit(net, data, train_rows, targets, None, valid_rows, config, "teacher", progress)


def distil_student(
    teacher: SequenceNet,
    data: SequenceData,
    train_rows: np.ndarray,
    valid_rows: np.ndarray,
    config: SequenceTrainingConfig,
    progress: bool = True,
) -> TrainedNet:
    torch.manual_seed(config.seed + 1)
    soft = predict_logits(teacher, data, train_rows).astype(np.float32)
    mean = teacher.get_buffer("mean").numpy()
    std = teacher.get_buffer("std").numpy()
    net = SequenceNet(config.student, config.length, len(mean), mean, std)
    targets = data.labels[train_rows].astype(np.float32)
    return _fit(net, data, train_rows, targets, soft, valid_rows, config, "student", progress)


def _fit(
    net: SequenceNet,
    data: SequenceData,
    rows: np.ndarray,
    targets: np.ndarray,
    teacher_logits: np.ndarray | None,
    valid_rows: np.ndarray,
    config: SequenceTrainingConfig,
    name: str,
    progress: bool,
) -> TrainedNet:
    torch.set_num_threads(config.threads)
    epochs = config.teacher_epochs if teacher_logits is None else config.student_epochs
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    rng = np.random.default_rng(config.seed)
    result = TrainedNet(net)
    best_ap, best_state, stale = -math.inf, copy.deepcopy(net.state_dict()), 0
    loss_of = _distillation_loss(config) if teacher_logits is not None else _hard_loss
    steps = math.ceil(len(rows) / config.batch_size)
    with tqdm(total=epochs * steps, desc=name, unit="batch", disable=not progress) as bar:
        for epoch in range(epochs):
            net.train()
            order = rng.permutation(len(rows))
            total = 0.0
            for start in range(0, len(rows), config.batch_size):
                pick = order[start : start + config.batch_size]
                x = torch.from_numpy(data.sequences(rows[pick]))
                y = torch.from_numpy(targets[pick])
                soft = None if teacher_logits is None else torch.from_numpy(teacher_logits[pick])
                loss = loss_of(net(x), y, soft)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
                total += loss.item() * len(pick)
                bar.update()
            scores = predict_logits(net, data, valid_rows)
            ap = average_precision(data.labels[valid_rows], scores)
            result.epochs.append({"epoch": epoch + 1, "loss": total / len(rows), "valid_ap": ap})
            bar.set_postfix(loss=f"{total / len(rows):.4f}", valid_ap=f"{ap:.4f}")
            if ap > best_ap:
                best_ap, best_state, stale = ap, copy.deepcopy(net.state_dict()), 0
                result.best_epoch = epoch + 1
            else:
                stale += 1
                if stale >= config.patience:
                    break
    net.load_state_dict(best_state)
    net.eval()
    scores = predict_logits(net, data, valid_rows)
    labels = data.labels[valid_rows]
    result.validation = {
        "average_precision": _defined(average_precision(labels, scores)),
        "roc_auc": _defined(roc_auc(labels, scores)),
    }
    return result


def _hard_loss(logits: torch.Tensor, targets: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)


def _distillation_loss(
    config: SequenceTrainingConfig,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    t, alpha = config.temperature, config.alpha

    def loss(
        logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor | None
    ) -> torch.Tensor:
        assert soft is not None
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        # T² keeps the soft term's gradients on the scale of the hard term's.
        return alpha * t * t * bce(logits / t, torch.sigmoid(soft / t)) + (1 - alpha) * bce(
            logits, targets
        )

    return loss


def predict_logits(
    net: SequenceNet, data: SequenceData, rows: np.ndarray, batch: int = 4096
) -> np.ndarray:
    net.eval()
    out = np.empty(len(rows), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            x = torch.from_numpy(data.sequences(rows[start : start + batch]))
            out[start : start + batch] = net(x).numpy()
    return out


def export_onnx(net: SequenceNet, length: int, width: int, batch: int | None) -> bytes:
    """The network as ONNX; ``batch`` None gives a dynamic batch dimension."""
    net.eval()
    example = torch.zeros((batch or 2, length, width), dtype=torch.float32)
    example[:, -1, -1] = 1.0
    buffer = io.BytesIO()
    # The TorchScript-based exporter: it needs no extra packages and yields the same plain
    # graph every time; torch marks it deprecated in favour of the torch.export one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (example,),
            buffer,  # type: ignore[arg-type]  # file-like objects are accepted too
            input_names=["sequences"],
            output_names=["logit"],
            dynamic_axes=None if batch else {"sequences": {0: "batch"}, "logit": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else value
