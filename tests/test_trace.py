"""Enterprises trace their own records with a JWT carrying their USCC, download a delivery proof and verify
it offline; another enterprise's records are NOT_FOUND, exactly like records that do not exist."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit.acks import public_key_base64
from ackhub.audit.proofs import verify_delivery_proof
from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.core.identifiers import uscc_check_character
from ackhub.hub.auth.jwt import issue
from ackhub.hub.cli import main
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import operations_service_pb2 as ops_pb
from ackhub.v1 import trace_service_pb2 as pb
from ackhub.v1 import trace_service_pb2_grpc as pb_grpc
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, error_details, start_hub, wait_for
from tests.records import declaration as declaration_payload

TYPE = "customs.export_declaration.released"
ALPHA = "91110000600037341L"
BETA = "91310000MA1FL0000" + uscc_check_character("91310000MA1FL0000")
DECLARATION = "020220260525641690"
ISSUER_KEY = Ed25519PrivateKey.from_private_bytes(b"enterprise-issuer".ljust(32, b"\0"))


def _with_tokens(config: dict[str, Any]) -> None:
    config["auth"] = {"enterprise_jwt_public_key": public_key_base64(ISSUER_KEY.public_key())}
    config["agencies"][1]["name"] = "State Taxation Administration"


@pytest.fixture(name="traced")
def fixture_traced(database_url: str, clock: ManualClock) -> Iterator[RunningHub]:
    running = start_hub(database_url, clock=clock, edit=_with_tokens)
    try:
        yield running
    finally:
        running.stop()


def _token(clock: ManualClock, uscc: str, audience: str = "ackhub") -> tuple[tuple[str, str]]:
    token = issue(ISSUER_KEY, uscc, issuer="ackhub-dev", audience=audience, now_s=clock.now_ms() // 1000)
    return (("authorization", f"Bearer {token}"),)


def _publish(hub: RunningHub, uscc: str, declaration: str = DECLARATION) -> str:
    receipt = hub.agency("customs").publish(
        TYPE,
        declaration_payload(declaration, uscc),
        subject_uscc=uscc,
        declaration_number=declaration,
        request_id=str(uuid.uuid4()),
    )
    return str(receipt.record_id)


def _delivered(hub: RunningHub, clock: ManualClock) -> str:
    """ALPHA's record: tax acknowledges RECEIVED then ACCEPTED; fx rejects it; an operator resolves that."""
    start_subscription(
        hub.agency("tax", clock=clock),
        Inbox(lambda d: [Verdict.received(), Verdict.accept("登记成功 registered")]),
    )
    start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.reject("value mismatch")))
    record_id = _publish(hub, ALPHA)

    def states() -> set[int]:
        answer = hub.exchange_stub.GetRecord(
            exchange_pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator()
        )
        return {d.state for d in answer.deliveries}

    wait_for(
        lambda: states() == {types_pb2.DELIVERY_STATE_ACCEPTED, types_pb2.DELIVERY_STATE_REJECTED},
        what="tax ACCEPTED and fx REJECTED",
    )
    cases = hub.operations_stub.ListEscalations(ops_pb.ListEscalationsRequest(), metadata=hub.as_operator())
    hub.operations_stub.ResolveEscalation(
        ops_pb.ResolveEscalationRequest(
            escalation_id=cases.escalations[0].escalation_id, reason="phoned SAFE"
        ),
        metadata=hub.as_operator(),
    )
    return record_id


