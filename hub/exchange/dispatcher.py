"""The dispatcher: whenever a connector has room, claim that agency's due deliveries (oldest first) and
hand them over, paced by the agency's circuit breaker and any "retry after" it asked for.

It wakes on events (a publish, an acknowledgement, a new stream) and on every sweep tick, so retry timing
stays data in the store rather than one timer per delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog
from sqlmodel import Session

from connectors.abc import Connector, Slot
from hub.clock import Clock
from hub.errors import AckhubError
from hub.exchange.breaker import CLOSED, Breakers
from hub.exchange.claims import Claim, ClaimRequest, claim_many
from hub.exchange.notify import Notifications
from hub.store.batching import GroupCommit, Lane
from hub.store.db import Database

log = structlog.get_logger("ackhub.dispatch")
# Claims run after the publishes (lane 0) and acknowledgements (lane 1) of the same transaction, so they
# see the deliveries just published and the room just freed.
CLAIM_LANE = 2


class Dispatcher:
    def __init__(
        self,
        db: Database,
        writes: GroupCommit,
        clock: Clock,
        connectors: list[Connector],
        breakers: Breakers,
        notifications: Notifications,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.connectors = connectors
        self.breakers = breakers
        self.notifications = notifications
        self.rng = rng or random.Random()
        self._claims: Lane[ClaimRequest, Claim] = writes.lane(self._claim_step, CLAIM_LANE)
        self.paused_until: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._early: asyncio.Task[None] | None = None
        self._pass = asyncio.Lock()  # one pass at a time: a breaker's single probe must stay single
        self._stopped = False

    def _claim_step(self, session: Session, requests: list[ClaimRequest]) -> list[Claim | AckhubError]:
        return list(claim_many(session, requests, self.rng))

    def wake(self) -> None:
        self._wake.set()

    def pause(self, agency: str, until_ms: int) -> None:
        self.paused_until[agency] = max(until_ms, self.paused_until.get(agency, 0))

    async def run(self, idle_ms: int) -> None:
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=idle_ms / 1000)
            self._wake.clear()
            try:
                while await self.dispatch_once():
                    pass
            except Exception:
                log.exception("dispatch.failed")

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def pass_now(self) -> None:
        """Start a pass in the next turn of the event loop, before work queued after this call is taken
        into a transaction (when the database is idle), unless a pass is under way. A publish calls this
        just before it queues its record: the pass's claims then share the publish's transaction (claims
        run after publishes in it), so the new deliveries go out one transaction sooner."""
        if self._pass.locked() or (self._early is not None and not self._early.done()):
            return
        self._early = asyncio.create_task(self._early_pass())

    async def _early_pass(self) -> None:
        try:
            await self.dispatch_once()
        except Exception:
            log.exception("dispatch.failed")

    async def dispatch_once(self) -> bool:
        """One pass over every open slot; True when some slot was filled to the brim (more may be due)."""
        async with self._pass:
            return await self._pass_over_slots()

    async def _pass_over_slots(self) -> bool:
        """Every slot's claim goes into the same group commit; the deliveries go out once it commits."""
        now = self.clock.now_ms()
        wanted: list[tuple[Connector, Slot, int]] = []
        probing: set[str] = set()  # a breaker that is not closed allows one probe: one slot per pass
        for connector in self.connectors:
            for slot in connector.open_slots(now):
                if self.paused_until.get(slot.agency, 0) > now or slot.agency in probing:
                    continue
                breaker = self.breakers[slot.agency]
                allowed = breaker.allowance(now, slot.free)
                if breaker.state != CLOSED:
                    probing.add(slot.agency)
                if allowed > 0:
                    wanted.append((connector, slot, allowed))
        # Queued in this turn of the event loop (no task in between), so they join the transaction being
        # gathered now: see `pass_now`.
        claims = await asyncio.gather(
            *(
                self._claims.enqueue(ClaimRequest(slot.agency, allowed, now, connector.name, slot.channel_id))
                for connector, slot, allowed in wanted
            )
        )
        more = False
        for (connector, slot, allowed), claim in zip(wanted, claims, strict=True):
            await self._hand_over(connector, slot, claim, now)
            more = more or len(claim.outbound) == allowed
        return more

    async def _hand_over(self, connector: Connector, slot: Slot, claim: Claim, now: int) -> None:
        breaker = self.breakers[slot.agency]
        breaker.unanswered(claim.unanswered_sent_ms, now)
        if claim.outbound:
            breaker.sent(len(claim.outbound), claim.outbound[-1].expires_ms)
        for outbound in claim.outbound:
            log.debug(
                "delivery.sent",
                delivery_id=outbound.delivery_id,
                record_id=outbound.record.id,
                agency=slot.agency,
                attempt=outbound.attempt,
            )
            await connector.send(slot, outbound)
        if claim.notices:
            await self.notifications.dispatch(claim.notices)

    def acknowledged(self, agency: str, delivery_id: str) -> None:
        self.breakers[agency].answered(self.clock.now_ms())
        for connector in self.connectors:
            connector.released(agency, delivery_id)
        self.wake()
