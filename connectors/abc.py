"""The connector interface: how the dispatcher hands an attempt to an agency's system.

A connector reports where it can take deliveries right now (`open_slots`), takes them (`send`), and learns
when an acknowledgement frees a slot (`released`). Acknowledgements themselves come back through the
exchange's one acknowledgement path, whatever the connector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from hub.auth.identity import Principal
from hub.exchange.acknowledge import AckInput, AckOutcome
from hub.exchange.claims import Outbound


class AckSink(Protocol):
    """Where connectors report what agencies answered: `hub.exchange.hub.Exchange` is one."""

    async def acknowledge(self, caller: Principal, ack: AckInput, via: str) -> AckOutcome:
        """Check and store a signed acknowledgement (raises `hub.errors.AckhubError` when refused)."""
        ...

    async def retry_after(self, agency: str, delivery_id: str, wait_ms: int) -> None:
        """Hold one delivery back (`delivery_id`), or all of the agency's (empty `delivery_id`)."""
        ...

    async def abort(self, agency: str, delivery_id: str, reason: str) -> None:
        """Stop retrying one delivery and open an escalation case."""
        ...


@dataclass(frozen=True)
class Slot:
    """Room for `free` more attempts to `agency` through the connector's channel `channel_id`."""

    agency: str
    channel_id: str
    free: int


class Connector(ABC):
    name: str

    @abstractmethod
    def open_slots(self, now_ms: int) -> list[Slot]:
        """Where attempts can go now; an agency with no live channel has no slot."""

    @abstractmethod
    async def send(self, slot: Slot, outbound: Outbound) -> None:
        """Hand one attempt over; must not block on the agency."""

    @abstractmethod
    def released(self, agency: str, delivery_id: str) -> None:
        """An acknowledgement (or a deferral) arrived: the attempt no longer occupies a slot."""

    async def start(self, sink: AckSink) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Called once the exchange exists: where to report acknowledgements; start background work."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Stop background work and close connections (the hub is stopping)."""
