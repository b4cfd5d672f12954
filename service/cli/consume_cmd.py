"""`riskscore consume`: the Kafka consumer alone, without the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from dataclasses import asdict

from kafka.errors import KafkaError
from pydantic import ValidationError

from models.errors import ArtifactError
from service.cli.errors import UserError
from service.cli.serve_cmd import KAFKA_HINT
from service.settings import Settings
from streaming.broker import BrokerError


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "consume",
        help="score the Kafka transactions topic (no HTTP API)",
        description=(
            "Consume transactions (and labels) from Kafka, score each, record the decision in "
            "the audit store and publish it to the decisions topic; commit offsets only after. "
            "Configured like `riskscore serve` (RISKSCORE_KAFKA_* variables; without "
            "RISKSCORE_KAFKA_BOOTSTRAP_SERVERS an embedded broker is started). SIGTERM or "
            "SIGINT: finish the batch, commit, close."
        ),
    ).set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings(kafka="on")
    except ValidationError as exc:
        raise UserError(f"invalid configuration: {exc}") from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from service.event_loop import new_event_loop

    try:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.event_loop)) as loop:
            loop.run(_consume(settings))
    except ArtifactError as exc:
        raise UserError(f"cannot load the model: {exc}") from exc
    except (BrokerError, KafkaError) as exc:
        raise UserError(f"{KAFKA_HINT}: {exc}") from exc
    except ConsumerFailed as exc:
        raise UserError(f"the consumer stopped: {exc}") from exc
    return 0


class ConsumerFailed(RuntimeError):
    """The consumer thread ended without being asked to."""


async def _consume(settings: Settings) -> None:
    from service.app import build_scorer
    from service.stream_runner import StreamRunner
    from service.warm_start import settle_heap

    scorer = build_scorer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = StreamRunner(settings, scorer, loop)
    try:
        await asyncio.to_thread(scorer.warm_start, settings.warm_start, None, settle_heap)
        await asyncio.to_thread(runner.start)
        # Until a signal, or until the consumer thread ends on its own (a failure).
        ended = asyncio.ensure_future(asyncio.to_thread(runner.stopped.wait))
        await asyncio.wait(
            [asyncio.ensure_future(stop.wait()), ended], return_when=asyncio.FIRST_COMPLETED
        )
        if runner.stopped.is_set() and not stop.is_set():
            raise ConsumerFailed("; ".join(runner.problems()))
    finally:
        await asyncio.to_thread(runner.stop, settings.shutdown_timeout_s)
        await asyncio.to_thread(scorer.store.close, settings.shutdown_timeout_s)
        if runner.processor is not None:
            # One JSON line of totals on stdout: what an operator (or a benchmark) reads.
            print(json.dumps({"stream_summary": asdict(runner.processor.stats)}), flush=True)
