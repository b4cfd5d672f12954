"""Logging for the processes that score (`serve`, `consume`): riskscore's own messages at
``RISKSCORE_LOG_LEVEL``, the libraries' at ``RISKSCORE_LIBRARY_LOG_LEVEL``, as text or as
one JSON object a line (``RISKSCORE_LOG_FORMAT=json``).

Why the libraries get their own threshold: kafka-python logs every connection, transport
and group step at INFO — 78 of the 86 lines of a start with the embedded broker and a
SIGTERM. An operator needs them only when Kafka misbehaves, and then sets the variable.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from kafka.errors import Cancelled

from features.card_numbers import redact

# Loggers of riskscore's own packages (and "riskscore", the command line's).
OWN_LOGGERS = ("riskscore", "service", "streaming", "features", "models", "explain", "loadtest")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes a record may carry (``extra=``) that a JSON line shows as fields of its own.
CONTEXT_FIELDS = ("transaction_id", "topic", "partition", "offset")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the payment's
    ``transaction_id`` (and a Kafka record's place) when the record names them, and the
    exception's traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_text:  # already formatted (and redacted) by redact_card_numbers
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


_EXCEPTIONS = logging.Formatter()


def redact_card_numbers(record: logging.LogRecord) -> bool:
    """Replaces card numbers in a line (message, exception, context fields) by
    ``[card number]``: whatever an id or an error message carries, a log never holds a
    card number (PCI DSS 3.4), whichever logger wrote it."""
    message = record.getMessage()
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = _EXCEPTIONS.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if isinstance(value, str):
            setattr(record, name, redact(value))
    return True


def library_noise_as_info(record: logging.LogRecord) -> bool:
    """Shows two kafka-python messages only when the libraries log at INFO: they are not
    the warnings and errors they are logged as.

    - ``Metadata refresh: failed Cancelled`` (ERROR): a request cancelled because its
      client is closing, as when the consumer stops during its group join — the shutdown
      we asked for.
    - ``Task ... ran for 0.134s (>0.100s threshold). It is blocking the event loop``
      (WARNING, from the client's I/O thread): in riskscore that thread shares the GIL
      with scoring, so a step waits while the model loads or a batch is scored (0.13–1.1 s
      seen at start-up on 2 shared cores); the client has no setting to turn it off.
    """
    if not record.name.startswith("kafka") or record.levelno <= logging.INFO:
        return True
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    noise = any(isinstance(arg, Cancelled) for arg in args) or (
        record.name == "kafka.net.selector" and "blocking the event loop" in str(record.msg)
    )
    return not noise or logging.getLogger(record.name).isEnabledFor(logging.INFO)


def setup_logging(level: str, library_level: str = "WARNING", fmt: str = "text") -> None:
    """Configure the root handler once per process (replacing any earlier one)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Every logger that is not ours inherits the root's threshold: the libraries'.
    root.setLevel(library_level)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # On the handler: a logger's filters do not see its children's records.
    handler.addFilter(library_noise_as_info)
    handler.addFilter(redact_card_numbers)
