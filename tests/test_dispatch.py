"""What the dispatcher knows about drained agencies (ackhub.hub.exchange.dispatcher): a pass started by an
acknowledgement skips an agency whose last claim took everything due, and that knowledge never hides a
delivery that falls due, by time or by a change, from the next pass."""

from __future__ import annotations

import uuid

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.hub.exchange.dispatcher import Dispatcher
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, wait_for
from tests.records import declaration

TYPE = "customs.export_declaration.released"


def _own_passes(hub: RunningHub) -> Dispatcher:
    """The hub's dispatcher with its background loop stopped, so the only passes are the test's own
    (and the one each publish starts), and no pass goes by the clock alone."""
    assert hub.server.exchange is not None and hub.server._dispatch_task is not None
    dispatcher = hub.server.exchange.dispatcher
    dispatcher.stop()
    task = hub.server._dispatch_task

    async def stopped() -> None:
        await task

    hub.run(stopped())
    dispatcher.full_pass_ms = 10**12
    return dispatcher


def _publish(hub: RunningHub) -> pb.Receipt:
    return hub.agency("customs").publish(
        TYPE, declaration(), subject_uscc="91110000600037341L", request_id=str(uuid.uuid4())
    )


def _record(hub: RunningHub, receipt: pb.Receipt) -> pb.GetRecordResponse:
    request = pb.GetRecordRequest(record_id=receipt.record_id)
    record: pb.GetRecordResponse = hub.exchange_stub.GetRecord(request, metadata=hub.as_operator())
    return record


def _final(hub: RunningHub, receipt: pb.Receipt) -> bool:
    return all(
        d.state in (types_pb2.DELIVERY_STATE_ACCEPTED, types_pb2.DELIVERY_STATE_RECEIVED)
        for d in _record(hub, receipt).deliveries
    )


def _pass(hub: RunningHub, dispatcher: Dispatcher) -> int:
    """One pass as an acknowledgement starts it; returns how many slots it skipped."""
    before = dispatcher.claims_skipped
    hub.run(dispatcher.dispatch_once())
    return dispatcher.claims_skipped - before


def test_a_pass_after_acknowledgements_skips_drained_agencies(hub: RunningHub, clock: ManualClock) -> None:
    dispatcher = _own_passes(hub)
    tax, fx = Inbox(lambda d: Verdict.accept()), Inbox(lambda d: Verdict.received())
    start_subscription(hub.agency("tax", clock=clock), tax)
    start_subscription(hub.agency("fx", clock=clock), fx)
    receipt = _publish(hub)
    ids = {d.delivery_id for d in receipt.deliveries}
    # The publish's own pass claimed both deliveries in its transaction, and saw that nothing else waits.
    wait_for(lambda: set(tax.ids()) | set(fx.ids()) == ids, what="both deliveries")
    assert set(dispatcher.drained) == {"tax", "fx"}
    wait_for(lambda: _final(hub, receipt), what="both acknowledgements")
    assert _pass(hub, dispatcher) == 2  # one slot each: neither asks the store
    assert len(tax.ids()) == len(fx.ids()) == 1


def _first_attempt_to_fx(hub: RunningHub, clock: ManualClock, fx: Inbox) -> str:
    """Publish one record with `fx` subscribed; returns fx's delivery id once its first attempt arrived."""
    start_subscription(hub.agency("fx", clock=clock), fx)
    receipt = _publish(hub)
    delivery_id = next(d.delivery_id for d in receipt.deliveries if d.recipient == "fx")
    wait_for(lambda: fx.attempts(delivery_id) == [1], what="the first attempt")
    return delivery_id


def _second_attempt_after(
    hub: RunningHub, clock: ManualClock, dispatcher: Dispatcher, fx: Inbox, delivery_id: str, wait_ms: int
) -> None:
    """Until `wait_ms` have passed, passes skip fx; at `wait_ms` one asks the store and sends attempt 2."""
    clock.advance(wait_ms - 1)
    assert _pass(hub, dispatcher) == 1
    assert fx.attempts(delivery_id) == [1]
    clock.advance(1)
    assert _pass(hub, dispatcher) == 0
    wait_for(lambda: fx.attempts(delivery_id) == [1, 2], what="the second attempt, as it fell due")


def test_what_falls_due_by_time_is_claimed_when_it_does(hub: RunningHub, clock: ManualClock) -> None:
    """fx never answers: its retry falls due 1 s after the attempt (the test route's first interval)."""
    dispatcher = _own_passes(hub)
    fx = Inbox()
    delivery_id = _first_attempt_to_fx(hub, clock, fx)
    assert dispatcher.drained["fx"].next_due_ms == clock.now_ms() + 1_000
    _second_attempt_after(hub, clock, dispatcher, fx, delivery_id, 1_000)


def test_a_change_makes_the_next_pass_look_again(hub: RunningHub, clock: ManualClock) -> None:
    """fx asks to have the delivery again in 10 s: the hint from its claim (retry in 1 s) is void, and the
    pass after the deferral learns the new time from the store."""
    dispatcher = _own_passes(hub)
    fx = Inbox(lambda d: Verdict.later(10_000) if d.attempt == 1 else None)
    delivery_id = _first_attempt_to_fx(hub, clock, fx)
    hint = dispatcher.drained["fx"]
    assert hint.next_due_ms == clock.now_ms() + 1_000  # as the claim saw it
    wait_for(
        lambda: not hint.holds(dispatcher.generation_of("fx"), clock.now_ms()), what="the deferral's wake"
    )
    assert _pass(hub, dispatcher) == 0  # the deferral voided the hint: this pass asked the store
    assert dispatcher.drained["fx"].next_due_ms == clock.now_ms() + 10_000
    _second_attempt_after(hub, clock, dispatcher, fx, delivery_id, 10_000)


def test_claims_in_one_transaction_write_together_and_never_take_a_delivery_twice(
    hub: RunningHub, clock: ManualClock
) -> None:
    """The claim lane's claims share their writes (one UPDATE, one INSERT of attempts, one of audit
    events for claims of different agencies); a second claim for the same agency in the same transaction
    sees the first one's and takes the next deliveries, not the same ones."""
    import random

    from sqlalchemy import func
    from sqlmodel import select

    from ackhub.hub.exchange.claims import ClaimRequest, claim_many
    from ackhub.hub.store.models import AttemptRow, DeliveryRow

    _own_passes(hub)  # no agency is connected either: the deliveries wait, PENDING
    receipts = [_publish(hub) for _ in range(5)]
    now = clock.now_ms() + 1
    tax = [d.delivery_id for r in receipts for d in r.deliveries if d.recipient == "tax"]
    db = hub.server.db
    requests = [
        ClaimRequest("tax", 2, now, "stream", "s1"),
        ClaimRequest("fx", 5, now, "stream", "s2"),
        ClaimRequest("tax", 2, now, "stream", "s3"),
    ]
    with db.transaction() as session:
        first, fx, second = claim_many(session, requests, random.Random(1))
    assert [o.delivery_id for o in first.outbound] == tax[:2]  # oldest first
    assert [o.delivery_id for o in second.outbound] == tax[2:4]  # not the first claim's again
    assert len(fx.outbound) == 5
    with db.transaction() as session:
        assert session.exec(select(func.count()).select_from(AttemptRow)).one() == 9
        states = list(session.exec(select(DeliveryRow.recipient, DeliveryRow.state, DeliveryRow.attempts)))
    assert states.count(("tax", "SENT", 1)) == 4 and states.count(("fx", "SENT", 1)) == 5
