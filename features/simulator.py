"""Synthetic payment histories in the handbook CSV schema, with labelled fraud.

The simulator gives riskscore realistic training and test histories without real card
data. It imitates the *shape* of the public handbook benchmark (columns, ids, fraud
scenarios 1-3) with a generative process of its own, and adds a fourth scenario.

Generative process
------------------
Population (drawn once):

* Customers live at a home point on a 100×100 grid. Each has a typical payment amount
  (log-normal across customers, median about 40) and a relative spread, a mean number of
  payments per day (gamma, mean about 2), a weekend factor scaling that rate on Saturday
  and Sunday, a favourite hour of the day with its own spread, and a small propensity to
  pay at night.
* Terminals sit at uniform points on the same grid.
* A customer shops at the terminals within ``TERMINAL_RADIUS`` of home; anyone with fewer
  than ``MIN_TERMINALS`` there uses the nearest ones instead, so nobody is stranded. Each
  usable terminal gets a random affinity, damped with distance, so customers have
  favourite shops instead of spreading evenly.

Genuine payments, day by day: each customer's count is Poisson with the day's rate; a
payment falls at night (00:00-06:00, uniformly) with the customer's night propensity and
otherwise around the favourite hour; its terminal is drawn by affinity and its amount is
log-normal around the customer's typical amount (always positive, rounded to cents).

Fraud, labelled with ``TX_FRAUD = 1`` and the scenario code (a later scenario overrides an
earlier one on the same payment, since it is the more specific cause):

1. Amount outlier: every payment over 220 is fraud (the handbook's rule).
2. Compromised terminal: each day a few random terminals are compromised; every payment
   there during the next 28 days is fraud.
3. Leaked card: each day a few random cards leak; during the next 14 days about one third
   of the card's payments are fraud, with the amount multiplied by 5.
4. Card testing: most leaked cards are also tested with a burst of 3-8 small payments
   (0.50-5.00) a few seconds to two minutes apart, at a terminal the customer never uses,
   within two days of the leak. These are extra payments, not relabelled genuine ones.

Daily fraud rates scale with the population, so the fraud share does not depend on its
size: about 0.8 % with the defaults, nearer 1 % over longer periods as the 28-day
windows fill up. The output is a pure function of the configuration: one
``numpy.random.Generator`` seeded from ``SimulationConfig.seed`` is consumed in a fixed
order, and gzip output carries no timestamp or file name.
"""

from __future__ import annotations

import gzip
import io
import numbers
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import IntEnum
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from features.data import DATETIME_FORMAT, HANDBOOK_COLUMNS, LABEL_COLUMN, SCENARIO_COLUMN

SECONDS_PER_DAY = 86_400
GRID_SIZE = 100.0
TERMINAL_RADIUS = 5.0
MIN_TERMINALS = 3
AMOUNT_FRAUD_THRESHOLD = 220.0
COMPROMISE_DAYS = 28
LEAK_DAYS = 14
LEAK_FRAUD_SHARE = 1 / 3
LEAK_AMOUNT_FACTOR = 5.0
# Expected events per day per member of the population: about 1 compromised terminal per
# 10,000 terminals and 3 leaked cards per 5,000 customers, the handbook's daily counts.
COMPROMISE_RATE = 1e-4
LEAK_RATE = 6e-4
CARD_TEST_PROBABILITY = 0.6
CARD_TEST_SIZE = (3, 8)
CARD_TEST_AMOUNT = (0.5, 5.0)
CARD_TEST_GAP_SECONDS = (5, 120)
CARD_TEST_DELAY_DAYS = 2
NIGHT_END_SECONDS = 6 * 3600
# Bounds the distance matrix of one chunk of customers against all terminals (~32 MB).
_DISTANCE_CELLS = 4_000_000
_MAX_REDRAWS = 100


class FraudScenario(IntEnum):
    """Codes written to ``TX_FRAUD_SCENARIO``."""

    GENUINE = 0
    AMOUNT_OUTLIER = 1
    COMPROMISED_TERMINAL = 2
    LEAKED_CARD = 3
    CARD_TESTING = 4


