"""The CI-sized API conformance run: schemathesis (every check; see fuzz/hooks.py for the
one narrowed rule by rule) against a throwaway ``riskscore serve``. ``make fuzz`` runs the
same with ≥ 10,000 cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.api_routes import ROUTES
from tests.service.fuzz.harness import CI_EXAMPLES, run_schemathesis, throwaway_service

pytestmark = pytest.mark.slow


def test_the_api_keeps_its_schema_under_generated_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with throwaway_service(data) as service:
        figures = run_schemathesis(service, CI_EXAMPLES, tmp_path, seed=20261207, quick=True)
    report = (tmp_path / "schemathesis.out").read_text()
    assert figures.errors == [], report
    assert figures.failures == [], report
    assert figures.operations_tested == len(ROUTES), report
    assert figures.cases >= 1000, figures.summary()
