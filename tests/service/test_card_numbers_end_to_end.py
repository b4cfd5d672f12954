"""Card numbers through every path of a real `riskscore serve` with its embedded broker,
under ``refuse`` and ``tokenise``: none reaches the audit file (its raw bytes, WAL
included), the log, the topics riskscore writes, the exports or the report pages.

Paths: HTTP /score, /score/batch, /labels (single and batch), lookups by id and by
filter; Kafka transactions, labels and malformed records (invalid JSON, an invalid
transaction). The transactions and labels topics themselves hold what the test sent: they
are the client's, and are not read for the check.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from features.card_numbers import card_numbers_in
from tests.service.test_serve_process import STARTUP_TIMEOUT_S, _free_port, _serving, _stop

KEY = "k" * 40
# One card per path, each written as clients do (plain, spaced, dashed), several networks.
CARDS = {
    "score.transaction_id": "4111111111111111",  # Visa
    "score.customer_id": "5500 0000 0000 0004",  # Mastercard
    "score.terminal_id": "3782-822463-10005",  # American Express
    "batch.customer_id": "6011111111111117",  # Discover
    "batch.transaction_id": "3530111333300000",  # JCB
    "kafka.transaction_id": "4012888888881881",  # Visa
    "kafka.customer_id": "5105105105105100",  # Mastercard
    "kafka.malformed": "6221260000000000",  # UnionPay / Discover co-brand
    "kafka.invalid": "30569309025904",  # Diners Club
}


def _digits(card: str) -> str:
    return card.replace(" ", "").replace("-", "")


def _call(method: str, url: str, body: object | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _tx(transaction_id: str, customer_id: str = "c-1", terminal_id: str = "t-1") -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "timestamp": "2025-06-02T14:03:27Z",
        "customer_id": customer_id,
        "terminal_id": terminal_id,
        "amount": 42.0,
    }


def _topic(servers: str, topic: str, expected: int) -> list[Any]:
    """Every record of ``topic`` once ``expected`` have arrived (or the start-up timeout)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=servers, auto_offset_reset="earliest", group_id=None
    )
    records: list[Any] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    return records


def _record_bytes(record: Any) -> bytes:
    parts = [record.key or b"", record.value or b""]
    for name, value in record.headers or []:
        parts += [name.encode(), value or b""]
    return b"\n".join(parts)


def _assert_no_card(where: str, blob: bytes, any_card: bool = True) -> None:
    """None of the test's cards in ``blob``; with ``any_card``, nothing the detector takes
    for a card either (not for pages: the numbers of their charts' SVG paths, spaced in
    groups of four, pass Luhn one time in ten)."""
    text = blob.decode("latin-1")
    for card in CARDS.values():
        assert _digits(card) not in text and card not in text, f"a card number in {where}"
    if not any_card:
        return
    # The fractions of decimal numbers (scores, attributions) are no ids: left out.
    text = re.sub(r"(?<=[0-9])\.[0-9]+", ".", text)
    found = [text[max(0, m.start() - 30) : m.end() + 10] for m in card_numbers_in(text)]
    assert not found, f"a card number in {where}: {found}"


