"""The handbook's published baseline results, as data.

Source: *Reproducible Machine Learning for Credit Card Fraud Detection — Practical
Handbook* (Le Borgne, Siblini, Lebichot, Bontempi, 2021), chapters 5 and 7. These are
**test** figures: mean ± std over the 4 test folds (training weeks from 2018-08-15 back
to 2018-07-25). Validation-fold results are not directly comparable with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.metrics import MeanStd

BASELINE_PROTOCOL = "handbook-test"


@dataclass(frozen=True)
class Baseline:
    """One published model's test performance."""

    model: str
    auc: MeanStd
    ap: MeanStd
    cp_at_100: MeanStd

    def metric(self, name: str) -> MeanStd:
        """The summary of metric ``name`` ("auc", "ap" or "cp_at_100")."""
        value = getattr(self, name)
        if not isinstance(value, MeanStd):
            raise KeyError(name)
        return value


def _b(
    model: str, auc: tuple[float, float], ap: tuple[float, float], cp: tuple[float, float]
) -> Baseline:
    return Baseline(model, MeanStd(*auc), MeanStd(*ap), MeanStd(*cp))


HANDBOOK_BASELINES: tuple[Baseline, ...] = (
    _b("Decision tree", (0.797, 0.01), (0.579, 0.01), (0.284, 0.00)),
    _b("Logistic regression", (0.868, 0.02), (0.623, 0.02), (0.297, 0.01)),
    _b("Random forest", (0.870, 0.02), (0.678, 0.01), (0.299, 0.01)),
    _b("XGBoost", (0.869, 0.01), (0.687, 0.01), (0.303, 0.01)),
    _b("Neural net", (0.876, 0.01), (0.675, 0.01), (0.303, 0.02)),
    _b("CNN", (0.872, 0.01), (0.599, 0.01), (0.288, 0.01)),
    _b("LSTM", (0.876, 0.02), (0.665, 0.02), (0.297, 0.01)),
    _b("LSTM + attention", (0.874, 0.02), (0.667, 0.01), (0.295, 0.01)),
)