@dataclass(frozen=True)
class SimulationConfig:
    """Size, period and seed of a simulated history."""

    customers: int = 1000
    terminals: int = 2000
    days: int = 90
    start: date = date(2024, 1, 1)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("customers", "terminals", "days"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        # A datetime is a date too, but its time of day would be silently dropped.
        if not isinstance(self.start, date) or isinstance(self.start, datetime):
            raise ValueError(f"start must be a datetime.date, got {self.start!r}")
        if self.days > (date.max - self.start).days:
            raise ValueError(f"{self.days} days from {self.start} run past the year 9999")

    @property
    def end(self) -> date:
        """The last simulated day."""
        return self.start + timedelta(days=self.days - 1)


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True customers is a caller's bug, not a count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Customers:
    x: np.ndarray
    y: np.ndarray
    amount_mu: np.ndarray  # log-normal parameters of the amount
    amount_sigma: np.ndarray
    tx_per_day: np.ndarray
    weekend_factor: np.ndarray
    night_share: np.ndarray
    peak_second: np.ndarray
    spread_seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class _TerminalChoice:
    """Each customer's usable terminals and affinities, as compressed sparse rows."""

    offsets: np.ndarray  # customer c's entries are [offsets[c], offsets[c + 1])
    terminal: np.ndarray
    # c + cumulative affinity share within c: increasing over the whole array, so one
    # searchsorted draws a terminal for many customers at once.
    cumulative: np.ndarray
    pair_key: np.ndarray  # sorted customer * terminals + terminal, for membership tests
    terminals: int

    def draw(self, rng: np.random.Generator, customer: np.ndarray) -> np.ndarray:
        target = customer + rng.random(len(customer))
        index = np.searchsorted(self.cumulative, target, side="right")
        return self.terminal[index]

    def uses(self, customer: np.ndarray, terminal: np.ndarray) -> np.ndarray:
        key = customer * self.terminals + terminal
        position = np.searchsorted(self.pair_key, key)
        position = np.minimum(position, len(self.pair_key) - 1)
        return self.pair_key[position] == key

    def count(self, customer: np.ndarray) -> np.ndarray:
        return self.offsets[customer + 1] - self.offsets[customer]


@dataclass
class _Payments:
    """Payments as parallel arrays, in generation order."""

    seconds: np.ndarray  # int64, since the start date at 00:00:00
    customer: np.ndarray
    terminal: np.ndarray
    amount: np.ndarray
    scenario: np.ndarray  # int8 FraudScenario codes

    @classmethod
    def empty(cls) -> _Payments:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, np.zeros(0), np.zeros(0, dtype=np.int8))

    @classmethod
    def concat(cls, parts: list[_Payments]) -> _Payments:
        return cls(
            seconds=np.concatenate([p.seconds for p in parts]),
            customer=np.concatenate([p.customer for p in parts]),
            terminal=np.concatenate([p.terminal for p in parts]),
            amount=np.concatenate([p.amount for p in parts]),
            scenario=np.concatenate([p.scenario for p in parts]),
        )


def simulate(config: SimulationConfig, progress: bool = False) -> pd.DataFrame:
    """A labelled history in the handbook schema, sorted by time.

    ``TX_DATETIME`` is ``datetime64[s]`` (``write_csv`` writes it as
    'YYYY-MM-DD HH:MM:SS'); ``TRANSACTION_ID`` is 0..n-1 in time order.
    """
    rng = np.random.default_rng(config.seed)
    customers = _draw_customers(rng, config.customers)
    terminal_x = rng.uniform(0.0, GRID_SIZE, config.terminals)
    terminal_y = rng.uniform(0.0, GRID_SIZE, config.terminals)
    choice = _terminal_choice(rng, customers, terminal_x, terminal_y)
    payments = _genuine_payments(rng, config, customers, choice, progress)
    _label_amount_outliers(payments)
    _compromise_terminals(rng, config, payments)
    leaks = _leak_cards(rng, config, payments)
    tests = _card_testing(rng, config, choice, leaks)
    return _to_frame(config, _Payments.concat([payments, tests]))


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as ``.csv`` or, for a ``.csv.gz`` path, gzip-compressed CSV."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".csv", ".csv.gz")):
        raise ValueError(f"{path.name}: the file name must end in .csv or .csv.gz")
    if name.endswith(".csv"):
        with path.open("w", encoding="utf-8", newline="") as text:
            _write_text(frame, text)
        return
    # Our own gzip stream, not pandas': pandas stores the file name and the current time
    # in the header, which would make identical histories differ byte for byte.
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
    ):
        _write_text(frame, text)


