"""When a delivery is closed: by the acknowledgement its route requires, stored with it, the same in every
answer of the contract (GetRecord, ListDeliveries and its open/closed filter, AcknowledgeDelivery, the
trace's ListRecords filter), and filled in by migration 0006 for deliveries stored before it."""

from __future__ import annotations

import uuid

import grpc
import pytest
from alembic import command
from sqlalchemy import text

from ackhub.core.clock import ManualClock
from ackhub.hub.demo import snapshot, status_panel
from ackhub.hub.store.db import Database, alembic_config
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import trace_service_pb2 as trace_pb2
from ackhub.v1 import trace_service_pb2_grpc, types_pb2
from tests.harness import RunningHub, error_details, table_counts
from tests.records import declaration

TYPE = "customs.export_declaration.released"
OPEN, CLOSED = types_pb2.DELIVERY_CLOSURE_OPEN, types_pb2.DELIVERY_CLOSURE_CLOSED


def _published(hub: RunningHub) -> tuple[types_pb2.Record, dict[str, str]]:
    """A record customs published to tax (BUSINESS level) and fx (RECEIVED level); its delivery per agency."""
    receipt = hub.agency("customs").publish(
        TYPE,
        declaration(),
        subject_uscc="91110000600037341L",
        declaration_number="020220260525641690",
        request_id=str(uuid.uuid4()),
    )
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_operator()
    ).record
    return record, {d.recipient: d.delivery_id for d in receipt.deliveries}


def _deliveries(hub: RunningHub, record_id: str) -> dict[str, types_pb2.Delivery]:
    found = hub.exchange_stub.GetRecord(pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator())
    return {d.recipient: d for d in found.deliveries}


def _ack(
    hub: RunningHub, clock: ManualClock, record: types_pb2.Record, delivery_id: str, agency: str, status: str
) -> pb.AcknowledgeDeliveryResponse:
    client = hub.agency(agency, clock=clock)
    return client.acknowledge(client.sign(record, delivery_id, status, "ok" if status != "RECEIVED" else ""))


def _listed(hub: RunningHub, **filters: object) -> list[str]:
    page = hub.exchange_stub.ListDeliveries(pb.ListDeliveriesRequest(**filters), metadata=hub.as_operator())  # type: ignore[arg-type]
    return [d.recipient for d in page.deliveries]


def test_the_route_level_decides_what_closes(hub: RunningHub, clock: ManualClock) -> None:
    """RECEIVED closes fx's delivery (RECEIVED route) but not tax's (BUSINESS route); ACCEPTED closes tax's."""
    record, ids = _published(hub)
    assert not any(d.closed or d.HasField("close_time") for d in _deliveries(hub, record.record_id).values())
    clock.advance(1_000)
    fx = _ack(hub, clock, record, ids["fx"], "fx", "RECEIVED").delivery
    assert fx.closed and fx.closed_by == types_pb2.ACK_STATUS_RECEIVED
    assert fx.close_time == fx.received_time and not fx.HasField("final_time")
    received_at = fx.close_time.ToMilliseconds()

    tax = _ack(hub, clock, record, ids["tax"], "tax", "RECEIVED").delivery
    assert tax.state == types_pb2.DELIVERY_STATE_RECEIVED and not tax.closed
    assert tax.closed_by == types_pb2.ACK_STATUS_UNSPECIFIED and not tax.HasField("close_time")
    assert _listed(hub, record_id=record.record_id, closure=OPEN) == ["tax"]
    assert _listed(hub, record_id=record.record_id, closure=CLOSED) == ["fx"]

    clock.advance(2_000)
    tax = _ack(hub, clock, record, ids["tax"], "tax", "ACCEPTED").delivery
    assert tax.closed and tax.closed_by == types_pb2.ACK_STATUS_ACCEPTED and tax.close_time == tax.final_time
    clock.advance(2_000)
    fx = _ack(hub, clock, record, ids["fx"], "fx", "ACCEPTED").delivery
    assert fx.state == types_pb2.DELIVERY_STATE_ACCEPTED and fx.HasField("final_time")
    assert fx.closed_by == types_pb2.ACK_STATUS_RECEIVED, "closed once, by the RECEIVED, whatever came later"
    assert fx.close_time.ToMilliseconds() == received_at
    stored = _deliveries(hub, record.record_id)
    assert stored["fx"] == fx and stored["tax"] == tax, "GetRecord says what the acknowledgement answered"
    assert _listed(hub, record_id=record.record_id, closure=OPEN) == []
    assert sorted(_listed(hub, record_id=record.record_id, closure=CLOSED)) == ["fx", "tax"]
    assert _listed(hub, record_id=record.record_id, closure=CLOSED, state=types_pb2.DELIVERY_STATE_ACCEPTED)


