"""The connector interface: how the dispatcher hands an attempt to an agency's system.

A connector reports where it can take deliveries right now (`open_slots`), takes them (`send`), and learns
when an acknowledgement frees a slot (`released`). Acknowledgements themselves come back through the
exchange's one acknowledgement path, whatever the connector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from ackhub.audit.acks import AckFields
from ackhub.core.principal import Principal


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """The stored record an attempt carries (the columns of `records` a connector sends)."""

    id: str
    record_type: str
    publisher: str
    subject_uscc: str | None
    declaration_number: str | None
    content_type: str
    payload: bytes
    digest: str
    accepted_ms: int
    schema_version: int


@dataclass(frozen=True)
class Outbound:
    """One attempt to hand to a connector."""

    delivery_id: str
    attempt: int
    record: OutboundRecord
    recipient: str
    required_level: str
    expires_ms: int  # when this attempt counts as unanswered


@dataclass(frozen=True)
class AckInput:
    delivery_id: str
    record_id: str
    digest: str  # "sha256:<hex>"
    recipient: str
    key_id: str
    status: str  # RECEIVED ACCEPTED REJECTED, or "" when unspecified
    reason: str
    time_ms: int | None  # None when absent or not a whole millisecond
    signature: bytes

    def fields(self) -> AckFields:
        assert self.time_ms is not None
        return AckFields(
            self.delivery_id,
            self.record_id,
            self.digest.removeprefix("sha256:"),
            self.recipient,
            self.key_id,
            self.status,
            self.reason,
            self.time_ms,
        )


class AckSink(Protocol):
    """Where connectors report what agencies answered: `hub.exchange.hub.Exchange` is one."""

    async def acknowledge(self, caller: Principal, ack: AckInput, via: str) -> object:
        """Check and store a signed acknowledgement (raises `ackhub.core.errors.AckhubError` when refused)."""
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
