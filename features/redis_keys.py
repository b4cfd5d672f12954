"""Key names of the feature state in Redis, all in one place.

Every key of one entity carries that entity's hash tag, the part in braces, so Redis
Cluster keeps it in one slot and no call is ever cross-slot: ``{c:<customer>}`` for the
customer *and* the customer-at-terminal (which is then updated in the same call),
``{t:<terminal>}`` for the terminal, ``{x:<transaction>}`` for the small lookup a label
uses to find its payment's entities. A prefix names the feature plan (a digest of its
windows), so a changed plan starts on fresh keys instead of misreading old ones.

>>> keys = KeyNames("0123abcd")
>>> keys.customer("c-42"), keys.customer_terminal("c-42", "t-9"), keys.terminal("t-9")
(b'rs:0123abcd:{c:c-42}', b'rs:0123abcd:{c:c-42}:t:t-9', b'rs:0123abcd:{t:t-9}')
>>> keys.customer_sequence("c-42")
b'rs:0123abcd:{c:c-42}:seq'
>>> keys.label_lookup("tx-1")
b'rs:0123abcd:{x:tx-1}'
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable

from features.plan import FeaturePlan


def plan_digest(plan: FeaturePlan) -> str:
    """Eight hex digits naming the plan's windows (entity, window, delay, labels)."""
    text = ";".join(
        f"{entity.value}:{s.window_ms}:{s.delay_ms}:{int(s.uses_labels)}"
        for entity in plan.entities()
        for s in plan.specs[entity]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class KeyNames:
    """Builds the keys of one feature plan's state (as bytes, ready for the wire)."""

    def __init__(self, digest: str) -> None:
        self.prefix = f"rs:{digest}:"

    def customer(self, customer_id: Hashable) -> bytes:
        return f"{self.prefix}{{c:{customer_id}}}".encode()

    def customer_terminal(self, customer_id: Hashable, terminal_id: Hashable) -> bytes:
        return f"{self.prefix}{{c:{customer_id}}}:t:{terminal_id}".encode()

    def customer_sequence(self, customer_id: Hashable) -> bytes:
        """The second stage's sequence of the customer, under the customer's hash tag."""
        return f"{self.prefix}{{c:{customer_id}}}:seq".encode()

    def terminal(self, terminal_id: Hashable) -> bytes:
        return f"{self.prefix}{{t:{terminal_id}}}".encode()

    def label_lookup(self, transaction_id: Hashable) -> bytes:
        return f"{self.prefix}{{x:{transaction_id}}}".encode()

    @property
    def pattern(self) -> str:
        """Every key of this plan (for SCAN in tests and clean-ups)."""
        return f"{self.prefix}*"
