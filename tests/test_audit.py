"""The audit log end to end: sequencing, signed checkpoints, AuditService proofs, and `audit verify`
catching events altered, deleted, reordered or inserted directly in the database."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session, col, select

from ackhub.audit import merkle
from ackhub.audit.checkpoint import Checkpoint
from ackhub.hub.cli import main
from ackhub.hub.ledger import log
from ackhub.hub.ledger.ledger import AuditLedger
from ackhub.hub.ledger.tree import MissingLeaf
from ackhub.hub.ledger.verify import verify_log
from ackhub.hub.store.models import AuditEventRow
from ackhub.v1 import audit_service_pb2 as pb
from ackhub.v1 import audit_service_pb2_grpc as pb_grpc
from tests.harness import RunningHub, error_details
from tests.records import declaration

TYPE = "customs.export_declaration.released"


def _publish(hub: RunningHub, count: int) -> None:
    customs = hub.agency("customs")
    for _ in range(count):
        customs.publish(TYPE, declaration(), subject_uscc="91110000600037341L", request_id=str(uuid.uuid4()))


def _checkpoint(message: pb.Checkpoint) -> Checkpoint:
    return Checkpoint(
        message.origin,
        message.tree_size,
        message.root_hash,
        message.sign_time.ToMilliseconds(),
        message.key_id,
        base64.b64encode(message.public_key).decode(),
        message.signature,
    )


def _stub(hub: RunningHub) -> pb_grpc.AuditServiceStub:
    return pb_grpc.AuditServiceStub(hub.channel)


def test_every_event_is_in_a_signed_tree_with_proofs(hub: RunningHub) -> None:
    """Fresh checkpoints sign the tree of every event; each inclusion and the consistency proof verify."""
    stub, operator = _stub(hub), hub.as_operator()
    first = stub.GetCheckpoint(pb.GetCheckpointRequest(fresh=True), metadata=operator).checkpoint
    _publish(hub, 3)
    second = stub.GetCheckpoint(pb.GetCheckpointRequest(fresh=True), metadata=operator).checkpoint
    with hub.server.db.transaction() as session:
        total = len(session.exec(select(AuditEventRow)).all())
    assert first.tree_size == 8 and second.tree_size == total == 11  # 4 agencies, 4 keys, 3 records
    assert _checkpoint(first).verify() is None and _checkpoint(second).verify() is None
    assert second.note.startswith(f"ackhub\n11\n{base64.b64encode(second.root_hash).decode()}\ntime ")
    for index in range(total):
        proof = stub.GetInclusionProof(
            pb.GetInclusionProofRequest(leaf_index=index, tree_size=11), metadata=operator
        )
        assert proof.event.leaf_index == index and proof.checkpoint == second
        leaf = merkle.leaf_hash(proof.event.leaf_data)
        assert leaf == proof.event.leaf_hash
        assert merkle.verify_inclusion(index, 11, leaf, list(proof.audit_path), second.root_hash)
    consistency = stub.GetConsistencyProof(
        pb.GetConsistencyProofRequest(first_tree_size=8), metadata=hub.as_agency("tax")
    )
    assert consistency.first_checkpoint == first and consistency.second_checkpoint == second
    assert merkle.verify_consistency(8, 11, first.root_hash, second.root_hash, list(consistency.proof))
    latest = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=hub.as_agency("tax")).checkpoint
    assert latest == second


def test_scheduled_checkpoint_and_refusals(hub: RunningHub) -> None:
    """The scheduler's job signs a checkpoint; unknown sizes are NOT_FOUND; events are for operators."""
    _publish(hub, 1)
    hub.run(hub.server.checkpoint())
    stub = _stub(hub)
    latest = stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=hub.as_agency("fx")).checkpoint
    assert latest.tree_size == 9
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetCheckpoint(pb.GetCheckpointRequest(tree_size=5), metadata=hub.as_operator())
    assert error_details(missing.value)[:2] == (grpc.StatusCode.NOT_FOUND, "CHECKPOINT_NOT_FOUND")
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=hub.as_agency("tax"))
    assert error_details(refused.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY")
    with pytest.raises(grpc.RpcError) as beyond:
        stub.GetInclusionProof(
            pb.GetInclusionProofRequest(leaf_index=99, tree_size=9), metadata=hub.as_operator()
        )
    assert error_details(beyond.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "LEAF_NOT_IN_TREE")


def test_list_audit_events_filters_and_pages(hub: RunningHub) -> None:
    """ListAuditEvents filters by kind and pages newest first until the token is empty."""
    _publish(hub, 3)
    stub, seen, token = _stub(hub), [], ""
    while True:
        page = stub.ListAuditEvents(
            pb.ListAuditEventsRequest(kind="record.published", page_size=2, page_token=token),
            metadata=hub.as_operator(),
        )
        seen += [e.seq for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 3 and seen == sorted(seen, reverse=True)
    everything = stub.ListAuditEvents(pb.ListAuditEventsRequest(page_size=500), metadata=hub.as_operator())
    assert {e.kind for e in everything.events} == {
        "agency.registered",
        "agency.key_added",
        "record.published",
    }


def _at(session: Session, index: int) -> AuditEventRow:
    return session.exec(select(AuditEventRow).where(AuditEventRow.leaf_index == index)).one()


def _move(session: Session, where: str, delta: int) -> None:
    """Shift leaf indexes without tripping the unique constraint midway."""
    session.execute(text(f"UPDATE audit_events SET leaf_index = leaf_index + 100000 WHERE {where}"))
    session.execute(
        text(f"UPDATE audit_events SET leaf_index = leaf_index - 100000 + {delta} WHERE leaf_index >= 100000")
    )


def _alter(session: Session) -> None:
    session.execute(
        text("""UPDATE audit_events SET data = '{"record_type":"forged"}' WHERE leaf_index = 9""")
    )


def _delete(session: Session) -> None:
    session.execute(text("DELETE FROM audit_events WHERE leaf_index = 9"))


def _delete_and_close_gap(session: Session) -> None:
    _delete(session)
    _move(session, "leaf_index > 9", -1)


def _reorder(session: Session) -> None:
    session.execute(text("UPDATE audit_events SET leaf_index = -1 WHERE leaf_index = 9"))
    session.execute(text("UPDATE audit_events SET leaf_index = 9 WHERE leaf_index = 10"))
    session.execute(text("UPDATE audit_events SET leaf_index = 10 WHERE leaf_index = -1"))


def _insert(session: Session) -> None:
    """A forged event slipped in at leaf 9 with a correct leaf hash; the later ones shifted up."""
    _move(session, "leaf_index >= 9", 1)
    forged = log.append(session, kind="record.published", actor="agency:customs", time_ms=1, data={"x": 1})
    session.flush()
    forged.leaf_index = 9
    forged.leaf_hash = merkle.leaf_hash(log.leaf_data(forged, 9))
    session.add(forged)


def _rewrite_hash_too(session: Session) -> None:
    event = _at(session, 9)
    event.data = '{"record_type":"forged"}'
    event.leaf_hash = merkle.leaf_hash(log.leaf_data(event, 9))
    session.add(event)


@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        (_alter, 9, "was altered"),
        (_delete, 9, "leaf 9 is missing"),
        (_delete_and_close_gap, 9, "the event sequenced at leaf 9 is gone"),
        (_reorder, 9, "deleted or reordered"),
        (_insert, 9, "events were inserted or reordered"),
        (_rewrite_hash_too, 8, "stored hashes were rewritten"),
    ],
    ids=["alter", "delete", "delete-and-close-gap", "reorder", "insert", "rewrite-hash-too"],
)
def test_verify_names_the_first_bad_event(
    hub: RunningHub, tamper: Callable[[Session], None], first_bad: int, words: str
) -> None:
    """Each kind of tampering in the database fails verification, naming the first bad leaf."""
    ledger = hub.server.ledger
    assert ledger is not None
    hub.run(hub.server.checkpoint())  # 8 events
    _publish(hub, 4)
    hub.run(hub.server.checkpoint())  # 12 events
    clean = verify_log(hub.server.db, ledger.public_key)
    assert clean.ok and clean.events == 12 and clean.checkpoints == 2, clean.summary()
    with hub.server.db.transaction() as session:
        tamper(session)
    verdict = verify_log(hub.server.db, ledger.public_key)
    assert not verdict.ok and verdict.first_bad_leaf == first_bad, verdict.summary()
    assert words in verdict.problem, verdict.summary()


