"""A non-Python client: the Node.js agency in examples/node-agency reproduces the acknowledgement vectors
and, against a real hub, subscribes, signs acknowledgements with node:crypto and publishes."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from ackhub.audit.acks import AckFields, verify_ack
from ackhub.core.clock import ManualClock, SystemClock
from ackhub.hub.store.models import AcknowledgementRow
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import types_pb2
from tests.harness import key_id, private_key, start_hub
from tests.records import declaration, refund_registration

ROOT = Path(__file__).parents[1]
AGENCY = ROOT / "examples" / "node-agency"
VECTORS = ROOT / "tests" / "data" / "ack-v1.json"  # a copy of the shared vectors: tests read nothing outside
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the Node.js client cannot run")


@pytest.fixture(name="node_agency", scope="module")
def fixture_node_agency() -> Path:
    """examples/node-agency with its pinned dependencies installed (npm ci from package-lock.json)."""
    if not (AGENCY / "node_modules" / "@grpc" / "grpc-js").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot install the Node.js client's dependencies")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=AGENCY, check=True, timeout=300
        )
    return AGENCY


def _node(folder: Path, *args: str, timeout: float = 60) -> list[dict[str, Any]]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, *args], cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"node {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_node_reproduces_the_acknowledgement_vectors(node_agency: Path) -> None:
    """The Node canonical text and node:crypto signatures equal ack-v1.json byte for byte."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, "test/vectors.test.js", str(VECTORS)],
        cwd=node_agency,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 3 vectors reproduced")


def test_node_agency_acknowledgements_verify_at_the_hub(tmp_path: Path, node_agency: Path) -> None:
    """Node subscribes as tax, acknowledges two records (RECEIVED, ACCEPTED) and publishes one of its own."""

    def edit(config: dict[str, Any]) -> None:
        config["routes"].append(
            {
                "record_type": "tax.refund_registration.acknowledged",
                "publishers": ["tax"],
                "recipients": [{"agency": "customs", "ack_level": "RECEIVED"}],
            }
        )

    clock = ManualClock(SystemClock().now_ms())
    hub = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)
    try:
        customs = hub.agency("customs")
        receipts = [
            customs.publish(
                "customs.export_declaration.released", declaration(note=str(n)), request_id=str(uuid.uuid4())
            )
            for n in range(2)
        ]
        seed = private_key("tax").private_bytes_raw().hex()
        events = _node(
            node_agency,
            "agency.js",
            "--target", hub.target,
            "--agency", "tax",
            "--key-id", key_id("tax"),
            "--seed-hex", seed,
            "--publish", "tax.refund_registration.acknowledged",
            "--payload", refund_registration().decode(),
            "--expect", "2",
            "--timeout", "30",
        )  # fmt: skip
        kinds = [e["event"] for e in events]
        assert kinds[0] == "published" and kinds[-1] == "done" and kinds.count("delivery") == 2
        results = [e for e in events if e["event"] == "ack_result"]
        assert len(results) == 4 and all(r["ok"] and not r["duplicate"] for r in results)

        for receipt in receipts:
            record = hub.exchange_stub.GetRecord(
                pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_operator()
            )
            tax = next(d for d in record.deliveries if d.recipient == "tax")
            assert tax.state == types_pb2.DELIVERY_STATE_ACCEPTED
        with hub.server.db.transaction() as session:
            rows = session.exec(select(AcknowledgementRow).where(AcknowledgementRow.recipient == "tax")).all()
            digests = {r.record_id: r.digest for r in receipts}
            assert len(rows) == 4
            for row in rows:
                fields = AckFields(
                    row.delivery_id,
                    row.record_id,
                    digests[row.record_id].removeprefix("sha256:"),
                    row.recipient,
                    row.key_id,
                    row.status,
                    row.reason,
                    row.ack_time_ms,
                )
                assert verify_ack(private_key("tax").public_key(), fields, row.signature), "verifies offline"

        published = next(e for e in events if e["event"] == "published")
        record = hub.exchange_stub.GetRecord(
            pb.GetRecordRequest(record_id=published["record_id"]), metadata=hub.as_operator()
        )
        assert record.record.publisher == "tax" and record.record.payload == refund_registration()
        assert [d.recipient for d in record.deliveries] == ["customs"]
    finally:
        hub.stop()
