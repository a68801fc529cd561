"""The hub with two witnesses, each `ackhub witness serve` in a process of its own with its own storage:
checkpoints are cosigned, stored and served; a delivery proof carries the cosignatures and `proof verify`
holds it to a quorum; and three attacks on the hub's database — deleting the tail with the checkpoints,
deleting only the checkpoints, rewriting history re-signed with the hub's own key — are each caught by the
witnesses and by `audit verify` given a witnessed checkpoint."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, update
from sqlmodel import col, select

from ackhub.audit import checkpoint as checkpoints
from ackhub.audit import merkle
from ackhub.audit.note import parse_checkpoint
from ackhub.core.clock import ManualClock
from ackhub.hub.cli import main
from ackhub.hub.ledger import log
from ackhub.hub.store.models import (
    AuditCheckpointRow,
    AuditCosignatureRow,
    AuditEventRow,
    AuditTreeNodeRow,
    AuditWitnessRow,
)
from ackhub.hub.witnesses import COSIGNED, REFUSED
from ackhub.v1 import audit_service_pb2 as audit_pb
from ackhub.v1 import audit_service_pb2_grpc as audit_grpc
from tests.console_kit import console_url, operator_token
from tests.harness import RunningHub, start_hub
from tests.records import declaration
from tests.security_data import with_jwks
from tests.witness_kit import WitnessProcess

ORIGIN = "customs.example/ackhub"
HUB_KEY = Ed25519PrivateKey.from_private_bytes(b"H" * 32)
TYPE = "customs.export_declaration.released"


@dataclass
class Setup:
    database_url: str
    clock: ManualClock
    key_file: Path
    config: Path
    witnesses: list[WitnessProcess]
    jwks: Any
    hub: RunningHub

    def start_hub(self) -> RunningHub:
        self.hub = start_hub(self.database_url, self.clock, self.edit)
        return self.hub

    def edit(self, config: dict[str, Any]) -> None:
        self.jwks(config)
        config["console"] = {"listen": "127.0.0.1:0"}
        config["audit"] = {
            "origin": ORIGIN,
            "signing_key_file": str(self.key_file),
            "witnesses": [
                {"name": w.name, "url": w.url, "key": w.vkey, "timeout": "5s"} for w in self.witnesses
            ],
        }

    def publish(self, count: int) -> None:
        customs = self.hub.agency("customs")
        for _ in range(count):
            customs.publish(
                TYPE, declaration(), subject_uscc="91110000600037341L", request_id=str(uuid.uuid4())
            )

    def witness_round(self) -> dict[str, Any]:
        """Sign a checkpoint and send it to both witnesses now."""
        server = self.hub.server
        self.hub.run(server.checkpoint())
        assert server.witnesses is not None
        return self.hub.run(server.witnesses.send_all())

    def audit_verify(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["audit", "verify", "--config", str(self.config), *extra])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    def witness_anchor(self) -> list[str]:
        return ["--witness", self.witnesses[0].url, "--witness-key", self.witnesses[0].vkey]


@pytest.fixture
def setup(database_url: str, clock: ManualClock, tmp_path: Path) -> Iterator[Setup]:
    key_file = tmp_path / "hub-key"
    key_file.write_text(HUB_KEY.private_bytes_raw().hex())
    log_key = checkpoints.log_verifier(ORIGIN, HUB_KEY.public_key())
    witnesses = [
        WitnessProcess(tmp_path / "w1", "tax.example/witness", [log_key]).start(),
        WitnessProcess(tmp_path / "w2", "fx.example/witness", [log_key]).start(),
    ]
    config = tmp_path / "hub.toml"
    config.write_text(f'[server]\ndatabase_url = "{database_url}"\n\n[audit]\norigin = "{ORIGIN}"\n')
    jwks = with_jwks(tmp_path / "jwks.json")
    setup = Setup(database_url, clock, key_file, config, witnesses, jwks, None)  # type: ignore[arg-type]
    setup.start_hub()
    yield setup
    setup.hub.stop()
    for witness in witnesses:
        witness.stop()


def _witnessed(setup: Setup, rounds: int = 2) -> list[int]:
    """Publish and have both witnesses cosign, `rounds` times; the cosigned sizes."""
    sizes = []
    for _ in range(rounds):
        setup.publish(2)
        outcomes = setup.witness_round()
        assert {o.state for o in outcomes.values()} == {COSIGNED}, outcomes
        sizes.append(outcomes["tax.example/witness"].tree_size)
    return sizes


def _restart(setup: Setup) -> RunningHub:
    setup.hub.stop()
    return setup.start_hub()


def _events(setup: Setup, kind: str) -> list[dict[str, Any]]:
    with setup.hub.server.db.transaction() as session:
        rows = session.exec(select(AuditEventRow).where(AuditEventRow.kind == kind))
        return [json.loads(row.data) for row in rows]


def test_checkpoints_are_cosigned_stored_and_served(setup: Setup) -> None:
    """Both witnesses cosign each new checkpoint; the hub stores the cosignatures and serves the cosigned
    checkpoint over AuditService and HTTP; the console lists both witnesses as cosigning."""
    sizes = _witnessed(setup)
    stub = audit_grpc.AuditServiceStub(setup.hub.channel)
    served = stub.GetCheckpoint(audit_pb.GetCheckpointRequest(), metadata=setup.hub.as_operator()).checkpoint
    note = parse_checkpoint(served.signed_note)
    assert note.body.tree_size == served.tree_size == sizes[-1]
    for witness in setup.witnesses:
        assert note.note.verified_by(witness.signer.verifier) is not None
    assert note.note.verified_by(checkpoints.log_verifier(ORIGIN, HUB_KEY.public_key())) == 0
    with setup.hub.server.db.transaction() as session:
        stored = session.exec(select(AuditCosignatureRow.tree_size, AuditCosignatureRow.witness)).all()
        states = {r.name: (r.state, r.tree_size) for r in session.exec(select(AuditWitnessRow))}
    assert sorted(stored) == sorted((s, w.name) for s in sizes for w in setup.witnesses)
    assert states == {w.name: (COSIGNED, sizes[-1]) for w in setup.witnesses}
    assert all(w.check().returncode == 0 for w in setup.witnesses)


def test_the_console_shows_each_witness_and_serves_the_cosigned_checkpoint(setup: Setup) -> None:
    """The audit page lists each witness with its state (one cosigning, one killed and unreachable),
    /audit/checkpoint serves the latest checkpoint as a signed note with the cosignature it got, and the
    page's verify button checks the log against the checkpoint a witness holds: deleted checkpoints fail."""
    _witnessed(setup, rounds=1)
    setup.witnesses[1].kill()
    setup.publish(1)
    outcomes = setup.witness_round()
    assert (outcomes["tax.example/witness"].state, outcomes["fx.example/witness"].state) == (
        COSIGNED,
        "UNREACHABLE",
    )
    with httpx.Client(base_url=console_url(setup.hub), timeout=10) as client:
        note = parse_checkpoint(client.get("/audit/checkpoint").text)
        assert note.body.tree_size == outcomes["tax.example/witness"].tree_size
        assert note.note.verified_by(setup.witnesses[0].signer.verifier) is not None
        assert (
            client.post("/signin", data={"token": operator_token(setup.clock), "next": "/"}).status_code
            == 303
        )
        client.cookies.set("ackhub_lang", "en")
        page = client.get("/audit").text
        metrics = client.get("/metrics").text
        verified = client.post("/audit/verify", data={"csrf": _csrf(page)}).text
        assert 'id="anchor"' in verified and "tax.example/witness cosigned" in verified, verified
        assert "OK: " in verified
        with setup.hub.server.db.transaction() as session:
            session.exec(delete(AuditCheckpointRow))  # type: ignore[call-overload]
        verified = client.post("/audit/verify", data={"csrf": _csrf(page)}).text
        assert "checkpoints were deleted" in verified, verified
    assert 'id="witnesses"' in page
    assert 'data-state="COSIGNED"' in page and "tax.example/witness" in page
    assert 'data-state="UNREACHABLE"' in page and "fx.example/witness" in page
    assert 'ackhub_witness_state{state="UNREACHABLE",witness="fx.example/witness"} 1.0' in metrics, metrics
    assert 'ackhub_witness_state{state="COSIGNED",witness="tax.example/witness"} 1.0' in metrics


