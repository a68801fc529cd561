"""Signed acknowledgements over the stream and the unary call: state changes, proof kept, refusals."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlmodel import select

from ackhub.client.agency import AgencyClient, Delivery, Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.hub.store.models import AttemptRow
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import operations_service_pb2 as ops
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, error_details, private_key, start_hub, table_counts, wait_for
from tests.records import declaration

TYPE = "customs.export_declaration.released"


def _publish(hub: RunningHub) -> pb.Receipt:
    return hub.agency("customs").publish(
        TYPE,
        declaration(),
        subject_uscc="91110000600037341L",
        declaration_number="020220260525641690",
        request_id=str(uuid.uuid4()),
    )


def _delivery_to(receipt: pb.Receipt, agency: str) -> str:
    return next(d.delivery_id for d in receipt.deliveries if d.recipient == agency)


def _state(hub: RunningHub, record_id: str, agency: str) -> types_pb2.Delivery:
    record = hub.exchange_stub.GetRecord(pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator())
    return next(d for d in record.deliveries if d.recipient == agency)


def _subscribed(hub: RunningHub, agency: str, clock: ManualClock, inbox: Inbox) -> AgencyClient:
    client = hub.agency(agency, clock=clock)
    start_subscription(client, inbox)
    return client


def test_stream_acknowledgements_close_deliveries(hub: RunningHub, clock: ManualClock) -> None:
    """tax answers RECEIVED then ACCEPTED and fx RECEIVED on their streams; both deliveries close."""
    _subscribed(
        hub, "tax", clock, Inbox(lambda d: [Verdict.received(), Verdict.accept("登记成功 registered")])
    )
    fx = _subscribed(hub, "fx", clock, Inbox(lambda d: Verdict.received()))
    receipt = _publish(hub)
    wait_for(
        lambda: _state(hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_ACCEPTED, what="tax"
    )
    wait_for(
        lambda: _state(hub, receipt.record_id, "fx").state == types_pb2.DELIVERY_STATE_RECEIVED, what="fx"
    )
    tax = _state(hub, receipt.record_id, "tax")
    assert (
        tax.reason == "登记成功 registered"
        and tax.HasField("final_time")
        and not tax.HasField("next_attempt_time")
    )
    fx_delivery = _state(hub, receipt.record_id, "fx")
    assert not fx_delivery.HasField("next_attempt_time") and fx_delivery.attempt_count == 1
    result = fx.results.get(timeout=5)
    assert result.ok and not result.duplicate and result.delivery_id == fx_delivery.delivery_id
    assert table_counts(hub)["acknowledgements"] == 3
    with hub.server.db.transaction() as session:
        outcomes = session.exec(select(AttemptRow.outcome)).all()
    assert sorted(outcomes) == ["ACKED", "ACKED"], "each attempt records that it was answered"


def test_business_level_waits_for_business_ack(hub: RunningHub, clock: ManualClock) -> None:
    """On a BUSINESS route, RECEIVED stops resending but the deadline still watches for ACCEPTED/REJECTED."""
    inbox = Inbox(lambda d: Verdict.received())
    _subscribed(hub, "tax", clock, inbox)
    receipt = _publish(hub)
    wait_for(
        lambda: _state(hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_RECEIVED,
        what="RECEIVED",
    )
    clock.advance(31_000)
    hub.sweep()
    delivery = _state(hub, receipt.record_id, "tax")
    assert delivery.escalation_id, "the deadline passed without a business acknowledgement"
    assert inbox.attempts(delivery.delivery_id) == [1]


def test_unary_acknowledgement_and_duplicate_is_noop(hub: RunningHub, clock: ManualClock) -> None:
    """AcknowledgeDelivery stores a signed ACCEPTED; the identical call again is a duplicate that changes nothing."""
    receipt = _publish(hub)
    tax = hub.agency("tax", clock=clock)
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
    ).record
    ack = tax.sign(record, _delivery_to(receipt, "tax"), "ACCEPTED", "ok")
    first = tax.acknowledge(ack)
    assert first.delivery.state == types_pb2.DELIVERY_STATE_ACCEPTED and not first.duplicate
    before = table_counts(hub)
    again = tax.acknowledge(ack)
    assert again.duplicate and again.delivery.state == types_pb2.DELIVERY_STATE_ACCEPTED
    assert table_counts(hub) == before


def test_contradicting_final_ack_is_failed_precondition(hub: RunningHub, clock: ManualClock) -> None:
    """ACCEPTED after REJECTED is FAILED_PRECONDITION and the rejection stands."""
    receipt = _publish(hub)
    tax = hub.agency("tax", clock=clock)
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
    ).record
    delivery_id = _delivery_to(receipt, "tax")
    rejected = tax.acknowledge(tax.sign(record, delivery_id, "REJECTED", "金额与报关单不符"))
    assert rejected.delivery.state == types_pb2.DELIVERY_STATE_REJECTED
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        tax.acknowledge(tax.sign(record, delivery_id, "ACCEPTED"))
    assert error_details(refused.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "ACK_CONTRADICTS_FINAL")
    assert table_counts(hub) == before
    cases = hub.operations_stub.ListEscalations(
        ops.ListEscalationsRequest(), metadata=hub.as_operator()
    ).escalations
    assert [(c.reason, c.detail) for c in cases] == [(ops.ESCALATION_REASON_REJECTED, "金额与报关单不符")]


def _stamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def _tampered(ack: types_pb2.Acknowledgement, **changes: object) -> types_pb2.Acknowledgement:
    copy = types_pb2.Acknowledgement()
    copy.CopyFrom(ack)
    for name, value in changes.items():
        if isinstance(value, Timestamp):
            getattr(copy, name).CopyFrom(value)
        else:
            setattr(copy, name, value)
    return copy


@pytest.mark.parametrize(
    ("change", "caller", "code", "reason", "field"),
    [
        (
            {"signature": b"\x00" * 64},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "SIGNATURE_INVALID",
            "acknowledgement.signature",
        ),
        (
            {"reason": "changed after signing"},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "SIGNATURE_INVALID",
            "acknowledgement.signature",
        ),
        (
            {"key_id": "tax-unknown"},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNKNOWN_KEY",
            "acknowledgement.key_id",
        ),
        (
            {"digest": "sha256:" + "0" * 64},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "DIGEST_MISMATCH",
            "acknowledgement.digest",
        ),
        (
            {"record_id": "01900000-0000-7000-8000-000000000000"},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "RECORD_MISMATCH",
            "acknowledgement.record_id",
        ),
        ({}, "fx", grpc.StatusCode.PERMISSION_DENIED, "NOT_RECIPIENT", None),
        ({"recipient": "fx"}, "fx", grpc.StatusCode.PERMISSION_DENIED, "NOT_RECIPIENT", None),
        ({"delivery_id": str(uuid.uuid4())}, "tax", grpc.StatusCode.NOT_FOUND, "DELIVERY_NOT_FOUND", None),
        (
            {"signature": b"short"},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "acknowledgement.signature",
        ),
        (
            {"digest": "md5:abc"},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "acknowledgement.digest",
        ),
        (
            {"ack_time": _stamp(-(2**62))},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "acknowledgement.ack_time",
        ),
        (
            {"reason": "line one\nline two"},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "acknowledgement.reason",
        ),
        (
            {"reason": "carriage\rreturn"},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "acknowledgement.reason",
        ),
        (
            {"status": types_pb2.ACK_STATUS_UNSPECIFIED},
            "tax",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "acknowledgement.status",
        ),
    ],
)
def test_bad_acknowledgements_are_refused_and_change_nothing(
    hub: RunningHub,
    clock: ManualClock,
    change: dict[str, object],
    caller: str,
    code: grpc.StatusCode,
    reason: str,
    field: str | None,
) -> None:
    """Bad signature, unknown key, wrong digest or record, wrong agency, malformed fields: refused, nothing stored."""
    receipt = _publish(hub)
    tax = hub.agency("tax", clock=clock)
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
    ).record
    ack = _tampered(tax.sign(record, _delivery_to(receipt, "tax"), "ACCEPTED", "ok"), **change)
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.AcknowledgeDelivery(
            pb.AcknowledgeDeliveryRequest(acknowledgement=ack), metadata=hub.as_agency(caller)
        )
    got_code, got_reason, _, fields = error_details(refused.value)
    assert (got_code, got_reason) == (code, reason)
    if field:
        assert field in fields
    assert table_counts(hub) == before
    assert _state(hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_PENDING


def test_ack_signed_by_another_agency_key_is_refused(hub: RunningHub, clock: ManualClock) -> None:
    """fx's key cannot sign for tax: the signature does not verify against tax's registered key."""
    receipt = _publish(hub)
    impostor = AgencyClient(
        hub.target, "tax", key_id="tax-test-1", private_key=private_key("fx"), clock=clock
    )
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
    ).record
    try:
        with pytest.raises(grpc.RpcError) as refused:
            impostor.acknowledge(impostor.sign(record, _delivery_to(receipt, "tax"), "ACCEPTED"))
        assert error_details(refused.value)[1] == "SIGNATURE_INVALID"
    finally:
        impostor.close()


def test_refused_ack_on_stream_is_answered_on_stream(hub: RunningHub, clock: ManualClock) -> None:
    """A bad acknowledgement on the stream gets an AckResult with the error; the stream stays usable."""
    inbox = Inbox()
    tax = _subscribed(hub, "tax", clock, inbox)
    receipt = _publish(hub)
    wait_for(lambda: inbox.deliveries, what="the delivery")
    delivery: Delivery = inbox.deliveries[0]
    good = tax.sign(delivery.record, delivery.delivery_id, "ACCEPTED")
    tax.send(pb.SubscribeRequest(acknowledgement=_tampered(good, signature=b"\x01" * 64)))
    refused = tax.results.get(timeout=5)
    assert not refused.ok and refused.error.reason == "SIGNATURE_INVALID"
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    tax.send(pb.SubscribeRequest(acknowledgement=good))
    assert tax.results.get(timeout=5).ok
    assert _state(hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_ACCEPTED


def test_subscribe_as_another_agency_is_refused(hub: RunningHub) -> None:
    """A stream opened as tax by fx's identity is PERMISSION_DENIED."""
    requests = iter([pb.SubscribeRequest(open=pb.SubscribeOpen(agency_id="tax"))])
    with pytest.raises(grpc.RpcError) as refused:
        list(hub.exchange_stub.Subscribe(requests, metadata=hub.as_agency("fx")))
    assert error_details(refused.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THIS_AGENCY")


def test_subscribe_must_open_first(hub: RunningHub) -> None:
    """A stream whose first message is not `open` is INVALID_ARGUMENT."""
    requests = iter([pb.SubscribeRequest(retry_after=pb.RetryAfter())])
    with pytest.raises(grpc.RpcError) as refused:
        list(hub.exchange_stub.Subscribe(requests, metadata=hub.as_agency("fx")))
    assert "open" in error_details(refused.value)[3]


def test_window_limits_unacknowledged_deliveries(hub: RunningHub, clock: ManualClock) -> None:
    """With window 2, only two unacknowledged deliveries are in flight; acknowledging one lets the next go."""
    inbox = Inbox()
    fx = hub.agency("fx", clock=clock)
    start_subscription(fx, inbox, window=2)
    receipts = [_publish(hub) for _ in range(4)]
    wait_for(lambda: len(inbox.deliveries) == 2, what="two deliveries")
    hub.dispatch()
    assert len(inbox.deliveries) == 2
    first: Delivery = inbox.deliveries[0]
    fx.send(pb.SubscribeRequest(acknowledgement=fx.sign(first.record, first.delivery_id, "RECEIVED")))
    wait_for(lambda: len(inbox.deliveries) == 3, what="the third delivery")
    order = [r.record_id for r in receipts]
    assert [d.record.record_id for d in inbox.deliveries] == order[:3], (
        "the backlog goes out in publish order"
    )


def test_busy_stream_is_refilled_in_batches(database_url: str, clock: ManualClock) -> None:
    """A window of 16 is refilled once an eighth of it (two slots) is free: a backlog of 20 fills the window,
    one acknowledgement frees a slot that waits for company, a second frees two and two more go — never one
    claim per acknowledgement under load."""
    hub = start_hub(database_url, clock=clock, edit=lambda config: config["server"].update(stream_window=16))
    try:
        _refill_in_batches(hub, clock)
    finally:
        hub.stop()


def _refill_in_batches(hub: RunningHub, clock: ManualClock) -> None:
    # The backlog is published before the stream opens, so the window fills in one claim. Published while
    # the stream is open, records arrive one or several per group commit, and whether the last free slot
    # is taken alone or with company depends on how they happened to group.
    for _ in range(20):
        _publish(hub)
    inbox = Inbox()
    fx = hub.agency("fx", clock=clock)
    start_subscription(fx, inbox, window=16)
    wait_for(lambda: len(inbox.deliveries) == 16, what="a full window")
    hub.dispatch()
    assert len(inbox.deliveries) == 16

    def answer(delivery: Delivery) -> None:
        fx.send(
            pb.SubscribeRequest(acknowledgement=fx.sign(delivery.record, delivery.delivery_id, "RECEIVED"))
        )
        wait_for(lambda: fx.results.qsize() > 0, what="the hub's confirmation")
        assert fx.results.get().ok

    answer(inbox.deliveries[0])
    hub.dispatch()
    assert len(inbox.deliveries) == 16, "a single free slot waits for company"
    answer(inbox.deliveries[1])
    wait_for(lambda: len(inbox.deliveries) == 18, what="two more deliveries")
    hub.dispatch()
    assert len(inbox.deliveries) == 18


class _BatchStream:
    """A Subscribe stream opened with `batches`, fed from a queue; reads deliveries and results as lists."""

    def __init__(self, hub: RunningHub, agency: str) -> None:
        self.outgoing: queue.Queue[pb.SubscribeRequest | None] = queue.Queue()
        self.outgoing.put(pb.SubscribeRequest(open=pb.SubscribeOpen(agency_id=agency, batches=True)))
        self.stream = hub.exchange_stub.Subscribe(self._requests(), metadata=hub.as_agency(agency))
        self.opened = next(self.stream).opened

    def _requests(self) -> Iterator[pb.SubscribeRequest]:
        while (item := self.outgoing.get()) is not None:
            yield item

    def deliveries(self, count: int) -> tuple[list[pb.DeliveryMessage], int]:
        """The next `count` deliveries, and in how many `deliveries` batch messages some of them came."""
        deliveries: list[pb.DeliveryMessage] = []
        grouped = 0
        while len(deliveries) < count:
            message = next(self.stream)
            if message.WhichOneof("kind") == "deliveries":
                grouped += 1
                deliveries += message.deliveries.deliveries
            else:
                deliveries.append(message.delivery)
        return deliveries, grouped

    def acknowledge(self, acks: list[types_pb2.Acknowledgement]) -> list[pb.AckResult]:
        """Send `acks` as one batch message; their results."""
        self.outgoing.put(
            pb.SubscribeRequest(acknowledgements=pb.AcknowledgementBatch(acknowledgements=acks))
        )
        results: list[pb.AckResult] = []
        while len(results) < len(acks):
            message = next(self.stream)
            if message.WhichOneof("kind") == "ack_results":
                results += message.ack_results.results
            else:
                results.append(message.ack_result)
        return results

    def close(self) -> None:
        self.outgoing.put(None)
        self.stream.cancel()


def test_a_stream_opened_with_batches_groups_deliveries_and_results(hub: RunningHub) -> None:
    """On a stream opened with `batches`, deliveries that are ready together come in one message, a batch
    of acknowledgements is handled as if each came alone, and their results come back grouped."""
    fx = hub.agency("fx")
    customs = hub.agency("customs")
    receipts = [
        customs.publish(TYPE, declaration(note=str(n)), request_id=str(uuid.uuid4())) for n in range(6)
    ]
    stream = _BatchStream(hub, "fx")
    try:
        assert stream.opened.batches
        hub.dispatch()
        deliveries, grouped = stream.deliveries(6)
        assert grouped >= 1  # six deliveries claimed together went out in fewer messages
        assert {d.record.record_id for d in deliveries} == {r.record_id for r in receipts}

        forged = fx.sign(deliveries[1].record, deliveries[1].delivery_id, "ACCEPTED")
        forged.signature = bytes(b ^ 1 for b in forged.signature)  # its verdict is the batch's first
        acks = [forged, *(fx.sign(d.record, d.delivery_id, "RECEIVED") for d in deliveries)]
        acks.append(fx.sign(deliveries[0].record, deliveries[0].delivery_id, "REJECTED", ""))  # no reason
        results = stream.acknowledge(acks)
        assert [r.delivery_id for r in results] == [a.delivery_id for a in acks]  # in the batch's order
        assert [r.ok for r in results] == [False, True, True, True, True, True, True, False]
        assert "signature" in results[0].error.message and "reason" in results[-1].error.message
    finally:
        stream.close()
    for receipt in receipts:
        record = hub.exchange_stub.GetRecord(
            pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_operator()
        )
        assert {d.recipient: d.state for d in record.deliveries}["fx"] == types_pb2.DELIVERY_STATE_RECEIVED


def test_a_line_break_in_one_reason_does_not_fail_its_batch(hub: RunningHub) -> None:
    """A stream batch where one acknowledgement's reason has a line break: that one is refused naming
    `acknowledgement.reason`, every other one is answered and stored as if it came alone."""
    fx = hub.agency("fx")
    receipts = [_publish(hub) for _ in range(3)]
    stream = _BatchStream(hub, "fx")
    try:
        assert stream.opened.batches
        hub.dispatch()
        deliveries, _ = stream.deliveries(3)
        acks = [fx.sign(d.record, d.delivery_id, "RECEIVED", "ok") for d in deliveries]
        acks[1] = _tampered(acks[1], reason="first line\nsecond line")
        results = stream.acknowledge(acks)
    finally:
        stream.close()
    assert [r.ok for r in results] == [True, False, True]
    refused = results[1].error
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert refused.metadata["fields"] == "acknowledgement.reason"
    states = {
        d.delivery_id: _state(hub, r.record_id, "fx").state
        for r in receipts
        for d in r.deliveries
        if d.recipient == "fx"
    }
    bad = acks[1].delivery_id
    assert {i: s == types_pb2.DELIVERY_STATE_RECEIVED for i, s in states.items()} == {
        i: i != bad for i in states
    }