def test_enterprise_sees_only_its_own_records(traced: RunningHub, clock: ManualClock) -> None:
    """ListRecords shows the caller's records only, filtered and paged; another's record is NOT_FOUND."""
    stub = pb_grpc.TraceServiceStub(traced.channel)
    mine = [_publish(traced, ALPHA), _publish(traced, ALPHA, "020220260525641691")]
    theirs = _publish(traced, BETA)
    alpha, beta = _token(clock, ALPHA), _token(clock, BETA)
    listed, token = [], ""
    while True:
        page = stub.ListRecords(pb.ListRecordsRequest(page_size=1, page_token=token), metadata=alpha)
        listed += [r.record.record_id for r in page.records]
        assert all(r.record.payload == b"" and len(r.deliveries) == 2 for r in page.records)
        token = page.next_page_token
        if not token:
            break
    assert listed == mine[::-1]
    by_number = stub.ListRecords(pb.ListRecordsRequest(declaration_number=DECLARATION), metadata=alpha)
    assert [r.record.record_id for r in by_number.records] == [mine[0]]
    pending = stub.ListRecords(pb.ListRecordsRequest(state=types_pb2.DELIVERY_STATE_ACCEPTED), metadata=alpha)
    assert not pending.records
    assert [r.record.record_id for r in stub.ListRecords(pb.ListRecordsRequest(), metadata=beta).records] == [
        theirs
    ]
    answers = []
    for record_id in (theirs, str(uuid.uuid4())):
        for call in (
            lambda r: stub.TraceRecord(pb.TraceRecordRequest(record_id=r), metadata=alpha),
            lambda r: stub.GetDeliveryProof(pb.GetDeliveryProofRequest(record_id=r), metadata=alpha),
            lambda r: traced.exchange_stub.GetRecord(
                exchange_pb.GetRecordRequest(record_id=r), metadata=alpha
            ),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(record_id)
            code, reason, metadata, _ = error_details(refused.value)
            answers.append((code, reason, tuple(sorted(metadata))))
    assert set(answers) == {(grpc.StatusCode.NOT_FOUND, "RECORD_NOT_FOUND", ("record",))}
    with pytest.raises(grpc.RpcError) as bad:
        stub.ListRecords(pb.ListRecordsRequest(declaration_number="12"), metadata=alpha)
    assert error_details(bad.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "declaration_number" in error_details(bad.value)[3]
    out_of_range = pb.ListRecordsRequest()
    out_of_range.start_time.seconds = 9_223_372_036_854_776  # found by the fuzz test: was INTERNAL
    with pytest.raises(grpc.RpcError) as bad:
        stub.ListRecords(out_of_range, metadata=alpha)
    assert error_details(bad.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "start_time" in error_details(bad.value)[3]


def test_tokens_are_checked(traced: RunningHub, clock: ManualClock) -> None:
    """Expired, wrong-audience and wrongly signed tokens are UNAUTHENTICATED; agencies may not trace."""
    stub = pb_grpc.TraceServiceStub(traced.channel)
    expired = _token(clock, ALPHA)
    clock.advance(3_601_000)
    forged = issue(
        Ed25519PrivateKey.generate(),
        ALPHA,
        issuer="ackhub-dev",
        audience="ackhub",
        now_s=clock.now_ms() // 1000,
    )
    for metadata, reason in (
        (expired, "TOKEN_EXPIRED"),
        (_token(clock, ALPHA, audience="elsewhere"), "TOKEN_INVALID"),
        ((("authorization", f"Bearer {forged}"),), "TOKEN_INVALID"),
        ((("authorization", "Basic abc"),), "TOKEN_INVALID"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListRecords(pb.ListRecordsRequest(), metadata=metadata)
        assert error_details(refused.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, reason)
    with pytest.raises(grpc.RpcError) as agency:
        stub.ListRecords(pb.ListRecordsRequest(), metadata=traced.as_agency("tax"))
    assert error_details(agency.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "ENTERPRISE_ONLY")


def test_timeline_and_offline_proof(
    traced: RunningHub, clock: ManualClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The timeline shows each step per recipient; the proof verifies offline and says what it proves."""
    record_id = _delivered(traced, clock)
    stub = pb_grpc.TraceServiceStub(traced.channel)
    alpha = _token(clock, ALPHA)
    timeline = stub.TraceRecord(pb.TraceRecordRequest(record_id=record_id), metadata=alpha)
    kinds = {
        r.agency_id: [pb.TimelineEventKind.Name(e.kind)[20:] for e in r.events] for r in timeline.recipients
    }
    assert kinds["tax"] == ["PUBLISHED", "ATTEMPT", "RECEIVED", "ACCEPTED", "CLOSED"]
    assert kinds["fx"] == ["PUBLISHED", "ATTEMPT", "REJECTED", "CLOSED", "ESCALATED", "ESCALATION_RESOLVED"]
    fx = next(r for r in timeline.recipients if r.agency_id == "fx")
    assert fx.events[2].reason == "value mismatch" and fx.events[2].actor == "agency:fx"
    assert fx.events[3].detail == "closed: REJECTED, a business answer closes any route"
    assert fx.events[3].audit_seq == fx.events[2].audit_seq
    assert fx.events[5].reason == "phoned SAFE" and fx.events[5].actor == "operator:alice"
    assert fx.delivery.closed and fx.delivery.closed_by == types_pb2.ACK_STATUS_REJECTED
    assert fx.delivery.close_time == fx.events[2].event_time

    document = json.loads(
        stub.GetDeliveryProof(pb.GetDeliveryProofRequest(record_id=record_id), metadata=alpha).document
    )
    ledger = traced.server.ledger
    assert ledger is not None
    verdict = verify_delivery_proof(document, ledger.public_key)
    assert verdict.ok, verdict.failures
    said = "\n".join(verdict.statements)
    digest = document["record"]["digest"]
    assert (
        f"The State Taxation Administration's system (tax) acknowledged receipt of record {record_id} "
        f"with digest {digest} at " in said
    )
    assert "(tax) accepted record" in said and "giving the reason '登记成功 registered'" in said
    assert "(fx) rejected record" in said and "'value mismatch'" in said

    path = tmp_path / "proof.json"
    path.write_text(json.dumps(document))
    assert main(["proof", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "acknowledged receipt of record" in out and out.rstrip().endswith("checks out.")

    def tampered(change: Any) -> list[str]:
        copy = json.loads(json.dumps(document))
        change(copy)
        result = verify_delivery_proof(copy, ledger.public_key)
        assert not result.ok
        return result.failures

    tax = next(i for i, r in enumerate(document["recipients"]) if r["agency"] == "tax")
    assert tampered(lambda d: d["recipients"][tax]["acknowledgements"][1].update(reason="登记失败")) == [
        "tax's ACCEPTED acknowledgement: the signature does not verify with key 'tax-test-1'"
    ]
    assert "does not match (digest)" in " ".join(
        tampered(lambda d: d["record"].update(digest="sha256:" + "0" * 64))
    )
    first_event = next(iter(document["events"]))
    failures = tampered(
        lambda d: d["events"][first_event].update(leaf_data=d["events"][first_event]["leaf_data"] + " ")
    )
    assert (
        f"audit event {first_event}: its inclusion proof does not lead to the checkpoint's root" in failures
    )
    assert tampered(lambda d: d["checkpoint"].update(tree_size=d["checkpoint"]["tree_size"] + 1)) == [
        "the hub's checkpoint does not verify: its signature does not verify with key "
        + document["checkpoint"]["key_id"]
    ]
    assert (
        verify_delivery_proof(document, Ed25519PrivateKey.generate().public_key())
        .failures[0]
        .startswith("the hub's checkpoint does not verify: it is signed by key")
    )
    path.write_text(json.dumps(document, ensure_ascii=False).replace("value mismatch", "value matched"))
    assert main(["proof", "verify", str(path)]) == 1
    assert "✗ fx's REJECTED acknowledgement: the signature does not verify" in capsys.readouterr().out


def test_trace_command_prints_the_timeline(
    traced: RunningHub, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ackhub trace DECLARATION` prints each recipient's steps with times and actors."""
    _delivered(traced, clock)
    token = _token(clock, ALPHA)[0][1].removeprefix("Bearer ")
    assert main(["trace", DECLARATION, "--target", traced.target, "--token", token]) == 0
    out = capsys.readouterr().out
    assert f"declaration {DECLARATION}" in out
    assert "→ State Taxation Administration (tax): ACCEPTED, closed by ACCEPTED" in out
    assert "→ Fx (fx): REJECTED, closed by REJECTED" in out
    assert "closed: REJECTED, a business answer closes any route  [system:hub]" in out
    assert "the recipient accepted it: 登记成功 registered  [agency:tax]" in out
    assert "escalation resolved: phoned SAFE  [operator:alice]" in out
    assert main(["trace", "020220260525649999", "--target", traced.target, "--token", token]) == 1


def test_an_abort_shows_in_the_timeline_with_its_reason() -> None:
    """A recipient's "abort" is a timeline entry that says why, and has a kind in the contract."""
    from ackhub.hub.api.trace import _KINDS
    from ackhub.hub.exchange.trace import _entry
    from ackhub.hub.store.models import AuditEventRow

    event = AuditEventRow(
        seq=7, time_ms=1, kind="delivery.aborted", actor="agency:fx", data='{"reason":"unknown exporter"}'
    )
    entry = _entry(event)
    assert entry.kind == "ABORTED" and "unknown exporter" in entry.detail
    assert "ABORTED" in _KINDS
