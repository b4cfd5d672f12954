"""Schemathesis hooks of the API conformance run (loaded through SCHEMATHESIS_HOOKS).

Every check runs. One is narrowed: ``positive_data_acceptance`` ("a request the schema
allows is accepted") is replaced by the same check that lets through a 422 whose every
complaint is one of the documented rules a JSON schema cannot state. Each rule is matched by
its field and its own words, so any other refusal of schema-valid input still fails, and a
server error is never excused (``not_a_server_error`` is untouched).
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# (field, words of the message): each a rule the schema states only in words.
UNSTATED_RULES: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    # A timestamp more than 24 hours ahead of the service's clock: the bound moves with
    # the clock, and a schema is fixed (the timestamp's description states it).
    "future_timestamp": (
        re.compile(r"^(transactions\.\d+\.)?timestamp$"),
        re.compile(r"in the future"),
    ),
    # A card number (Luhn-valid, with a card network's prefix) where an id is expected:
    # a checksum is beyond what a pattern can say.
    "card_number": (re.compile(r".*"), re.compile(r"card number", re.IGNORECASE)),
    # A currency other than the configured one (or one without a rate in the configured
    # table): which codes are accepted is configuration, and the document is generated
    # from the models (the currency's description states the rule).
    "unsupported_currency": (
        re.compile(r"^(transactions\.\d+\.)?currency$"),
        re.compile(r"is not accepted|no rate for currency"),
    ),
    # 'from' must be before 'to': a rule across two parameters, which OpenAPI cannot state.
    "period_order": (re.compile(r"^from$"), re.compile(r"must be before 'to'")),
    # A cursor must be one this API handed out: only the service knows which those are.
    "foreign_cursor": (re.compile(r"^cursor$"), re.compile(r"not a cursor returned by")),
}
# An id already used with another body is 409, which the check accepts as it is.


def unstated_rules(status: int, body: bytes) -> set[str]:
    """The unstated rules a refusal names, or an empty set when it is anything else (also
    when one of its complaints is outside these rules)."""
    if status != 422:
        return set()
    try:
        fields = json.loads(body)["error"]["fields"]
    except (ValueError, KeyError, TypeError):
        return set()
    named: set[str] = set()
    for problem in fields:
        rule = _rule(problem)
        if rule is None:
            return set()
        named.add(rule)
    return named


def _rule(problem: Any) -> str | None:
    if not isinstance(problem, dict):
        return None
    field, message = str(problem.get("field", "")), str(problem.get("message", ""))
    for name, (field_pattern, words) in UNSTATED_RULES.items():
        if field_pattern.fullmatch(field) and words.search(message):
            return name
    return None


@schemathesis.check
def positive_data_acceptance_but_unstated_rules(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, except for a refusal by a rule of UNSTATED_RULES only."""
    if unstated_rules(response.status_code, response.content):
        return None
    return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]
