"""Cases between parties over real gRPC (hub/cases/, docs/cases.md): the NOT_RECEIVED story against fx end
to end, evidence, per-party visibility, request ids, limits, closed cases, reopening and deadlines moved by
the injected clock."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from ackhub.audit.proofs import verify_delivery_proof
from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.v1 import case_service_pb2 as pb
from ackhub.v1 import case_service_pb2_grpc as pb_grpc
from ackhub.v1 import exchange_service_pb2 as ex_pb
from ackhub.v1 import trace_service_pb2 as trace_pb
from ackhub.v1 import trace_service_pb2_grpc as trace_grpc
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, error_details, start_hub, table_counts, wait_for
from tests.records import declaration as declaration_payload
from tests.security_data import ALPHA, BETA, DECLARATION, TYPE, bearer, write_jwks

DAY = 86_400_000


def _config(tmp_path: Path) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["auth"] = {"jwks_file": str(write_jwks(tmp_path / "jwks.json"))}
        config["cases"] = {
            "deadlines": {"NOT_RECEIVED": "2d"},
            "reopen_window": "7d",
            "max_message_chars": 500,
            "max_attachment_bytes": 1024,
            "max_attachments": 2,
            "escalation": [{"after": "0s", "notify": ["log"]}, {"after": "1d", "notify": ["log"]}],
        }
        # fx's route gets a two-rung ladder: a case about an fx delivery climbs it.
        fx = config["routes"][0]["recipients"][1]
        fx["escalation"] = [{"after": "0s", "notify": ["log"]}, {"after": "12h", "notify": ["log"]}]

    return edit


@pytest.fixture(name="hub")
def fixture_hub(database_url: str, clock: ManualClock, tmp_path: Path) -> Iterator[RunningHub]:
    running = start_hub(database_url, clock=clock, edit=_config(tmp_path))
    try:
        yield running
    finally:
        running.stop()


class As:
    """Fresh tokens for each party (the clock moves by days in these tests)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def exporter(self) -> Any:
        return bearer(self.clock, "enterprise", ALPHA)

    def stranger(self) -> Any:
        return bearer(self.clock, "enterprise", BETA)

    def agency(self, name: str) -> Any:
        return bearer(self.clock, "agency", name)

    def operator(self, jurisdiction: str = "HQ", name: str = "alice") -> Any:
        return bearer(self.clock, "operator", name, jurisdiction=jurisdiction)


def _publish(hub: RunningHub, uscc: str = ALPHA, declaration: str = DECLARATION) -> str:
    receipt = hub.agency("customs").publish(
        TYPE,
        declaration_payload(declaration, uscc),
        subject_uscc=uscc,
        declaration_number=declaration,
        request_id=str(uuid.uuid4()),
    )
    return str(receipt.record_id)


def _delivered(hub: RunningHub, clock: ManualClock) -> str:
    """ALPHA's record: tax accepts it; fx signs RECEIVED (which closes fx's delivery on this route)."""
    start_subscription(hub.agency("tax", clock=clock), Inbox(lambda d: Verdict.accept("registered")))
    start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.received()))
    record_id = _publish(hub)

    def states() -> set[int]:
        answer = hub.exchange_stub.GetRecord(
            ex_pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator()
        )
        return {d.state for d in answer.deliveries}

    wait_for(
        lambda: states() == {types_pb2.DELIVERY_STATE_ACCEPTED, types_pb2.DELIVERY_STATE_RECEIVED},
        what="tax ACCEPTED and fx RECEIVED",
    )
    return record_id


def _refused(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str], dict[str, str]]:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return error_details(refused.value)


def _open_not_received(stub: pb_grpc.CaseServiceStub, record_id: str, metadata: Any, **extra: Any) -> pb.Case:
    answer = stub.OpenCase(
        pb.OpenCaseRequest(
            kind=pb.CASE_KIND_NOT_RECEIVED,
            record=pb.RecordSubject(record_id=record_id, recipient="fx"),
            text="SAFE says our export data never arrived; the FX settlement is stalled.",
            **extra,
        ),
        metadata=metadata,
    )
    return answer.case


