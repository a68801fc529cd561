"""The authorization policy over real gRPC: every RPC with every role, a policy entry for every RPC, and
row-level visibility by agency, enterprise USCC and operator jurisdiction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from ackhub.core.clock import ManualClock
from ackhub.hub.auth import policy
from ackhub.hub.server import SERVICES
from ackhub.v1 import exchange_service_pb2 as ex_pb
from ackhub.v1 import operations_service_pb2 as ops_pb
from ackhub.v1 import trace_service_pb2, trace_service_pb2_grpc
from tests.harness import RunningHub, error_details, start_hub
from tests.records import declaration as declaration_payload
from tests.security_data import ALPHA, BETA, DECLARATION, TYPE, bearer, with_jwks

A, E, OP, M = "agency", "enterprise", "operator", "administrator"
ALL = {A, E, OP, M}
# Who may call what: written out here, apart from ackhub.hub.auth.policy, so a change of policy shows up.
ALLOWED: dict[str, set[str]] = {
    "ExchangeService/PublishRecord": {A},
    "ExchangeService/PublishRecords": {A},
    "ExchangeService/Subscribe": {A},
    "ExchangeService/AcknowledgeDelivery": {A},
    "ExchangeService/GetRecord": ALL,
    "ExchangeService/ListDeliveries": {A, OP, M},
    "OperationsService/ListEscalations": {OP, M},
    "OperationsService/GetEscalation": {OP, M},
    "OperationsService/ResolveEscalation": {OP, M},
    "OperationsService/AddEscalationNote": {OP, M},
    "OperationsService/RedeliverDelivery": {OP, M},
    "PermitService/CreatePermit": {A},
    "PermitService/AmendPermit": {A},
    "PermitService/RevokePermit": {A},
    "PermitService/GetPermit": ALL,
    "PermitService/VerifyPermit": ALL,
    "PermitService/VerifyDeclaration": ALL,
    "PermitService/DrawDownPermit": {A},
    "PermitService/ReleaseDrawDown": {A, OP, M},
    "TraceService/ListRecords": {E, OP, M},
    "TraceService/TraceRecord": {E, OP, M},
    "TraceService/GetDeliveryProof": {E, OP, M},
    "AuditService/GetCheckpoint": ALL,
    "AuditService/GetConsistencyProof": ALL,
    "AuditService/GetInclusionProof": {OP, M},
    "AuditService/ListAuditEvents": {OP, M},
    "CatalogueService/ListRecordTypes": ALL,
    "CatalogueService/GetRecordType": ALL,
    "CaseService/OpenCase": ALL,
    "CaseService/GetCase": ALL,
    "CaseService/ListCases": ALL,
    "CaseService/AddCaseMessage": ALL,
    "CaseService/WithdrawCase": ALL,
    "CaseService/ReopenCase": ALL,
    "CaseService/ResolveCase": {OP, M},
    "CaseService/AddCaseParty": {OP, M},
    "SubscriptionService/CreateSubscription": {E},
    "SubscriptionService/GetSubscription": {E},
    "SubscriptionService/ListSubscriptions": {E},
    "SubscriptionService/DeleteSubscription": {E},
    "SubscriptionService/EnableSubscription": {E},
    "SubscriptionService/ListNotificationAttempts": {E},
}
# An allowed caller with an empty request hears about the request, never about its role.
NOT_A_ROLE_ANSWER = {
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INTERNAL,
}


def methods() -> list[MethodDescriptor]:
    from ackhub.v1 import (
        audit_service_pb2,
        case_service_pb2,
        catalogue_service_pb2,
        exchange_service_pb2,
        operations_service_pb2,
        permit_service_pb2,
        subscription_service_pb2,
        trace_service_pb2,
    )

    found = []
    for module in (
        exchange_service_pb2,
        operations_service_pb2,
        permit_service_pb2,
        trace_service_pb2,
        audit_service_pb2,
        catalogue_service_pb2,
        case_service_pb2,
        subscription_service_pb2,
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in SERVICES:
                found.extend(service.methods)
    return found


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def short(method: MethodDescriptor) -> str:
    return f"{method.containing_service.name}/{method.name}"


def call(hub: RunningHub, method: MethodDescriptor, request: Any, metadata: Any) -> Any:
    """Call any RPC of the hub; for the Subscribe stream, send `request` and return the first answer."""
    response_class = message_factory.GetMessageClass(method.output_type)
    if method.client_streaming:
        stub = hub.channel.stream_stream(
            path(method), request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )  # fmt: skip
        answers = stub(iter([request]), metadata=metadata, timeout=5)
        try:
            return next(answers)
        finally:
            answers.cancel()
    stub = hub.channel.unary_unary(
        path(method), request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )  # fmt: skip
    return stub(request, metadata=metadata, timeout=10)


def role_metadata(clock: ManualClock) -> dict[str, Any]:
    return {
        A: bearer(clock, "agency", "customs"),
        E: bearer(clock, "enterprise", ALPHA),
        OP: bearer(clock, "operator", "alice", jurisdiction="HQ"),
        M: bearer(clock, "administrator", "root", kid="ec-2026-01"),
    }


@pytest.fixture(name="secured")
def fixture_secured(tmp_path: Path, clock: ManualClock) -> Iterator[RunningHub]:
    running = start_hub(
        f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=with_jwks(tmp_path / "jwks.json")
    )
    try:
        yield running
    finally:
        running.stop()


def test_every_rpc_has_exactly_one_policy_entry() -> None:
    """Each served RPC has a rule and each rule names a served RPC: a new RPC without policy fails here."""
    served = {path(m) for m in methods()}
    assert served == set(policy.RULES), (
        f"missing: {served - set(policy.RULES)}; stale: {set(policy.RULES) - served}"
    )
    assert {short(m) for m in methods()} == set(ALLOWED)


def test_a_method_without_a_rule_is_refused_to_everyone() -> None:
    """The policy fails closed for a method it does not know."""
    from ackhub.core.errors import PermissionDenied
    from ackhub.core.principal import Principal

    with pytest.raises(PermissionDenied) as refused:
        policy.authorize(
            "/ackhub.v1.ExchangeService/DeleteEverything", Principal("administrator", "root", "HQ")
        )
    assert refused.value.reason == "NO_POLICY"


def test_every_rpc_with_every_role(secured: RunningHub, clock: ManualClock) -> None:
    """Disallowed roles get PERMISSION_DENIED with the rule's reason; allowed roles get past the policy."""
    roles = role_metadata(clock)
    for method in methods():
        request_class = message_factory.GetMessageClass(method.input_type)
        for role, metadata in roles.items():
            request = request_class()
            if "declarant_uscc" in request.DESCRIPTOR.fields_by_name:
                request.declarant_uscc = ALPHA  # the enterprise's own, so only the role can be refused
            if method.client_streaming:
                request = ex_pb.SubscribeRequest(open=ex_pb.SubscribeOpen(agency_id="customs"))
            allowed = role in ALLOWED[short(method)]
            try:
                call(secured, method, request, metadata)
                outcome = grpc.StatusCode.OK
                reason = ""
            except grpc.RpcError as error:
                outcome, reason, _, _ = error_details(error)
            where = f"{short(method)} as {role}: {outcome.name} {reason}"
            if allowed:
                assert outcome not in NOT_A_ROLE_ANSWER, where
            else:
                assert outcome == grpc.StatusCode.PERMISSION_DENIED, where
                assert reason == policy.RULES[path(method)].reason, where


