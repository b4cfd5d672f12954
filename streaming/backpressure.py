"""When the Kafka path should stop fetching: a queue depth with two marks (hysteresis).

Busy from the moment the depth reaches ``high`` until it has fallen to ``low``, so that a
queue hovering around one mark does not pause and resume fetching on every poll.
"""

from __future__ import annotations

from collections.abc import Callable


class DepthGate:
    """``gate()`` is True while the queue is (still) too deep to take more."""

    def __init__(self, depth: Callable[[], int], high: int, low: int | None = None) -> None:
        if high < 1:
            raise ValueError("high must be at least 1")
        self._depth = depth
        self.high = high
        self.low = high // 2 if low is None else low
        self._busy = False

    def __call__(self) -> bool:
        depth = self._depth()
        if self._busy:
            self._busy = depth > self.low
        else:
            self._busy = depth >= self.high
        return self._busy
