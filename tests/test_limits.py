"""Hardened inputs over real gRPC: per-principal rate limits answer RESOURCE_EXHAUSTED with RetryInfo, and
oversized strings or lists are INVALID_ARGUMENT naming the field, storing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ackhub.core.clock import ManualClock
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import operations_service_pb2 as ops_pb
from ackhub.v1 import permit_service_pb2 as permit_pb
from ackhub.v1 import permit_service_pb2_grpc
from tests.harness import RunningHub, error_details, start_hub, table_counts


@pytest.fixture(name="limited")
def fixture_limited(tmp_path: Path, clock: ManualClock) -> Iterator[RunningHub]:
    def edit(config: dict[str, Any]) -> None:
        config["limits"] = {
            "requests_per_second": 2.0,
            "burst": 3,
            "max_string_bytes": 256,
            "max_repeated_items": 5,
        }

    running = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)
    try:
        yield running
    finally:
        running.stop()


def _list(hub: RunningHub, who: str = "alice") -> Any:
    return hub.operations_stub.ListEscalations(ops_pb.ListEscalationsRequest(), metadata=hub.as_operator(who))


def test_rate_limit_answers_resource_exhausted_with_retry_info(
    limited: RunningHub, clock: ManualClock
) -> None:
    """The 4th call within the burst is refused with a retry delay; others are unaffected; time refills."""
    for _ in range(3):
        _list(limited)
    with pytest.raises(grpc.RpcError) as refused:
        _list(limited)
    code, reason, metadata, _ = error_details(refused.value)
    assert (code, reason, metadata["caller"]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        "operator:alice",
    )
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    [retry] = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    info = error_details_pb2.RetryInfo()
    retry.Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 500
    _list(limited, "bob")  # another principal has its own bucket
    clock.advance(500)
    _list(limited)


def test_oversized_fields_are_invalid_argument_and_change_nothing(limited: RunningHub) -> None:
    """A string over the byte limit and a list over the item limit are named field by field."""
    before = table_counts(limited)
    request = pb.PublishRecordRequest(record_type="customs." + "x" * 300, request_id="é" * 200)
    with pytest.raises(grpc.RpcError) as refused:
        limited.exchange_stub.PublishRecord(request, metadata=limited.as_agency("customs"))
    code, _, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"record_type", "request_id"} and "256 bytes" in fields["request_id"]
    permits = permit_service_pb2_grpc.PermitServiceStub(limited.channel)
    many = permit_pb.VerifyDeclarationRequest(lines=[permit_pb.GoodsLine() for _ in range(6)])
    with pytest.raises(grpc.RpcError) as too_many:
        permits.VerifyDeclaration(many, metadata=limited.as_agency("customs"))
    assert error_details(too_many.value)[3] == {"lines": "has 6 items; at most 5"}
    assert table_counts(limited) == before


def test_an_oversized_field_inside_a_batch_is_named_by_its_place(limited: RunningHub) -> None:
    """The walk skips whatever is too small to hold a violation, and still finds one record's long field."""
    before = table_counts(limited)
    records = [pb.PublishRecordRequest(record_type="customs.x", request_id=f"r{i}") for i in range(3)]
    records[1].record_type = "customs." + "x" * 300
    with pytest.raises(grpc.RpcError) as refused:
        limited.exchange_stub.PublishRecords(
            pb.PublishRecordsRequest(records=records), metadata=limited.as_agency("customs")
        )
    code, _, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"records[1].record_type"} and "256 bytes" in fields["records[1].record_type"]
    assert table_counts(limited) == before


def test_default_limits_walk_only_the_records_big_enough_to_break_them(hub: RunningHub) -> None:
    """Default limits (8,192-byte strings): a 12 KiB batch is walked, its 3 KiB records are not, and the
    one record holding a 9,000-byte string is named."""
    records = [
        pb.PublishRecordRequest(record_type="customs.x", request_id=f"r{i}", payload=b"{}" + b" " * 3000)
        for i in range(4)
    ]
    records[2].request_id = "x" * 9000
    with pytest.raises(grpc.RpcError) as refused:
        hub.exchange_stub.PublishRecords(
            pb.PublishRecordsRequest(records=records), metadata=hub.as_agency("customs")
        )
    code, _, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"records[2].request_id"}
