"""The Python examples in examples/python run as their own processes against a real hub."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from ackhub.audit.acks import private_key_pem, public_key_base64
from ackhub.core.clock import ManualClock, SystemClock
from ackhub.hub.auth.jwt import issue
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import types_pb2
from tests.harness import key_id, private_key, start_hub
from tests.records import declaration

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples" / "python"
USCC = "91110000600037341L"
ENTERPRISE_ISSUER = private_key("enterprise-issuer")


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_agency_and_enterprise_examples(tmp_path: Path) -> None:
    """tax_agency.py acknowledges with a PEM key file; enterprise_proof.py traces it and verifies the proof."""

    def edit(config: dict[str, Any]) -> None:
        config["auth"] = {"enterprise_jwt_public_key": public_key_base64(ENTERPRISE_ISSUER.public_key())}

    clock = ManualClock(SystemClock().now_ms())
    hub = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)
    try:
        key_file = tmp_path / "tax.pem"
        key_file.write_text(private_key_pem(private_key("tax")))
        receipt = hub.agency("customs").publish(
            "customs.export_declaration.released",
            declaration(),
            subject_uscc=USCC,
            request_id=str(uuid.uuid4()),
        )
        agency = _run(
            "tax_agency.py", "--target", hub.target, "--key-id", key_id("tax"), "--key-file", str(key_file),
            "--stop-after", "1",
        )  # fmt: skip
        assert agency.returncode == 0, agency.stderr
        assert agency.stdout.startswith("got ")
        record = hub.exchange_stub.GetRecord(
            pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_operator()
        )
        assert next(d for d in record.deliveries if d.recipient == "tax").state == (
            types_pb2.DELIVERY_STATE_ACCEPTED
        )

        hub.run(hub.server.checkpoint())
        ledger = hub.server.ledger
        assert ledger is not None
        token = issue(
            ENTERPRISE_ISSUER, USCC, issuer="ackhub-dev", audience="ackhub", now_s=clock.now_ms() // 1000
        )
        proof = tmp_path / "proof.json"
        enterprise = _run(
            "enterprise_proof.py", "--target", hub.target, "--token", token,
            "--hub-key", public_key_base64(ledger.public_key), "--out", str(proof),
        )  # fmt: skip
        assert enterprise.returncode == 0, enterprise.stdout + enterprise.stderr
        assert f"{receipt.record_id} customs.export_declaration.released: " in enterprise.stdout
        assert "tax=ACCEPTED" in enterprise.stdout and "(tax) accepted record" in enterprise.stdout
        assert proof.exists() and "FAILED" not in enterprise.stdout
    finally:
        hub.stop()
