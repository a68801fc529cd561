"""PublishRecord over real gRPC on SQLite and PostgreSQL: receipts, idempotency, routing, bad input."""

from __future__ import annotations

import hashlib
import uuid

import grpc
import pytest

from ackhub.v1 import exchange_service_pb2 as pb
from tests.harness import RunningHub, error_details, table_counts
from tests.records import declaration

TYPE = "customs.export_declaration.released"
USCC = "91110000600037341L"
DECLARATION = "020220260525641690"


def _request(**changes: object) -> pb.PublishRecordRequest:
    fields: dict[str, object] = {
        "request_id": str(uuid.uuid4()),
        "record_type": TYPE,
        "subject_uscc": USCC,
        "declaration_number": DECLARATION,
        "content_type": "application/json",
        "payload": declaration(),
    }
    fields.update(changes)
    return pb.PublishRecordRequest(**fields)  # type: ignore[arg-type]


def test_publish_returns_receipt_with_one_delivery_per_recipient(hub: RunningHub) -> None:
    """A publish answers with the record id, the SHA-256 digest, accept time and a delivery per route recipient."""
    request = _request()
    receipt = hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs")).receipt
    assert receipt.digest == "sha256:" + hashlib.sha256(request.payload).hexdigest()
    assert sorted(d.recipient for d in receipt.deliveries) == ["fx", "tax"]
    assert not receipt.replayed
    stored = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("customs")
    )
    assert stored.record.payload == request.payload
    assert stored.record.subject_uscc == USCC
    assert stored.record.accept_time == receipt.accept_time
    assert {d.delivery_id for d in stored.deliveries} == {d.delivery_id for d in receipt.deliveries}
    assert table_counts(hub)["audit_events"] > 0


def test_same_request_again_returns_the_first_receipt(hub: RunningHub) -> None:
    """Repeating a publish with the same request id stores nothing new and returns the same receipt."""
    request = _request()
    first = hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs")).receipt
    before = table_counts(hub)
    again = hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs")).receipt
    assert again.replayed
    assert (again.record_id, again.digest, list(again.deliveries)) == (
        first.record_id,
        first.digest,
        list(first.deliveries),
    )
    assert again.accept_time == first.accept_time
    assert table_counts(hub) == before


def test_without_a_request_id_the_call_is_not_idempotent_and_says_so(hub: RunningHub) -> None:
    """request_id = "" twice stores two records (no idempotency key, AIP-155), and each receipt says
    `idempotent = false`; with a request id the receipt says `idempotent = true`, on a replay as well."""
    request = _request(request_id="")
    first = hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs")).receipt
    second = hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs")).receipt
    assert first.record_id != second.record_id and not first.idempotent and not second.idempotent
    assert not first.replayed and not second.replayed
    keyed = _request()
    once = hub.exchange_stub.PublishRecord(keyed, metadata=hub.as_agency("customs")).receipt
    again = hub.exchange_stub.PublishRecord(keyed, metadata=hub.as_agency("customs")).receipt
    assert once.idempotent and again.idempotent and again.replayed and again.record_id == once.record_id
    results = hub.exchange_stub.PublishRecords(
        pb.PublishRecordsRequest(records=[request, keyed]), metadata=hub.as_agency("customs")
    ).results
    assert [r.receipt.idempotent for r in results] == [False, True]


def test_same_request_id_with_other_payload_is_already_exists(hub: RunningHub) -> None:
    """A reused request id with a different payload is ALREADY_EXISTS naming both digests, storing nothing."""
    request = _request()
    hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs"))
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecord(
            _request(request_id=request.request_id, payload=declaration(note="other")),
            metadata=hub.as_agency("customs"),
        )
    code, reason, metadata, _ = error_details(refused.value)
    assert code == grpc.StatusCode.ALREADY_EXISTS and reason == "REQUEST_ID_REUSED"
    assert metadata["stored_digest"] == "sha256:" + hashlib.sha256(request.payload).hexdigest()
    assert metadata["request_digest"] == "sha256:" + hashlib.sha256(declaration(note="other")).hexdigest()
    assert (
        metadata["stored_digest"] in refused.value.details()
        and metadata["request_digest"] in refused.value.details()
    )  # type: ignore[attr-defined]
    assert table_counts(hub) == before


def test_record_type_without_route_is_failed_precondition(hub: RunningHub) -> None:
    """A record type with no route is FAILED_PRECONDITION (NO_ROUTE) and stores nothing."""
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecord(
            _request(record_type="customs.unknown.thing"), metadata=hub.as_agency("customs")
        )
    code, reason, metadata, _ = error_details(refused.value)
    assert (code, reason, metadata["record_type"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NO_ROUTE",
        "customs.unknown.thing",
    )
    assert table_counts(hub) == before


def test_publisher_not_on_the_route_is_refused(hub: RunningHub) -> None:
    """Only the route's publishers may publish its type: another agency gets PERMISSION_DENIED."""
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecord(_request(), metadata=hub.as_agency("tax"))
    assert error_details(refused.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "PUBLISHER_NOT_ALLOWED")
    assert table_counts(hub) == before


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"subject_uscc": "91310115MA1G4L1WXK"}, "subject_uscc", "should be '7'"),
        ({"declaration_number": "02022026052564169"}, "declaration_number", "18 digits"),
        ({"declaration_number": "020220262525641690"}, "declaration_number", "digit 9"),
        ({"payload": b""}, "payload", "required"),
        ({"payload": b"x" * 65537}, "payload", "at most 65536"),
        ({"record_type": ""}, "record_type", "required"),
        ({"record_type": "Customs Declaration"}, "record_type", "dotted lower-case"),
        ({"request_id": "not-a-uuid"}, "request_id", "UUID"),
        ({"content_type": "json"}, "content_type", "media type"),
    ],
)
def test_bad_fields_are_invalid_argument_and_change_nothing(
    hub: RunningHub, changes: dict[str, object], field: str, words: str
) -> None:
    """Each malformed field is named in a BadRequest field violation and nothing is stored."""
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecord(_request(**changes), metadata=hub.as_agency("customs"))
    code, reason, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and reason == "INVALID_ARGUMENT"
    assert words in fields[field]
    assert table_counts(hub) == before


