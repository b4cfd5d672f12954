"""The in-flight registry's count of work: a decision whose audit write failed stays
registered for its retry, but is no work (Kafka's backpressure gate counts only work)."""

from __future__ import annotations

from service.errors import AuditUnavailable
from service.in_flight import InFlight


async def test_a_failed_write_waiting_for_its_retry_is_not_work() -> None:
    registry = InFlight()
    deciding = registry.reserve("t-1", "digest-1")
    failed = registry.reserve("t-2", "digest-2")
    failed.set_exception(AuditUnavailable("the audit store is full"))
    failed.exception()  # retrieved, as the recorder does
    assert len(registry) == 2  # both ids still registered: a retry finds t-2
    assert registry.unsettled() == 1
    deciding.cancel()
    assert registry.unsettled() == 0
