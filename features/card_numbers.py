"""Card numbers (PANs) in ids: found, then refused, tokenised or let through.

Payment backends do send card numbers as customer keys or payment ids; PCI DSS 3.3-3.5
requires a card number to be unreadable wherever it is stored. Every place an id enters
riskscore (HTTP bodies, path and query parameters, Kafka records) passes it through one
:class:`CardNumberPolicy`, so whatever is stored, logged, published or exported afterwards
never holds one in clear.

What counts as a card number: a run of 13 to 19 digits (single spaces or dashes between
digits allowed) that passes the Luhn check *and* starts with the issuer prefix of a major
card network at a length that network issues. The prefix and the length cut the false
positives on ordinary numeric ids well below Luhn's one in ten (figure in the README,
``python -m service.benchmarks.card_number_false_positives``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationInfo

PanPolicyName = Literal["refuse", "tokenise", "allow"]

# Issuer prefixes (ISO/IEC 7812 IIN ranges as the networks publish them) and the lengths
# each issues, after the table "Issuer identification number (IIN)" of Wikipedia's
# "Payment card number" article (revision of August 2024). Each entry: (first prefix, last
# prefix, lengths); the two prefixes have the same number of digits.
_13_TO_19 = tuple(range(13, 20))
_16_TO_19 = (16, 17, 18, 19)
ISSUER_PREFIXES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("4", "4", (13, 16, 19)),  # Visa (Visa Electron's prefixes are inside 4)
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard, 2-series
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),  # American Express
    ("6011", "6011", _16_TO_19),  # Discover
    ("644", "649", _16_TO_19),  # Discover
    ("65", "65", _16_TO_19),  # Discover, RuPay, Troy
    ("622126", "622925", _16_TO_19),  # Discover co-branded with UnionPay
    ("3528", "3589", _16_TO_19),  # JCB
    ("300", "305", (*_16_TO_19, 14)),  # Diners Club Carte Blanche / International
    ("3095", "3095", _16_TO_19),  # Diners Club International
    ("36", "36", (14, *_16_TO_19)),  # Diners Club International
    ("38", "39", _16_TO_19),  # Diners Club International
    ("62", "62", _16_TO_19),  # UnionPay
    ("81", "81", _16_TO_19),  # UnionPay, RuPay
    ("5018", "5018", _13_TO_19),  # Maestro
    ("5020", "5020", _13_TO_19),  # Maestro
    ("5038", "5038", _13_TO_19),  # Maestro
    ("5893", "5893", _13_TO_19),  # Maestro
    ("6304", "6304", _13_TO_19),  # Maestro
    ("6759", "6759", _13_TO_19),  # Maestro, Maestro UK
    ("6761", "6763", _13_TO_19),  # Maestro
    ("2200", "2204", _16_TO_19),  # Mir
    ("60", "60", (16,)),  # RuPay
    ("82", "82", (16,)),  # RuPay
    ("508", "508", (16,)),  # RuPay
    ("353", "353", (16,)),  # RuPay
    ("356", "356", (16,)),  # RuPay
    ("506099", "506198", (16, 18, 19)),  # Verve
    ("507865", "507964", (16, 18, 19)),  # Verve
    ("650002", "650027", (16, 18, 19)),  # Verve
    ("9792", "9792", (16,)),  # Troy
    ("636", "636", _16_TO_19),  # InterPayment
    ("637", "639", (16,)),  # InstaPayment
    ("1", "1", (15,)),  # UATP
)

# A maximal run of digits with at most one space or dash between two of them.
_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9])*(?![0-9])")
_SEPARATORS = str.maketrans("", "", " -")
# Shorter text cannot hold 13 digits: most ids are skipped before any regex runs.
MIN_DIGITS = 13
MAX_DIGITS = 19
TOKEN_PREFIX = "tok_"
# The context key a validation finds its policy (and its record of what it tokenised) under.
CONTEXT_KEY = "card_numbers"


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of ASCII digits.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def has_issuer_prefix(digits: str) -> bool:
    """Whether ``digits`` starts with a card network's prefix at a length it issues.

    >>> has_issuer_prefix("4111111111111111"), has_issuer_prefix("9111111111111111")
    (True, False)
    """
    n = len(digits)
    for low, high, lengths in ISSUER_PREFIXES:
        if n in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def is_card_number(digits: str) -> bool:
    """``digits`` (no separators) is shaped like a card number: length, prefix and Luhn."""
    return (
        MIN_DIGITS <= len(digits) <= MAX_DIGITS and has_issuer_prefix(digits) and luhn_valid(digits)
    )


def card_numbers_in(text: str) -> list[re.Match[str]]:
    """The runs of ``text`` that are card numbers (with their separators).

    >>> [m.group() for m in card_numbers_in("cust 4111-1111-1111-1111, order 1234567890123")]
    ['4111-1111-1111-1111']
    """
    # Most ids hold fewer than 13 digits: counted in C, they skip the regex (which
    # tripled the cost of screening a payment's three ids).
    if len(text) < MIN_DIGITS or sum(map(text.count, "0123456789")) < MIN_DIGITS:
        return []
    return [m for m in _RUN.finditer(text) if is_card_number(m.group().translate(_SEPARATORS))]


def contains_card_number(text: str) -> bool:
    return bool(card_numbers_in(text))


def redact(text: str) -> str:
    """``text`` with every card number replaced by ``[card number]`` (for log lines).

    >>> redact("GET /decisions/4111111111111111")
    'GET /decisions/[card number]'
    """
    for match in reversed(card_numbers_in(text)):
        text = text[: match.start()] + "[card number]" + text[match.end() :]
    return text


def document_contains_card_number(document: object) -> bool:
    """Whether a decoded JSON document holds a card number in a string (key or value) or
    an integer. The digits of a fraction are not looked at: a score or an attribution
    such as 0.5396366516698426 is 16 digits that pass Luhn one time in ten.

    >>> document_contains_card_number({"id": "x", "score": 0.5396366516698426})
    False
    >>> document_contains_card_number([{"customer": 4111111111111111}])
    True
    """
    if isinstance(document, str):
        return contains_card_number(document)
    if isinstance(document, bool):
        return False
    if isinstance(document, int):
        return contains_card_number(str(document))
    if isinstance(document, float):
        return document.is_integer() and contains_card_number(str(int(document)))
    if isinstance(document, dict):
        return any(
            document_contains_card_number(k) or document_contains_card_number(v)
            for k, v in document.items()
        )
    if isinstance(document, list):
        return any(document_contains_card_number(item) for item in document)
    return False


def text_contains_card_number(text: str) -> bool:
    """Whether stored or received text holds a card number: the strings and integers of
    the JSON document it is (escapes such as ``"\\u0034111..."`` decoded), or, for text that
    is not JSON, anywhere in it."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return contains_card_number(text)
    return document_contains_card_number(document)


