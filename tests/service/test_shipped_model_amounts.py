"""What the shipped model learned about amounts, measured on the real service, held equal
to what the README says (so the README cannot drift from the artifact)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.service.conftest import ClientFactory

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
# Whole units over the ordinary range, cents around the simulator's rule (220).
AMOUNTS = sorted(
    {float(a) for a in range(10, 2001)} | {round(215 + c / 100, 2) for c in range(1001)}
)


def _fresh(i: int, amount: float) -> dict[str, Any]:
    # A customer and a terminal never seen before, an ordinary weekday afternoon.
    return {
        "transaction_id": f"amount-{i}",
        "timestamp": "2025-06-02T14:03:27+02:00",
        "customer_id": f"fresh-customer-{i}",
        "terminal_id": f"fresh-terminal-{i}",
        "amount": amount,
        "currency": "EUR",
    }


async def test_the_readme_states_the_shipped_amount_cliff(make_client: ClientFactory) -> None:
    client = await make_client()
    actions: list[str] = []
    for start in range(0, len(AMOUNTS), 500):
        batch = [_fresh(start + i, a) for i, a in enumerate(AMOUNTS[start : start + 500])]
        response = await client.post(
            "/score/batch", json={"transactions": batch}, headers={"X-Deadline-Ms": "60000"}
        )
        actions += [item["action"] for item in (await response.json())["results"]]
    cliff = next(a for a, action in zip(AMOUNTS, actions, strict=True) if action != "approve")
    below = [action for a, action in zip(AMOUNTS, actions, strict=True) if a < cliff]
    above = [action for a, action in zip(AMOUNTS, actions, strict=True) if a >= cliff]
    last_approved = max(a for a in AMOUNTS if a < cliff)

    assert set(below) == {"approve"}
    assert "approve" not in above  # one cliff, no way back
    reviewed = [a for a, action in zip(AMOUNTS, actions, strict=True) if action == "review"]
    # The rest declined; the few reviewed amounts sit just above the cliff.
    assert above.count("decline") + len(reviewed) == len(above)
    assert all(cliff <= a < cliff + 2 for a in reviewed)
    section = README[README.index("**What the shipped model learned") :][:2000]
    stated = re.search(r"approved up to ([\d.]+) and declined from ([\d.]+)", section)
    assert stated, "the README states the cliff as 'approved up to X and declined from Y'"
    assert (float(stated[1]), float(stated[2])) == (last_approved, cliff)
    pocket = re.search(r"([\d.]+) to ([\d.]+) go to review", section)
    assert pocket, "the README names the reviewed amounts as 'X to Y go to review'"
    assert (float(pocket[1]), float(pocket[2])) == (min(reviewed), max(reviewed))
