"""What the push connectors (grpc_push, webhook, filedrop) share: one slot per configured agency with a
bounded number of attempts in flight, sends run as background tasks so the dispatcher never waits on an
agency, and one way to settle what an agency answered.

An attempt that fails (agency down, too slow, answering garbage) frees its slot at once and is otherwise
left alone: the delivery is already due again at its retry time, and the circuit breaker counts it as
unanswered when it is claimed again — the same path as a stream attempt that nobody acknowledged.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from ackhub.core.connector import AckInput, AckSink, Connector, Outbound, Slot
from ackhub.core.errors import AckhubError
from ackhub.core.principal import Principal

log = structlog.get_logger("ackhub.connectors")


@dataclass(frozen=True)
class Answer:
    """What an agency's system answered to one attempt: exactly one of the fields is set, or none when the
    attempt failed (`failure` says why)."""

    ack: AckInput | None = None
    retry_after_ms: int = 0
    abort_reason: str | None = None
    failure: str = ""


class PushConnector(Connector):
    """Base of the connectors where the hub reaches out to the agency."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._limits = dict(limits)  # agency id → most attempts in flight
        self._in_flight: dict[str, dict[str, int]] = {agency: {} for agency in limits}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sink: AckSink | None = None

    @property
    def agencies(self) -> list[str]:
        return list(self._limits)

    def in_flight(self, agency: str) -> int:
        return len(self._in_flight.get(agency, {}))

    def open_slots(self, now_ms: int) -> list[Slot]:
        if self._sink is None:
            return []  # not started: nowhere to report answers yet
        slots = []
        for agency, limit in self._limits.items():
            flying = self._in_flight[agency]
            for delivery_id in [d for d, expires in flying.items() if expires <= now_ms]:
                del flying[delivery_id]  # unanswered: it will be claimed again as a retry
            if len(flying) < limit:
                slots.append(Slot(agency, f"{self.name}:{agency}", limit - len(flying)))
        return slots

    async def send(self, slot: Slot, outbound: Outbound) -> None:
        """Starts the attempt in the background and returns at once."""
        self._in_flight.setdefault(slot.agency, {})[outbound.delivery_id] = outbound.expires_ms
        task = asyncio.create_task(self._attempt(slot.agency, outbound))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def released(self, agency: str, delivery_id: str) -> None:
        self._in_flight.get(agency, {}).pop(delivery_id, None)

    async def start(self, sink: AckSink) -> None:
        self._sink = sink

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until every attempt started so far has finished (for tests and orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _attempt(self, agency: str, outbound: Outbound) -> None:
        try:
            await self.deliver(agency, outbound)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "connector.failed", connector=self.name, agency=agency, delivery_id=outbound.delivery_id
            )
            self.released(agency, outbound.delivery_id)

    @abstractmethod
    async def deliver(self, agency: str, outbound: Outbound) -> None:
        """Carry one attempt to the agency and settle what it answered."""

    async def settle(self, agency: str, outbound: Outbound, answer: Answer) -> None:
        """Report the agency's answer through the exchange; a failure only frees the slot."""
        assert self._sink is not None
        delivery_id = outbound.delivery_id
        if answer.ack is not None:
            try:
                await self._sink.acknowledge(Principal("agency", agency), answer.ack, via=self.name)
                return
            except AckhubError as error:
                answer = Answer(failure=f"acknowledgement refused: {error.reason}: {error.message}")
        elif answer.retry_after_ms > 0:
            await self._sink.retry_after(agency, delivery_id, answer.retry_after_ms)
            await self._sink.retry_after(agency, "", answer.retry_after_ms)
            return
        elif answer.abort_reason is not None:
            await self._sink.abort(agency, delivery_id, answer.abort_reason)
            return
        log.warning(
            "connector.attempt_failed",
            connector=self.name,
            agency=agency,
            delivery_id=delivery_id,
            attempt=outbound.attempt,
            why=answer.failure,
        )
        self.released(agency, delivery_id)
