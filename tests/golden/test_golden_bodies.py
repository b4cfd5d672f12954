"""Golden bodies: what the service answers today, pinned before its decision path is
rewritten for speed.

A fresh run of the fixed scenario (``tests/golden/scenario.py``: a simulated history, single
payments, errors, batches, labels, stored decisions, the Kafka decision message) must
give the bodies, status codes and ``Idempotent-Replayed`` headers of the golden files in
``tests/data/golden/``: the same keys at every level (null-valued ones included), the
same list lengths and order, strings, integers and booleans exactly, floats within
:data:`STRICT_REL` (with an absolute floor of :data:`STRICT_ABS`), except the sequence
stage's own numbers, within :data:`SEQUENCE_ABS` (ONNX Runtime's float32 results may move
slightly with the composition of a batch). Instants of receipt, latencies and timings
are checked for form and replaced by placeholders (:func:`scenario.normalise`).

When a comparison fails, the message names the golden file and the JSON path of the first
difference. Regenerate the files (``python -m tests.golden.regenerate``) only for a
deliberate, documented change of the output.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.golden import scenario

STRICT_REL = 1e-9
STRICT_ABS = 1e-12
SEQUENCE_ABS = 1e-5


# ------------------------------------------------------------------- comparison


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _floats_match(expected: float, actual: float, loose: bool) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    if math.isinf(expected) or math.isinf(actual):
        return expected == actual
    if loose:
        return abs(actual - expected) <= SEQUENCE_ABS
    return abs(actual - expected) <= max(STRICT_REL * abs(expected), STRICT_ABS)


def first_difference(
    expected: Any,
    actual: Any,
    path: str = "$",
    *,
    in_sequence: bool = False,
    loose: bool = False,
) -> str | None:
    """The first way ``actual`` differs from ``expected`` (decoded JSON), with its JSON
    path, or None when they match.

    Floats compare within the strict tolerance, except the sequence stage's own numbers:
    ``sequence_score``, the ``contribution`` of an earlier payment inside a ``sequence``
    section, and the ``score`` of an object whose ``stage`` is ``"sequence"``.
    """
    kind = _kind(expected)
    if kind != _kind(actual):
        return f"{path}: expected {kind} {expected!r}, got {_kind(actual)} {actual!r}"
    if kind == "object":
        missing = sorted(set(expected) - set(actual))
        if missing:
            return f"{path}: missing key(s) {missing}"
        extra = sorted(set(actual) - set(expected))
        if extra:
            return f"{path}: unexpected key(s) {extra}"
        decided_by_sequence = expected.get("stage") == "sequence"
        for key in sorted(expected):
            child_loose = (
                key == "sequence_score"
                or (key == "contribution" and in_sequence)
                or (key == "score" and decided_by_sequence)
            )
            difference = first_difference(
                expected[key],
                actual[key],
                f"{path}.{key}",
                in_sequence=in_sequence or key == "sequence",
                loose=child_loose,
            )
            if difference is not None:
                return difference
        return None
    if kind == "array":
        if len(expected) != len(actual):
            return f"{path}: expected {len(expected)} items, got {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            difference = first_difference(e, a, f"{path}[{i}]", in_sequence=in_sequence)
            if difference is not None:
                return difference
        return None
    if kind == "float":
        if not _floats_match(expected, actual, loose):
            tolerance = (
                f"abs {SEQUENCE_ABS:g}" if loose else f"rel {STRICT_REL:g}, abs {STRICT_ABS:g}"
            )
            return (
                f"{path}: expected {expected!r}, got {actual!r} "
                f"(differs by {abs(actual - expected):.3g}; tolerance {tolerance})"
            )
        return None
    if expected != actual:
        return f"{path}: expected {expected!r}, got {actual!r}"
    return None


# ------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One fresh run of the scenario, each step's output as its golden file would hold it."""
    data_dir = tmp_path_factory.mktemp("golden") / "var"
    outputs = asyncio.run(scenario.collect(data_dir))
    return {name: json.loads(scenario.dump(outputs[name])) for name in scenario.GOLDEN_FILES}