def test_audit_verify_command(hub: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ackhub audit verify` refuses without a trust anchor, passes on an untouched log given the hub's key
    and a minimum size, and fails, naming the event, on an altered one."""
    _publish(hub, 2)
    hub.run(hub.server.checkpoint())
    config = tmp_path / "hub.toml"
    config.write_text(f'[server]\ndatabase_url = "{hub.server.settings.server.database_url}"\n')
    assert main(["audit", "verify", "--config", str(config)]) == 2
    assert "needs a trust anchor" in capsys.readouterr().err
    assert main(["audit", "key", "--config", str(config)]) == 0
    vkey = capsys.readouterr().out.strip()
    anchor = ["--log-key", vkey, "--min-size", "10"]
    assert main(["audit", "verify", "--config", str(config), *anchor]) == 0
    assert "OK: 10 events recomputed, 1 signed checkpoints verified" in capsys.readouterr().out
    assert main(["audit", "verify", "--config", str(config), "--log-key", vkey, "--min-size", "11"]) == 1
    assert "trusted size is 11: leaf 10 is the first missing one" in capsys.readouterr().out
    with hub.server.db.transaction() as session:
        first = session.exec(select(AuditEventRow).order_by(col(AuditEventRow.seq))).first()
        assert first is not None
        first.actor = "operator:mallory"
        session.add(first)
    assert main(["audit", "verify", "--config", str(config), *anchor]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAILED: first bad event: leaf 0 (seq {first.seq}): event seq {first.seq}"), out


def test_audit_verify_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a copy of a hub's SQLite file without the key beside it, `audit verify` neither makes a key nor
    changes the database; a database that does not exist is refused, not created."""
    import hashlib
    import shutil

    from tests.harness import start_hub

    hub = start_hub(f"sqlite:///{tmp_path / 'hub.db'}")
    _publish(hub, 2)
    hub.stop()
    assert main(["audit", "key", "--config", str(_config(tmp_path, tmp_path / "hub.db"))]) == 0
    vkey = capsys.readouterr().out.splitlines()[-1]  # after the hub's own log lines
    copy = tmp_path / "copy" / "hub.db"
    copy.parent.mkdir()
    shutil.copy(tmp_path / "hub.db", copy)
    before = hashlib.sha256(copy.read_bytes()).hexdigest()
    config = _config(tmp_path, copy)
    assert main(["audit", "verify", "--config", str(config), "--log-key", vkey, "--min-size", "10"]) == 0
    assert main(["audit", "key", "--config", str(config)]) == 2  # no key there, and none is made
    assert sorted(p.name for p in copy.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "hub.db"
    ]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == before
    missing = _config(tmp_path, tmp_path / "nowhere" / "hub.db")
    assert main(["audit", "verify", "--config", str(missing), "--log-key", vkey, "--min-size", "1"]) == 2
    assert "refused: no database at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def _config(tmp_path: Path, database: Path) -> Path:
    config = tmp_path / f"hub-{database.parent.name}.toml"
    config.write_text(f'[server]\ndatabase_url = "sqlite:///{database}"\n')
    return config


def test_a_clean_stop_leaves_every_event_in_a_signed_tree(database_url: str) -> None:
    """Stopping the hub sequences what is left and signs a checkpoint over all of it."""
    from sqlalchemy import func

    from ackhub.hub.store.db import Database
    from ackhub.hub.store.models import AuditCheckpointRow
    from tests.harness import start_hub

    hub = start_hub(database_url)
    hub.agency("customs").publish(
        "customs.export_declaration.released", declaration(), request_id=str(uuid.uuid4())
    )
    hub.stop()
    db = Database(database_url)
    try:
        with db.transaction() as session:
            events = session.exec(select(func.count()).select_from(AuditEventRow)).one()
            signed = session.exec(select(func.max(AuditCheckpointRow.tree_size))).one()
        assert signed == events > 0
    finally:
        db.close()


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)  # any character but surrogates
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.tuples(_TEXT, _TEXT, st.none() | _TEXT, st.none() | _TEXT, st.none() | _TEXT),
    data=st.dictionaries(_TEXT, _JSON, max_size=4),
    seq=st.integers(1, 2**53),
    index=st.integers(0, 2**53),
)
def test_the_sequencers_spliced_leaf_is_the_canonical_leaf(
    fields: tuple[str, str, str | None, str | None, str | None], data: dict[str, object], seq: int, index: int
) -> None:
    """The sequencer splices the stored `data` into the leaf instead of parsing it; for whatever `append`
    can store (quotes, escapes, any Unicode, nesting, missing ids) that is byte for byte `leaf_data`."""
    kind, actor, record_id, delivery_id, escalation_id = fields
    event = AuditEventRow(
        **log.event_row(
            kind=kind,
            actor=actor,
            time_ms=seq // 3,
            record_id=record_id,
            delivery_id=delivery_id,
            escalation_id=escalation_id,
            data=data,
        ),
    )
    event.seq = seq
    assert log.spliced_leaf_data(event, index) == log.leaf_data(event, index)


def test_an_event_edited_before_it_was_sequenced_fails_verification(hub: RunningHub) -> None:
    """Sequencing does not parse events, so it does not refuse one edited into non-canonical JSON before
    its turn: it makes it a leaf like any other, and verification reports it."""
    ledger = hub.server.ledger
    assert ledger is not None
    hub.run(hub.server.checkpoint())  # 8 events
    _publish(hub, 4)  # 4 more, not sequenced yet
    with hub.server.db.transaction() as session:
        session.execute(
            text("""UPDATE audit_events SET data = '{ "record_type" : "forged" }' WHERE seq = 10""")
        )
    hub.run(hub.server.checkpoint())
    verdict = verify_log(hub.server.db, ledger.public_key)
    assert not verdict.ok and verdict.first_bad_seq == 10, verdict.summary()
    assert "was altered" in verdict.problem, verdict.summary()


def test_a_deleted_leaf_stops_checkpoints_not_sequencing(hub: RunningHub) -> None:
    """A hub that (re)builds its tree finds a leaf gone: the tree cannot grow and no checkpoint is signed
    past it, but new events still become leaves, in their order, for verification to account for."""
    ledger = hub.server.ledger
    assert ledger is not None
    _publish(hub, 4)
    assert ledger.sequence_some(500) == 12  # leaves 0..11 (with the agencies' registrations)
    with hub.server.db.transaction() as session:
        _delete(session)  # leaf 9
    restarted = AuditLedger(hub.server.db, ledger.key, ledger.origin, ledger.clock)  # rebuilds its tree
    _publish(hub, 4)
    assert restarted.sequence_some(500) == 4
    with hub.server.db.transaction() as session:
        assert log.tree_size(session) == 16
        assert (
            session.exec(select(AuditEventRow).where(col(AuditEventRow.leaf_index).is_(None))).first() is None
        )
    with pytest.raises(MissingLeaf):
        restarted.checkpoint()
    verdict = verify_log(hub.server.db, ledger.public_key)
    assert not verdict.ok and verdict.first_bad_leaf == 9, verdict.summary()
