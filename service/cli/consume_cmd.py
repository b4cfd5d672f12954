"""`riskscore consume`: the Kafka consumer alone, without the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from dataclasses import asdict

from kafka.errors import KafkaError

from explain.audit.store import AuditStoreError
from features.state import FeatureStateUnavailable
from models.errors import ArtifactError
from models.rules.syntax import RuleSyntaxError
from service.cli.errors import UserError, load_settings
from service.cli.serve_cmd import KAFKA_HINT
from service.logs import setup_logging
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
    # Until the event loop's handlers are in place (after seconds of imports and loading
    # the model), a SIGTERM or SIGINT is remembered instead of killing the process: a
    # supervisor stopping a consumer that is still starting gets a clean exit.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    settings = load_settings(lambda: Settings(kafka="on"))
    setup_logging(settings.log_level, settings.library_log_level, settings.log_format)
    from service.event_loop import new_event_loop

    try:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.event_loop)) as loop:
            loop.run(_consume(settings, early))
    except ArtifactError as exc:
        raise UserError(f"cannot load the model: {exc}") from exc
    except RuleSyntaxError as exc:
        raise UserError(f"cannot load the rules (RISKSCORE_RULES_FILE): {exc}") from exc
    except AuditStoreError as exc:
        raise UserError(f"cannot open the audit store: {exc}") from exc
    except FeatureStateUnavailable as exc:
        raise UserError(f"cannot reach the feature state: {exc}") from exc
    except (BrokerError, KafkaError) as exc:
        raise UserError(f"{KAFKA_HINT}: {exc}") from exc
    except ConsumerFailed as exc:
        raise UserError(f"the consumer stopped: {exc}") from exc
    return 0


class ConsumerFailed(RuntimeError):
    """The consumer thread ended without being asked to."""


async def _consume(settings: Settings, early: list[int]) -> None:
    from service.app import build_scorer
    from service.lifecycle import ScoringProcess
    from service.prometheus_metrics import ScoringMetrics

    metrics = ScoringMetrics()
    process = ScoringProcess(settings, build_scorer(settings, metrics), metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if early:
            return  # signalled while starting: nothing began, nothing to finish
        await process.start()
        runner, warming = process.stream, process.warm_start
        assert runner is not None and warming is not None
        # Until a signal, the consumer thread ending on its own (a failure), or a failed
        # rebuild of the feature state (the consumer would retry its batch forever).
        ended = asyncio.ensure_future(asyncio.to_thread(runner.stopped.wait))
        signalled = asyncio.ensure_future(stop.wait())
        pending = {signalled, ended, warming}
        while not (signalled.done() or ended.done()):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if warming in done and process.scorer.warm_error is not None:
                raise ConsumerFailed(
                    f"rebuilding the feature state failed: {process.scorer.warm_error}"
                )
        if ended.done() and not stop.is_set():
            raise ConsumerFailed("; ".join(runner.problems()))
    finally:
        await process.shut_down()
        if process.stream is not None and process.stream.processor is not None:
            # One JSON line of totals on stdout: what an operator (or a benchmark) reads.
            summary = asdict(process.stream.processor.stats)
            print(json.dumps({"stream_summary": summary}), flush=True)
