"""The report pages built from records directly: the waterfall adds up, and a decision the
second stage took shows that stage's view."""

from __future__ import annotations

from pathlib import Path

import pytest

from explain.records import SequenceExplanation
from explain.reports.html import decision_page
from explain.reports.waterfall import waterfall_steps
from models.artifact_paths import default_artifact_dir
from models.artifacts import load_manifest
from service.settings import AUDIT_FILE
from tests.reports.conftest import stored_records


@pytest.mark.parametrize("shown", [0, 3, 10, 100])
def test_waterfall_steps_add_up_to_the_raw_score(data_dir: Path, shown: int) -> None:
    record = stored_records(data_dir / AUDIT_FILE)[0]
    explanation = record.explanation

    steps = waterfall_steps(explanation, shown)

    total = explanation.base_value + sum(value for _, value in steps)
    assert total == pytest.approx(explanation.raw_score, abs=1e-9)
    assert len(steps) == min(shown, len(explanation.attributions)) + (
        shown < len(explanation.attributions)
    )


def test_a_sequence_decision_shows_the_second_stage(data_dir: Path) -> None:
    record = stored_records(data_dir / AUDIT_FILE)[0]
    sequence = SequenceExplanation(
        method="occlusion",
        model_version="seq-test-1",
        fast_score=0.2,
        sequence_score=0.7,
        combination="sequence score",
        attributions=[
            {
                "transaction_id": "past-<1>",
                "timestamp": "2024-01-01T00:00:00Z",
                "amount": 10.0,
                "contribution": 0.5,
            },
            {
                "transaction_id": "past-2",
                "timestamp": "2023-12-31T00:00:00Z",
                "amount": 99.0,
                "contribution": -0.25,
            },
        ],
    )
    decided = record.model_copy(update={"stage": "sequence", "sequence": sequence})
    fast = decision_page(record, [], load_manifest(default_artifact_dir()))

    page = decision_page(decided, [], load_manifest(default_artifact_dir()))

    assert "Second stage" in page and "Second stage" not in fast
    assert "seq-test-1" in page and "past-&lt;1&gt;" in page
    assert page.count("<svg") == 2  # the waterfall and the sequence chart


def test_a_decision_of_another_model_says_its_checksum_is_elsewhere(data_dir: Path) -> None:
    record = stored_records(data_dir / AUDIT_FILE)[0]
    older = record.model_copy(update={"model_version": "fast-20230101-deadbeef"})
    manifest = load_manifest(default_artifact_dir())

    page = decision_page(older, [], manifest)

    assert "not the artifact served now" in page
    assert manifest.files["model.txt"] not in page