def test_all_bad_fields_are_reported_at_once(hub: RunningHub) -> None:
    """Several bad fields give several violations in one answer."""
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecord(
            _request(subject_uscc="X", declaration_number="1", payload=b""), metadata=hub.as_agency("customs")
        )
    assert set(error_details(refused.value)[3]) == {"subject_uscc", "declaration_number", "payload"}


def test_unknown_or_missing_identity_is_unauthenticated(hub: RunningHub) -> None:
    """A caller naming an unregistered agency, or nobody, is UNAUTHENTICATED and stores nothing."""
    before = table_counts(hub)
    for metadata, expected in [(hub.as_agency("nobody"), "UNKNOWN_AGENCY"), ((), "NO_IDENTITY")]:
        with pytest.raises(grpc.RpcError) as refused:
            hub.exchange_stub.PublishRecord(_request(), metadata=metadata)
        assert error_details(refused.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, expected)
    assert table_counts(hub) == before


def test_operator_cannot_publish(hub: RunningHub) -> None:
    """Publishing is for agencies: an operator is PERMISSION_DENIED."""
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecord(_request(), metadata=hub.as_operator())
    assert error_details(refused.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "AGENCY_ONLY")


def test_records_are_visible_only_to_their_parties(hub: RunningHub) -> None:
    """An agency that neither published nor receives a record gets NOT_FOUND, as for a missing record."""
    receipt = hub.exchange_stub.PublishRecord(_request(), metadata=hub.as_agency("customs")).receipt
    seen_by_tax = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
    )
    assert [d.recipient for d in seen_by_tax.deliveries] == ["tax"]
    for record_id in (receipt.record_id, str(uuid.uuid4())):
        with pytest.raises(grpc.RpcError) as refused:
            hub.exchange_stub.GetRecord(
                pb.GetRecordRequest(record_id=record_id), metadata=hub.as_agency("commerce")
            )
        assert error_details(refused.value)[:2] == (grpc.StatusCode.NOT_FOUND, "RECORD_NOT_FOUND")


def test_list_deliveries_paginates(hub: RunningHub) -> None:
    """ListDeliveries pages newest first with opaque tokens until an empty next_page_token."""
    for _ in range(5):
        hub.exchange_stub.PublishRecord(_request(), metadata=hub.as_agency("customs"))
    seen: list[str] = []
    token = ""
    while True:
        page = hub.exchange_stub.ListDeliveries(
            pb.ListDeliveriesRequest(page_size=3, page_token=token, recipient="tax"),
            metadata=hub.as_operator(),
        )
        seen += [d.delivery_id for d in page.deliveries]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.ListDeliveries(
            pb.ListDeliveriesRequest(page_token="garbage"), metadata=hub.as_operator()
        )
    assert "page_token" in error_details(refused.value)[3]


def test_list_filters_naming_unknown_agencies_are_invalid(hub: RunningHub) -> None:
    """Filtering deliveries or escalations by an agency that does not exist is INVALID_ARGUMENT."""
    from ackhub.v1 import operations_service_pb2 as ops

    for call, request in [
        (hub.exchange_stub.ListDeliveries, pb.ListDeliveriesRequest(recipient="nobody")),
        (hub.operations_stub.ListEscalations, ops.ListEscalationsRequest(recipient="nobody")),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            call(request, metadata=hub.as_operator())
        assert "unknown agency 'nobody'" in error_details(refused.value)[3]["recipient"]


def test_publish_records_answers_each_record_in_order(hub: RunningHub) -> None:
    """PublishRecords: receipts for the good records, each refused one answered with its own error, a
    repeated request id replayed (within the call and across calls), and only the good records stored."""
    first, bad, second = _request(), _request(subject_uscc="91110000600037341X"), _request()
    before = table_counts(hub)
    results = hub.exchange_stub.PublishRecords(
        pb.PublishRecordsRequest(records=[first, bad, second, first]), metadata=hub.as_agency("customs")
    ).results
    assert [r.WhichOneof("outcome") for r in results] == ["receipt", "error", "receipt", "receipt"]
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "subject_uscc" in results[1].error.message
    assert not results[0].receipt.replayed and results[3].receipt.replayed
    assert results[3].receipt.record_id == results[0].receipt.record_id
    assert results[0].receipt.digest == "sha256:" + hashlib.sha256(first.payload).hexdigest()
    after = table_counts(hub)
    assert after["records"] - before["records"] == 2
    assert after["deliveries"] - before["deliveries"] == 4

    # Again, one at a time: the same receipts, nothing new stored.
    again = hub.exchange_stub.PublishRecord(second, metadata=hub.as_agency("customs")).receipt
    assert again.replayed and again.record_id == results[2].receipt.record_id
    assert table_counts(hub) == after


@pytest.mark.parametrize("count", [0, 501])
def test_publish_records_needs_one_to_500_records(hub: RunningHub, count: int) -> None:
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecords(
            pb.PublishRecordsRequest(records=[_request(payload=b"{}") for _ in range(count)]),
            metadata=hub.as_agency("customs"),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(error_details(refused.value)[3]) == ["records"]
    assert table_counts(hub) == before


def test_only_agencies_publish_records(hub: RunningHub) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecords(
            pb.PublishRecordsRequest(records=[_request()]), metadata=hub.as_operator()
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
