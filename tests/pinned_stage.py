"""The shipped sequence stage under a pinned band and rule, for tests that need the second
stage to decide a good share of payments whatever band the shipped policy chose."""

from __future__ import annotations

from pathlib import Path

from models.band_override import band_widened_copy

# The band and rule pinned around the shipped student (an earlier build's policy, served
# as sigmoid, without a quantile map; its weights were fitted to an earlier student's
# logits, and with the rebuilt one the golden scenario still reaches every kind of answer,
# which tests/golden checks). The golden bodies pin what the decision path answers;
# refitting the policy (``python -m models.train.refit_cascade``) is a model change that
# would otherwise move which crafted payments reach the second stage.
PINNED_BAND = {"low": 0.002, "high": 0.9}
PINNED_COMBINATION = {
    "intercept": -1.2931374603432633,
    "fast_weight": 1.1165372572695043,
    "sequence_weight": 0.6275669624699767,
}


def pinned_stage(target: Path) -> Path:
    """A copy of the shipped sequence stage with :data:`PINNED_BAND` and its rule.

    The manifest does not checksum itself, so editing it keeps the ONNX files verified.
    """
    return band_widened_copy(target, **PINNED_BAND, combination=PINNED_COMBINATION)
