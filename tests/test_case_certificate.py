"""The certificate story of docs/cases.md over real gRPC: customs refuses a foreign certificate of origin
because the issuer's signature does not match any specimen on file; the importer opens a CONTENT_DISPUTE
about that decision; the issuer answers with its new specimen, which the operator registers under the
issuer's key history; the certificate then verifies and customs resolves the case."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ackhub.audit.acks import public_key_base64
from ackhub.core.clock import ManualClock
from ackhub.core.permit_document import PermitDocument, format_quantity
from ackhub.v1 import case_service_pb2 as pb
from ackhub.v1 import case_service_pb2_grpc as pb_grpc
from ackhub.v1 import permit_service_pb2 as permit_pb
from ackhub.v1 import permit_service_pb2_grpc as permit_grpc
from tests.harness import RunningHub, private_key, start_hub
from tests.permit_data import (
    DECLARATION,
    HOLDER,
    NOW_MS,
    OFFICE,
    TODAY,
    certificate,
    goods,
    permit_config,
    reasons,
)
from tests.security_data import bearer, write_jwks

NUMBER = "E2606KR00000123"
KIND = "origin.foreign_certificate"
OLD, NEW = "kcci-2025", "kcci-2026"


def certificate_to_native(document: PermitDocument, key_id: str, signature: bytes) -> dict[str, Any]:
    """The issuer's JSON for a certificate, as its registry serves it (the simulated issuer's side)."""
    return {
        "certificate_no": document.number,
        "certificate_kind": document.kind,
        "revision": document.version,
        "issued": document.issue_date.isoformat(),
        "valid_from": document.valid_from.isoformat(),
        "valid_to": document.valid_to.isoformat(),
        "exporter": document.exporter,
        "importer": document.importer,
        "consignee_uscc": document.holder_uscc,
        "invoice_no": document.invoice_number,
        "items": [
            {
                "item_no": line.line_number,
                "hs6": line.hs_code,
                "criterion": line.origin_criterion,
                "quantity": format_quantity(line.quantity_milli),
                "unit": line.unit,
                "description": line.description,
            }
            for line in document.lines
        ],
        "seal": {"key": key_id, "signature": base64.b64encode(signature).decode()},
    }


class Registry:
    """The foreign issuer's registry: GET /certificates/<number> → its JSON, signed with `NEW`."""

    def __init__(self) -> None:
        document = certificate(number=NUMBER, kind=KIND, issuer="kcci")
        body = certificate_to_native(document, NEW, private_key(NEW).sign(document.canonical_text(NEW)))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.rsplit("/", 1)[-1] == NUMBER
                self.send_response(200 if found else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body if found else {"error": "unknown"}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="registry")
def fixture_registry() -> Iterator[Registry]:
    registry = Registry()
    try:
        yield registry
    finally:
        registry.stop()


def _key(name: str, revoked_after: str | None = None) -> dict[str, Any]:
    key: dict[str, Any] = {"id": name, "public_key": public_key_base64(private_key(name).public_key())}
    if revoked_after:
        key["revoked_after"] = revoked_after
    return key


def _config(tmp_path: Path, registry: Registry, specimens: list[dict[str, Any]]) -> Any:
    def edit(config: dict[str, Any]) -> None:
        permit_config(config)
        config["auth"] = {"jwks_file": str(write_jwks(tmp_path / "jwks.json"))}
        config["agencies"].append(
            {
                "id": "kcci",
                "name": "Korea Chamber of Commerce",
                "kind": "origin",
                "keys": [_key("kcci-agency")],
            }
        )
        config["permits"]["issuers"].append(
            {
                "id": "kcci",
                "name": "KCCI",
                "adapter": "origin",
                "registry_url": registry.url,
                "keys": specimens,
            }
        )

    return edit


def _verify(hub: RunningHub, clock: ManualClock) -> permit_pb.LineResult:
    line = goods(number=NUMBER, kind=KIND, hs="610910", quantity="100", unit="件")
    request = permit_pb.VerifyPermitRequest(
        declarant_uscc=HOLDER,
        customs_office=OFFICE,
        date=TODAY.isoformat(),
        declaration_number=DECLARATION,
        line=line,
    )
    stub = permit_grpc.PermitServiceStub(hub.channel)
    return stub.VerifyPermit(request, metadata=bearer(clock, "agency", "customs")).result


