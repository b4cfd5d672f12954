"""How often an ordinary numeric id is taken for a card number.

    python -m service.benchmarks.card_number_false_positives [--ids 1000000] [--seed 15]

Draws ids of 13 to 19 random digits (each length equally often, leading zeros allowed, as
an auto-increment or random id padded to a width would be) and reports the share the
detector of ``features/card_numbers.py`` flags, beside the share that passes Luhn alone,
with a 95 % interval (Wilson). With ``RISKSCORE_PAN_POLICY=refuse`` that share of such ids
would be refused; the README quotes the figure.
"""

from __future__ import annotations

import argparse
import math
import random

from features.card_numbers import MAX_DIGITS, MIN_DIGITS, is_card_number, luhn_valid


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of a proportion (Wilson score), as fractions."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def measure(ids: int, seed: int) -> dict[str, tuple[int, int]]:
    rng = random.Random(seed)
    flagged = luhn = 0
    by_length = {n: [0, 0] for n in range(MIN_DIGITS, MAX_DIGITS + 1)}
    for _ in range(ids):
        length = rng.randint(MIN_DIGITS, MAX_DIGITS)
        digits = str(rng.randrange(10**length)).zfill(length)
        hit = is_card_number(digits)
        flagged += hit
        luhn += luhn_valid(digits)
        by_length[length][0] += hit
        by_length[length][1] += 1
    counts = {"detector": (flagged, ids), "luhn alone": (luhn, ids)}
    counts |= {f"  {n} digits": (hit, total) for n, (hit, total) in by_length.items()}
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="random ids to draw")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    if args.ids < 1:
        parser.error("--ids: at least 1")
    print(f"{args.ids:,} random ids of {MIN_DIGITS}-{MAX_DIGITS} digits (seed {args.seed})")
    for name, (hits, n) in measure(args.ids, args.seed).items():
        low, high = wilson(hits, n)
        interval = f"95 %: {100 * low:.2f}-{100 * high:.2f} %"
        print(f"{name:>12}: {hits:>9,} flagged = {100 * hits / n:.2f} % ({interval})")


if __name__ == "__main__":
    main()
