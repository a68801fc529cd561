"""The subscription stream connector: agencies dial out with `ExchangeService.Subscribe` and keep the
stream open; each open stream is a channel with a window of unacknowledged deliveries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ackhub.core.connector import Connector, Outbound, Slot
from ackhub.core.ids import new_id


@dataclass
class StreamChannel:
    agency: str
    window: int
    id: str = field(default_factory=new_id)
    # Attempts from the dispatcher, and whatever else the stream's owner queues; None ends the stream.
    outbox: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    in_flight: dict[str, int] = field(default_factory=dict)  # delivery id → when the attempt expires

    def free(self, now_ms: int) -> int:
        for delivery_id in [d for d, expires in self.in_flight.items() if expires <= now_ms]:
            del self.in_flight[delivery_id]  # unanswered: it will be claimed again as a retry
        return self.window - len(self.in_flight)


class StreamConnector(Connector):
    name = "stream"

    def __init__(self) -> None:
        self._channels: dict[str, StreamChannel] = {}

    def open(self, agency: str, window: int) -> StreamChannel:
        channel = StreamChannel(agency, window)
        self._channels[channel.id] = channel
        return channel

    def close(self, channel: StreamChannel) -> None:
        self._channels.pop(channel.id, None)
        channel.outbox.put_nowait(None)

    def connected(self) -> dict[str, int]:
        """Open streams per agency."""
        counts: dict[str, int] = {}
        for channel in self._channels.values():
            counts[channel.agency] = counts.get(channel.agency, 0) + 1
        return counts

    def open_slots(self, now_ms: int) -> list[Slot]:
        """Channels with room. A busy channel waits until an eighth of its window is free, so that under
        load the dispatcher claims deliveries in batches rather than one per acknowledgement."""
        slots = []
        for channel in self._channels.values():
            free = channel.free(now_ms)
            if free > 0 and (free >= max(1, channel.window // 8) or not channel.in_flight):
                slots.append(Slot(channel.agency, channel.id, free))
        return slots

    async def send(self, slot: Slot, outbound: Outbound) -> None:
        channel = self._channels.get(slot.channel_id)
        if channel is None:
            return  # the stream closed meanwhile; the attempt expires and is retried
        channel.in_flight[outbound.delivery_id] = outbound.expires_ms
        channel.outbox.put_nowait(outbound)

    def released(self, agency: str, delivery_id: str) -> None:
        for channel in self._channels.values():
            if channel.agency == agency:
                channel.in_flight.pop(delivery_id, None)
