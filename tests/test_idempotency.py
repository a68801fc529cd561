"""request_id on the mutating calls that have no natural key of their own (AIP-155, ackhub.hub.store.idempotency):
over real gRPC, the same request again answers the first response and changes nothing; the same request_id
with a different request is ALREADY_EXISTS REQUEST_ID_REUSED and changes nothing; ids are per caller and
method; an id that is not a UUID is INVALID_ARGUMENT."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from ackhub.core.clock import ManualClock
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import operations_service_pb2 as ops
from ackhub.v1 import permit_service_pb2 as permit_pb
from ackhub.v1 import permit_service_pb2_grpc as permit_grpc
from tests.harness import RunningHub, error_details, start_hub, table_counts
from tests.permit_data import NOW_MS, create_request, draw_request, goods, licence, permit_config
from tests.records import declaration

TYPE = "customs.export_declaration.released"
CUSTOMS = (("x-ackhub-agency", "customs"),)
COMMERCE = (("x-ackhub-agency", "commerce"),)


def _case(hub: RunningHub, clock: ManualClock) -> tuple[pb.Receipt, ops.Escalation]:
    """A record whose tax delivery missed its 30 s deadline: one open case."""
    receipt = hub.agency("customs").publish(
        TYPE, declaration(), subject_uscc="91110000600037341L", request_id=str(uuid.uuid4())
    )
    clock.advance(30_000)
    hub.sweep()
    hub.dispatch()
    cases = hub.operations_stub.ListEscalations(
        ops.ListEscalationsRequest(recipient="tax"), metadata=hub.as_operator()
    ).escalations
    return receipt, cases[0]


def _reused(call: object, request: object, metadata: object) -> dict[str, str]:
    """The call is refused ALREADY_EXISTS REQUEST_ID_REUSED; its ErrorInfo metadata."""
    with pytest.raises(grpc.RpcError) as refused:
        call(request, metadata=metadata)  # type: ignore[operator]
    code, reason, metadata_, _ = error_details(refused.value)
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    return metadata_


def test_add_escalation_note_replayed_adds_the_note_once(hub: RunningHub, clock: ManualClock) -> None:
    """A retried AddEscalationNote answers the first response and adds no second note; another text under
    the same id is ALREADY_EXISTS and changes nothing; another operator's same id is a new request."""
    _, case = _case(hub, clock)
    request_id = str(uuid.uuid4())
    request = ops.AddEscalationNoteRequest(
        escalation_id=case.escalation_id, text="called the bureau", request_id=request_id
    )
    alice = hub.as_operator("alice")
    first = hub.operations_stub.AddEscalationNote(request, metadata=alice)
    counts = table_counts(hub)
    clock.advance(5_000)
    again = hub.operations_stub.AddEscalationNote(request, metadata=alice)
    assert again == first and len(again.escalation.notes) == 1
    other = ops.AddEscalationNoteRequest(
        escalation_id=case.escalation_id, text="another text", request_id=request_id
    )
    metadata = _reused(hub.operations_stub.AddEscalationNote, other, alice)
    assert metadata["request_id"] == request_id and metadata["rpc"] == "AddEscalationNote"
    assert table_counts(hub) == counts, "a replay and a refusal change nothing"
    bob = hub.operations_stub.AddEscalationNote(request, metadata=hub.as_operator("bob"))
    assert [n.author for n in bob.escalation.notes] == ["operator:alice", "operator:bob"]


def test_resolve_escalation_replayed_answers_the_first_resolution(
    hub: RunningHub, clock: ManualClock
) -> None:
    """A retried ResolveEscalation answers the case as first resolved, even after a later note; a
    different reason under the same id is ALREADY_EXISTS, not ESCALATION_CLOSED."""
    _, case = _case(hub, clock)
    request = ops.ResolveEscalationRequest(
        escalation_id=case.escalation_id, reason="confirmed by phone", request_id=str(uuid.uuid4())
    )
    alice = hub.as_operator("alice")
    first = hub.operations_stub.ResolveEscalation(request, metadata=alice)
    assert first.escalation.state == ops.ESCALATION_STATE_RESOLVED
    hub.operations_stub.AddEscalationNote(
        ops.AddEscalationNoteRequest(escalation_id=case.escalation_id, text="later"), metadata=alice
    )
    counts = table_counts(hub)
    assert hub.operations_stub.ResolveEscalation(request, metadata=alice) == first
    other = ops.ResolveEscalationRequest(
        escalation_id=case.escalation_id, reason="another reason", request_id=request.request_id
    )
    _reused(hub.operations_stub.ResolveEscalation, other, alice)
    assert table_counts(hub) == counts


def test_redeliver_delivery_replayed_asks_once(hub: RunningHub, clock: ManualClock) -> None:
    """A retried RedeliverDelivery answers the first response and writes no second audit event; the
    same id for another delivery is ALREADY_EXISTS."""
    receipt, case = _case(hub, clock)
    request_id = str(uuid.uuid4())
    request = ops.RedeliverDeliveryRequest(delivery_id=case.delivery_id, request_id=request_id)
    alice = hub.as_operator("alice")
    first = hub.operations_stub.RedeliverDelivery(request, metadata=alice)
    counts = table_counts(hub)
    clock.advance(1_000)
    assert hub.operations_stub.RedeliverDelivery(request, metadata=alice) == first
    fx = next(d.delivery_id for d in receipt.deliveries if d.recipient == "fx")
    other = ops.RedeliverDeliveryRequest(delivery_id=fx, request_id=request_id)
    _reused(hub.operations_stub.RedeliverDelivery, other, alice)
    assert table_counts(hub) == counts


