"""`streaming.tail`: a topic's records for a person, against a real broker."""

from __future__ import annotations

import json
import threading

import pytest
from kafka import KafkaProducer

from streaming.broker import BrokerError, EmbeddedBroker, check_reachable, free_port
from streaming.config import KafkaSettings, Topics
from streaming.tail import TopicNotFound, tail
from tests.streaming.conftest import produce


def test_tail_prints_what_the_topic_holds_with_values_and_headers(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    # One key, one partition: the order is the order sent.
    error = [("error.type", b"invalid_json")]
    producer.send(topics.dead_letters, key=b"c-1", value=b"{not json", headers=error)
    producer.send(topics.dead_letters, key=b"c-1", value=json.dumps({"a": 1}).encode())
    producer.flush()
    producer.close()
    records = list(tail(broker.bootstrap_servers, topics.dead_letters))
    assert [r["offset"] for r in records] == [0, 1]
    assert records[0]["value"] == "{not json"  # the original bytes, as text
    assert records[0]["headers"] == {"error.type": "invalid_json"}
    assert records[1]["value"] == {"a": 1}
    assert records[1]["topic"] == topics.dead_letters
    assert [r["value"] for r in tail(broker.bootstrap_servers, topics.dead_letters, last=1)] == [
        {"a": 1}
    ]


def test_tail_follow_prints_records_that_arrive_later(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    stop = threading.Event()
    records = tail(broker.bootstrap_servers, topics.decisions, follow=True, stop=stop)
    produce(broker, topics.decisions, [(b"tx-1", b'{"score": 0.5}')])
    first = next(records)
    stop.set()
    records.close()
    assert (first["key"], first["value"]) == ("tx-1", {"score": 0.5})


def test_tail_of_a_missing_topic_says_so(broker: EmbeddedBroker) -> None:
    with pytest.raises(TopicNotFound):
        list(tail(broker.bootstrap_servers, "no-such-topic"))


def test_no_broker_is_reported_at_once() -> None:
    with pytest.raises(BrokerError, match=r"no Kafka broker answers at 127\.0\.0\.1:"):
        check_reachable(f"127.0.0.1:{free_port()}")
    with pytest.raises(BrokerError, match="not host:port"):
        check_reachable("localhost")


def test_clients_find_the_broker_serve_starts_from_the_same_settings() -> None:
    assert KafkaSettings().client_servers() == "127.0.0.1:9092"
    assert KafkaSettings(embedded_port=9555).client_servers() == "127.0.0.1:9555"
    published = KafkaSettings(embedded_host="0.0.0.0", embedded_advertised_host="kafka.local")
    assert published.client_servers() == "kafka.local:9092"
    assert KafkaSettings(bootstrap_servers="k1:9092,k2:9092").client_servers() == "k1:9092,k2:9092"


def test_the_embedded_broker_can_listen_on_every_interface() -> None:
    # What a container needs: bound to 0.0.0.0, advertised under the name clients use.
    with EmbeddedBroker(port=0, host="0.0.0.0", advertised_host="localhost") as running:
        assert running.bootstrap_servers == f"localhost:{running.port}"
        produce(running, "reach", [(b"k", b"v")])
        assert [r["value"] for r in tail(running.bootstrap_servers, "reach")] == ["v"]
