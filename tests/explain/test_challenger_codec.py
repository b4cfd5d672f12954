"""A challenger row's compact record: LightGBM's exact TreeSHAP back bit for bit, and the
text a row read back gives is the very text the shadow wrote as JSON before."""

from __future__ import annotations

import numpy as np

from explain.audit import challenger_codec
from explain.reasons import ReasonCoder
from models.artifact_paths import default_artifact_dir
from models.fast import FastModel


def test_pred_contrib_reads_back_bit_for_bit_and_the_text_is_unchanged() -> None:
    model = FastModel.load(default_artifact_dir())
    k = len(model.feature_names)
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 3.0, size=(64, k))
    contributions = model.booster.predict(x, pred_contrib=True)
    raw = model.predict_raw(x)
    coder = ReasonCoder(model.feature_names, method="treeshap-lightgbm")
    reasons = coder.code_many(x, contributions)
    for i in range(len(x)):
        shap = contributions[i]
        blob = challenger_codec.encode_compact(
            coder.schema.method,
            float(shap[k]),
            float(raw[i]),
            shap[:k],
            reasons[i].indices,
            reasons[i].value_texts or (),
        )
        record = challenger_codec.decode(blob)
        assert challenger_codec.contributions_of(record).tobytes() == shap[:k].tobytes()
        assert len(blob) < 20 * k  # JSON: ~3.3 KB for 24 features

        row = ("tx", "v2", 1, 0.5, "review", 0.3, 0.6, blob, None, 2)
        score = challenger_codec.to_score(row, x[i], coder.schema)
        assert score.reasons_json == reasons[i].json.decode()  # as the shadow wrote it
        assert score.explanation() == coder.explanation(
            coder.schema.method, x[i], shap, float(raw[i])
        )
        parsed = score.explanation()
        read = np.array([a["contribution"] for a in parsed.attributions] + [parsed.base_value])
        assert read.tobytes() == shap.tobytes()