def test_not_received_against_fx_end_to_end(hub: RunningHub, clock: ManualClock) -> None:
    """The exporter opens NOT_RECEIVED against fx; the hub attaches fx's signed RECEIVED; fx answers; an
    operator resolves; the exporter's delivery proof and trace now show the case, every step audited."""
    as_ = As(clock)
    stub = pb_grpc.CaseServiceStub(hub.channel)
    record_id = _delivered(hub, clock)
    request_id = str(uuid.uuid4())
    case = _open_not_received(stub, record_id, as_.exporter(), request_id=request_id)

    assert case.kind == pb.CASE_KIND_NOT_RECEIVED
    assert case.state == pb.CASE_STATE_AWAITING_PARTY and case.awaited_party == "agency:fx"
    assert case.respond_by_time.ToMilliseconds() == clock.now_ms() + 2 * DAY
    summary = case.evidence.summary
    assert summary.startswith("fx signed RECEIVED at ") and summary.endswith("with key fx-test-1"), summary
    (fx,) = case.evidence.deliveries
    assert fx.recipient == "fx" and fx.state == "RECEIVED"
    assert [(a.status, a.key_id, len(a.signature)) for a in fx.acknowledgements] == [
        ("RECEIVED", "fx-test-1", 64)
    ]
    assert fx.attempts and fx.attempts[0].number == 1 and fx.attempts[0].outcome == "ACKED"
    proof_at_opening = json.loads(case.evidence.delivery_proof)
    assert verify_delivery_proof(proof_at_opening).ok
    assert {p.party: p.role for p in case.parties} == {
        f"enterprise:{ALPHA}": "ENTERPRISE",
        "agency:customs": "PUBLISHER",
        "agency:fx": "RECIPIENT",
        "customs:0202": "CUSTOMS",
    }
    # The same request again: the first answer; the same id for another request: ALREADY_EXISTS.
    again = stub.OpenCase(
        pb.OpenCaseRequest(
            request_id=request_id,
            kind=pb.CASE_KIND_NOT_RECEIVED,
            record=pb.RecordSubject(record_id=record_id, recipient="fx"),
            text="SAFE says our export data never arrived; the FX settlement is stalled.",
        ),
        metadata=as_.exporter(),
    )
    assert again.replayed and again.case == case
    code, reason, _, _ = _refused(
        lambda: _open_not_received(stub, record_id, as_.exporter(), request_id=request_id, title="other")
    )
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")

    # fx sees and answers it (with its gateway log); tax, another enterprise and another office do not.
    listed = stub.ListCases(pb.ListCasesRequest(), metadata=as_.agency("fx"))
    assert [c.case_id for c in listed.cases] == [case.case_id]
    for stranger in (as_.agency("tax"), as_.stranger(), as_.operator("5300")):
        assert not stub.ListCases(pb.ListCasesRequest(), metadata=stranger).cases
        code, reason, _, _ = _refused(
            lambda m=stranger: stub.GetCase(pb.GetCaseRequest(case_id=case.case_id), metadata=m)
        )
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CASE_NOT_FOUND")
    log_line = b"2026-12-05T08:00:01Z delivery accepted, filed under quarantine/\n"
    answered = stub.AddCaseMessage(
        pb.AddCaseMessageRequest(
            case_id=case.case_id,
            text="We signed RECEIVED; the record was filed in quarantine by our gateway. Released now.",
            attachments=[
                pb.CaseAttachment(filename="gateway.log", content_type="text/plain", content=log_line)
            ],
        ),
        metadata=as_.agency("fx"),
    ).case
    assert answered.awaited_party == "customs:0202" and answered.state == pb.CASE_STATE_AWAITING_PARTY
    (attachment,) = answered.messages[-1].attachments
    assert (attachment.size_bytes, attachment.sha256) == (len(log_line), hashlib.sha256(log_line).hexdigest())
    assert attachment.content == b""

    resolved = stub.ResolveCase(
        pb.ResolveCaseRequest(
            case_id=case.case_id, resolution="fx held the record; released from quarantine"
        ),
        metadata=as_.operator("0202", "olga"),
    ).case
    assert resolved.state == pb.CASE_STATE_RESOLVED and resolved.closed_by == "operator:olga"
    assert [h.kind for h in resolved.history] == [
        "case.opened",
        "case.message_added",
        "case.message_added",
        "case.resolved",
    ]
    assert len({h.audit_seq for h in resolved.history}) == 4
    code, reason, metadata, _ = _refused(
        lambda: stub.AddCaseMessage(
            pb.AddCaseMessageRequest(case_id=case.case_id, text="one more thing"), metadata=as_.exporter()
        )
    )
    assert (code, reason, metadata["state"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CASE_CLOSED",
        "RESOLVED",
    )

    # The exporter's proof and trace now carry the case.
    trace = trace_grpc.TraceServiceStub(hub.channel)
    proof = json.loads(
        trace.GetDeliveryProof(
            trace_pb.GetDeliveryProofRequest(record_id=record_id), metadata=as_.exporter()
        ).document
    )
    (in_proof,) = proof["cases"]
    assert (
        in_proof["case_id"] == case.case_id
        and in_proof["state"] == "RESOLVED"
        and len(in_proof["events"]) == 4
    )
    verdict = verify_delivery_proof(proof)
    assert verdict.ok, verdict.failures
    assert any(case.case_id in line and "state RESOLVED" in line for line in verdict.statements)
    timeline = trace.TraceRecord(trace_pb.TraceRecordRequest(record_id=record_id), metadata=as_.exporter())
    fx_events = next(r for r in timeline.recipients if r.agency_id == "fx").events
    kinds = [e.kind for e in fx_events]
    assert (
        trace_pb.TIMELINE_EVENT_KIND_CASE_OPENED in kinds
        and kinds[-1] == trace_pb.TIMELINE_EVENT_KIND_CASE_RESOLVED
    )
    tax_events = next(r for r in timeline.recipients if r.agency_id == "tax").events
    assert trace_pb.TIMELINE_EVENT_KIND_CASE_OPENED not in [e.kind for e in tax_events]


def test_a_subject_the_caller_may_not_see_is_not_found(hub: RunningHub, clock: ManualClock) -> None:
    """Another enterprise, an agency the record was not sent to and another office hear NOT_FOUND for the
    record, exactly as for a record that does not exist; nothing is stored."""
    as_ = As(clock)
    stub = pb_grpc.CaseServiceStub(hub.channel)
    record_id = _publish(hub)
    before = table_counts(hub)
    for metadata in (as_.stranger(), as_.agency("commerce"), as_.operator("5300")):
        for subject in (record_id, str(uuid.uuid4())):
            code, reason, _, _ = _refused(
                lambda m=metadata, s=subject: stub.OpenCase(
                    pb.OpenCaseRequest(kind=pb.CASE_KIND_OTHER, record=pb.RecordSubject(record_id=s)),
                    metadata=m,
                )
            )
            assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "RECORD_NOT_FOUND")
    # tax may see the record, but not fx's delivery.
    code, reason, _, _ = _refused(lambda: _open_not_received(stub, record_id, as_.agency("tax")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, reason, _, _ = _refused(
        lambda: stub.OpenCase(
            pb.OpenCaseRequest(
                kind=pb.CASE_KIND_NOT_RECEIVED, permit_check=pb.PermitCheckSubject(check_id="nope")
            ),
            metadata=as_.exporter(),
        )
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PERMIT_CHECK_NOT_FOUND")
    assert table_counts(hub) == before


def test_limits_name_themselves_and_store_nothing(hub: RunningHub, clock: ManualClock) -> None:
    """A message, an attachment or too many attachments over the configured limits, or a content type not
    allowed: INVALID_ARGUMENT naming the limit; nothing stored."""
    as_ = As(clock)
    stub = pb_grpc.CaseServiceStub(hub.channel)
    record_id = _publish(hub)
    case = _open_not_received(stub, record_id, as_.exporter())
    before = table_counts(hub)
    big = pb.CaseAttachment(filename="scan.pdf", content_type="application/pdf", content=b"%" * 1025)
    exe = pb.CaseAttachment(filename="x.exe", content_type="application/x-msdownload", content=b"MZ")
    small = pb.CaseAttachment(filename="a.txt", content_type="text/plain", content=b"a")
    for request, field, limit in [
        (pb.AddCaseMessageRequest(case_id=case.case_id, text="x" * 501), "text", "max_message_chars is 500"),
        (pb.AddCaseMessageRequest(case_id=case.case_id, text="scan", attachments=[big]), "attachments[0].content",
         "max_attachment_bytes is 1024"),
        (pb.AddCaseMessageRequest(case_id=case.case_id, text="x", attachments=[small] * 3), "attachments",
         "max_attachments is 2"),
        (pb.AddCaseMessageRequest(case_id=case.case_id, text="x", attachments=[exe]), "attachments[0].content_type",
         "attachment_types"),
    ]:  # fmt: skip
        code, reason, _, fields = _refused(lambda r=request: stub.AddCaseMessage(r, metadata=as_.exporter()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and reason == "CASE_LIMIT_EXCEEDED", (field, reason)
        assert limit in fields[field], fields
    code, _, _, fields = _refused(
        lambda: stub.AddCaseMessage(
            pb.AddCaseMessageRequest(case_id=case.case_id, text="  "), metadata=as_.exporter()
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == {"text": "is required"}
    assert table_counts(hub) == before


def test_withdraw_reopen_and_the_reopen_window(hub: RunningHub, clock: ManualClock) -> None:
    """Only the opener (or an operator) withdraws; a withdrawn case reopens within the window, awaiting
    customs, and not after it; reopening an open case is FAILED_PRECONDITION naming its state."""
    as_ = As(clock)
    stub = pb_grpc.CaseServiceStub(hub.channel)
    record_id = _publish(hub)
    case = _open_not_received(stub, record_id, as_.exporter())
    code, reason, _, _ = _refused(
        lambda: stub.WithdrawCase(
            pb.WithdrawCaseRequest(case_id=case.case_id, reason="no"), metadata=as_.agency("fx")
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_CASE_OPENER")
    code, reason, metadata, _ = _refused(
        lambda: stub.ReopenCase(
            pb.ReopenCaseRequest(case_id=case.case_id, reason="?"), metadata=as_.exporter()
        )
    )
    assert (code, reason, metadata["state"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CASE_NOT_CLOSED",
        "AWAITING_PARTY",
    )
    withdrawn = stub.WithdrawCase(
        pb.WithdrawCaseRequest(case_id=case.case_id, reason="SAFE found it"), metadata=as_.exporter()
    ).case
    assert withdrawn.state == pb.CASE_STATE_WITHDRAWN and withdrawn.close_reason == "SAFE found it"
    assert withdrawn.reopen_until_time.ToMilliseconds() == clock.now_ms() + 7 * DAY
    code, reason, metadata, _ = _refused(
        lambda: stub.WithdrawCase(
            pb.WithdrawCaseRequest(case_id=case.case_id, reason="again"), metadata=as_.exporter()
        )
    )
    assert (code, reason, metadata["state"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CASE_CLOSED",
        "WITHDRAWN",
    )
    clock.advance(6 * DAY)
    reopened = stub.ReopenCase(
        pb.ReopenCaseRequest(case_id=case.case_id, reason="it is missing again"), metadata=as_.exporter()
    ).case
    assert reopened.state == pb.CASE_STATE_AWAITING_PARTY and reopened.awaited_party == "customs:0202"
    stub.ResolveCase(
        pb.ResolveCaseRequest(case_id=case.case_id, resolution="resent"), metadata=as_.operator()
    )
    clock.advance(7 * DAY + 1)
    code, reason, _, _ = _refused(
        lambda: stub.ReopenCase(
            pb.ReopenCaseRequest(case_id=case.case_id, reason="late"), metadata=as_.exporter()
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REOPEN_WINDOW_PASSED")


def test_a_missed_deadline_notifies_and_climbs_the_ladder(hub: RunningHub, clock: ManualClock) -> None:
    """fx does not answer within NOT_RECEIVED's 2 days: the case reaches level 1 of fx's route ladder and a
    notice names fx; 12 hours later level 2; fx's answer passes the turn to customs and stops the climb."""
    as_ = As(clock)
    stub = pb_grpc.CaseServiceStub(hub.channel)
    record_id = _publish(hub)
    case = _open_not_received(stub, record_id, as_.exporter())
    assert hub.server.cases is not None
    clock.advance(2 * DAY - 1)
    assert hub.run(hub.server.cases.sweep()) == []
    clock.advance(1)
    with capture_logs() as logs:
        (missed,) = hub.run(hub.server.cases.sweep())
    assert missed.event == "case.deadline_missed" and missed.case["awaited_party"] == "agency:fx"
    assert any(e["event"] == "case.deadline_missed" and e["agency"] == "agency:fx" for e in logs)
    now = stub.GetCase(pb.GetCaseRequest(case_id=case.case_id), metadata=as_.exporter()).case
    assert now.level == 1 and now.history[-1].kind == "case.deadline_missed"
    clock.advance(12 * 3_600_000)
    (stepped,) = hub.run(hub.server.cases.sweep())
    assert stepped.event == "case.stepped" and stepped.case["level"] == 2
    assert hub.run(hub.server.cases.sweep()) == []  # the top of the ladder: no more rungs
    answered = stub.AddCaseMessage(
        pb.AddCaseMessageRequest(case_id=case.case_id, text="found it"), metadata=as_.agency("fx")
    ).case
    assert (answered.level, answered.awaited_party) == (0, "customs:0202")
    assert answered.respond_by_time.ToMilliseconds() == clock.now_ms() + 2 * DAY


OK, HIDDEN, DENIED = "OK", "NOT_FOUND", "PERMISSION_DENIED"
ROLES = ("exporter", "stranger", "fx", "tax", "customs", "op0202", "op5300", "admin")
# Each role × each CaseService RPC on a case the exporter opened about its record's fx delivery (for
# OpenCase: about the record itself). Parties: the exporter, customs (publisher), fx, customs office 0202.
_SEES = {"exporter": OK, "stranger": HIDDEN, "fx": OK, "tax": HIDDEN, "customs": OK, "op0202": OK,
         "op5300": HIDDEN, "admin": OK}  # fmt: skip
_STAFF = {**{r: DENIED for r in ROLES}, "op0202": OK, "op5300": HIDDEN, "admin": OK}
MATRIX: dict[str, dict[str, str]] = {
    "OpenCase": {**_SEES, "tax": OK},  # tax has a delivery of the record: it may open a case about it
    "GetCase": _SEES,
    "ListCases": _SEES,
    "AddCaseMessage": _SEES,
    "ReopenCase": _SEES,
    "WithdrawCase": {**_SEES, "fx": DENIED, "customs": DENIED},  # the opener or an operator
    "ResolveCase": _STAFF,
    "AddCaseParty": _STAFF,
}


def _as(clock: ManualClock, role: str) -> Any:
    return {
        "exporter": lambda: bearer(clock, "enterprise", ALPHA),
        "stranger": lambda: bearer(clock, "enterprise", BETA),
        "fx": lambda: bearer(clock, "agency", "fx"),
        "tax": lambda: bearer(clock, "agency", "tax"),
        "customs": lambda: bearer(clock, "agency", "customs"),
        "op0202": lambda: bearer(clock, "operator", "olga", jurisdiction="0202"),
        "op5300": lambda: bearer(clock, "operator", "oscar", jurisdiction="5300"),
        "admin": lambda: bearer(clock, "administrator", "root", kid="ec-2026-01"),
    }[role]()


def test_every_role_with_every_case_rpc(hub: RunningHub, clock: ManualClock) -> None:
    """Row-level authorization of every CaseService RPC for every kind of caller: parties act, others hear
    NOT_FOUND exactly as for a missing case; resolve and add-party are operators'; withdraw the opener's."""
    stub = pb_grpc.CaseServiceStub(hub.channel)
    exporter = _as(clock, "exporter")
    assert set(MATRIX) == {m.name for m in pb.DESCRIPTOR.services_by_name["CaseService"].methods}
    for method, expected in MATRIX.items():
        for role in ROLES:
            # A record per case: a case's opening attaches the record's delivery proof, which proves every
            # event of the record, and so every earlier case about it (64 cases on one record: 30 s).
            record_id = _publish(hub)
            case = _open_not_received(stub, record_id, exporter)
            if method == "ReopenCase":
                stub.WithdrawCase(
                    pb.WithdrawCaseRequest(case_id=case.case_id, reason="found"), metadata=exporter
                )
            requests: dict[str, Any] = {
                "OpenCase": pb.OpenCaseRequest(
                    kind=pb.CASE_KIND_OTHER, record=pb.RecordSubject(record_id=record_id)
                ),
                "GetCase": pb.GetCaseRequest(case_id=case.case_id),
                "ListCases": pb.ListCasesRequest(record_id=record_id, page_size=1),
                "AddCaseMessage": pb.AddCaseMessageRequest(case_id=case.case_id, text="a word"),
                "ReopenCase": pb.ReopenCaseRequest(case_id=case.case_id, reason="missing again"),
                "WithdrawCase": pb.WithdrawCaseRequest(case_id=case.case_id, reason="done"),
                "ResolveCase": pb.ResolveCaseRequest(case_id=case.case_id, resolution="settled"),
                "AddCaseParty": pb.AddCasePartyRequest(case_id=case.case_id, party="agency:tax"),
            }
            try:
                answer = getattr(stub, method)(requests[method], metadata=_as(clock, role))
                outcome = OK
                if method == "ListCases" and [c.case_id for c in answer.cases] != [case.case_id]:
                    outcome = HIDDEN  # an empty list: the case is not the caller's to see
            except grpc.RpcError as error:
                outcome = error_details(error)[0].name
            assert outcome == expected[role], f"{method} as {role}: {outcome}, expected {expected[role]}"


class Hook:
    """A webhook notifier's receiving end: every POSTed JSON body, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[tuple[str, str]]:
        return [(b["event"], b["case"]["awaited_party"]) for b in self.bodies]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_awaited_party_hears_through_its_own_notifier(tmp_path: Path, clock: ManualClock) -> None:
    """fx's webhook (`[cases] party_notifiers`) is told when a case awaits fx and when fx misses its deadline;
    not when the turn passes to customs."""
    hook = Hook()

    def edit(config: dict[str, Any]) -> None:
        _config(tmp_path)(config)
        config["notifiers"] = [{"name": "safe-hook", "kind": "webhook", "url": hook.url}]
        config["cases"]["party_notifiers"] = {"fx": ["safe-hook"]}

    hub = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)
    try:
        as_ = As(clock)
        stub = pb_grpc.CaseServiceStub(hub.channel)
        case = _open_not_received(stub, _publish(hub), as_.exporter())
        assert hook.events() == [("case.awaiting", "agency:fx")]
        assert hook.bodies[0]["case"]["case_id"] == case.case_id
        clock.advance(2 * DAY)
        assert hub.server.cases is not None
        hub.run(hub.server.cases.sweep())
        assert hook.events()[-1] == ("case.deadline_missed", "agency:fx")
        stub.AddCaseMessage(
            pb.AddCaseMessageRequest(case_id=case.case_id, text="found it"), metadata=as_.agency("fx")
        )
        assert len(hook.bodies) == 2
    finally:
        hub.stop()
        hook.stop()


def test_the_enterprise_client_opens_and_follows_a_case(hub: RunningHub, clock: ManualClock) -> None:
    """`EnterpriseClient` (ackhub.client.enterprise): open NOT_RECEIVED against fx, find it, answer, read it."""
    from ackhub.client import EnterpriseClient

    record_id = _delivered(hub, clock)
    client = EnterpriseClient(hub.target, token=lambda: As(clock).exporter()[0][1].removeprefix("Bearer "))
    try:
        case = client.open_case(record_id, "NOT_RECEIVED", recipient="fx", text="SAFE has nothing")
        assert case.evidence.summary.startswith("fx signed RECEIVED at ")
        assert [c.case_id for c in client.list_cases(record_id=record_id, page_size=1)] == [case.case_id]
        client.add_case_message(case.case_id, "the bank asks again")
        assert [m.text for m in client.get_case(case.case_id).messages] == [
            "SAFE has nothing",
            "the bank asks again",
        ]
    finally:
        client.close()


def test_a_rejection_appeal_awaits_the_agency_that_rejected(hub: RunningHub, clock: ManualClock) -> None:
    """fx rejects: the exporter appeals; the evidence names fx's signed REJECTED and its reason; an appeal of
    a delivery that was not rejected is FAILED_PRECONDITION naming its state, and stores nothing."""
    as_ = As(clock)
    stub = pb_grpc.CaseServiceStub(hub.channel)
    start_subscription(
        hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.reject("declared value mismatch"))
    )
    start_subscription(hub.agency("tax", clock=clock), Inbox(lambda d: Verdict.accept()))
    record_id = _publish(hub)

    def states() -> dict[str, int]:
        answer = hub.exchange_stub.GetRecord(
            ex_pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator()
        )
        return {d.recipient: d.state for d in answer.deliveries}

    wait_for(
        lambda: (
            states() == {"fx": types_pb2.DELIVERY_STATE_REJECTED, "tax": types_pb2.DELIVERY_STATE_ACCEPTED}
        ),
        what="fx REJECTED, tax ACCEPTED",
    )
    before = table_counts(hub)
    code, reason, metadata, _ = _refused(
        lambda: stub.OpenCase(
            pb.OpenCaseRequest(
                kind=pb.CASE_KIND_REJECTION_APPEAL,
                record=pb.RecordSubject(record_id=record_id, recipient="tax"),
            ),
            metadata=as_.exporter(),
        )
    )
    assert (code, reason, metadata["state"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "DELIVERY_NOT_REJECTED",
        "ACCEPTED",
    )
    assert table_counts(hub) == before
    case = stub.OpenCase(
        pb.OpenCaseRequest(
            kind=pb.CASE_KIND_REJECTION_APPEAL,
            record=pb.RecordSubject(record_id=record_id, recipient="fx"),
            text="The declared value matches the invoice; copy attached.",
            attachments=[
                pb.CaseAttachment(filename="invoice.pdf", content_type="application/pdf", content=b"%PDF-1.7")
            ],
        ),
        metadata=as_.exporter(),
    ).case
    assert case.awaited_party == "agency:fx"
    assert case.evidence.summary.startswith("fx signed REJECTED at ") and case.evidence.summary.endswith(
        "with key fx-test-1 (declared value mismatch)"
    ), case.evidence.summary
    (fx,) = case.evidence.deliveries
    assert [(a.status, a.reason) for a in fx.acknowledgements] == [("REJECTED", "declared value mismatch")]


def test_a_replayed_request_id_answers_as_the_first_time_even_after_the_case_closed(
    hub: RunningHub, clock: ManualClock
) -> None:
    """AIP-155: fx's message retried after the case was resolved gets its first answer (no CASE_CLOSED, no
    second message); another caller's same request id is a request of its own."""
    as_ = As(clock)
    stub = pb_grpc.CaseServiceStub(hub.channel)
    case = _open_not_received(stub, _publish(hub), as_.exporter())
    request = pb.AddCaseMessageRequest(request_id=str(uuid.uuid4()), case_id=case.case_id, text="checking")
    first = stub.AddCaseMessage(request, metadata=as_.agency("fx"))
    stub.ResolveCase(pb.ResolveCaseRequest(case_id=case.case_id, resolution="found"), metadata=as_.operator())
    again = stub.AddCaseMessage(request, metadata=as_.agency("fx"))
    assert again.replayed and not first.replayed
    assert (again.message_id, again.case) == (first.message_id, first.case)
    assert (
        len(stub.GetCase(pb.GetCaseRequest(case_id=case.case_id), metadata=as_.exporter()).case.messages) == 2
    )
    code, reason, _, _ = _refused(lambda: stub.AddCaseMessage(request, metadata=as_.exporter()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CASE_CLOSED")
