"""Features in plain language for the report pages: the one-line description of each
feature (the words its reasons are built from) comes first, its code second.

Exports keep the codes: they are stable across model versions, and programs read them.
"""

from __future__ import annotations

from functools import cache

from explain.reasons import format_value
from features.definitions import FeatureDefinition, by_name


@cache
def _definitions() -> dict[str, FeatureDefinition]:
    return by_name()


def plain_name(code: str) -> str:
    """The feature's description, or the code itself for a feature this build does not
    define (a decision of an older model stays readable).

    >>> plain_name("TX_AMOUNT")
    'amount of the payment'
    >>> plain_name("NOT_A_FEATURE")
    'NOT_A_FEATURE'
    """
    definition = _definitions().get(code)
    return code if definition is None else definition.description


def name_and_value(code: str, value: float) -> str:
    """``plain name = value`` with the value formatted for its kind.

    >>> name_and_value("TX_DURING_NIGHT", 1.0)
    'payment made between midnight and 6:59 = yes'
    """
    return f"{plain_name(code)} = {format_value(_definitions().get(code), value)}"
