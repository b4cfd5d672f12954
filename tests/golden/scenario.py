"""The fixed scenario behind the golden-body tests, shared by the test and the generator.

One run of :func:`collect` starts the real service (shipped fast model, shipped sequence
stage's student under a pinned band and rule, :func:`pinned_stage`, SQLite audit store in
``data_dir``, no Kafka) behind a real aiohttp test client and
drives it, in this order, always the same way:

1. **history**: a simulated stream (:data:`SIMULATION`, fixed seed) but its last
   :data:`TAIL` payments, in time order, through ``POST /score/batch`` in chunks of
   :data:`MAX_BATCH` with a roomy deadline (every in-band payment is decided by the
   sequence stage, however loaded the machine), each chunk followed by ``POST /labels``
   for its frauds, so that the terminals' risk windows hold labels;
2. **score**: single ``POST /score`` requests: the stream's last :data:`TAIL` payments,
   then crafted payments (a sequence-stage review, a budget fallback, a fast decline, a
   sequence-stage decline), then idempotent replays;
3. **errors**: error bodies (409, 422, 400, 415, 413, 404, 405), none of which may change
   any state;
4. **batch**: ``POST /score/batch`` with valid, invalid, repeated, replayed and
   conflicting items;
5. **labels**: ``POST /labels`` outcomes, single and batch;
6. **decisions**: ``GET /decisions/{id}`` for fast, sequence-stage, fallback and
   labelled decisions;
7. **kafka**: what ``service.stream_bridge.ScorerBridge.score`` hands the Kafka producer.

Each step's output goes to the golden file of the same name (``tests/data/golden/``),
after :func:`normalise` replaced what legitimately differs from run to run (instants of
receipt, latencies, timings) by placeholders. Nothing here reads the wall clock into a
payload: the simulated history and the crafted payments lie in the past.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from features.data import frame_from_pandas
from features.schema import Transaction
from features.simulator import SimulationConfig, simulate
from service.app import WARM_START, create_app
from service.app_keys import SCORER
from service.scorer import Scorer
from service.settings import Settings
from service.stream_bridge import ScorerBridge
from streaming.codec import RecordError
from tests.pinned_stage import pinned_stage

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "golden"
GOLDEN_FILES = ("history", "score", "errors", "batch", "labels", "decisions", "kafka")

# 40 customers over 40 days: ~3,300 payments, every feature window (30 days and their
# 7-day label delay) filled, a few leaked cards and compromised terminals among them.
SIMULATION = SimulationConfig(customers=40, terminals=80, days=40, start=date(2024, 3, 1), seed=11)
ID_PREFIX = "g-"
MAX_BATCH = 250  # the service's max_batch_size, and the size of the history's chunks
TAIL = 12  # the stream's last payments, sent one at a time
SAMPLE_EVERY = 300  # history results whose whole body is pinned (by position)

REPLAYED = "Idempotent-Replayed"
# A roomy budget: an in-band payment is decided by the sequence stage on any machine.
ROOMY = {"X-Deadline-Ms": "60000"}
# No time at all: the 10 ms reserve alone exceeds it, so the stage is never admitted.
NO_TIME = {"X-Deadline-Ms": "1"}

# The simulated stream ends on 2024-04-09 at 21:42:32; the crafted payments follow it.
LAST_DAY = "2024-04-09"
SEQUENCE_TAIL_ID = "g-3251"  # a payment of the tail inside the band: the sequence decides
HISTORY_SEQUENCE_ID = "g-3099"  # decided by the sequence stage inside a history batch


def payment(
    transaction_id: str, time: str, customer: str, terminal: str, amount: float, **extra: Any
) -> dict[str, Any]:
    """A crafted payment on the stream's last day (``time`` is HH:MM:SS, UTC)."""
    return {
        "transaction_id": transaction_id,
        "timestamp": f"{LAST_DAY}T{time}+00:00",
        "customer_id": customer,
        "terminal_id": terminal,
        "amount": amount,
        **extra,
    }


