"""The connector interface: how the dispatcher hands an attempt to an agency's system.

A connector reports where it can take deliveries right now (`open_slots`), takes them (`send`), and learns
when an acknowledgement frees a slot (`released`). Acknowledgements themselves come back through the
exchange's one acknowledgement path, whatever the connector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from hub.exchange.claims import Outbound


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
