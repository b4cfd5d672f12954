"""Transaction histories in the handbook CSV schema, as columnar arrays.

The handbook schema is riskscore's interchange format for histories: the simulator
writes it, training and evaluation read it. ``TX_DATETIME`` is naive wall-clock time and,
as everywhere in riskscore, a naive time is taken as UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.definitions import MS_PER_DAY
from features.schema import MAX_AMOUNT

REQUIRED_COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT")
LABEL_COLUMN = "TX_FRAUD"
SCENARIO_COLUMN = "TX_FRAUD_SCENARIO"
# All columns the simulator writes, in the handbook's order.
HANDBOOK_COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    LABEL_COLUMN,
    SCENARIO_COLUMN,
)
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class DataError(ValueError):
    """A history file that does not fit the handbook schema."""


@dataclass(frozen=True)
class TransactionFrame:
    """A history of transactions as parallel arrays, in file order.

    Ids keep the file's type (the handbook's are integers); the engines only hash them.
    """

    transaction_id: np.ndarray
    customer_id: np.ndarray
    terminal_id: np.ndarray
    epoch_ms: np.ndarray  # int64, absolute time
    local_epoch_ms: np.ndarray  # int64, wall-clock time as written (calendar features)
    amount: np.ndarray  # float64
    label: np.ndarray | None = None  # int8 0/1, None when the file has no labels
    scenario: np.ndarray | None = None  # int8, the simulator's fraud scenario (0 = genuine)

    def __len__(self) -> int:
        return len(self.transaction_id)

    def take(self, index: np.ndarray | slice) -> TransactionFrame:
        """Rows selected by a boolean mask, an index array or a slice."""
        return TransactionFrame(
            transaction_id=self.transaction_id[index],
            customer_id=self.customer_id[index],
            terminal_id=self.terminal_id[index],
            epoch_ms=self.epoch_ms[index],
            local_epoch_ms=self.local_epoch_ms[index],
            amount=self.amount[index],
            label=None if self.label is None else self.label[index],
            scenario=None if self.scenario is None else self.scenario[index],
        )

    def payloads(self, id_prefix: str = "") -> Iterator[dict[str, object]]:
        """Each row as the JSON body of a scoring request (``features.schema.Transaction``).

        Amounts of zero (the handbook has a few) are not payments and are skipped; times
        are written in UTC. ``id_prefix`` keeps ids of separate replays apart.
        """
        times = self.epoch_ms.astype("datetime64[ms]").astype(str).tolist()
        rows = zip(
            self.transaction_id.tolist(),
            times,
            self.customer_id.tolist(),
            self.terminal_id.tolist(),
            self.amount.tolist(),
            strict=True,
        )
        for transaction_id, timestamp, customer, terminal, amount in rows:
            if amount <= 0:
                continue
            yield {
                "transaction_id": f"{id_prefix}{transaction_id}",
                "timestamp": f"{timestamp}+00:00",
                "customer_id": str(customer),
                "terminal_id": str(terminal),
                "amount": amount,
            }

    @property
    def day(self) -> np.ndarray:
        """Calendar day of each row as numpy datetime64[D] (wall clock)."""
        return (self.local_epoch_ms // MS_PER_DAY).astype("datetime64[D]")

    def require_labels(self) -> np.ndarray:
        if self.label is None:
            raise DataError(f"this history has no {LABEL_COLUMN} column, but labels are needed")
        return self.label

    def iter_rows(self) -> Iterator[tuple[object, object, object, int, int, float]]:
        """(transaction_id, customer_id, terminal_id, epoch_ms, local_epoch_ms, amount)."""
        return zip(
            self.transaction_id.tolist(),
            self.customer_id.tolist(),
            self.terminal_id.tolist(),
            self.epoch_ms.tolist(),
            self.local_epoch_ms.tolist(),
            self.amount.tolist(),
            strict=True,
        )


def load_transactions(path: str | Path) -> TransactionFrame:
    """Read a handbook-schema ``.csv`` or ``.csv.gz`` file and check it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        frame = pd.read_csv(path, low_memory=False)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        EOFError,
        OSError,
    ) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    return frame_from_pandas(frame, source=str(path))


def frame_from_pandas(frame: pd.DataFrame, source: str = "data") -> TransactionFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}")
    if frame["TRANSACTION_ID"].duplicated().any():
        first = frame.loc[frame["TRANSACTION_ID"].duplicated(), "TRANSACTION_ID"].iloc[0]
        raise DataError(f"{source}: TRANSACTION_ID {first} appears more than once")
    try:
        times = pd.to_datetime(frame["TX_DATETIME"], format=DATETIME_FORMAT)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: TX_DATETIME must be 'YYYY-MM-DD HH:MM:SS' ({exc})") from exc
    epoch_ms = times.to_numpy(dtype="datetime64[ms]").astype(np.int64)
    amount = pd.to_numeric(frame["TX_AMOUNT"], errors="coerce").to_numpy(dtype=np.float64)
    # Recorded histories hold zero-amount card checks (the handbook has 30), so a history
    # accepts 0 where the live API, scoring payments, requires a positive amount.
    bad = ~np.isfinite(amount) | (amount < 0) | (amount > MAX_AMOUNT)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: TX_AMOUNT must be a number in [0, {MAX_AMOUNT:g}]; "
            f"row {row + 2} has {frame['TX_AMOUNT'].iloc[row]!r}"
        )
    for column in ("CUSTOMER_ID", "TERMINAL_ID"):
        if frame[column].isna().any():
            raise DataError(f"{source}: {column} is empty in some rows")
    return TransactionFrame(
        transaction_id=frame["TRANSACTION_ID"].to_numpy(),
        customer_id=frame["CUSTOMER_ID"].to_numpy(),
        terminal_id=frame["TERMINAL_ID"].to_numpy(),
        epoch_ms=epoch_ms,
        local_epoch_ms=epoch_ms,
        amount=amount,
        label=_optional_flag(frame, LABEL_COLUMN, source, allowed=(0, 1)),
        scenario=_optional_flag(frame, SCENARIO_COLUMN, source, allowed=tuple(range(100))),
    )


def _optional_flag(
    frame: pd.DataFrame, column: str, source: str, allowed: tuple[int, ...]
) -> np.ndarray | None:
    if column not in frame.columns:
        return None
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = ~values.isin(allowed)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: {column} must be one of {allowed[0]}..{allowed[-1]}; "
            f"row {row + 2} has {frame[column].iloc[row]!r}"
        )
    return values.to_numpy().astype(np.int8)