# A known customer paying several times their usual amount at a busy terminal: the fast
# score is ambiguous, the sequence stage reviews it.
SEQUENCE_REVIEW = payment("gx-sequence-review", "22:30:00", "5", "3", 120.0)
# Ambiguous too, sent with no time for the second stage: the fast score decides (review).
BUDGET_FALLBACK = payment("gx-budget-fallback", "22:34:00", "20", "3", 90.0)
# The compromised card of the stream (customer 37) at a large amount: clearly fraud.
FAST_DECLINE = payment("gx-fast-decline", "22:40:00", "37", "5", 400.0)
# A customer never seen before paying a large amount: sent with its local offset and a
# currency (both kept in the record as received).
SEQUENCE_DECLINE = {
    "transaction_id": "gx-sequence-decline",
    "timestamp": "2024-04-10T00:45:00+02:00",
    "customer_id": "gx-new-customer",
    "terminal_id": "1",
    "amount": 950.0,
    "currency": "EUR",
}
# For the mixed batch.
BATCH_APPROVE = payment("gb-approve", "23:00:00", "2", "32", 45.0)
BATCH_REPEATED = payment("gb-repeated", "23:01:00", "4", "6", 30.0)
BATCH_SEQUENCE = payment("gb-sequence", "23:02:00", "20", "3", 130.0)
BATCH_FULL = payment("gb-explain-full", "23:05:00", "12", "45", 58.0)
# For the Kafka bridge, scored with the default budget: out of the band, fast path only.
KAFKA_APPROVE = payment("gk-approve", "23:20:00", "7", "77", 38.0)
KAFKA_DECLINE = payment("gk-decline", "23:21:00", "37", "5", 420.0)
KAFKA_LATER = payment("gk-later", "23:25:00", "25", "78", 26.5)


def settings(data_dir: Path) -> Settings:
    """The service's settings for the scenario.

    The defaults that decide outputs are spelled out, so that a ``RISKSCORE_*`` variable
    in the environment cannot change what is pinned.
    """
    return Settings.of(
        data_dir=data_dir,
        kafka="off",
        max_batch_size=MAX_BATCH,
        max_body_bytes=1_048_576,
        model_dir=None,
        sequence="on",
        sequence_model_dir=pinned_stage(data_dir.parent / "pinned-sequence-stage"),
        sequence_budget_ms=50.0,
        sequence_reserve_ms=10.0,
        sequence_fault_delay_ms=0.0,
        sequence_fault_error_rate=0.0,
        reason_count=3,
        explainer="fast",
        predictor="compiled",
        api_keys=(),
        compliance_api_keys=(),
        warm_start=True,
    )


def stream() -> tuple[list[dict[str, Any]], set[str]]:
    """The simulated stream as ``/score`` bodies in time order, and its frauds' ids."""
    frame = simulate(SIMULATION)
    payloads = list(frame_from_pandas(frame).payloads(ID_PREFIX))
    frauds = {f"{ID_PREFIX}{i}" for i in frame.loc[frame["TX_FRAUD"] == 1, "TRANSACTION_ID"]}
    return payloads, frauds


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ----------------------------------------------------------------------- exchanges