def test_a_stale_checkpoint_from_another_hub_process_is_no_rollback(setup: Setup) -> None:
    """A second hub process on the same database that still holds an older checkpoint sends the store's
    newest instead, and what is already cosigned is not sent again: no alarm, no extra request."""
    from ackhub.hub.witnesses import Witnesses

    server = setup.hub.server
    assert server.ledger is not None
    _witnessed(setup, rounds=1)
    older = setup.hub.run(server.db.run(server.ledger.get_checkpoint))
    newest = _witnessed(setup, rounds=1)[-1]
    other = Witnesses(server.settings, server.ledger, setup.clock)
    other.offer(older)
    requests = httpx.get(f"{setup.witnesses[0].url}/metrics", timeout=10).text
    outcomes = setup.hub.run(other.send_all())
    setup.hub.run(other.stop())
    assert {(o.state, o.tree_size) for o in outcomes.values()} == {(COSIGNED, newest)}, outcomes
    assert httpx.get(f"{setup.witnesses[0].url}/metrics", timeout=10).text == requests
    assert all(w.check().returncode == 0 for w in setup.witnesses)


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_audit_verify_passes_against_each_kind_of_anchor(
    setup: Setup, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With a witness's checkpoint, a checkpoint file with a quorum of cosignatures, or the hub's key and
    a size, an untouched log verifies; a quorum the file does not meet is refused, naming the witness."""
    _witnessed(setup)
    setup.hub.stop()
    code, out = setup.audit_verify(capsys, *setup.witness_anchor())
    assert code == 0 and "the log extends the trusted checkpoint" in out, out
    note = httpx.get(f"{setup.witnesses[1].url}/checkpoint", params={"origin": ORIGIN}, timeout=10).text
    kept = tmp_path / "checkpoint.txt"
    kept.write_text(note)
    keys = [arg for w in setup.witnesses for arg in ("--witness-key", w.vkey)]
    code, out = setup.audit_verify(capsys, "--checkpoint", str(kept), *keys, "--quorum", "1")
    assert code == 0, out
    code, out = setup.audit_verify(capsys, "--checkpoint", str(kept), *keys, "--quorum", "2")
    assert code == 1 and "the trusted checkpoint is cosigned by 1 trusted witness(es)" in out, out
    assert "the policy requires 2; no valid cosignature by: tax.example/witness" in out
    vkey = checkpoints.log_verifier(ORIGIN, HUB_KEY.public_key()).vkey()
    code, out = setup.audit_verify(capsys, "--log-key", vkey, "--min-size", "5")
    assert code == 0, out
    setup.start_hub()


def test_deleting_the_tail_with_its_checkpoints_is_caught(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """The newest half of the events, every checkpoint, tree node and cosignature deleted: `audit verify`
    names the first missing leaf; the hub's next checkpoint is refused by both witnesses, which raise alarms."""
    size = _witnessed(setup)[-1]
    setup.hub.stop()
    cut = size // 2
    with setup.hub.server.db.transaction() as session:
        session.exec(delete(AuditEventRow).where(col(AuditEventRow.leaf_index) >= cut))  # type: ignore[call-overload]
        for table in (AuditCheckpointRow, AuditTreeNodeRow, AuditCosignatureRow, AuditWitnessRow):
            session.exec(delete(table))  # type: ignore[call-overload]
    code, out = setup.audit_verify(capsys, *setup.witness_anchor())
    assert code == 1 and f"leaf {cut} is the first missing one" in out, out
    setup.start_hub()
    setup.publish(1)
    outcomes = setup.witness_round()
    assert {o.state for o in outcomes.values()} == {REFUSED}, outcomes
    assert f"the witness cosigned {size} leaves" in outcomes["tax.example/witness"].detail
    for witness in setup.witnesses:
        check = witness.check()
        assert check.returncode == 1 and "ALARM: rollback" in check.stdout, check.stdout
    assert {e["witness"] for e in _events(setup, "audit.witness_refused")} == {
        w.name for w in setup.witnesses
    }


def test_deleting_only_the_checkpoints_is_caught(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Every checkpoint (and cosignature) deleted, the events left: `audit verify` against the witness's
    checkpoint says checkpoints were deleted; the witnesses' answers make the hub record that too."""
    size = _witnessed(setup)[-1]
    setup.hub.stop()
    with setup.hub.server.db.transaction() as session:
        for table in (AuditCheckpointRow, AuditCosignatureRow, AuditWitnessRow):
            session.exec(delete(table))  # type: ignore[call-overload]
    code, out = setup.audit_verify(capsys, *setup.witness_anchor())
    assert code == 1 and f"the store holds no checkpoint of {size} leaves" in out, out
    assert "checkpoints were deleted" in out
    setup.start_hub()
    setup.publish(1)
    outcomes = setup.witness_round()
    assert {o.state for o in outcomes.values()} == {COSIGNED}, outcomes  # the events themselves are intact
    missing = _events(setup, "audit.checkpoints_missing")
    assert {(e["witness"], e["tree_size"]) for e in missing} == {(w.name, size) for w in setup.witnesses}


def test_history_rewritten_and_re_signed_with_the_hubs_key_is_caught(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event after the first witnessed checkpoint altered, every leaf hash recomputed and every
    checkpoint re-signed with the hub's own key: the log verifies against itself, but not against the
    witnessed checkpoint (the first differing leaf is bounded by the witnessed checkpoints), and both
    witnesses refuse the re-signed tree and raise a fork alarm."""
    first, second = _witnessed(setup)
    setup.hub.stop()
    db = setup.hub.server.db
    with db.transaction() as session:
        events = list(
            session.exec(
                select(AuditEventRow)
                .where(col(AuditEventRow.leaf_index).is_not(None))
                .order_by(col(AuditEventRow.leaf_index))
            )
        )
        victim = events[first + 1]
        session.exec(
            update(AuditEventRow).where(col(AuditEventRow.seq) == victim.seq).values(actor="operator:mallory")
        )  # type: ignore[call-overload]
        victim.actor = "operator:mallory"
        leaves = [merkle.leaf_hash(log.leaf_data(e, e.leaf_index or 0)) for e in events]
        for event, leaf in zip(events, leaves, strict=True):
            session.exec(
                update(AuditEventRow).where(col(AuditEventRow.seq) == event.seq).values(leaf_hash=leaf)
            )  # type: ignore[call-overload]
        session.exec(delete(AuditTreeNodeRow))  # type: ignore[call-overload]
        for row in session.exec(select(AuditCheckpointRow)).all():
            forged = checkpoints.sign(
                HUB_KEY, ORIGIN, row.tree_size, merkle.mth(leaves[: row.tree_size]), row.time_ms
            )
            row.root_hash, row.signature = forged.root_hash, forged.signature
            session.add(row)
    vkey = checkpoints.log_verifier(ORIGIN, HUB_KEY.public_key()).vkey()
    code, out = setup.audit_verify(capsys, "--log-key", vkey, "--min-size", str(second))
    assert code == 0, out  # the hub's key alone vouches for the forgery
    keys = [arg for w in setup.witnesses for arg in ("--witness-key", w.vkey)]
    code, out = setup.audit_verify(capsys, "--witness", setup.witnesses[0].url, *keys)
    assert code == 1 and "do not produce the trusted checkpoint's root" in out, out
    assert f"between leaf {first} and leaf {second - 1}" in out, out
    setup.start_hub()
    outcomes = setup.witness_round()
    assert {o.state for o in outcomes.values()} == {REFUSED}, outcomes
    for witness in setup.witnesses:
        check = witness.check()
        assert check.returncode == 1 and "ALARM: fork" in check.stdout, check.stdout


def test_a_delivery_proof_carries_the_cosignatures_and_meets_a_quorum(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proof is against the cosigned checkpoint; `proof verify` passes with quorum 2 of the two
    witnesses, and fails naming the witness when it requires one that did not cosign."""
    from ackhub.v1 import trace_service_pb2 as trace_pb
    from ackhub.v1 import trace_service_pb2_grpc as trace_grpc

    customs = setup.hub.agency("customs")
    record = customs.publish(
        TYPE, declaration(note="2"), subject_uscc="91110000600037341L", request_id=str(uuid.uuid4())
    )
    outcomes = setup.witness_round()
    assert {o.state for o in outcomes.values()} == {COSIGNED}
    setup.publish(1)  # newer events: the proof still uses the cosigned checkpoint, which covers the record
    stub = trace_grpc.TraceServiceStub(setup.hub.channel)
    document = stub.GetDeliveryProof(
        trace_pb.GetDeliveryProofRequest(record_id=record.record_id), metadata=setup.hub.as_operator()
    ).document
    assert json.loads(document)["checkpoint"]["tree_size"] == outcomes["tax.example/witness"].tree_size
    path = tmp_path / "proof.json"
    path.write_bytes(document)
    keys = [arg for w in setup.witnesses for arg in ("--witness-key", w.vkey)]
    capsys.readouterr()
    assert main(["proof", "verify", str(path), *keys, "--quorum", "2"]) == 0
    out = capsys.readouterr().out
    assert "Trusted witnesses cosigned that checkpoint" in out and "fx.example/witness (at " in out, out
    stranger = WitnessProcess(tmp_path / "w3", "commerce.example/witness", [])
    assert (
        main(
            [
                "proof",
                "verify",
                str(path),
                "--witness-key",
                setup.witnesses[0].vkey,
                "--witness-key",
                stranger.vkey,
                "--quorum",
                "2",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert (
        "cosigned by 1 trusted witness(es) but the policy requires 2; no valid cosignature by: commerce.example/witness"
        in out
    ), out


def test_an_unresponsive_witness_never_holds_up_signing_or_publishing(
    database_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    """A witness that accepts connections and never answers: checkpoints are signed and records published
    while the hub's background sender waits on it; the attempt ends UNREACHABLE and is retried."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the kernel; nobody ever reads or answers
    witness = WitnessProcess(tmp_path / "w", "tax.example/witness", [])
    key_file = tmp_path / "hub-key"
    key_file.write_text(HUB_KEY.private_bytes_raw().hex())

    def edit(config: dict[str, Any]) -> None:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config["audit"] = {
            "origin": ORIGIN,
            "signing_key_file": str(key_file),
            "witnesses": [{"name": witness.name, "url": url, "key": witness.vkey, "timeout": "2s"}],
        }

    hub = start_hub(database_url, clock, edit)
    try:
        server = hub.server
        assert server.witnesses is not None
        hub.run(server.witnesses.start(background=True))  # the sending task `ackhub serve` runs
        for _ in range(3):
            hub.agency("customs").publish(TYPE, declaration(), request_id=str(uuid.uuid4()))
            hub.run(server.checkpoint(), timeout=1)  # returns while the witness has not answered
        with server.db.transaction() as session:
            assert session.exec(select(AuditCheckpointRow)).all()
            assert session.get(AuditWitnessRow, witness.name) is None  # still waiting for its answer

        def unreachable() -> bool:
            with server.db.transaction() as session:
                row = session.get(AuditWitnessRow, witness.name)
                return row is not None and row.state == "UNREACHABLE"

        from tests.harness import wait_for

        wait_for(unreachable, timeout=15, what="the silent witness to be marked unreachable")
    finally:
        hub.stop()
        silent.close()