@pytest.mark.parametrize(
    ("state", "closure", "field"),
    [
        (types_pb2.DELIVERY_STATE_PENDING, CLOSED, "closure"),
        (types_pb2.DELIVERY_STATE_SENT, CLOSED, "closure"),
        (types_pb2.DELIVERY_STATE_ACCEPTED, OPEN, "closure"),
        (types_pb2.DELIVERY_STATE_REJECTED, OPEN, "closure"),
        (types_pb2.DELIVERY_STATE_UNSPECIFIED, 7, "closure"),
        (99, types_pb2.DELIVERY_CLOSURE_UNSPECIFIED, "state"),
    ],
)
def test_contradictory_or_unknown_filters_are_refused(
    hub: RunningHub, state: int, closure: int, field: str
) -> None:
    """A filter no delivery can match, or a value this version does not know, is INVALID_ARGUMENT naming it."""
    before = table_counts(hub)
    request = pb.ListDeliveriesRequest(state=state, closure=closure)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.ListDeliveries(request, metadata=hub.as_operator())
    code, _, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and list(fields) == [field]
    assert table_counts(hub) == before


def test_received_state_can_be_either(hub: RunningHub, clock: ManualClock) -> None:
    """RECEIVED with OPEN finds tax's (waiting for the business answer), with CLOSED fx's; the demo's panel
    counts tax's as open and fx's as done."""
    record, ids = _published(hub)
    for agency in ("tax", "fx"):
        _ack(hub, clock, record, ids[agency], agency, "RECEIVED")
    received = types_pb2.DELIVERY_STATE_RECEIVED
    assert _listed(hub, state=received, closure=OPEN) == ["tax"]
    assert _listed(hub, state=received, closure=CLOSED) == ["fx"]
    assert sorted(_listed(hub, state=received)) == ["fx", "tax"]
    snap = snapshot(hub.server.db)
    assert snap.open_by_recipient == {"tax": 1}
    panel = status_panel(1, snap, hub.target, {"tax": "BUSINESS", "fx": "RECEIVED"}, [])
    rows = {line.split()[0]: line.split() for line in panel[2:4]}
    assert rows["tax"][1:] == ["0", "0", "1", "0", "0", "1", "ACCEPTED/REJECTED"]
    assert rows["fx"][1:] == ["0", "0", "1", "0", "0", "0", "RECEIVED"]


# -- migration 0006 ----------------------------------------------------------------------------------------

# (required level, state, received_ms, final_ms, stored acknowledgements in order) → (closed_ms, closed_by)
STORED = {
    "d-recv-route-received": (("RECEIVED", "RECEIVED", 100, None, [("RECEIVED", 100)]), (100, "RECEIVED")),
    "d-recv-route-later-accepted": (
        ("RECEIVED", "ACCEPTED", 100, 200, [("RECEIVED", 100), ("ACCEPTED", 200)]),
        (100, "RECEIVED"),
    ),
    "d-recv-route-accepted-only": (
        ("RECEIVED", "ACCEPTED", 300, 300, [("ACCEPTED", 300)]),
        (300, "ACCEPTED"),
    ),
    "d-recv-route-late-received": (
        ("RECEIVED", "REJECTED", 300, 300, [("REJECTED", 300), ("RECEIVED", 400)]),
        (300, "REJECTED"),
    ),
    "d-business-received": (("BUSINESS", "RECEIVED", 100, None, [("RECEIVED", 100)]), (None, None)),
    "d-business-rejected": (
        ("BUSINESS", "REJECTED", 100, 500, [("RECEIVED", 100), ("REJECTED", 500)]),
        (500, "REJECTED"),
    ),
    "d-business-sent": (("BUSINESS", "SENT", None, None, []), (None, None)),
}