class Recorder:
    """Sends requests and records each exchange as the golden files hold it."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def send(
        self,
        name: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        shown: Any = None,
    ) -> dict[str, Any]:
        """One request: ``body`` is sent as JSON, or ``raw`` as is (JSON content type
        unless ``headers`` says otherwise); ``shown`` replaces the body in the record."""
        given = dict(headers or {})
        sent = dict(given)
        data: bytes | str | None = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        # As a stream: aiohttp warns about large bodies given as bytes (and the tests
        # turn warnings into errors); the length is still sent.
        sent_body = None
        if data is not None:
            sent_body = io.BytesIO(data.encode() if isinstance(data, str) else data)
        response = await self.client.request(method, path, data=sent_body, headers=sent)
        text = await response.text()
        request: dict[str, Any] = {"method": method, "path": path, "headers": given}
        if shown is not None:
            request["body"] = shown
        elif raw is not None:
            request["body"] = raw if isinstance(raw, str) else raw.decode("latin-1")
        elif body is not None:
            request["body"] = body
        return {
            "name": name,
            "request": request,
            "status": response.status,
            "content_type": response.content_type,
            "idempotent_replayed": response.headers.get(REPLAYED),
            "body": json.loads(text),
        }


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error {result['error']['type']}"
    reason = result["fallback_reason"] or "-"
    return f"{result['action']} {result['stage']} fallback={result['fallback']} {reason}"


# ------------------------------------------------------------------------ the steps


async def run_history(
    rec: Recorder, history: list[dict[str, Any]], frauds: set[str]
) -> dict[str, Any]:
    chunk_log = []
    results: list[dict[str, Any]] = []
    label_outcomes: Counter[str] = Counter()
    for chunk in chunks(history, MAX_BATCH):
        scored = await rec.send(
            "history chunk", "POST", "/score/batch", {"transactions": chunk}, headers=ROOMY
        )
        results.extend(scored["body"]["results"])
        entry = {"size": len(chunk), "status": scored["status"]}
        labels = [{"transaction_id": p["transaction_id"], "is_fraud": True} for p in chunk]
        labels = [label for label in labels if label["transaction_id"] in frauds]
        if labels:
            labelled = await rec.send("history labels", "POST", "/labels", {"labels": labels})
            entry["labels"] = len(labels)
            entry["labels_status"] = labelled["status"]
            label_outcomes.update(r.get("outcome", "error") for r in labelled["body"]["results"])
        chunk_log.append(entry)
    ids = [p["transaction_id"] for p in history]
    returned = [r.get("transaction_id") for r in results]
    return {
        "payments": len(history),
        "frauds": len(frauds & set(ids)),
        "chunks": chunk_log,
        "results_in_request_order": returned == ids,
        "decisions": dict(Counter(_summary(r) for r in results)),
        "label_outcomes": dict(label_outcomes),
        # Every payment the fast path did not simply approve: id -> what was decided.
        "notable": {
            r["transaction_id"]: _summary(r)
            for r in results
            if _summary(r) != "approve fast fallback=False -"
        },
        "samples": {str(i): results[i] for i in range(0, len(results), SAMPLE_EVERY)},
        "sequence_sample": next(r for r in results if r["transaction_id"] == HISTORY_SEQUENCE_ID),
    }


async def run_scores(rec: Recorder, tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, p in enumerate(tail):
        path = "/score?explain=full" if i == 0 else "/score"
        out.append(
            await rec.send(f"stream tail {p['transaction_id']}", "POST", path, p, headers=ROOMY)
        )
    crafted = [
        (
            "sequence stage review, explained in full by header",
            "/score",
            SEQUENCE_REVIEW,
            {**ROOMY, "X-Explain": "full"},
        ),
        ("in band with no time left: budget fallback", "/score", BUDGET_FALLBACK, NO_TIME),
        ("fast decline", "/score", FAST_DECLINE, ROOMY),
        ("sequence stage decline, local offset and currency", "/score", SEQUENCE_DECLINE, ROOMY),
    ]
    for name, path, p, headers in crafted:
        out.append(await rec.send(name, "POST", path, p, headers=headers))
    sequence_tail = next(p for p in tail if p["transaction_id"] == SEQUENCE_TAIL_ID)
    replays = [
        ("replay of a sequence-stage decision", "/score", sequence_tail, ROOMY),
        ("replay of the budget fallback, now with time", "/score", BUDGET_FALLBACK, ROOMY),
        ("replay of the fast decline, explained in full", "/score?explain=full", FAST_DECLINE, {}),
        ("replay of a stream payment, default budget", "/score", tail[-1], {}),
    ]
    for name, path, p, headers in replays:
        out.append(await rec.send(name, "POST", path, p, headers=headers))
    # The same content, keys in another order and other spacing: still the same payment.
    reordered = json.dumps(dict(reversed(list(SEQUENCE_REVIEW.items()))), indent=1)
    out.append(
        await rec.send("replay with keys reordered", "POST", "/score", raw=reordered, headers=ROOMY)
    )
    return out


async def run_errors(rec: Recorder, tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Each made from a payment already decided; what makes it wrong is its only change.
    decided = tail[-1]

    def changed(**changes: Any) -> dict[str, Any]:
        return {**decided, **changes}

    def without(key: str) -> dict[str, Any]:
        return {k: v for k, v in decided.items() if k != key}

    score: list[tuple[str, Any]] = [
        ("409 same id, other body", changed(amount=decided["amount"] + 1.0)),
        ("422 missing field", without("customer_id")),
        ("422 unknown field", changed(merchant="m-1")),
        ("422 timestamp not ISO 8601", changed(timestamp="yesterday")),
        ("422 timestamp not a string", changed(timestamp=1712700000)),
        ("422 timestamp far in the future", changed(timestamp="2999-01-01T00:00:00+00:00")),
        ("422 negative amount", changed(amount=-5.0)),
        ("422 zero amount", changed(amount=0)),
        ("422 amount as a string", changed(amount="40.07")),
        ("422 amount as a boolean", changed(amount=True)),
        ("422 amount over the maximum", changed(amount=1e7)),
        ("422 id with a control character", changed(transaction_id="g-\u0007bell")),
        ("422 id '..'", changed(transaction_id="..")),
        ("422 empty customer id", changed(customer_id="")),
        ("422 lowercase currency", changed(currency="eur")),
        ("422 several bad fields", {**without("customer_id"), "amount": -1, "extra": 1}),
        ("422 body is a list", [decided]),
        ("422 body is null", None),
    ]
    out = []
    for name, body in score:
        raw = "null" if body is None else None
        out.append(await rec.send(name, "POST", "/score", body, raw=raw))
    batch = [
        ("422 empty batch", {"transactions": []}),
        ("422 batch with an unknown field", {"transactions": [decided], "extra": 1}),
        ("422 batch transactions not a list", {"transactions": "all of them"}),
        ("422 batch body not an object", [decided]),
    ]
    for name, body in batch:
        out.append(await rec.send(name, "POST", "/score/batch", body))
    labels = [
        ("422 label without is_fraud", {"transaction_id": decided["transaction_id"]}),
        ("422 label is_fraud as a string", {**_label(decided), "is_fraud": "yes"}),
        ("422 label with an unknown field", {**_label(decided), "reason": "chargeback"}),
        ("422 label labelled_at without offset", {**_label(decided), "labelled_at": "2024-04-12"}),
        ("422 empty label batch", {"labels": []}),
    ]
    for name, body in labels:
        out.append(await rec.send(name, "POST", "/labels", body))
    invalid = '{"transaction_id": "g-1", '
    for path in ("/score", "/score/batch", "/labels"):
        out.append(await rec.send(f"400 invalid JSON on {path}", "POST", path, raw=invalid))
    out.append(await rec.send("400 body not UTF-8", "POST", "/score", raw=b'{"a": "\xff\xfe"}'))
    out.append(
        await rec.send(
            "415 text/plain",
            "POST",
            "/score",
            raw=json.dumps(decided),
            headers={"Content-Type": "text/plain"},
        )
    )
    out.append(
        await rec.send(
            "415 form-encoded labels",
            "POST",
            "/labels",
            raw="transaction_id=g-1&is_fraud=true",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    too_many = MAX_BATCH + 1
    out.append(
        await rec.send(
            "413 batch over max_batch_size",
            "POST",
            "/score/batch",
            {"transactions": [{}] * too_many},
            shown=f"{{'transactions': [{{}}] * {too_many}}}",
        )
    )
    out.append(
        await rec.send(
            "413 label batch over max_batch_size",
            "POST",
            "/labels",
            {"labels": [{}] * too_many},
            shown=f"{{'labels': [{{}}] * {too_many}}}",
        )
    )
    big = json.dumps({"transactions": [decided], "padding": "x" * 1_100_000})
    out.append(
        await rec.send(
            "413 body over max_body_bytes",
            "POST",
            "/score/batch",
            raw=big,
            shown=f"<{len(big)} bytes>",
        )
    )
    out.append(await rec.send("404 unknown decision", "GET", "/decisions/gx-never-decided"))
    out.append(await rec.send("404 unknown endpoint", "GET", "/scores"))
    out.append(await rec.send("405 GET /score", "GET", "/score"))
    out.append(await rec.send("422 explain=verbose", "POST", "/score?explain=verbose", decided))
    out.append(
        await rec.send(
            "422 X-Explain header not known",
            "POST",
            "/score",
            decided,
            headers={"X-Explain": "everything"},
        )
    )
    out.append(
        await rec.send(
            "422 explain=verbose on a batch",
            "POST",
            "/score/batch?explain=verbose",
            {"transactions": [decided]},
        )
    )
    for value in ("0", "-5", "abc", "nan", "inf", "60001", "1e9"):
        out.append(
            await rec.send(
                f"422 X-Deadline-Ms {value}",
                "POST",
                "/score",
                decided,
                headers={"X-Deadline-Ms": value},
            )
        )
    return out


def _label(p: dict[str, Any], is_fraud: bool = True, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": p["transaction_id"], "is_fraud": is_fraud, **extra}


async def run_batch(rec: Recorder, tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mixed = [
        BATCH_APPROVE,
        {**payment("gb-negative", "23:01:30", "3", "7", 12.0), "amount": -12.0},
        BATCH_REPEATED,
        BATCH_REPEATED,  # the same id again, same body: shares the first one's decision
        tail[-1],  # decided before: its recorded decision
        {**tail[-2], "amount": tail[-2]["amount"] + 0.5},  # decided before, other body
        BATCH_SEQUENCE,
        {**BATCH_REPEATED, "amount": 31.0},  # the same id again, other body
        42,
        {"transaction_id": "gb-incomplete"},
    ]
    out = [
        await rec.send(
            "mixed batch", "POST", "/score/batch", {"transactions": mixed}, headers=ROOMY
        )
    ]
    out.append(
        await rec.send(
            "batch explained in full",
            "POST",
            "/score/batch?explain=full",
            {"transactions": [BATCH_FULL, SEQUENCE_REVIEW]},
            headers=ROOMY,
        )
    )
    out.append(
        await rec.send(
            "batch of invalid items only",
            "POST",
            "/score/batch",
            {"transactions": [{}, {"transaction_id": 7}]},
        )
    )
    return out


async def run_labels(rec: Recorder, tail: list[dict[str, Any]], first: str) -> list[dict[str, Any]]:
    sequence_tail = next(p for p in tail if p["transaction_id"] == SEQUENCE_TAIL_ID)
    singles = [
        ("applied: fraud on a recent payment", _label(sequence_tail)),
        ("unchanged: the same label again", _label(sequence_tail)),
        (
            "applied: with labelled_at",
            _label(SEQUENCE_REVIEW, labelled_at="2024-04-12T09:00:00+00:00"),
        ),
        (
            "the verdict reversed later",
            _label(sequence_tail, False, labelled_at="2024-04-20T10:30:00+02:00"),
        ),
        ("recorded: too old for any feature window", {"transaction_id": first, "is_fraud": True}),
        ("404 unknown transaction", {"transaction_id": "gx-never-decided", "is_fraud": True}),
    ]
    out = [await rec.send(name, "POST", "/labels", body) for name, body in singles]
    batch = [
        _label(BUDGET_FALLBACK, False),
        {"transaction_id": "gx-never-decided", "is_fraud": False},
        {"transaction_id": 5, "is_fraud": True},
        _label(sequence_tail, False, labelled_at="2024-04-20T10:30:00+02:00"),
        _label(FAST_DECLINE, labelled_at="2024-04-11T08:00:00Z"),
        {"transaction_id": f"{ID_PREFIX}1", "is_fraud": False},
    ]
    out.append(await rec.send("label batch", "POST", "/labels", {"labels": batch}))
    return out


async def run_decisions(
    rec: Recorder, tail: list[dict[str, Any]], first: str
) -> list[dict[str, Any]]:
    wanted = [
        ("fast approve (explained in full when scored)", tail[0]["transaction_id"]),
        ("sequence stage, with two labels", SEQUENCE_TAIL_ID),
        ("sequence stage review, labelled with labelled_at", SEQUENCE_REVIEW["transaction_id"]),
        ("budget fallback, labelled genuine", BUDGET_FALLBACK["transaction_id"]),
        ("fast decline, labelled fraud", FAST_DECLINE["transaction_id"]),
        ("sequence stage decline, local offset and currency", SEQUENCE_DECLINE["transaction_id"]),
        ("sequence stage inside a batch", BATCH_SEQUENCE["transaction_id"]),
        ("sequence stage inside a history batch", HISTORY_SEQUENCE_ID),
        ("first payment of the history, label recorded", first),
    ]
    return [await rec.send(name, "GET", f"/decisions/{tid}") for name, tid in wanted]


async def run_kafka(scorer: Scorer, tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bridge = ScorerBridge(scorer, asyncio.get_running_loop())
    sequence_tail = next(p for p in tail if p["transaction_id"] == SEQUENCE_TAIL_ID)
    batches = [
        (
            "a polled batch",
            [
                KAFKA_APPROVE,
                KAFKA_DECLINE,
                sequence_tail,  # re-delivered: the recorded decision
                SEQUENCE_DECLINE,  # re-delivered
                {**tail[-3], "amount": tail[-3]["amount"] * 2},  # a reused id: dead letter
                KAFKA_APPROVE,  # twice in one batch
            ],
        ),
        ("a re-delivered budget fallback", [BUDGET_FALLBACK]),
        ("one more payment", [KAFKA_LATER]),
    ]
    out = []
    for name, payloads in batches:
        txs = [Transaction.model_validate(p) for p in payloads]
        results = await asyncio.to_thread(bridge.score, txs)
        items: list[dict[str, Any]] = []
        for p, result in zip(payloads, results, strict=True):
            if isinstance(result, RecordError):
                items.append(
                    {
                        "sent": p["transaction_id"],
                        "record_error": {"type": result.type, "message": result.message},
                    }
                )
            else:
                items.append(
                    {
                        "sent": p["transaction_id"],
                        "key": result.transaction_id,
                        "payload": json.loads(result.payload),
                    }
                )
        out.append({"name": name, "results": items})
    return out


async def collect(data_dir: Path) -> dict[str, Any]:
    """Run the whole scenario on a fresh audit store in ``data_dir``; the normalised
    output of each step, keyed by golden file name."""
    payloads, frauds = stream()
    history, tail = payloads[:-TAIL], payloads[-TAIL:]
    first_crafted = datetime.fromisoformat(SEQUENCE_REVIEW["timestamp"])
    last_streamed = datetime.fromisoformat(tail[-1]["timestamp"])
    assert last_streamed < first_crafted - timedelta(minutes=30), "the stream changed"
    app = create_app(settings(data_dir))
    async with TestClient(TestServer(app)) as client:
        await app[WARM_START]
        rec = Recorder(client)
        observed: dict[str, Any] = {"history": await run_history(rec, history, frauds)}
        observed["score"] = await run_scores(rec, tail)
        observed["errors"] = await run_errors(rec, tail)
        observed["batch"] = await run_batch(rec, tail)
        first = history[0]["transaction_id"]
        observed["labels"] = await run_labels(rec, tail, first)
        observed["decisions"] = await run_decisions(rec, tail, first)
        observed["kafka"] = await run_kafka(app[SCORER], tail)
    assert tuple(observed) == GOLDEN_FILES
    return normalise(observed)


# ---------------------------------------------------------------------- normalising

DECIDED_AT = "<decided_at>"
RECEIVED_AT = "<received_at>"
LATENCY = "<latency_ms>"
TIMING = "<ms>"
_UTC_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$")


def normalise(value: Any, path: str = "$") -> Any:
    """``value`` with run-dependent values replaced by placeholders, once checked.

    ``decided_at`` and ``received_at`` must be ISO 8601 UTC instants, ``latency_ms`` a
    number >= 0, ``timings_ms`` an object of numbers >= 0 (its keys are kept).
    """
    if isinstance(value, list):
        return [normalise(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        here = f"{path}.{key}"
        if key == "decided_at":
            _check_instant(item, here)
            out[key] = DECIDED_AT
        elif key == "received_at":
            _check_instant(item, here)
            out[key] = RECEIVED_AT
        elif key == "latency_ms":
            _check_duration(item, here)
            out[key] = LATENCY
        elif key == "timings_ms":
            assert isinstance(item, dict), f"{here}: expected an object, got {item!r}"
            for stage, ms in item.items():
                _check_duration(ms, f"{here}.{stage}")
            out[key] = dict.fromkeys(item, TIMING)
        else:
            out[key] = normalise(item, here)
    return out


def _check_instant(value: Any, path: str) -> None:
    assert isinstance(value, str) and _UTC_INSTANT.match(value), (
        f"{path}: expected an ISO 8601 UTC instant, got {value!r}"
    )
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), f"{path}: not UTC: {value!r}"


def _check_duration(value: Any, path: str) -> None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    assert is_number and math.isfinite(value) and value >= 0, (
        f"{path}: expected milliseconds >= 0, got {value!r}"
    )


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def dump(value: Any) -> str:
    """The golden files' format: readable, stable, one trailing newline."""
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