def bytes_contain_card_number(value: bytes) -> bool:
    """:func:`text_contains_card_number` of raw bytes (a Kafka record, a stored blob)."""
    return text_contains_card_number(value.decode("latin-1"))


class CardNumberRefused(ValueError):
    """An id holds a card number and the policy is ``refuse``."""


REFUSAL = (
    "looks like a card number; riskscore does not accept card numbers as ids: send a token "
    "of the card (or any other id) instead"
)


@dataclass(frozen=True)
class CardNumberPolicy:
    """What happens to an id that holds a card number: ``refuse`` it (a 422 naming the
    field; a dead letter on Kafka), ``tokenise`` it (each card number in it becomes a keyed
    HMAC-SHA256 token, the same for the same card under the same key, so per-customer
    features still add up) or ``allow`` it (platforms whose ids are never cards)."""

    mode: PanPolicyName = "refuse"
    hmac_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode == "tokenise" and not self.hmac_key:
            raise ValueError("the tokenise policy needs an HMAC key")

    def token(self, digits: str) -> str:
        """The card's token: ``tok_`` and 32 base-32 letters (160 bits of the HMAC).
        Base 32 has digits 2-7 only, so a token never looks like a card number itself and
        is never tokenised again."""
        assert self.hmac_key is not None
        digest = hmac.new(self.hmac_key, digits.encode(), hashlib.sha256).digest()
        return TOKEN_PREFIX + base64.b32encode(digest).decode()[:32].lower()

    def screen(self, value: str) -> str:
        """``value`` as it may be kept: unchanged, or with its card numbers tokenised.
        Raises :class:`CardNumberRefused` under ``refuse``."""
        if self.mode == "allow":
            return value
        found = card_numbers_in(value)
        if not found:
            return value
        if self.mode == "refuse":
            raise CardNumberRefused(REFUSAL)
        for match in reversed(found):
            token = self.token(match.group().translate(_SEPARATORS))
            value = value[: match.start()] + token + value[match.end() :]
        return value

    def context(self) -> dict[str, Any]:
        """A pydantic validation context that screens every :data:`ScreenedId` field; after
        validation, :func:`tokenised_fields` says which it tokenised."""
        return {CONTEXT_KEY: (self, {})}

    def redacts_dead_letters(self) -> bool:
        return self.mode != "allow"


def tokenised_fields(context: dict[str, Any]) -> list[str]:
    """The fields a validation with ``context`` tokenised, in order, each once."""
    return list(context[CONTEXT_KEY][1])


def screen_id(value: str, info: ValidationInfo) -> str:
    """pydantic validator of id fields: applies the policy of the validation's context.

    Validation without a context (models built in code, records read back from the store)
    does not screen: the policy applies where ids enter, and data already stored was
    screened then (or predates the policy: ``riskscore audit scan``)."""
    context = info.context
    if not isinstance(context, dict) or CONTEXT_KEY not in context:
        return value
    policy, tokenised = context[CONTEXT_KEY]
    screened: str = policy.screen(value)
    if screened != value and info.field_name is not None:
        tokenised[info.field_name] = None
    return screened