def _write_text(frame: pd.DataFrame, text: io.TextIOWrapper) -> None:
    frame.to_csv(
        text,
        index=False,
        columns=list(HANDBOOK_COLUMNS),
        date_format=DATETIME_FORMAT,
        lineterminator="\n",
    )


def _draw_customers(rng: np.random.Generator, n: int) -> _Customers:
    mean_amount = np.clip(rng.lognormal(np.log(40.0), 0.55, n), 3.0, 150.0)
    variation = rng.uniform(0.2, 0.6, n)
    # Log-normal parameters that reproduce that mean and coefficient of variation.
    sigma = np.sqrt(np.log1p(variation**2))
    return _Customers(
        x=rng.uniform(0.0, GRID_SIZE, n),
        y=rng.uniform(0.0, GRID_SIZE, n),
        amount_mu=np.log(mean_amount) - sigma**2 / 2,
        amount_sigma=sigma,
        tx_per_day=np.clip(rng.gamma(2.0, 1.0, n), 0.05, 8.0),
        weekend_factor=rng.lognormal(0.0, 0.3, n),
        night_share=rng.uniform(0.0, 0.12, n),
        peak_second=rng.normal(13.0, 1.5, n) * 3600,
        spread_seconds=rng.uniform(2.5, 4.5, n) * 3600,
    )


def _terminal_choice(
    rng: np.random.Generator,
    customers: _Customers,
    terminal_x: np.ndarray,
    terminal_y: np.ndarray,
) -> _TerminalChoice:
    customer, terminal, distance = _nearby_terminals(customers, terminal_x, terminal_y)
    # Exponential affinities give each customer a few favourite shops; the distance
    # damping makes the corner shop more likely than the one across town.
    affinity = rng.exponential(1.0, len(customer)) / (1.0 + distance / TERMINAL_RADIUS)
    offsets = np.zeros(len(customers) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(customer, minlength=len(customers)))
    running = np.cumsum(affinity)
    start_total = np.concatenate(([0.0], running[offsets[1:-1] - 1]))
    total = running[offsets[1:] - 1] - start_total
    share = (running - start_total[customer]) / total[customer]
    share[offsets[1:] - 1] = 1.0  # exact, so a draw can never spill into the next customer
    return _TerminalChoice(
        offsets=offsets,
        terminal=terminal,
        cumulative=customer + share,
        pair_key=customer * len(terminal_x) + terminal,
        terminals=len(terminal_x),
    )