def _golden(name: str) -> Any:
    return json.loads(scenario.golden_path(name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", scenario.GOLDEN_FILES)
def test_the_service_answers_as_pinned(observed: dict[str, Any], name: str) -> None:
    difference = first_difference(_golden(name), observed[name])
    assert difference is None, (
        f"tests/data/golden/{name}.json: {difference}\n"
        "(regenerate with `python -m tests.golden.regenerate` only for a deliberate, "
        "documented change of the output)"
    )


def test_every_golden_file_belongs_to_the_scenario() -> None:
    on_disk = {p.stem for p in Path(scenario.GOLDEN_DIR).glob("*.json")}
    assert on_disk == set(scenario.GOLDEN_FILES)


def _answers(exchanges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["body"] for e in exchanges if e["status"] == 200]


def test_the_pinned_scenario_covers_every_kind_of_answer() -> None:
    """A regeneration must not quietly lose what the golden files are there to pin."""
    score = _golden("score")
    decided = {(b["action"], b["stage"], b["fallback_reason"]) for b in _answers(score)}
    assert {
        ("approve", "fast", None),
        ("review", "sequence", None),
        ("review", "fast", "budget"),
        ("decline", "fast", None),
        ("decline", "sequence", None),
    } <= decided
    assert any("shap" in b and "raw_score" in b and "base_value" in b for b in _answers(score))
    replayed = [e for e in score if e["idempotent_replayed"] == "true"]
    assert len(replayed) >= 4 and all(e["status"] == 200 for e in replayed)
    assert {e["status"] for e in _golden("errors")} == {400, 404, 405, 409, 413, 415, 422}
    batch = _golden("batch")[0]["body"]["results"]
    assert {r["error"]["type"] for r in batch if "error" in r} == {
        "validation_error",
        "idempotency_conflict",
    }
    labels = _golden("labels")
    outcomes = {b.get("outcome") for b in _answers(labels)}
    assert {"applied", "unchanged", "recorded"} <= outcomes
    assert 404 in {e["status"] for e in labels}
    records = _answers(_golden("decisions"))
    assert any((r.get("sequence") or {}).get("attributions") for r in records)
    assert any(r.get("fallback_reason") == "budget" for r in records)
    assert any(r["labels"] for r in records)
    kafka = [item for batch in _golden("kafka") for item in batch["results"]]
    assert any("record_error" in item for item in kafka)
    assert {item["payload"]["stage"] for item in kafka if "payload" in item} == {
        "fast",
        "sequence",
    }
    history = _golden("history")
    assert history["results_in_request_order"] is True
    assert any("sequence" in summary for summary in history["notable"].values())


def test_the_comparison_notices_each_kind_of_difference() -> None:
    golden = {
        "transaction_id": "t-1",
        "score": 0.25,
        "stage": "fast",
        "fallback_reason": None,
        "reasons": [{"code": "TX_AMOUNT", "contribution": -0.5, "value": 12.0}],
        "sequence": {"sequence_score": 0.5, "attributions": [{"contribution": 0.1}]},
    }

    def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        copy = json.loads(json.dumps(golden))
        target = copy
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return copy

    assert first_difference(golden, json.loads(json.dumps(golden))) is None
    # Floats: within the strict tolerance or not.
    assert first_difference(golden, changed(("score",), 0.25 * (1 + 1e-12))) is None
    assert first_difference(golden, changed(("score",), 0.2500001)) == (
        "$.score: expected 0.25, got 0.2500001 (differs by 1e-07; tolerance rel 1e-09, abs 1e-12)"
    )
    found = first_difference(golden, changed(("reasons", 0, "contribution"), -0.5000001))
    assert found is not None and found.startswith("$.reasons[0].contribution:")
    # Missing and extra keys, a null-valued key included.
    missing = {k: v for k, v in golden.items() if k != "fallback_reason"}
    assert first_difference(golden, missing) == "$: missing key(s) ['fallback_reason']"
    assert first_difference(golden, {**golden, "shap": {}}) == "$: unexpected key(s) ['shap']"
    nested = changed(("reasons", 0, "text"), "why")
    assert first_difference(golden, nested) == "$.reasons[0]: unexpected key(s) ['text']"
    # Types, lengths, strings.
    assert first_difference(golden, changed(("reasons", 0, "value"), 12)) == (
        "$.reasons[0].value: expected float 12.0, got integer 12"
    )
    assert first_difference(golden, changed(("reasons",), [])) == (
        "$.reasons: expected 1 items, got 0"
    )
    assert first_difference(golden, changed(("fallback_reason",), "budget")) == (
        "$.fallback_reason: expected null None, got string 'budget'"
    )
    # The sequence stage's own numbers get the looser tolerance, and only they.
    assert first_difference(golden, changed(("sequence", "sequence_score"), 0.500001)) is None
    assert first_difference(golden, changed(("sequence", "sequence_score"), 0.5001)) is not None
    shifted = changed(("sequence", "attributions", 0, "contribution"), 0.100001)
    assert first_difference(golden, shifted) is None
    by_sequence = {**golden, "stage": "sequence"}
    assert first_difference(by_sequence, {**by_sequence, "score": 0.250001}) is None
    assert first_difference(golden, {**golden, "score": 0.250001}) is not None


def test_normalising_checks_what_it_replaces() -> None:
    body = {
        "decided_at": "2026-11-23T14:36:38.814326Z",
        "latency_ms": 1.53,
        "timings_ms": {"features": 0.1, "model": 0.2},
        "labels": [{"received_at": "2026-11-23T14:36:39+00:00", "labelled_at": None}],
    }
    assert scenario.normalise(body) == {
        "decided_at": scenario.DECIDED_AT,
        "latency_ms": scenario.LATENCY,
        "timings_ms": {"features": scenario.TIMING, "model": scenario.TIMING},
        "labels": [{"received_at": scenario.RECEIVED_AT, "labelled_at": None}],
    }
    with pytest.raises(AssertionError, match=r"\$\.decided_at"):
        scenario.normalise({**body, "decided_at": "2026-11-23T15:36:38+01:00"})
    with pytest.raises(AssertionError, match=r"\$\.latency_ms"):
        scenario.normalise({**body, "latency_ms": -1.0})
    with pytest.raises(AssertionError, match=r"\$\.timings_ms\.model"):
        scenario.normalise({**body, "timings_ms": {"model": "fast"}})
