"""The hub on real time: the APScheduler sweep finds deadlines by itself, and two hubs sharing one
PostgreSQL claim each delivery once (FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ackhub.client.agency import Verdict, start_subscription
from ackhub.hub.config import parse_settings
from ackhub.v1 import operations_service_pb2 as ops
from tests.harness import Inbox, RunningHub, base_config, wait_for
from tests.records import declaration

TYPE = "customs.export_declaration.released"


def _config(database_url: str) -> dict[str, Any]:
    config = base_config(database_url)
    for recipient in config["routes"][0]["recipients"]:
        recipient["deadline"] = "300ms"
    return config


def test_scheduled_sweep_escalates_without_help(database_url: str) -> None:
    """With the scheduler on and the system clock, a missed 300 ms deadline becomes a case on its own."""
    hub = RunningHub(parse_settings(_config(database_url), "test", {}), scheduled_sweeps=True)
    try:
        hub.agency("customs").publish(TYPE, declaration(), request_id=str(uuid.uuid4()))
        cases = wait_for(
            lambda: list(
                hub.operations_stub.ListEscalations(
                    ops.ListEscalationsRequest(), metadata=hub.as_operator()
                ).escalations
            ),
            timeout=10,
            what="the sweep to open cases",
        )
        assert {c.reason for c in cases} == {ops.ESCALATION_REASON_DEADLINE_EXCEEDED}
    finally:
        hub.stop()


@pytest.mark.postgres
def test_two_hubs_share_one_postgres_without_double_sends(postgres_url: str) -> None:
    """fx subscribed to two hubs on one database receives each of 60 deliveries exactly once. (The real
    clock runs here: an attempt counts as unanswered only after 10 minutes, so a slow machine's late
    acknowledgement is never a legitimate resend that the count would take for a double send.)"""
    config = base_config(postgres_url)
    config["server"]["stream_window"] = 100
    for recipient in config["routes"][0]["recipients"]:
        recipient["retry"] = {**recipient["retry"], "first_interval": "10m", "max_interval": "10m"}
    hubs = [RunningHub(parse_settings(config, "test", {})) for _ in range(2)]
    try:
        inboxes = []
        for hub in hubs:
            inbox = Inbox(lambda d: Verdict.received())
            start_subscription(hub.agency("fx"), inbox)
            inboxes.append(inbox)
        publisher = hubs[0].agency("customs")
        for _ in range(60):
            publisher.publish(TYPE, declaration(), request_id=str(uuid.uuid4()))
        wait_for(lambda: sum(len(i.deliveries) for i in inboxes) >= 60, what="60 deliveries")
        for hub in hubs:
            hub.dispatch()
        ids = [d for inbox in inboxes for d in inbox.ids()]
        assert len(ids) == len(set(ids)) == 60
    finally:
        for hub in hubs:
            hub.stop()


def test_audit_events_become_leaves_between_checkpoints(database_url: str) -> None:
    """The sequencing job (every sweep interval) makes new events leaves long before the minute's
    checkpoint, a bounded chunk at a time, and stores the tree's hashes over them, so no checkpoint has a
    minute of events to sequence or hash at once."""
    from sqlalchemy import func, select

    from ackhub.hub.store.models import AuditCheckpointRow, AuditEventRow, AuditTreeNodeRow

    hub = RunningHub(parse_settings(base_config(database_url), "test", {}), scheduled_sweeps=True)
    try:
        for _ in range(20):  # with the agencies' registrations, past 16 leaves: a stored subtree
            hub.agency("customs").publish(TYPE, declaration(), request_id=str(uuid.uuid4()))

        def unsequenced() -> int:
            with hub.server.db.transaction() as session:
                return int(
                    session.exec(
                        select(func.count()).where(AuditEventRow.leaf_index.is_(None))  # type: ignore[union-attr]
                    ).one()[0]
                )

        def stored_nodes() -> int:
            with hub.server.db.transaction() as session:
                return int(session.exec(select(func.count()).select_from(AuditTreeNodeRow)).one()[0])

        wait_for(lambda: unsequenced() == 0, timeout=10, what="every audit event to be a leaf")
        # The chunk commits, then the tree's hashes over it are stored in a transaction of their own.
        wait_for(lambda: stored_nodes() >= 1, timeout=10, what="the tree's hashes over the leaves")
        with hub.server.db.transaction() as session:
            (events,) = session.exec(select(func.count()).select_from(AuditEventRow)).one()
            (leaves,) = session.exec(select(func.max(AuditEventRow.leaf_index))).one()
            (nodes,) = session.exec(select(func.count()).select_from(AuditTreeNodeRow)).one()
            (checkpoints,) = session.exec(select(func.count()).select_from(AuditCheckpointRow)).one()
        assert events >= 20 and leaves == events - 1  # dense from 0
        assert nodes >= 1 and checkpoints == 0  # the tree's hashes are stored before any checkpoint
        assert hub.server.settings.audit.checkpoint_interval >= 60_000  # not the checkpoint's doing
    finally:
        hub.stop()