def _nearby_terminals(
    customers: _Customers, terminal_x: np.ndarray, terminal_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, terminal, distance) of every usable pair, sorted by customer, terminal."""
    n_terminals = len(terminal_x)
    minimum = min(MIN_TERMINALS, n_terminals)
    chunk = max(1, _DISTANCE_CELLS // n_terminals)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    squares: list[np.ndarray] = []
    for first in range(0, len(customers), chunk):
        # Squared distances, computed in place: this matrix is the simulator's hot spot.
        square = customers.x[first : first + chunk, None] - terminal_x[None, :]
        np.square(square, out=square)
        dy = customers.y[first : first + chunk, None] - terminal_y[None, :]
        square += np.square(dy, out=dy)
        near = square <= TERMINAL_RADIUS**2
        # Customers in sparse areas still shop somewhere: at their nearest terminals.
        stranded = np.flatnonzero(near.sum(axis=1) < minimum)
        if len(stranded):
            nearest = np.argpartition(square[stranded], minimum - 1, axis=1)[:, :minimum]
            near[stranded[:, None], nearest] = True
        row, col = np.nonzero(near)
        rows.append(row + first)
        cols.append(col)
        squares.append(square[row, col])
    return (
        np.concatenate(rows).astype(np.int64),
        np.concatenate(cols).astype(np.int64),
        np.sqrt(np.concatenate(squares)),
    )


def _genuine_payments(
    rng: np.random.Generator,
    config: SimulationConfig,
    customers: _Customers,
    choice: _TerminalChoice,
    progress: bool,
) -> _Payments:
    ids = np.arange(len(customers), dtype=np.int64)
    first_weekday = config.start.weekday()
    parts: list[_Payments] = []
    days = tqdm(range(config.days), desc="simulating", unit="day", disable=not progress)
    for day in days:
        weekend = (first_weekday + day) % 7 >= 5
        rate = customers.tx_per_day * customers.weekend_factor if weekend else customers.tx_per_day
        customer = np.repeat(ids, rng.poisson(rate))
        seconds = day * SECONDS_PER_DAY + _time_of_day(rng, customers, customer)
        terminal = choice.draw(rng, customer)
        amount = rng.lognormal(customers.amount_mu[customer], customers.amount_sigma[customer])
        parts.append(
            _Payments(
                seconds=seconds,
                customer=customer,
                terminal=terminal,
                amount=np.maximum(np.round(amount, 2), 0.01),
                scenario=np.zeros(len(customer), dtype=np.int8),
            )
        )
    return _Payments.concat(parts)


def _time_of_day(
    rng: np.random.Generator, customers: _Customers, customer: np.ndarray
) -> np.ndarray:
    at_night = rng.random(len(customer)) < customers.night_share[customer]
    night = rng.uniform(0, NIGHT_END_SECONDS, len(customer))
    day = rng.normal(customers.peak_second[customer], customers.spread_seconds[customer])
    # Wrapping keeps the far tail of the daytime curve inside the day without piling
    # payments up at midnight, as clipping would.
    seconds = np.where(at_night, night, np.mod(day, SECONDS_PER_DAY))
    return np.minimum(seconds.astype(np.int64), SECONDS_PER_DAY - 1)


def _label_amount_outliers(payments: _Payments) -> None:
    payments.scenario[payments.amount > AMOUNT_FRAUD_THRESHOLD] = FraudScenario.AMOUNT_OUTLIER


def _compromise_terminals(
    rng: np.random.Generator, config: SimulationConfig, payments: _Payments
) -> None:
    day, terminal = _daily_events(rng, config, config.terminals, COMPROMISE_RATE)
    hit = _in_windows(payments.terminal, payments.seconds, terminal, day, COMPROMISE_DAYS)
    payments.scenario[hit] = FraudScenario.COMPROMISED_TERMINAL


def _leak_cards(
    rng: np.random.Generator, config: SimulationConfig, payments: _Payments
) -> tuple[np.ndarray, np.ndarray]:
    """Label the leaked cards' frauds; returns the leaks as (day, customer)."""
    day, customer = _daily_events(rng, config, config.customers, LEAK_RATE)
    exposed = np.flatnonzero(
        _in_windows(payments.customer, payments.seconds, customer, day, LEAK_DAYS)
    )
    # One draw per payment over the union of windows, so overlapping leaks of the same
    # card cannot multiply an amount twice.
    stolen = exposed[rng.random(len(exposed)) < LEAK_FRAUD_SHARE]
    payments.amount[stolen] = np.round(payments.amount[stolen] * LEAK_AMOUNT_FACTOR, 2)
    payments.scenario[stolen] = FraudScenario.LEAKED_CARD
    return day, customer