def test_request_id_must_be_a_uuid(hub: RunningHub, clock: ManualClock) -> None:
    """A request_id that is not a UUID is INVALID_ARGUMENT naming it, and nothing is stored."""
    _, case = _case(hub, clock)
    counts = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        hub.operations_stub.AddEscalationNote(
            ops.AddEscalationNoteRequest(escalation_id=case.escalation_id, text="x", request_id="retry-1"),
            metadata=hub.as_operator("alice"),
        )
    code, _, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in fields
    assert table_counts(hub) == counts


def test_refused_call_stores_no_answer(hub: RunningHub, clock: ManualClock) -> None:
    """A call refused for its content (no reason) stores nothing under its request_id: the corrected
    request may use the same id."""
    _, case = _case(hub, clock)
    request_id = str(uuid.uuid4())
    alice = hub.as_operator("alice")
    with pytest.raises(grpc.RpcError) as refused:
        hub.operations_stub.ResolveEscalation(
            ops.ResolveEscalationRequest(escalation_id=case.escalation_id, reason=" ", request_id=request_id),
            metadata=alice,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    resolved = hub.operations_stub.ResolveEscalation(
        ops.ResolveEscalationRequest(escalation_id=case.escalation_id, reason="fixed", request_id=request_id),
        metadata=alice,
    )
    assert resolved.escalation.resolution == "fixed"


@pytest.fixture(name="permit_hub")
def fixture_permit_hub(database_url: str) -> Iterator[RunningHub]:
    running = start_hub(database_url, clock=ManualClock(NOW_MS), edit=permit_config)
    try:
        yield running
    finally:
        running.stop()


def test_revoke_permit_replayed_answers_the_first_revocation(permit_hub: RunningHub) -> None:
    """A retried RevokePermit answers the first response (without it, a second revoke is refused); the
    same id with another reason is ALREADY_EXISTS and changes nothing."""
    stub = permit_grpc.PermitServiceStub(permit_hub.channel)
    stub.CreatePermit(create_request(licence()), metadata=COMMERCE)
    request = permit_pb.RevokePermitRequest(
        kind="commerce.import_licence", number="26-AA-204966", reason="fraud", request_id=str(uuid.uuid4())
    )
    first = stub.RevokePermit(request, metadata=COMMERCE)
    assert first.permit.state == permit_pb.PERMIT_STATE_REVOKED
    counts = table_counts(permit_hub)
    assert stub.RevokePermit(request, metadata=COMMERCE) == first
    other = permit_pb.RevokePermitRequest(
        kind="commerce.import_licence", number="26-AA-204966", reason="error", request_id=request.request_id
    )
    _reused(stub.RevokePermit, other, COMMERCE)
    assert table_counts(permit_hub) == counts


def test_release_draw_down_replayed_answers_the_first_release(permit_hub: RunningHub) -> None:
    """A retried ReleaseDrawDown answers the first response (already_released false, as first answered);
    the same id with another reason is ALREADY_EXISTS and changes nothing."""
    stub = permit_grpc.PermitServiceStub(permit_hub.channel)
    stub.CreatePermit(create_request(licence()), metadata=COMMERCE)
    drawn = stub.DrawDownPermit(draw_request(goods(quantity="30")), metadata=CUSTOMS)
    request = permit_pb.ReleaseDrawDownRequest(
        draw_down_id=drawn.draw_down.draw_down_id,
        reason="declaration cancelled",
        request_id=str(uuid.uuid4()),
    )
    first = stub.ReleaseDrawDown(request, metadata=CUSTOMS)
    assert first.draw_down.released and not first.already_released
    counts = table_counts(permit_hub)
    assert stub.ReleaseDrawDown(request, metadata=CUSTOMS) == first
    other = permit_pb.ReleaseDrawDownRequest(
        draw_down_id=drawn.draw_down.draw_down_id, reason="other", request_id=request.request_id
    )
    _reused(stub.ReleaseDrawDown, other, CUSTOMS)
    assert table_counts(permit_hub) == counts


def test_two_identical_calls_at_once_add_the_note_once(hub: RunningHub, clock: ManualClock) -> None:
    """Eight identical AddEscalationNote calls in flight together (on PostgreSQL, on several database
    threads): one note; every call answers the same response (the losers' transactions roll back on the
    request key and replay the winner's)."""
    _, case = _case(hub, clock)
    request = ops.AddEscalationNoteRequest(
        escalation_id=case.escalation_id, text="called the bureau", request_id=str(uuid.uuid4())
    )
    calls = [
        hub.operations_stub.AddEscalationNote.future(request, metadata=hub.as_operator("alice"))
        for _ in range(8)
    ]
    answers = [call.result(timeout=30) for call in calls]
    assert all(answer == answers[0] for answer in answers)
    stored = hub.operations_stub.GetEscalation(
        ops.GetEscalationRequest(escalation_id=case.escalation_id), metadata=hub.as_operator("alice")
    ).escalation
    assert [n.text for n in stored.notes] == ["called the bureau"]
