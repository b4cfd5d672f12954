"""`riskscore tail`: print what a Kafka topic of the service holds, one JSON record a line."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading

from kafka.errors import KafkaError

from service.cli.arguments import positive_int
from service.cli.errors import UserError, load_settings
from service.cli.kafka_client import reachable_servers
from streaming.tail import TopicNotFound, tail

# The names a person uses, and the setting that names each topic.
TOPICS = {
    "decisions": "decisions_topic",
    "dlq": "dead_letter_topic",
    "transactions": "transactions_topic",
    "labels": "labels_topic",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tail",
        help="print the records of a Kafka topic (decisions, dead letters, ...)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Print the records a topic of the running service holds, oldest first, one JSON\n"
            "object a line: topic, partition, offset, timestamp, key, headers (a dead letter's\n"
            "error.type, error.message, source.*) and the value (parsed when it is JSON).\n"
            "Configured like `riskscore serve` (RISKSCORE_KAFKA_* variables; topic names from\n"
            "RISKSCORE_KAFKA_*_TOPIC). Commits nothing: the scoring consumers are not disturbed."
        ),
        epilog=("examples:\n  riskscore tail decisions --last 3\n  riskscore tail dlq --follow"),
    )
    parser.add_argument("topic", choices=TOPICS, help="which topic")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep printing records as they arrive"
    )
    parser.add_argument("--last", type=positive_int, metavar="N", help="start at the last N")
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="stop after printing N records"
    )
    parser.add_argument("--bootstrap-servers", help="Kafka brokers (default: as serve)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kafka = load_settings().stream
    servers = reachable_servers(kafka, args.bootstrap_servers)
    topic = getattr(kafka, TOPICS[args.topic])
    stop = threading.Event()
    # Ctrl-C or SIGTERM ends --follow between polls, with the consumer closed properly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    records = tail(servers, topic, last=args.last, follow=args.follow, stop=stop)
    try:
        for record in itertools.islice(records, args.limit):
            print(json.dumps(record), flush=True)
    except TopicNotFound:
        raise UserError(
            f"no topic {topic!r} on {servers} (has `riskscore serve` started?)"
        ) from None
    except KafkaError as exc:
        raise UserError(f"cannot read {topic} on {servers}: {exc}") from exc
    except BrokenPipeError:
        # `riskscore tail ... | head`: the reader has gone, which is not an error. Python's
        # documented way out: stdout to /dev/null, so the flush at exit does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        records.close()
    return 0
