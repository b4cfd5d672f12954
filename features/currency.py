"""Amounts in one currency before any feature sees them.

Window features add amounts up and compare them (sums, means, a payment against its
customer's average): 100 JPY and 100 EUR must not count alike. With a rate table
(``RISKSCORE_CURRENCY_RATES``: a JSON or TOML file naming its reference currency, its
version and a rate per currency) every payment's amount is converted to the reference
currency before features; the decision keeps the amount and currency as received and the
table's version (``Transaction.conversion``). Without a table, amounts are taken as they
come, and so only payments in the one configured currency (``RISKSCORE_CURRENCY``) are
accepted. A payment without ``currency`` is in the configured currency.

>>> table = RateTable(reference="EUR", version="2026-12-01", rates={"USD": 0.93})
>>> pricing = Pricing("EUR", table)
>>> usd = pricing.price(_example(amount=100.0, currency="USD"))
>>> (usd.amount, usd.currency, usd.conversion)
(93.0, 'EUR', Conversion(amount=100.0, currency='USD', rate_version='2026-12-01'))
>>> pricing.price(_example(amount=5.0, currency="GBP"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
features.currency.CurrencyRefused: no rate for currency 'GBP' in rate table 2026-12-01 ...
"""

from __future__ import annotations

import json
import math
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.schema import Conversion, Transaction, validation_problems

# What the project has always assumed amounts to be in (README examples, the simulator's
# data, the shipped model's amount thresholds).
DEFAULT_CURRENCY = "EUR"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# Converted amounts keep this many decimals: enough for any rate, and a replay of the same
# payment against the same table gives the same float (online == offline).
AMOUNT_DECIMALS = 6


class CurrencyRefused(ValueError):
    """A payment whose currency cannot be converted (no rate) or accepted (no table)."""


class RateTable(BaseModel):
    """A versioned table of rates: one unit of a currency is worth ``rate`` units of the
    reference currency."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    reference: str = Field(pattern=CURRENCY_PATTERN)
    version: str = Field(min_length=1, max_length=64)
    rates: dict[str, float]

    @field_validator("rates")
    @classmethod
    def _positive_rates(cls, rates: dict[str, float]) -> dict[str, float]:
        for code, rate in rates.items():
            if not (len(code) == 3 and code.isascii() and code.isupper() and code.isalpha()):
                raise ValueError(f"currency {code!r} is not an ISO 4217 code (three capitals)")
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"rate of {code} must be a positive finite number, got {rate}")
        return rates

    def rate(self, currency: str) -> float:
        if currency == self.reference:
            return 1.0
        try:
            return self.rates[currency]
        except KeyError:
            raise CurrencyRefused(
                f"no rate for currency {currency!r} in rate table {self.version} "
                f"(reference {self.reference})"
            ) from None

    @classmethod
    def load(cls, path: Path) -> RateTable:
        """The table in ``path`` (``.toml``, else JSON); :class:`ValueError` says what is
        wrong with it, naming the file."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"currency rate table {path}: cannot read it: {exc}") from None
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except ValueError as exc:  # JSONDecodeError, TOMLDecodeError
            raise ValueError(f"currency rate table {path}: not valid: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("rates"), dict):
            # JSON and TOML both write 1 for 1.0; strict mode would refuse the integer.
            data["rates"] = {
                k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                for k, v in data["rates"].items()
            }
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{f}: {m}" for f, m in validation_problems(exc, whole="file"))
            raise ValueError(f"currency rate table {path}: {problems}") from None


class Pricing:
    """Turns each payment into one whose amount is in the reference currency, or refuses it."""

    def __init__(self, currency: str = DEFAULT_CURRENCY, table: RateTable | None = None) -> None:
        if table is not None:
            table.rate(currency)  # the configured currency must itself convert
        self.currency = currency
        self.table = table

    @property
    def reference(self) -> str:
        return self.currency if self.table is None else self.table.reference

    def price(self, tx: Transaction) -> Transaction:
        """``tx`` itself (no table), or its copy in the reference currency carrying the
        :class:`~features.schema.Conversion`. Raises :class:`CurrencyRefused`."""
        currency = tx.currency or self.currency
        table = self.table
        if table is None:
            if currency != self.currency:
                raise CurrencyRefused(
                    f"currency {currency!r} is not accepted: amounts are taken in "
                    f"{self.currency} (RISKSCORE_CURRENCY) and no rate table is configured "
                    "(RISKSCORE_CURRENCY_RATES)"
                )
            return tx
        rate = table.rate(currency)
        # The request's digest (what a retry is matched against, and what is stored) is of
        # the payment as received: computed before the copy, which keeps it (model_copy
        # copies the cached value).
        digest = tx.digest
        amount = round(tx.amount * rate, AMOUNT_DECIMALS)
        if amount <= 0:
            raise CurrencyRefused(
                f"amount {tx.amount} {currency} is 0 {table.reference} at rate {rate}"
            )
        converted = tx.model_copy(update={"amount": amount, "currency": table.reference})
        assert converted.digest == digest
        converted._conversion = Conversion(tx.amount, currency, table.version)
        return converted


def _example(amount: float, currency: str | None) -> Transaction:
    """A payment for the examples above."""
    return Transaction(
        transaction_id="t-1",
        timestamp=datetime(2026, 12, 1, tzinfo=UTC),
        customer_id="c-1",
        terminal_id="p-1",
        amount=amount,
        currency=currency,
    )
