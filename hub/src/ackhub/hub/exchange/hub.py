"""`Exchange`: the use cases the gRPC services call, each running its blocking store work off the event
loop and then telling the dispatcher and the notifiers what changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ackhub.core.clock import Clock
from ackhub.core.connector import AckInput
from ackhub.core.errors import AckhubError
from ackhub.core.principal import Principal
from ackhub.hub.config import Settings
from ackhub.hub.exchange import acknowledge as ack_module
from ackhub.hub.exchange import claims, operations, publish, sweep
from ackhub.hub.exchange.dispatcher import Dispatcher
from ackhub.hub.exchange.keys import KeyRing
from ackhub.hub.exchange.notify import Notifications
from ackhub.hub.exchange.publish import PublishRequest, Receipt
from ackhub.hub.exchange.routing import Router
from ackhub.hub.exchange.signatures import SignatureChecks
from ackhub.hub.store.batching import GroupCommit, Lane
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import DeliveryRow, EscalationRow

log = structlog.get_logger("ackhub.exchange")


@dataclass
class Exchange:
    settings: Settings
    db: Database
    clock: Clock
    router: Router
    keys: KeyRing
    dispatcher: Dispatcher
    notifications: Notifications
    writes: GroupCommit  # shared with the dispatcher's claims: one transaction for all that waits
    _publishes: Lane[publish.PublishItem, publish.Receipt] = field(init=False)
    _acks: Lane[ack_module.AckRequest, ack_module.AckOutcome] = field(init=False)
    signatures: SignatureChecks = field(init=False)
    # Called with every acknowledgement's outcome (e.g. the console's latency histogram); must not block.
    ack_observers: list[Callable[[ack_module.AckOutcome], None]] = field(default_factory=list)
    # Called with (publisher, receipt) for each receipt given (a replayed one too); must not block.
    publish_observers: list[Callable[[Principal, Receipt], None]] = field(default_factory=list)
    # Called with (publisher, receipt) for each record stored whose schema version is deprecated.
    deprecation_observers: list[Callable[[Principal, Receipt], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        max_payload = self.settings.server.max_payload_bytes
        self._publishes = self.writes.lane(
            lambda session, items: publish.publish_many(session, self.router, items, max_payload),
            0,
            publish.reads_ahead,
        )
        self._acks = self.writes.lane(
            lambda session, items: ack_module.acknowledge_many(session, items), 1, ack_module.reads_ahead
        )
        self.signatures = SignatureChecks(self.keys)

    @property
    def agency_ids(self) -> set[str]:
        return {agency.id for agency in self.settings.agencies}

    async def publish(self, publisher: Principal, request: PublishRequest) -> Receipt:
        (answer,) = await self.publish_many(publisher, [request])
        if isinstance(answer, AckhubError):
            raise answer
        return answer

    async def publish_many(
        self, publisher: Principal, requests: list[PublishRequest]
    ) -> list[Receipt | AckhubError]:
        """Records queued together so they share a group commit; each answered with its receipt or its own
        refusal, in order. The dispatcher's pass starts first, so its claims join the same transaction."""
        self.dispatcher.pass_now()
        now = self.clock.now_ms()
        futures = [self._publishes.enqueue(publish.PublishItem(publisher, r, now)) for r in requests]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        answers: list[Receipt | AckhubError] = []
        for request, outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, Receipt):
                # Per record at debug: the audit log holds every publish and acknowledgement; at info,
                # thousands of lines a second would cost the event loop a sixth of its time.
                log.debug(
                    "record.published",
                    record_id=outcome.record_id,
                    agency=publisher.id,
                    record_type=request.record_type,
                    deliveries=len(outcome.deliveries),
                    replayed=outcome.replayed,
                )
                for observe in self.publish_observers:
                    observe(publisher, outcome)
                if outcome.deprecation is not None and not outcome.replayed:
                    for observe in self.deprecation_observers:
                        observe(publisher, outcome)
            elif not isinstance(outcome, AckhubError):
                raise outcome  # the transaction failed: nothing of it was stored
            answers.append(outcome)
        if any(isinstance(a, Receipt) and not a.replayed for a in answers):
            # Most often the early pass already claimed them in the same transaction; if a pass was
            # under way instead, this one sees them (`pass_now` moved the generation on).
            self.dispatcher.nudge()
        return answers

    async def acknowledge(self, caller: Principal, ack: AckInput, via: str) -> ack_module.AckOutcome:
        (answer,) = await self.acknowledge_many(caller, [ack], via)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def acknowledge_many(
        self, caller: Principal, acks: list[AckInput], via: str
    ) -> list[ack_module.AckOutcome | BaseException]:
        """Acknowledgements that arrived together (a stream's batch), handled together: one wait for
        their signature checks, then all queued for the same group commit. Each is answered in order with
        its outcome, its refusal (an `AckhubError`) or, if its transaction failed, that exception."""
        checked = [i for i, ack in enumerate(acks) if ack.time_ms is not None and len(ack.signature) == 64]
        signatures: list[AckhubError | None] = [None] * len(acks)  # a malformed one is refused as such
        if checked:
            verdicts = await self.signatures.check_many(
                [(acks[i].recipient, acks[i].key_id, acks[i].fields(), acks[i].signature) for i in checked]
            )
            for i, verdict in zip(checked, verdicts, strict=True):
                signatures[i] = verdict
        now = self.clock.now_ms()
        answers: list[ack_module.AckOutcome | BaseException] = await asyncio.gather(
            *(
                self._acks.enqueue(ack_module.AckRequest(caller, ack, now, via, signature))
                for ack, signature in zip(acks, signatures, strict=True)
            ),
            return_exceptions=True,
        )
        for ack, answer in zip(acks, answers, strict=True):
            if isinstance(answer, ack_module.AckOutcome):
                log.debug(
                    "delivery.acknowledged",
                    delivery_id=ack.delivery_id,
                    record_id=ack.record_id,
                    agency=caller.id,
                    status=ack.status,
                    duplicate=answer.duplicate,
                    state=answer.delivery.state,
                )
                self.dispatcher.acknowledged(answer.delivery.recipient, answer.delivery.id)
                for observe in self.ack_observers:
                    observe(answer)
                if answer.notices:
                    await self.notifications.dispatch(answer.notices)
        return answers

    async def retry_after(self, agency: str, delivery_id: str, wait_ms: int) -> None:
        now = self.clock.now_ms()
        if delivery_id:
            if await self.db.run(claims.defer, self.db, delivery_id, agency, now + wait_ms, now):
                for connector in self.dispatcher.connectors:
                    connector.released(agency, delivery_id)
                self.dispatcher.wake()  # due sooner than the retry the dispatcher may be waiting for
        else:
            self.dispatcher.pause(agency, now + wait_ms)
        log.info("agency.retry_after", agency=agency, delivery_id=delivery_id or None, wait_ms=wait_ms)

    async def abort(self, agency: str, delivery_id: str, reason: str) -> None:
        """A push connector's agency answered "abort": no more retries; a case goes to people."""
        notice = await self.db.run(claims.abort, self.db, delivery_id, agency, reason, self.clock.now_ms())
        for connector in self.dispatcher.connectors:
            connector.released(agency, delivery_id)
        log.info("delivery.aborted", agency=agency, delivery_id=delivery_id, reason=reason)
        if notice is not None:
            await self.notifications.dispatch([notice])

    async def sweep(self) -> sweep.SweepResult:
        result = await self.db.run(sweep.sweep, self.db, self.clock.now_ms())
        await self.notifications.dispatch(result.notices)
        self.dispatcher.wake()
        return result

    async def resolve(self, operator: Principal, escalation_id: str, reason: str) -> EscalationRow:
        case, notices = await self.db.run(
            operations.resolve, self.db, operator, escalation_id, reason, self.clock.now_ms()
        )
        await self.notifications.dispatch(notices)
        return case

    async def add_note(self, author: Principal, escalation_id: str, text: str) -> EscalationRow:
        return await self.db.run(
            operations.add_note, self.db, author, escalation_id, text, self.clock.now_ms()
        )

    async def redeliver(self, operator: Principal, delivery_id: str) -> DeliveryRow:
        delivery = await self.db.run(
            operations.redeliver, self.db, operator, delivery_id, self.clock.now_ms()
        )
        self.redelivery_requested(delivery.recipient)
        return delivery

    def redelivery_requested(self, recipient: str) -> None:
        """After a redelivery's commit: send it now."""
        self.breakers_reset(recipient)
        self.dispatcher.wake()

    def breakers_reset(self, agency: str) -> None:
        """An operator asked for a delivery now: give the agency's circuit a fresh probe."""
        breaker = self.dispatcher.breakers[agency]
        breaker.open_until_ms = min(breaker.open_until_ms, self.clock.now_ms())
