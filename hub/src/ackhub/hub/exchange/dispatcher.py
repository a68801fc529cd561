"""The dispatcher: whenever a connector has room, claim that agency's due deliveries (oldest first) and
hand them over, paced by the agency's circuit breaker and any "retry after" it asked for.

It wakes on events (a publish, an acknowledgement, a new stream) and on every sweep tick, so retry timing
stays data in the store rather than one timer per delivery.

A claim that took everything due for an agency also says when that agency's next delivery falls due.
Until then, and until something changes what is due (a publish, a sweep, a redelivery: `wake`), a pass
that an acknowledgement started (`nudge`: a slot has room again) skips that agency instead of asking the
store in vain. Without this, every record cost three claim transactions that found nothing. A pass at
least every sweep interval ignores what it knows, for what other processes changed in the store.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import structlog
from sqlmodel import Session

from ackhub.core.clock import Clock
from ackhub.core.connector import Connector, Slot
from ackhub.core.errors import AckhubError
from ackhub.hub.exchange.breaker import CLOSED, Breakers
from ackhub.hub.exchange.claims import Claim, ClaimRequest, claim_many
from ackhub.hub.exchange.notify import Notifications
from ackhub.hub.store.batching import GroupCommit, Lane
from ackhub.hub.store.db import Database

log = structlog.get_logger("ackhub.dispatch")
# Claims run after the publishes (lane 0) and acknowledgements (lane 1) of the same transaction, so they
# see the deliveries just published and the room just freed.
CLAIM_LANE = 2


@dataclass(frozen=True, slots=True)
class Drained:
    """An agency's claim took everything due; nothing is, until `next_due_ms` (None: until something
    changes), unless the dispatcher's generation moved on since the claim was queued."""

    generation: tuple[int, int]  # the dispatcher's, and the agency's own (`wake_for`)
    next_due_ms: int | None

    def holds(self, generation: tuple[int, int], now_ms: int) -> bool:
        return generation == self.generation and (self.next_due_ms is None or now_ms < self.next_due_ms)


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
        self._generation = 0  # moves on whenever something may have become due (`wake`)
        self._agency_generation: dict[str, int] = {}  # moves on when it may have, for one agency
        self.drained: dict[str, Drained] = {}
        self.full_pass_ms = 1000  # the longest a pass goes by what it knows (`run` sets the sweep interval)
        self._last_full_ms: int | None = None
        self.claims_skipped = 0  # slots not claimed for because their agency was known to be drained

    def _claim_step(self, session: Session, requests: list[ClaimRequest]) -> list[Claim | AckhubError]:
        return list(claim_many(session, requests, self.rng))

    def generation_of(self, agency: str) -> tuple[int, int]:
        """What a claim for `agency` queued now has seen: the dispatcher's generation and the agency's."""
        return self._generation, self._agency_generation.get(agency, 0)

    def wake(self) -> None:
        """Something may have become due: forget which agencies were drained, and pass."""
        self._generation += 1
        self._wake.set()

    def wake_for(self, agencies: set[str]) -> None:
        """Deliveries for these agencies may have become due (another hub process published them; the
        empty set: anything may have): pass, forgetting what was known of these agencies only."""
        if not agencies:
            self.wake()
            return
        for agency in agencies:
            self._agency_generation[agency] = self._agency_generation.get(agency, 0) + 1
        self._wake.set()

    def nudge(self) -> None:
        """A slot has room again (nothing new is due): pass, skipping agencies known to be drained."""
        self._wake.set()

    def pause(self, agency: str, until_ms: int) -> None:
        self.paused_until[agency] = max(until_ms, self.paused_until.get(agency, 0))

    async def run(self, idle_ms: int) -> None:
        self.full_pass_ms = idle_ms
        while not self._stopped:
            full = False
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=idle_ms / 1000)
            except TimeoutError:
                full = True  # an idle tick: look at everything
            self._wake.clear()
            try:
                while await self.dispatch_once(full):
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
        run after publishes in it), so the new deliveries go out one transaction sooner. Whatever is
        published from here on is new to every agency (the generation moves on before the pass's claims
        are queued, so they count as having seen it when they share its transaction)."""
        self._generation += 1
        if self._pass.locked() or (self._early is not None and not self._early.done()):
            return
        self._early = asyncio.create_task(self._early_pass())

    async def _early_pass(self) -> None:
        try:
            await self.dispatch_once()
        except Exception:
            log.exception("dispatch.failed")

    async def dispatch_once(self, full: bool = False) -> bool:
        """One pass over every open slot; True when some slot was filled to the brim (more may be due).
        `full`: claim for every agency, drained or not."""
        async with self._pass:
            return await self._pass_over_slots(full)

    async def _pass_over_slots(self, full: bool) -> bool:
        """Every slot's claim goes into the same group commit; the deliveries go out once it commits."""
        now = self.clock.now_ms()
        if full or self._last_full_ms is None or now - self._last_full_ms >= self.full_pass_ms:
            full, self._last_full_ms = True, now
        wanted: list[tuple[Connector, Slot, int, tuple[int, int]]] = []
        probing: set[str] = set()  # a breaker that is not closed allows one probe: one slot per pass
        for connector in self.connectors:
            for slot in connector.open_slots(now):
                if self.paused_until.get(slot.agency, 0) > now or slot.agency in probing:
                    continue
                drained = self.drained.get(slot.agency)
                seen = self.generation_of(slot.agency)  # what its claim, queued below, will have seen
                if not full and drained is not None and drained.holds(seen, now):
                    self.claims_skipped += 1
                    continue
                breaker = self.breakers[slot.agency]
                allowed = breaker.allowance(now, slot.free)
                if breaker.state != CLOSED:
                    probing.add(slot.agency)
                if allowed > 0:
                    wanted.append((connector, slot, allowed, seen))
        # Queued in this turn of the event loop (no task in between), so they join the transaction being
        # gathered now: see `pass_now`.
        claims = await asyncio.gather(
            *(
                self._claims.enqueue(ClaimRequest(slot.agency, allowed, now, connector.name, slot.channel_id))
                for connector, slot, allowed, _ in wanted
            )
        )
        more = False
        for (connector, slot, allowed, seen), claim in zip(wanted, claims, strict=True):
            if len(claim.outbound) < allowed:
                self.drained[slot.agency] = Drained(seen, claim.next_due_ms)
            else:
                self.drained.pop(slot.agency, None)
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
        self.nudge()
