"""`riskscore produce`: feed the transactions topic from a history file."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from kafka.errors import KafkaError
from tqdm import tqdm

from features.data import DataError, load_transactions
from service.cli.arguments import positive_float, positive_int
from service.cli.errors import UserError, load_settings
from service.cli.kafka_client import reachable_servers
from streaming.publisher import PublishError, publish


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "produce",
        help="publish a history's transactions to Kafka",
        description=(
            "Publish the transactions of a handbook-schema history (.csv or .csv.gz) to the "
            "transactions topic as /score JSON bodies, keyed by customer id (so one customer's "
            "payments stay in one partition, in order), optionally at a fixed rate."
        ),
    )
    parser.add_argument("--data", required=True, type=Path, metavar="FILE", help="history")
    parser.add_argument("--rate", type=positive_float, help="transactions per second")
    parser.add_argument("--limit", type=positive_int, help="publish only the first N")
    parser.add_argument(
        "--bootstrap-servers",
        help=(
            "Kafka brokers (default: RISKSCORE_KAFKA_BOOTSTRAP_SERVERS, else the embedded "
            "broker of `riskscore serve` on 127.0.0.1:RISKSCORE_KAFKA_EMBEDDED_PORT)"
        ),
    )
    parser.add_argument(
        "--topic", help="topic (default: RISKSCORE_KAFKA_TRANSACTIONS_TOPIC, transactions)"
    )
    parser.add_argument("--id-prefix", default="", help="prefix for transaction ids")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kafka = load_settings().stream
    # The file first: a mistyped path is named as such even when no broker runs yet.
    try:
        history = load_transactions(args.data)
    except (DataError, OSError) as exc:
        raise UserError(str(exc)) from exc
    servers = reachable_servers(kafka, args.bootstrap_servers)
    topic = args.topic or kafka.transactions_topic
    payloads = history.payloads(args.id_prefix)
    total = len(history)
    if args.limit:
        payloads = itertools.islice(payloads, args.limit)
        total = min(total, args.limit)
    try:
        with tqdm(total=total, desc="publishing", unit="tx") as bar:
            sent = publish(servers, topic, payloads, args.rate, bar.update)
    except (KafkaError, PublishError) as exc:
        raise UserError(f"cannot publish to {servers}: {exc}") from exc
    print(f"published {sent} transactions to {topic} on {servers}")
    return 0
