"""The agency SDK: what an agency's system gets from `AgencyClient` beyond the raw contract."""

from __future__ import annotations

import threading
import uuid

from ackhub.client.agency import Delivery, Publication, Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, wait_for
from tests.records import declaration


def _tax_state(hub: RunningHub, record_id: str) -> int:
    record = hub.exchange_stub.GetRecord(pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator())
    return next(d.state for d in record.deliveries if d.recipient == "tax")


def test_unconfirmed_acknowledgements_are_sent_again_on_the_next_stream(
    hub: RunningHub, clock: ManualClock
) -> None:
    """Acknowledgements whose stream died before the hub confirmed them go out again when the stream reopens."""
    tax = hub.agency("tax", clock=clock)
    first_stream_done = threading.Event()

    def answer_then_lose_the_stream(delivery: Delivery) -> list[Verdict]:
        tax.stop_subscription()  # the stream dies before the answers can go out on it
        return [Verdict.received(), Verdict.accept("registered")]

    thread = threading.Thread(
        target=lambda: (tax.subscribe(answer_then_lose_the_stream), first_stream_done.set())
    )
    thread.start()
    receipt = hub.agency("customs").publish(
        "customs.export_declaration.released", declaration(), request_id=str(uuid.uuid4())
    )
    assert first_stream_done.wait(10)
    assert _tax_state(hub, receipt.record_id) == types_pb2.DELIVERY_STATE_SENT

    resend = threading.Thread(target=tax.subscribe_forever, args=(lambda d: None,), daemon=True)
    resend.start()
    wait_for(
        lambda: _tax_state(hub, receipt.record_id) == types_pb2.DELIVERY_STATE_ACCEPTED,
        what="the resent acks",
    )
    wait_for(lambda: not tax._unconfirmed, what="the hub's confirmations")
    tax.close()
    resend.join(5)
    assert not resend.is_alive(), "close() ends subscribe_forever"


def test_publish_many_answers_each_record_and_deliveries_follow(hub: RunningHub) -> None:
    """`publish_many` sends a backlog in one call; each record gets its receipt or its own error, and the
    published ones reach the recipient like any other."""

    type_ = "customs.export_declaration.released"
    good = [
        Publication(type_, declaration(note=str(n)), subject_uscc="91110000600037341L") for n in range(20)
    ]
    bad = Publication("customs.no_such_type", b"{}")
    results = hub.agency("customs").publish_many([*good[:10], bad, *good[10:]])
    assert [r.WhichOneof("outcome") for r in results] == ["receipt"] * 10 + ["error"] + ["receipt"] * 10
    assert results[10].error.reason == "NO_ROUTE"
    published = {r.receipt.record_id for r in results if r.HasField("receipt")}

    inbox = Inbox(lambda d: Verdict.received())
    start_subscription(hub.agency("fx"), inbox)
    hub.dispatch()
    wait_for(lambda: {d.record.record_id for d in inbox.deliveries} >= published, what="20 deliveries to fx")
