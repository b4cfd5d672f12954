"""Where the Kafka-speaking commands (``produce``, ``tail``) find the service's broker: the
same settings as ``riskscore serve``, checked in seconds rather than after a client's
half-minute of retries."""

from __future__ import annotations

from service.cli.errors import UserError
from streaming.broker import BrokerError, check_reachable
from streaming.config import KafkaSettings

NO_BROKER_HINT = (
    "start `riskscore serve` (it runs the embedded broker on RISKSCORE_KAFKA_EMBEDDED_PORT), "
    "or set RISKSCORE_KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers) to your brokers"
)


def reachable_servers(kafka: KafkaSettings, given: str | None = None) -> str:
    """``given`` or the settings' brokers, once one of them accepts a connection;
    UserError naming the settings to change when none does."""
    servers = given or kafka.client_servers()
    try:
        check_reachable(servers)
    except BrokerError as exc:
        raise UserError(f"{exc}: {NO_BROKER_HINT}") from None
    return servers
