"""The event loop the service runs on: uvloop by default, the standard one on request.

Measured on one core under open-loop load (README, "Benchmark: the scoring service"),
uvloop cuts the per-request cost of aiohttp's socket and protocol handling; the standard
loop stays available for platforms without uvloop wheels or for debugging.
"""

from __future__ import annotations

import asyncio
from typing import Literal

EventLoopKind = Literal["uvloop", "asyncio"]


def new_event_loop(kind: EventLoopKind) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
