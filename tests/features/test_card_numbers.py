"""The card-number detector and policy: every network's test card is found however it is
written, ordinary ids are rarely taken for one, tokens are stable and never cards."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from features.card_numbers import (
    CardNumberPolicy,
    CardNumberRefused,
    bytes_contain_card_number,
    card_numbers_in,
    contains_card_number,
    redact,
)
from features.schema import Transaction, validation_problems
from service.benchmarks.card_number_false_positives import measure

# The networks' published test numbers.
TEST_CARDS = {
    "visa": "4111111111111111",
    "visa 13": "4222222222222",
    "mastercard": "5555555555554444",
    "mastercard 2-series": "2223003122003222",
    "amex": "378282246310005",
    "discover": "6011000990139424",
    "jcb": "3566002020360505",
    "diners 14": "30569309025904",
    "diners 36": "36227206271667",
    "unionpay": "6200000000000005",
    "maestro": "6759649826438453",
}
KEY = b"k" * 32


@pytest.mark.parametrize("card", TEST_CARDS.values(), ids=TEST_CARDS.keys())
def test_every_network_is_found_however_written(card: str) -> None:
    spaced = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    dashed = spaced.replace(" ", "-")
    for written in (card, spaced, dashed, f"cust-{card}", f"{spaced}/x"):
        assert contains_card_number(written), written


@pytest.mark.parametrize(
    "value",
    [
        "4111111111111112",  # Luhn fails
        "9111111111111111",  # Luhn holds (as 4111...), no network issues 9
        "3782822463100050",  # an Amex prefix at 16 digits: Amex issues 15
        "411111111111",  # 12 digits
        "41111111111111111111",  # 20 digits: longer than any card
        "4111  1111 1111 1111",  # two separators in a row: not one run
        "tx-2024-06-01-000123",
        "2025-06-02T14:03:27Z",
    ],
)
def test_what_is_not_a_card_number(value: str) -> None:
    assert not contains_card_number(value)


def test_random_numeric_ids_are_rarely_taken_for_cards() -> None:
    flagged, n = measure(20_000, seed=3)["detector"]
    luhn, _ = measure(20_000, seed=3)["luhn alone"]
    assert flagged / n < 0.02  # README: 1.24 % over a million ids
    assert luhn / n > 0.09  # what Luhn alone would refuse


def test_refuse_allow_and_tokenise() -> None:
    card = TEST_CARDS["visa"]
    with pytest.raises(CardNumberRefused, match="send a token"):
        CardNumberPolicy().screen(card)
    assert CardNumberPolicy("allow").screen(card) == card
    assert CardNumberPolicy().screen("c-1") == "c-1"
    policy = CardNumberPolicy("tokenise", KEY)
    token = policy.screen(card)
    assert token.startswith("tok_") and card not in token
    # The same card, however written, is the same token: per-customer features add up.
    assert policy.screen("4111 1111 1111 1111") == token
    assert policy.screen(f"cust-{card}") == f"cust-{token}"
    # A token is no card: screening it again leaves it as it is.
    assert policy.screen(token) == token
    assert CardNumberPolicy("tokenise", b"other" * 8).screen(card) != token
    with pytest.raises(ValueError, match="HMAC key"):
        CardNumberPolicy("tokenise")


def test_tokens_never_look_like_cards() -> None:
    policy = CardNumberPolicy("tokenise", KEY)
    tokens = [policy.token(str(4_000_000_000_000_000 + i)) for i in range(5000)]
    assert not [t for t in tokens if contains_card_number(t)]
    assert len(set(tokens)) == len(tokens)


def test_redaction_and_raw_bytes() -> None:
    card = TEST_CARDS["mastercard"]
    assert redact(f"GET /decisions/{card} failed") == "GET /decisions/[card number] failed"
    assert [m.group() for m in card_numbers_in(f"a {card} b")] == [card]
    # Escaped digits in JSON, a card as a JSON number, a record that is not JSON.
    assert bytes_contain_card_number(b'{"id": "\\u0035555555555554444"}')
    assert bytes_contain_card_number(b'{"customer_id": 5555555555554444}')
    assert bytes_contain_card_number(b'{"customer_id": "5555555555554444", "amount": ')
    # A score's digits are no card (0.5396366516698426 passes Luhn and a prefix).
    assert not bytes_contain_card_number(b'{"score": 0.5396366516698426}')


def test_a_card_number_quoted_by_a_validation_error_is_redacted() -> None:
    # An unknown field named by a card number: the error names the field, never the card.
    body = {
        "transaction_id": "t-1",
        "timestamp": "2025-06-02T14:03:27Z",
        "customer_id": "c-1",
        "terminal_id": "t-1",
        "amount": 10.0,
        "4111111111111111": 1,
    }
    with pytest.raises(ValidationError) as caught:
        Transaction.model_validate(body)
    problems = validation_problems(caught.value)
    assert problems, "an unknown field is refused"
    assert all(not contains_card_number(path + message) for path, message in problems)
    assert any("[card number]" in path for path, _ in problems)
