"""Issue 18's last item: a witness that refuses a checkpoint opens an escalation case at the top level —
tied to no delivery, reason WITNESS_REFUSED — which operators see in the escalation queue (gRPC and the
console), /metrics counts, the notifiers hear of, and an operator resolves. Real witnesses in processes of
their own (tests/witness_kit.py), refusing a log whose tail was deleted."""

from __future__ import annotations

import httpx
from sqlalchemy import delete
from sqlmodel import col
from structlog.testing import capture_logs

from ackhub.hub.store.models import (
    AuditCheckpointRow,
    AuditCosignatureRow,
    AuditEventRow,
    AuditTreeNodeRow,
    AuditWitnessRow,
)
from ackhub.hub.witnesses import REFUSED
from ackhub.v1 import operations_service_pb2 as ops_pb
from tests.console_kit import console_url, operator_token
from tests.security_data import bearer
from tests.test_console import _samples, _signed_in
from tests.test_witnessed_audit import Setup, _witnessed

# The fixture: a hub with two witnesses in processes of their own.
from tests.test_witnessed_audit import setup as setup

WITNESSES = ("tax.example/witness", "fx.example/witness")


def _refused(setup: Setup) -> None:
    """Delete the newest half of the events with every checkpoint; the next checkpoint is a rollback."""
    size = _witnessed(setup)[-1]
    setup.hub.stop()
    with setup.hub.server.db.transaction() as session:
        session.exec(delete(AuditEventRow).where(col(AuditEventRow.leaf_index) >= size // 2))
        for table in (AuditCheckpointRow, AuditTreeNodeRow, AuditCosignatureRow, AuditWitnessRow):
            session.exec(delete(table))
    setup.start_hub()
    setup.publish(1)


def test_a_refusing_witness_opens_a_top_level_escalation(setup: Setup) -> None:
    """Each refusing witness opens one top-level case (not one per refusal), seen by headquarters and not
    by a local office, counted at the top of /metrics, logged to the notifiers, resolved by an operator."""
    _refused(setup)
    with capture_logs() as logs:
        outcomes = setup.witness_round()
    assert {o.state for o in outcomes.values()} == {REFUSED}, outcomes
    opened = [e for e in logs if e["event"] == "escalation.opened"]
    assert {e["agency"] for e in opened} == {f"witness:{w}" for w in WITNESSES}
    assert all(e["log_level"] == "warning" and e["delivery_id"] == "" for e in opened)

    stub = setup.hub.operations_stub
    hq = bearer(setup.clock, "operator", "alice", jurisdiction="HQ")
    cases = stub.ListEscalations(ops_pb.ListEscalationsRequest(), metadata=hq).escalations
    assert {c.recipient for c in cases} == {f"witness:{w}" for w in WITNESSES}
    for case in cases:
        assert case.reason == ops_pb.ESCALATION_REASON_WITNESS_REFUSED
        assert (case.delivery_id, case.record_id, case.level) == ("", "", 1)
        assert "refused the checkpoint" in case.detail and not case.HasField("next_step_time")
    local = bearer(setup.clock, "operator", "olga", jurisdiction="0202")
    assert not stub.ListEscalations(ops_pb.ListEscalationsRequest(), metadata=local).escalations

    again = setup.witness_round()  # still refused: the open case stands, no second one
    assert {o.state for o in again.values()} == {REFUSED}
    assert len(stub.ListEscalations(ops_pb.ListEscalationsRequest(), metadata=hq).escalations) == 2

    found = _samples(httpx.get(console_url(setup.hub) + "/metrics", timeout=10).text)
    for witness in WITNESSES:
        labels = (("agency", f"witness:{witness}"),)
        assert found[("ackhub_open_escalations", (*labels, ("level", "1")))] == 1
        assert found[("ackhub_open_escalations_at_top_level", labels)] == 1
    with _signed_in(setup.hub, operator_token(setup.clock)) as client:
        page = client.get("/escalations").text
        assert page.count("Top-level case about the hub itself") == 2 and "WITNESS_REFUSED" in page

    tax_case = next(c for c in cases if c.recipient == "witness:tax.example/witness")
    resolved = stub.ResolveEscalation(
        ops_pb.ResolveEscalationRequest(
            escalation_id=tax_case.escalation_id,
            reason="restored the log from backup; witnesses cosign again",
        ),
        metadata=hq,
    ).escalation
    assert resolved.state == ops_pb.ESCALATION_STATE_RESOLVED and resolved.resolved_by == "operator:alice"