def test_migration_fills_in_stored_deliveries(database_url: str) -> None:
    """Deliveries stored at revision 0005 are closed after 0006 exactly as the live path would have closed them."""
    db = Database(database_url)
    try:
        command.upgrade(alembic_config(db.engine), "0005")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO records (id, request_id, publisher, record_type, content_type, payload, digest,"
                    " accepted_ms) VALUES ('r1', 'q1', 'customs', :type, 'application/json', :payload, 'ab', 1)"
                ),
                {"type": TYPE, "payload": b"{}"},
            )
            for delivery_id, ((level, state, received, final, acks), _) in STORED.items():
                connection.execute(
                    text(
                        "INSERT INTO deliveries (id, record_id, record_type, publisher, recipient, state,"
                        " required_level, policy, attempts, created_ms, deadline_ms, received_ms, final_ms,"
                        " reason, escalated) VALUES (:id, 'r1', :type, 'customs', 'tax', :state, :level, '{}',"
                        " 1, 1, 1000, :received, :final, '', false)"
                    ),
                    {
                        "id": delivery_id,
                        "type": TYPE,
                        "state": state,
                        "level": level,
                        "received": received,
                        "final": final,
                    },
                )
                for status, at in acks:
                    connection.execute(
                        text(
                            "INSERT INTO acknowledgements (delivery_id, record_id, recipient, status, reason,"
                            " ack_time_ms, key_id, signature, received_ms, via) VALUES (:id, 'r1', 'tax', :status,"
                            " '', :at, 'k', :sig, :at, 'unary')"
                        ),
                        {"id": delivery_id, "status": status, "at": at, "sig": b"s" * 64},
                    )
        db.migrate()
        with db.engine.connect() as connection:
            closed = {
                row.id: (row.closed_ms, row.closed_by)
                for row in connection.execute(text("SELECT id, closed_ms, closed_by FROM deliveries"))
            }
        assert closed == {delivery_id: expected for delivery_id, (_, expected) in STORED.items()}
    finally:
        db.close()


def test_an_enterprise_lists_its_records_still_waiting(hub: RunningHub, clock: ManualClock) -> None:
    """ListRecords with OPEN finds the records with a delivery still waiting, with CLOSED those all done;
    CLOSED with SENT, or an unknown closure, is INVALID_ARGUMENT naming `closure`."""
    trace = trace_service_pb2_grpc.TraceServiceStub(hub.channel)
    done, _ = _published(hub)
    waiting, _ = _published(hub)
    for record, ids in ((done, _ids(hub, done)), (waiting, _ids(hub, waiting))):
        _ack(hub, clock, record, ids["fx"], "fx", "RECEIVED")
    _ack(hub, clock, done, _ids(hub, done)["tax"], "tax", "ACCEPTED")

    def listed(**filters: object) -> list[str]:
        request = trace_pb2.ListRecordsRequest(**filters)  # type: ignore[arg-type]
        return [r.record.record_id for r in trace.ListRecords(request, metadata=hub.as_operator()).records]

    assert listed(closure=OPEN) == [waiting.record_id]
    assert listed(closure=CLOSED) == [done.record_id]
    assert listed(closure=OPEN, state=types_pb2.DELIVERY_STATE_RECEIVED) == [waiting.record_id]
    assert listed(closure=OPEN, state=types_pb2.DELIVERY_STATE_ACCEPTED) == [], (
        "waiting's tax is not ACCEPTED"
    )
    assert listed() == [waiting.record_id, done.record_id]
    for state, closure in ((types_pb2.DELIVERY_STATE_SENT, CLOSED), (0, 5)):
        with pytest.raises(grpc.RpcError) as refused:
            listed(state=state, closure=closure)
        code, _, _, fields = error_details(refused.value)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and list(fields) == ["closure"]


def _ids(hub: RunningHub, record: types_pb2.Record) -> dict[str, str]:
    return {d.recipient: d.delivery_id for d in _deliveries(hub, record.record_id).values()}
