"""The sequence models (teacher and student share one architecture, at two sizes).

A pre-norm transformer encoder over the customer's sequence (oldest first, the current
payment last, see ``features.sequence``). Padding positions are masked out of attention
(every sequence holds at least its current payment, so no row is fully masked). The
current position's hidden state, concatenated with the current payment's own normalised
feature vector (the fast path's inputs), feeds a small head that returns one logit.

Input scaling is part of the graph — a signed log squashes amounts, counts and gaps, then
a per-column standardisation fitted on the training rows — so the exported ONNX model takes
the raw sequences serving builds, and nothing outside the model file needs to agree with it.
Attention is written out by hand (no fused kernels) so that the ONNX export is plain ops.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

# Large enough to zero a softmax weight in float32, small enough not to overflow.
_MASKED = -1e4


@dataclass(frozen=True)
class NetShape:
    """Size of a sequence model."""

    d_model: int
    heads: int
    layers: int
    feedforward: int
    dropout: float = 0.1

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# Sized for CPU training in minutes on two cores; the student has ~1/10 of the teacher's
# multiply-adds per payment.
TEACHER_SHAPE = NetShape(d_model=48, heads=4, layers=2, feedforward=128)
STUDENT_SHAPE = NetShape(d_model=16, heads=2, layers=1, feedforward=32)


def signed_log(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


class _Attention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = h.shape
        qkv = self.qkv(h).reshape(batch, length, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, length, dim)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
        weights = self.dropout(torch.softmax(scores, dim=-1))
        mixed = (weights @ v).transpose(1, 2).reshape(batch, length, d_model)
        return self.out(mixed)


class _Block(nn.Module):
    def __init__(self, shape: NetShape) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(shape.d_model)
        self.attention = _Attention(shape.d_model, shape.heads, shape.dropout)
        self.norm2 = nn.LayerNorm(shape.d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(shape.d_model, shape.feedforward),
            nn.GELU(),
            nn.Dropout(shape.dropout),
            nn.Linear(shape.feedforward, shape.d_model),
        )
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = h + self.dropout(self.attention(self.norm1(h), bias))
        return h + self.dropout(self.feedforward(self.norm2(h)))


class SequenceNet(nn.Module):
    """Sequence (batch, length, width) → fraud logit (batch,)."""

    def __init__(
        self, shape: NetShape, length: int, width: int, mean: np.ndarray, std: np.ndarray
    ) -> None:
        super().__init__()
        self.shape = shape
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.embed = nn.Linear(width, shape.d_model)
        self.position = nn.Parameter(torch.zeros(length, shape.d_model))
        self.blocks = nn.ModuleList(_Block(shape) for _ in range(shape.layers))
        self.norm = nn.LayerNorm(shape.d_model)
        self.head = nn.Sequential(
            nn.Linear(shape.d_model + width, shape.d_model),
            nn.GELU(),
            nn.Linear(shape.d_model, 1),
        )
        nn.init.normal_(self.position, std=0.02)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        valid = sequences[:, :, -1:]  # the IS_TRANSACTION column
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        x = (signed_log(sequences) - mean) / std * valid
        bias = (1.0 - valid.transpose(1, 2)).unsqueeze(1) * _MASKED  # (batch, 1, 1, length)
        h = self.embed(x) + self.position
        for block in self.blocks:
            h = block(h, bias)
        current = self.norm(h[:, -1])
        return self.head(torch.cat([current, x[:, -1]], dim=-1)).squeeze(-1)


def input_scaling(sequences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std of the signed-log inputs over real (unpadded) positions."""
    width = sequences.shape[-1]
    flat = sequences.reshape(-1, width)
    flat = flat[flat[:, -1] > 0]
    logged = np.sign(flat) * np.log1p(np.abs(flat))
    mean = logged.mean(axis=0)
    std = logged.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # constant columns pass through centred
    return mean.astype(np.float32), std.astype(np.float32)