def test_certificate_dispute_answered_with_a_new_specimen(
    database_url: str, tmp_path: Path, registry: Registry
) -> None:
    """SIGNATURE_INVALID → CONTENT_DISPUTE with the issuer's key history attached → the issuer's new
    specimen, registered under its key history → VALID → customs resolves; the history is audited."""
    clock = ManualClock(NOW_MS)
    hub = start_hub(database_url, clock=clock, edit=_config(tmp_path, registry, [_key(OLD)]))
    try:
        refused = _verify(hub, clock)
        assert reasons(refused) == ["SIGNATURE_INVALID"]
        stub = pb_grpc.CaseServiceStub(hub.channel)
        importer = bearer(clock, "enterprise", HOLDER)
        case = stub.OpenCase(
            pb.OpenCaseRequest(
                kind=pb.CASE_KIND_CONTENT_DISPUTE,
                permit_check=pb.PermitCheckSubject(check_id=refused.check_id),
                title="Form E refused: signature does not match KCCI's specimen",
                text="KCCI issued this certificate on 2026-06-01; please confirm its seal.",
            ),
            metadata=importer,
        ).case
        assert case.awaited_party == "agency:kcci" and case.state == pb.CASE_STATE_AWAITING_PARTY
        evidence = case.evidence.permit
        assert (evidence.kind, evidence.number, evidence.verdict) == (KIND, NUMBER, "INVALID")
        assert list(evidence.reasons) == ["SIGNATURE_INVALID"] and evidence.issuer == "kcci"
        assert {k.key_id for k in evidence.issuer_keys} == {"kcci-agency", OLD}
        assert "SIGNATURE_INVALID" in case.evidence.summary
        assert {p.party: p.role for p in case.parties} == {
            f"enterprise:{HOLDER}": "ENTERPRISE",
            "agency:kcci": "ISSUER",
            "agency:customs": "PUBLISHER",
            "customs:0202": "CUSTOMS",
        }
        # The issuer sees the case and answers with its new specimen, handing the turn to customs.
        kcci = bearer(clock, "agency", "kcci")
        (listed,) = stub.ListCases(pb.ListCasesRequest(party="agency:kcci"), metadata=kcci).cases
        specimen = f"{NEW} {public_key_base64(private_key(NEW).public_key())}\n".encode()
        answered = stub.AddCaseMessage(
            pb.AddCaseMessageRequest(
                case_id=listed.case_id,
                text=f"Our seal was renewed on 2026-05-31: key {NEW} replaces {OLD}. The new specimen is attached.",
                attachments=[
                    pb.CaseAttachment(filename="specimen.txt", content_type="text/plain", content=specimen)
                ],
            ),
            metadata=kcci,
        ).case
        assert answered.awaited_party == "customs:0202"
    finally:
        hub.stop()
    # The operator registers the specimen under KCCI's key history: the old key revoked after the renewal.
    renewed = [_key(OLD, revoked_after="2026-05-31"), _key(NEW)]
    hub = start_hub(database_url, clock=clock, edit=_config(tmp_path, registry, renewed))
    try:
        valid = _verify(hub, clock)
        assert reasons(valid) == [] and valid.verdict == permit_pb.VERDICT_VALID
        stub = pb_grpc.CaseServiceStub(hub.channel)
        resolved = stub.ResolveCase(
            pb.ResolveCaseRequest(
                case_id=case.case_id,
                resolution=f"KCCI's specimen {NEW} registered; the certificate verifies (check {valid.check_id})",
            ),
            metadata=bearer(clock, "operator", "olga", jurisdiction="0202"),
        ).case
        assert resolved.state == pb.CASE_STATE_RESOLVED
        assert [h.kind for h in resolved.history] == [
            "case.opened",
            "case.message_added",
            "case.message_added",
            "case.resolved",
        ]
        (kept,) = resolved.messages[1].attachments
        assert kept.sha256 == hashlib.sha256(specimen).hexdigest() and kept.content_type == "text/plain"
    finally:
        hub.stop()
