"""Logging of the scoring processes: libraries quiet by default, JSON lines on request."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from kafka.errors import Cancelled, KafkaConnectionError

from service.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {name: logging.getLogger(name).level for name in ("service", "riskscore")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, own_level in own.items():
        logging.getLogger(name).setLevel(own_level)


def _emit_the_usual(capsys: pytest.CaptureFixture[str]) -> str:
    logging.getLogger("kafka.net.connection").info("Connection complete.")
    logging.getLogger("aiohttp.server").info("a library's detail")
    logging.getLogger("service.lifecycle").info("feature state rebuilt")
    logging.getLogger("kafka.cluster").warning("a library's warning")
    return capsys.readouterr().err


def test_libraries_log_warnings_only_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    err = _emit_the_usual(capsys)
    assert "feature state rebuilt" in err
    assert "a library's warning" in err
    assert "Connection complete." not in err and "a library's detail" not in err


def test_a_setting_brings_the_libraries_back(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", library_level="INFO")
    err = _emit_the_usual(capsys)
    assert "Connection complete." in err and "a library's detail" in err


def test_own_messages_follow_their_own_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("WARNING", library_level="INFO")
    err = _emit_the_usual(capsys)
    assert "feature state rebuilt" not in err and "Connection complete." in err


def test_json_lines_carry_the_transaction_id_and_the_exception(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", fmt="json")
    log = logging.getLogger("service.second_stage")
    log.warning("refused %s", "tx-9", extra={"transaction_id": "tx-9"})
    try:
        raise ValueError("broken")
    except ValueError:
        log.exception("it failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["message"] == "refused tx-9"
    assert first["transaction_id"] == "tx-9"
    assert first["level"] == "WARNING" and first["logger"] == "service.second_stage"
    assert "transaction_id" not in second
    assert "ValueError: broken" in second["exception"]


def _emit_the_noise() -> None:
    cluster = logging.getLogger("kafka.cluster")
    # What kafka-python logs when a consumer is closed during its group join.
    cluster.error("Metadata refresh: failed %s", Cancelled())
    cluster.error("Metadata refresh: failed %s", KafkaConnectionError("refused"))
    # What its I/O thread logs when it waited for the GIL.
    logging.getLogger("kafka.net.selector").warning(
        "Task <x> ran for 0.134s (>0.100s threshold). It is blocking the event loop -- "
        "likely a tight sync loop inside a coroutine. Other pollers will time out."
    )


def test_a_closing_client_and_a_gil_wait_are_not_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO")
    _emit_the_noise()
    err = capsys.readouterr().err
    assert "Cancelled" not in err and "blocking the event loop" not in err
    assert "KafkaConnectionError: refused" in err  # a real failure still shows


def test_library_info_shows_the_noise_too(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", library_level="INFO")
    _emit_the_noise()
    err = capsys.readouterr().err
    assert "Cancelled" in err and "blocking the event loop" in err