def _publish(hub: RunningHub, uscc: str, declaration: str) -> str:
    receipt = hub.agency("customs").publish(
        TYPE,
        declaration_payload(declaration, uscc),
        subject_uscc=uscc,
        declaration_number=declaration,
        request_id=str(uuid.uuid4()),
    )
    return str(receipt.record_id)


def test_operators_see_their_jurisdiction_only(secured: RunningHub, clock: ManualClock) -> None:
    """HQ, district 02 and office 0202 see a 0202 declaration; office 5300 and district 53 hear NOT_FOUND."""
    record_id = _publish(secured, ALPHA, DECLARATION)
    trace = trace_service_pb2_grpc.TraceServiceStub(secured.channel)
    for jurisdiction, sees in [("HQ", True), ("02", True), ("0202", True), ("5300", False), ("53", False)]:
        metadata = bearer(clock, "operator", "olga", jurisdiction=jurisdiction)
        deliveries = secured.exchange_stub.ListDeliveries(ex_pb.ListDeliveriesRequest(), metadata=metadata)
        assert len(deliveries.deliveries) == (2 if sees else 0), jurisdiction
        listed = trace.ListRecords(trace_service_pb2.ListRecordsRequest(), metadata=metadata)
        assert len(listed.records) == (1 if sees else 0), jurisdiction
        if sees:
            secured.exchange_stub.GetRecord(ex_pb.GetRecordRequest(record_id=record_id), metadata=metadata)
            continue
        with pytest.raises(grpc.RpcError) as hidden:
            secured.exchange_stub.GetRecord(ex_pb.GetRecordRequest(record_id=record_id), metadata=metadata)
        assert error_details(hidden.value)[:2] == (grpc.StatusCode.NOT_FOUND, "RECORD_NOT_FOUND")
        delivery_id = (
            secured.exchange_stub.ListDeliveries(
                ex_pb.ListDeliveriesRequest(), metadata=bearer(clock, "operator", "hq", jurisdiction="HQ")
            )
            .deliveries[0]
            .delivery_id
        )
        with pytest.raises(grpc.RpcError) as redeliver:
            secured.operations_stub.RedeliverDelivery(
                ops_pb.RedeliverDeliveryRequest(delivery_id=delivery_id), metadata=metadata
            )
        assert error_details(redeliver.value)[0] == grpc.StatusCode.NOT_FOUND


def test_enterprises_and_agencies_see_only_their_records(secured: RunningHub, clock: ManualClock) -> None:
    """Another enterprise, and an agency that neither published nor received the record, hear NOT_FOUND."""
    record_id = _publish(secured, ALPHA, DECLARATION)
    request = ex_pb.GetRecordRequest(record_id=record_id)
    for metadata in (bearer(clock, "enterprise", ALPHA), bearer(clock, "agency", "tax")):
        secured.exchange_stub.GetRecord(request, metadata=metadata)
    for metadata in (bearer(clock, "enterprise", BETA), bearer(clock, "agency", "commerce")):
        with pytest.raises(grpc.RpcError) as hidden:
            secured.exchange_stub.GetRecord(request, metadata=metadata)
        assert error_details(hidden.value)[0] == grpc.StatusCode.NOT_FOUND
    tax_view = secured.exchange_stub.GetRecord(request, metadata=bearer(clock, "agency", "tax"))
    assert [d.recipient for d in tax_view.deliveries] == ["tax"]