def _daily_events(
    rng: np.random.Generator, config: SimulationConfig, population: int, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """(day, member) of each event; a member may be drawn on several days."""
    counts = rng.poisson(rate * population, config.days)
    day = np.repeat(np.arange(config.days, dtype=np.int64), counts)
    member = rng.integers(0, population, len(day), dtype=np.int64)
    return day, member


def _in_windows(
    entity: np.ndarray,
    seconds: np.ndarray,
    event_entity: np.ndarray,
    event_day: np.ndarray,
    length_days: int,
) -> np.ndarray:
    """Mask of payments of an event's entity from its day's start for ``length_days``."""
    mask = np.zeros(len(entity), dtype=bool)
    if len(event_entity) == 0 or len(entity) == 0:
        return mask
    # Sorting on one composite (entity, time) key turns each window into two binary
    # searches, and the union of windows into one cumulative sum.
    span = int(seconds.max()) + (int(event_day.max()) + length_days + 1) * SECONDS_PER_DAY
    key = entity * span + seconds
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    start = event_entity * span + event_day * SECONDS_PER_DAY
    low = np.searchsorted(sorted_key, start, side="left")
    high = np.searchsorted(sorted_key, start + length_days * SECONDS_PER_DAY, side="left")
    depth = np.zeros(len(entity) + 1, dtype=np.int64)
    np.add.at(depth, low, 1)
    np.add.at(depth, high, -1)
    mask[order] = np.cumsum(depth[:-1]) > 0
    return mask


def _card_testing(
    rng: np.random.Generator,
    config: SimulationConfig,
    choice: _TerminalChoice,
    leaks: tuple[np.ndarray, np.ndarray],
) -> _Payments:
    day, customer = leaks
    tested = rng.random(len(day)) < CARD_TEST_PROBABILITY
    day, customer = day[tested], customer[tested]
    if len(day) == 0:
        return _Payments.empty()
    terminal = _foreign_terminals(rng, choice, customer)
    found = terminal >= 0
    day, customer, terminal = day[found], customer[found], terminal[found]
    size = rng.integers(CARD_TEST_SIZE[0], CARD_TEST_SIZE[1] + 1, len(day))
    burst = np.repeat(np.arange(len(day)), size)
    gap = rng.integers(CARD_TEST_GAP_SECONDS[0], CARD_TEST_GAP_SECONDS[1] + 1, len(burst))
    first_of_burst = np.concatenate(([0], np.cumsum(size)[:-1]))
    gap[first_of_burst] = 0
    offset = np.cumsum(gap) - np.repeat(np.cumsum(gap)[first_of_burst], size)
    duration = offset[np.cumsum(size) - 1]
    # Testers are bots: any time of day, soon after the leak, and never past the period.
    start = day * SECONDS_PER_DAY + rng.integers(
        0, CARD_TEST_DELAY_DAYS * SECONDS_PER_DAY, len(day)
    )
    start = np.minimum(start, config.days * SECONDS_PER_DAY - 1 - duration)
    amount = rng.uniform(CARD_TEST_AMOUNT[0], CARD_TEST_AMOUNT[1], len(burst))
    return _Payments(
        seconds=start[burst] + offset,
        customer=customer[burst],
        terminal=terminal[burst],
        amount=np.round(amount, 2),
        scenario=np.full(len(burst), FraudScenario.CARD_TESTING, dtype=np.int8),
    )


def _foreign_terminals(
    rng: np.random.Generator, choice: _TerminalChoice, customer: np.ndarray
) -> np.ndarray:
    """A random terminal outside each customer's usual set; -1 where none exists."""
    terminal = np.full(len(customer), -1, dtype=np.int64)
    pending = np.flatnonzero(choice.count(customer) < choice.terminals)
    # Rejection sampling: a customer's set is a tiny share of all terminals, so one or
    # two rounds settle almost every draw; the cap only guards degenerate configs.
    for _ in range(_MAX_REDRAWS):
        if len(pending) == 0:
            break
        draw = rng.integers(0, choice.terminals, len(pending), dtype=np.int64)
        usual = choice.uses(customer[pending], draw)
        terminal[pending[~usual]] = draw[~usual]
        pending = pending[usual]
    return terminal


def _to_frame(config: SimulationConfig, payments: _Payments) -> pd.DataFrame:
    order = np.argsort(payments.seconds, kind="stable")
    seconds = payments.seconds[order]
    scenario = payments.scenario[order]
    origin = np.datetime64(config.start, "s")
    columns = {
        "TRANSACTION_ID": np.arange(len(order), dtype=np.int64),
        "TX_DATETIME": origin + seconds.astype("timedelta64[s]"),
        "CUSTOMER_ID": payments.customer[order],
        "TERMINAL_ID": payments.terminal[order],
        "TX_AMOUNT": payments.amount[order],
        "TX_TIME_SECONDS": seconds,
        "TX_TIME_DAYS": seconds // SECONDS_PER_DAY,
        LABEL_COLUMN: (scenario != FraudScenario.GENUINE).astype(np.int8),
        SCENARIO_COLUMN: scenario,
    }
    return pd.DataFrame(columns, columns=list(HANDBOOK_COLUMNS))
