"""Retries, escalation cases and their ladder, late acknowledgements, operators' actions and the circuit
breaker — with a hand-moved clock, so every step happens exactly when the policy says."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import grpc
import pytest
from sqlmodel import select

from ackhub.client.agency import AgencyClient, Delivery, Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.hub.store.models import AuditEventRow
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import operations_service_pb2 as ops
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, error_details, start_hub, table_counts, wait_for
from tests.records import declaration

TYPE = "customs.export_declaration.released"


def _publish(hub: RunningHub) -> pb.Receipt:
    return hub.agency("customs").publish(
        TYPE, declaration(), subject_uscc="91110000600037341L", request_id=str(uuid.uuid4())
    )


def _delivery(hub: RunningHub, receipt: pb.Receipt, agency: str) -> types_pb2.Delivery:
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_operator()
    )
    return next(d for d in record.deliveries if d.recipient == agency)


def _cases(hub: RunningHub, **filters: Any) -> list[ops.Escalation]:
    request = ops.ListEscalationsRequest(**filters)
    return list(hub.operations_stub.ListEscalations(request, metadata=hub.as_operator()).escalations)


def _silent(hub: RunningHub, agency: str, clock: ManualClock, window: int = 0) -> tuple[AgencyClient, Inbox]:
    inbox = Inbox()
    client = hub.agency(agency, clock=clock)
    start_subscription(client, inbox, window=window)
    return client, inbox


def _step(hub: RunningHub, clock: ManualClock, ms: int) -> None:
    """Move time, run the sweep and the dispatcher as the scheduler would."""
    clock.advance(ms)
    hub.sweep()
    hub.dispatch()


def test_unanswered_delivery_is_resent_with_backoff_and_the_same_id(
    hub: RunningHub, clock: ManualClock
) -> None:
    """Attempts go out at 0, +1 s, +2 s, +4 s (first 1 s, multiplier 2), never earlier, with one stable id."""
    _, inbox = _silent(hub, "fx", clock)
    receipt = _publish(hub)
    delivery_id = next(d.delivery_id for d in receipt.deliveries if d.recipient == "fx")
    wait_for(lambda: inbox.attempts(delivery_id) == [1], what="first attempt")
    _step(hub, clock, 999)
    assert inbox.attempts(delivery_id) == [1]
    _step(hub, clock, 1)
    wait_for(lambda: inbox.attempts(delivery_id) == [1, 2], what="second attempt")
    _step(hub, clock, 1999)
    assert inbox.attempts(delivery_id) == [1, 2]
    _step(hub, clock, 1)
    wait_for(lambda: inbox.attempts(delivery_id) == [1, 2, 3], what="third attempt")
    assert _delivery(hub, receipt, "fx").attempt_count == 3
    assert not _cases(hub)


def test_last_attempt_unanswered_escalates_and_retrying_slows(hub: RunningHub, clock: ManualClock) -> None:
    """After the third (last) attempt goes unanswered a case opens; attempts go on every max_interval (8 s)."""
    _, inbox = _silent(hub, "fx", clock)
    receipt = _publish(hub)
    delivery_id = next(d.delivery_id for d in receipt.deliveries if d.recipient == "fx")
    wait_for(lambda: inbox.attempts(delivery_id), what="first attempt")
    for wait, attempts in [(1000, 2), (2000, 3), (4000, 4)]:
        _step(hub, clock, wait)
        wait_for(lambda n=attempts: len(inbox.attempts(delivery_id)) == n, what=f"attempt {attempts}")
    cases = _cases(hub, recipient="fx")
    assert [(c.reason, c.level, c.state) for c in cases] == [
        (ops.ESCALATION_REASON_ATTEMPTS_EXHAUSTED, 1, ops.ESCALATION_STATE_OPEN)
    ]
    _step(hub, clock, 7999)
    assert len(inbox.attempts(delivery_id)) == 4
    _step(hub, clock, 1)
    wait_for(lambda: len(inbox.attempts(delivery_id)) == 5, what="slow attempt")
    assert len(_cases(hub)) == 1, "one open case per delivery"


def test_deadline_opens_a_case_that_climbs_the_ladder(hub: RunningHub, clock: ManualClock) -> None:
    """With nobody connected, the 30 s deadline opens a case at level 1; 60 s later it is at level 2."""
    receipt = _publish(hub)
    _step(hub, clock, 29_999)
    assert not _cases(hub)
    _step(hub, clock, 1)
    (case,) = _cases(hub, recipient="tax")
    assert (case.reason, case.level, case.delivery_id) == (
        ops.ESCALATION_REASON_DEADLINE_EXCEEDED,
        1,
        _delivery(hub, receipt, "tax").delivery_id,
    )
    assert case.next_step_time.ToMilliseconds() == case.open_time.ToMilliseconds() + 60_000
    (fx_case,) = _cases(hub, recipient="fx")
    assert not fx_case.HasField("next_step_time"), "fx's ladder has a single rung"
    _step(hub, clock, 60_000)
    (case,) = _cases(hub, recipient="tax")
    assert case.level == 2 and not case.HasField("next_step_time")
    assert [c.recipient for c in _cases(hub, min_level=2)] == ["tax"]


def test_late_acknowledgement_closes_the_case_and_records_lateness(
    hub: RunningHub, clock: ManualClock
) -> None:
    """An ACCEPTED arriving 5 s after the deadline closes the case by itself with lateness 5 s."""
    receipt = _publish(hub)
    _step(hub, clock, 35_000)
    tax = hub.agency("tax", clock=clock)
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
    ).record
    tax.acknowledge(tax.sign(record, _delivery(hub, receipt, "tax").delivery_id, "ACCEPTED"))
    (case,) = _cases(hub, recipient="tax")
    assert case.state == ops.ESCALATION_STATE_CLOSED_BY_ACK
    assert case.lateness.ToMilliseconds() == 5_000
    _step(hub, clock, 120_000)
    assert _cases(hub, recipient="tax")[0].level == 1, "a closed case stops climbing"


def test_operator_resolves_notes_and_redelivers(hub: RunningHub, clock: ManualClock) -> None:
    """An operator adds a note, resolves with a reason (audited with who), and redelivers at once."""
    receipt = _publish(hub)
    _step(hub, clock, 30_000)
    (case,) = _cases(hub, recipient="tax")
    noted = hub.operations_stub.AddEscalationNote(
        ops.AddEscalationNoteRequest(
            escalation_id=case.escalation_id, text="电话联系税务局 called the bureau"
        ),
        metadata=hub.as_operator("alice"),
    ).escalation
    assert [(n.author, n.text) for n in noted.notes] == [
        ("operator:alice", "电话联系税务局 called the bureau")
    ]
    resolved = hub.operations_stub.ResolveEscalation(
        ops.ResolveEscalationRequest(escalation_id=case.escalation_id, reason="bureau confirmed by phone"),
        metadata=hub.as_operator("alice"),
    ).escalation
    assert (resolved.state, resolved.resolution, resolved.resolved_by) == (
        ops.ESCALATION_STATE_RESOLVED,
        "bureau confirmed by phone",
        "operator:alice",
    )
    assert not _delivery(hub, receipt, "tax").HasField("next_attempt_time"), "resolving stops the retries"
    with hub.server.db.transaction() as session:
        kinds = [
            (e.kind, e.actor)
            for e in session.exec(
                select(AuditEventRow).where(AuditEventRow.escalation_id == case.escalation_id)
            )
        ]
    assert ("escalation.resolved", "operator:alice") in kinds and (
        "escalation.note_added",
        "operator:alice",
    ) in kinds

    _, inbox = _silent(hub, "tax", clock)
    delivery_id = _delivery(hub, receipt, "tax").delivery_id
    hub.operations_stub.RedeliverDelivery(
        ops.RedeliverDeliveryRequest(delivery_id=delivery_id), metadata=hub.as_operator("alice")
    )
    wait_for(lambda: inbox.attempts(delivery_id) == [1], what="the redelivery")


def test_operator_actions_refuse_bad_input(hub: RunningHub, clock: ManualClock) -> None:
    """Missing reason, unknown case, closed case, final delivery, non-operator: precise errors, no change."""
    receipt = _publish(hub)
    _step(hub, clock, 30_000)
    case = _cases(hub, recipient="tax")[0]
    tax = hub.agency("tax", clock=clock)
    record = hub.exchange_stub.GetRecord(
        pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
    ).record
    tax.acknowledge(tax.sign(record, case.delivery_id, "ACCEPTED"))
    before = table_counts(hub)
    attempts: list[tuple[Any, Any, Any, tuple[grpc.StatusCode, str]]] = [
        (
            hub.operations_stub.ResolveEscalation,
            ops.ResolveEscalationRequest(escalation_id=case.escalation_id, reason="  "),
            hub.as_operator(),
            (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        ),
        (
            hub.operations_stub.ResolveEscalation,
            ops.ResolveEscalationRequest(escalation_id=str(uuid.uuid4()), reason="x"),
            hub.as_operator(),
            (grpc.StatusCode.NOT_FOUND, "ESCALATION_NOT_FOUND"),
        ),
        (
            hub.operations_stub.ResolveEscalation,
            ops.ResolveEscalationRequest(escalation_id=case.escalation_id, reason="x"),
            hub.as_operator(),
            (grpc.StatusCode.FAILED_PRECONDITION, "ESCALATION_CLOSED"),
        ),
        (
            hub.operations_stub.RedeliverDelivery,
            ops.RedeliverDeliveryRequest(delivery_id=case.delivery_id),
            hub.as_operator(),
            (grpc.StatusCode.FAILED_PRECONDITION, "DELIVERY_ALREADY_RECEIVED"),
        ),
        (
            hub.operations_stub.ListEscalations,
            ops.ListEscalationsRequest(),
            hub.as_agency("tax"),
            (grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY"),
        ),
    ]
    for method, request, metadata, expected in attempts:
        with pytest.raises(grpc.RpcError) as refused:
            method(request, metadata=metadata)
        assert error_details(refused.value)[:2] == expected, request
    assert table_counts(hub) == before


def test_circuit_breaker_paces_a_failing_agency(hub: RunningHub, clock: ManualClock) -> None:
    """Three unanswered attempts open fx's circuit: nothing goes for 5 s, then one probe; its answer lets the
    backlog out in order."""
    fx, inbox = _silent(hub, "fx", clock)
    receipts = [_publish(hub) for _ in range(4)]
    wait_for(lambda: len(inbox.deliveries) == 4, what="first attempts")
    _step(hub, clock, 1000)  # 4 retries go out and are counted as 4 failures: the circuit opens
    wait_for(lambda: len(inbox.deliveries) == 8, what="second attempts")
    breaker = hub.server.exchange.dispatcher.breakers["fx"]  # type: ignore[union-attr]
    assert breaker.state == "OPEN"
    _step(hub, clock, 2000)  # attempt 3 is due, but the circuit is open
    assert len(inbox.deliveries) == 8
    _step(hub, clock, 3000)  # cooldown over: exactly one probe
    wait_for(lambda: len(inbox.deliveries) == 9, what="the probe")
    hub.dispatch()
    assert len(inbox.deliveries) == 9
    probe: Delivery = inbox.deliveries[-1]
    fx.send(pb.SubscribeRequest(acknowledgement=fx.sign(probe.record, probe.delivery_id, "RECEIVED")))
    wait_for(lambda: len(inbox.deliveries) == 12, what="the backlog after the probe")
    assert breaker.state == "CLOSED"
    order = [r.record_id for r in receipts if r.record_id != probe.record.record_id]
    assert [d.record.record_id for d in inbox.deliveries[9:]] == order


def test_retry_after_holds_a_delivery_back(hub: RunningHub, clock: ManualClock) -> None:
    """A recipient answering "retry after 10 s" for a delivery gets it again after 10 s, not at the backoff."""
    inbox = Inbox(lambda d: Verdict.later(10_000) if d.attempt == 1 else None)
    fx = hub.agency("fx", clock=clock)
    start_subscription(fx, inbox)
    receipt = _publish(hub)
    delivery_id = next(d.delivery_id for d in receipt.deliveries if d.recipient == "fx")
    wait_for(lambda: inbox.attempts(delivery_id) == [1], what="first attempt")
    wait_for(
        lambda: _delivery(hub, receipt, "fx").next_attempt_time.ToMilliseconds() == clock.now_ms() + 10_000,
        what="the deferral",
    )
    _step(hub, clock, 9_999)
    assert inbox.attempts(delivery_id) == [1]
    _step(hub, clock, 1)
    wait_for(lambda: inbox.attempts(delivery_id) == [1, 2], what="the attempt after the wait")


def test_retry_after_for_the_whole_agency_pauses_it(hub: RunningHub, clock: ManualClock) -> None:
    """A stream-wide "retry after 5 s" pauses every delivery to that agency for 5 s."""
    fx, inbox = _silent(hub, "fx", clock)
    wait = pb.RetryAfter()
    wait.retry_after.FromMilliseconds(5_000)
    fx.send(pb.SubscribeRequest(retry_after=wait))
    wait_for(lambda: hub.server.exchange.dispatcher.paused_until.get("fx"), what="the pause")  # type: ignore[union-attr]
    _publish(hub)
    hub.dispatch()
    assert inbox.deliveries == []
    _step(hub, clock, 5_000)
    wait_for(lambda: len(inbox.deliveries) == 1, what="delivery after the pause")


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(name="webhook")
def fixture_webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_webhook_notifier_hears_each_step(
    database_url: str, clock: ManualClock, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """A ladder whose second rung notifies a webhook: the webhook receives the step with the case."""
    url, received = webhook

    def edit(config: dict[str, Any]) -> None:
        config["notifiers"] = [{"name": "ops", "kind": "webhook", "url": url}]
        tax = config["routes"][0]["recipients"][0]
        tax["escalation"] = [{"after": "0s", "notify": ["log", "ops"]}, {"after": "10s", "notify": ["ops"]}]

    hub = start_hub(database_url, clock=clock, edit=edit)
    try:
        receipt = _publish(hub)
        _step(hub, clock, 30_000)
        _step(hub, clock, 10_000)
        events = [(r["event"], r["case"]["level"], r["case"]["recipient"]) for r in received]
        assert events == [("escalation.opened", 1, "tax"), ("escalation.stepped", 2, "tax")]
        assert received[0]["case"]["record_id"] == receipt.record_id
    finally:
        hub.stop()


def test_escalation_is_a_structured_warning_with_ids(hub: RunningHub, clock: ManualClock) -> None:
    """Opening a case logs a warning event carrying the escalation, delivery, record and agency ids."""
    from structlog.testing import capture_logs

    receipt = _publish(hub)
    with capture_logs() as logs:
        _step(hub, clock, 30_000)
    opened = [e for e in logs if e["event"] == "escalation.opened" and e["agency"] == "tax"]
    assert len(opened) == 1
    assert opened[0]["log_level"] == "warning"
    assert opened[0]["record_id"] == receipt.record_id
    assert opened[0]["delivery_id"] == _delivery(hub, receipt, "tax").delivery_id
    assert opened[0]["escalation_id"] == _cases(hub, recipient="tax")[0].escalation_id