@pytest.mark.parametrize("policy", ["refuse", "tokenise"])
def test_no_card_number_is_kept_anywhere(tmp_path: Path, policy: str) -> None:
    kafka_port = _free_port()
    servers = f"127.0.0.1:{kafka_port}"
    env = {
        "RISKSCORE_PAN_POLICY": policy,
        "RISKSCORE_PAN_HMAC_KEY": KEY,
        "RISKSCORE_LOG_FORMAT": "json",
        "RISKSCORE_LOG_LEVEL": "DEBUG",
    }
    data_dir = tmp_path / "var"
    refuse = policy == "refuse"
    with _serving(data_dir, kafka_port, env) as (base, process):
        answers: list[tuple[int, dict[str, str], bytes]] = []

        # HTTP, one payment: each id field in turn holds a card number.
        for field in ("transaction_id", "customer_id", "terminal_id"):
            ids = {"transaction_id": f"h-{field}", "customer_id": "c-1", "terminal_id": "t-1"}
            ids[field] = CARDS[f"score.{field}"]
            answer = _call("POST", f"{base}/score", _tx(**ids))
            answers.append(answer)
            if refuse:
                assert answer[0] == 422
                error = json.loads(answer[2])["error"]
                assert [f["field"] for f in error["fields"]] == [field]
                assert "send a token" in error["fields"][0]["message"]
            else:
                assert answer[0] == 200, answer
                assert answer[1]["Card-Number-Tokenised"] == field
        # The same card (spaced or not) is the same customer: its velocity adds up.
        visa_customer = CARDS["score.customer_id"]
        again = _call("POST", f"{base}/score", _tx("h-again", _digits(visa_customer)))
        answers.append(again)

        # HTTP, a batch: a good item beside items holding cards.
        batch = {
            "transactions": [
                _tx("b-ok"),
                _tx("b-1", CARDS["batch.customer_id"]),
                _tx(CARDS["batch.transaction_id"]),
            ]
        }
        answer = _call("POST", f"{base}/score/batch", batch)
        answers.append(answer)
        assert answer[0] == 200
        results = json.loads(answer[2])["results"]
        if refuse:
            assert [r.get("error", {}).get("type") for r in results] == [
                None,
                "validation_error",
                "validation_error",
            ]
        else:
            assert all("error" not in r for r in results)
            assert answer[1]["Card-Number-Tokenised"] == (
                "transactions.1.customer_id, transactions.2.transaction_id"
            )

        # Labels, single and batch, for the payment whose id is a card.
        visa_tx = CARDS["score.transaction_id"]
        answers.append(
            _call("POST", f"{base}/labels", {"transaction_id": visa_tx, "is_fraud": True})
        )
        label_batch = {"labels": [{"transaction_id": visa_tx, "is_fraud": False}]}
        answers.append(_call("POST", f"{base}/labels", label_batch))
        if refuse:
            assert answers[-2][0] == 422
        else:
            assert answers[-2][0] == 200, answers[-2]
            assert json.loads(answers[-2][2])["outcome"] in ("applied", "recorded")

        # Lookups by id (path) and by filter (query), pages and exports.
        quoted = urllib.parse.quote(visa_customer)
        lookups = [
            f"/decisions/{urllib.parse.quote(visa_tx)}",
            f"/decisions?customer_id={quoted}",
            f"/reports/decisions/{urllib.parse.quote(visa_tx)}.html",
            f"/reports/decisions.csv?customer_id={quoted}",
            f"/reports/decisions.jsonl?customer_id={quoted}",
            f"/reports/decisions.html?customer_id={quoted}",
            f"/reports/summary.html?customer_id={quoted}",
        ]
        for path in lookups:
            answer = _call("GET", base + path)
            answers.append(answer)
            assert answer[0] == (422 if refuse else 200), (path, answer)
        if not refuse:
            found = json.loads(answers[-6][2])["decisions"]
            assert len(found) == 2  # the card, spaced and plain: one token, one customer
            assert json.loads(answers[-7][2])["labels"]

        # Kafka: payments with a card as id or key, a label, a malformed record, an
        # invalid transaction.
        producer = KafkaProducer(bootstrap_servers=servers, acks="all")
        kafka_tx = CARDS["kafka.transaction_id"]
        kafka_customer = CARDS["kafka.customer_id"]
        sent = [
            (kafka_customer, _tx("k-1", kafka_customer)),
            ("c-2", _tx(kafka_tx, "c-2")),
        ]
        for key, value in sent:
            producer.send("transactions", key=key.encode(), value=json.dumps(value).encode())
        malformed = f'{{"transaction_id": "{CARDS["kafka.malformed"]}", "amount": '
        producer.send("transactions", key=b"c-3", value=malformed.encode())
        invalid = {**_tx(CARDS["kafka.invalid"]), "amount": -1}
        producer.send(
            "transactions",
            key=b"c-4",
            value=json.dumps(invalid).encode(),
            headers=[("card", CARDS["kafka.invalid"].encode())],
        )
        producer.flush()
        decided = 0 if refuse else 2
        decisions = _topic(servers, "decisions", decided)
        assert len(decisions) == decided
        if not refuse:  # each decision says which of its payment's ids became tokens
            noted = {dict(d.headers)["card_number.tokenised"] for d in decisions}
            assert noted == {b"customer_id", b"transaction_id"}
        # The label once its payment is decided (else it would wait in no order).
        label = {"transaction_id": kafka_tx, "is_fraud": True}
        producer.send("labels", key=kafka_tx.encode(), value=json.dumps(label).encode())
        producer.flush()
        producer.close()
        # Dead letters: the malformed and the invalid record, and under refuse the two
        # payments and the label holding cards.
        dead = 5 if refuse else 2
        letters = _topic(servers, "transactions.dlq", dead)
        assert len(letters) == dead
        if not refuse:
            _wait_for_label(f"{base}/decisions/{urllib.parse.quote(kafka_tx)}")
        for letter in letters:
            headers = dict(letter.headers)
            assert headers["error.type"] in (b"invalid_json", b"validation_error", b"not_found")
            assert headers["source.topic"] in (b"transactions", b"labels")
            assert headers["dead_letter.redacted"].startswith(b"card number in ")
        exported = _call("GET", f"{base}/reports/decisions.jsonl")
        assert exported[0] == 200
        answers.append(exported)
        pages = [
            _call("GET", f"{base}/reports/{page}") for page in ("decisions.html", "summary.html")
        ]
        answers += pages
        audit_while_running = {
            p.name: p.read_bytes() for p in data_dir.iterdir() if p.name.startswith("audit")
        }
        output = _stop(process)

    assert any(name.endswith("-wal") for name in audit_while_running)
    for name, blob in audit_while_running.items():
        _assert_no_card(f"{name} (while serving)", blob)
    for path in data_dir.iterdir():
        _assert_no_card(path.name, path.read_bytes())
    _assert_no_card("the log", output.encode())
    for status, headers, body in answers:
        page = headers.get("Content-Type", "").startswith("text/html")
        _assert_no_card(f"an answer ({status})", body + json.dumps(headers).encode(), not page)
    for record in decisions + letters:
        _assert_no_card(f"{record.topic}@{record.offset}", _record_bytes(record))
    # What was stored: the one clean payment under refuse; every payment under tokenise,
    # the cards as tokens.
    lines = [json.loads(line) for line in exported[2].decode().splitlines()]
    assert len(lines) == (1 if refuse else 9)
    if not refuse:
        assert sum("tok_" in json.dumps(line) for line in lines) == 8


def _wait_for_label(url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        status, _, body = _call("GET", url)
        if status == 200 and json.loads(body)["labels"]:
            return
        time.sleep(0.2)
    pytest.fail(f"no label reached {url}")
