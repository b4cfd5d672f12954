"""The challenger report end to end: a challenger chosen over HTTP on a real `riskscore
serve`, labelled payments scored, the shadow's rows waited for in the real SQLite store,
and the page's figures checked against the comparison recomputed from those rows."""

from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from explain.audit.sqlite_store import SQLiteAuditStore
from explain.reports.challenger_compare import Comparer, Comparison
from models.train.label_policy import LabelPolicy
from service.settings import AUDIT_FILE
from tests.reports.challenger_rows import shadowed_of
from tests.reports.history import batches, payloads
from tests.reports.test_challenger_report import check_page
from tests.service.test_model_promotion import ADMIN_KEY, COMPLIANCE_KEY, SCORING_KEY, _call, _serve
from tests.service.test_shadow_challenger import V2, _rows
from tests.service.test_shadow_challenger import model_root as model_root  # the fixture

LABEL_EVERY = 3  # two payments in three get their label back

pytestmark = pytest.mark.slow


def _expected(data_dir: Path, ids: list[str], labels: dict[str, bool]) -> Comparison:
    rows = {row.transaction_id: row for row in _rows(data_dir, ids)}
    with SQLiteAuditStore(data_dir / AUDIT_FILE) as store:
        records = store.get_many(ids)
    assert {row.model_version for row in rows.values()} == {V2}
    order = sorted(ids, key=lambda tid: (records[tid].transaction.epoch_ms, tid))
    comparer = Comparer(V2, LabelPolicy(datetime.now(UTC), timedelta(days=7)))
    comparer.add([shadowed_of(records[t], rows[t], labels.get(t)) for t in order])
    return comparer.result()


def test_the_report_compares_what_the_shadow_stored(model_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    transactions, truth = payloads()
    with _serve(model_root, data) as served:
        base = served.base
        status, listed = _call(f"{base}/models/{V2}/challenge", "POST", ADMIN_KEY)
        assert status == 200 and listed["challenger"]["version"] == V2, listed
        for batch in batches(transactions):
            answer = _call(f"{base}/score/batch", "POST", SCORING_KEY, {"transactions": batch})
            assert answer[0] == 200, answer
        ids = [tx["transaction_id"] for tx in transactions]
        sent = {tid: truth[tid] for i, tid in enumerate(ids) if i % LABEL_EVERY}
        for batch in batches([{"transaction_id": t, "is_fraud": f} for t, f in sent.items()]):
            assert _call(f"{base}/labels", "POST", SCORING_KEY, {"labels": batch})[0] == 200
        expected = _expected(data, ids, sent)  # waits for every shadow row
        request = urllib.request.Request(
            f"{base}/reports/challenger.html", headers={"X-API-Key": COMPLIANCE_KEY}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            page = response.read().decode()

    check_page(page, expected)
    # Every payment was scored by the challenger too, as the page (read from the store) says.
    assert re.search(rf"<th>decisions in the period</th><td[^>]*>{len(transactions):,}<", page)
    assert 0 < expected.measured_fraud < expected.labelled < expected.shadowed
    assert expected.champion.ap is not None and expected.challenger.ap is not None
    assert expected.disagreements  # another model: the scores differ
