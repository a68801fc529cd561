"""`EnterpriseClient`: what an exporter, importer or broker runs to see where its records went — list
them, trace one recipient by recipient, download a delivery proof and verify it offline.

    client = EnterpriseClient("127.0.0.1:7443", token=lambda: issue_my_jwt())
    for traced in client.list_records(declaration_number="020220260525641690"):
        print(traced.record.record_id, [(d.recipient, d.state) for d in traced.deliveries])
    document = client.download_proof(record_id)
    verdict = client.verify_proof(document, trusted_hub_key)   # audit.verify, no server involved
    case = client.open_case(record_id, "NOT_RECEIVED", recipient="fx", text="SAFE says it never arrived")
    print(case.evidence.summary)                                 # "fx signed RECEIVED at … with key …"
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ackhub.audit.proofs import ProofVerdict, WitnessPolicy, verify_delivery_proof
from ackhub.client.headers import AUTHORIZATION_HEADER
from ackhub.v1 import case_service_pb2 as case_pb
from ackhub.v1 import case_service_pb2_grpc as case_grpc
from ackhub.v1 import trace_service_pb2 as pb
from ackhub.v1 import trace_service_pb2_grpc as pb_grpc

Token = str | Callable[[], str]


class EnterpriseClient:
    """Calls `ackhub.v1.TraceService` with `authorization: Bearer <JWT>` carrying the enterprise's USCC.
    `token` is the JWT, or a function returning a fresh one for each call (tokens are short-lived)."""

    def __init__(self, target: str, token: Token, *, channel: grpc.Channel | None = None) -> None:
        self.token = token
        self.channel = channel or grpc.insecure_channel(target)
        self.stub = pb_grpc.TraceServiceStub(self.channel)
        self.cases = case_grpc.CaseServiceStub(self.channel)

    def _metadata(self) -> tuple[tuple[str, str]]:
        token = self.token() if callable(self.token) else self.token
        return ((AUTHORIZATION_HEADER, f"Bearer {token}"),)

    def list_records(
        self,
        *,
        declaration_number: str = "",
        record_type: str = "",
        page_size: int = 100,
        timeout: float = 10,
    ) -> Iterator[pb.TracedRecord]:
        """Every record whose subject is the caller's USCC (newest first), following the pages."""
        token = ""
        while True:
            page = self.stub.ListRecords(
                pb.ListRecordsRequest(
                    page_size=page_size,
                    page_token=token,
                    declaration_number=declaration_number,
                    record_type=record_type,
                ),
                metadata=self._metadata(),
                timeout=timeout,
            )
            yield from page.records
            token = page.next_page_token
            if not token:
                return

    def trace(self, record_id: str, timeout: float = 10) -> pb.TraceRecordResponse:
        """The record's timeline per recipient: published, attempts, acknowledgements, escalations."""
        response: pb.TraceRecordResponse = self.stub.TraceRecord(
            pb.TraceRecordRequest(record_id=record_id), metadata=self._metadata(), timeout=timeout
        )
        return response

    def download_proof(self, record_id: str, path: str | Path | None = None, timeout: float = 10) -> Any:
        """The delivery proof document (JSON, "ackhub-delivery-proof/v1"); also written to `path` if given."""
        response = self.stub.GetDeliveryProof(
            pb.GetDeliveryProofRequest(record_id=record_id), metadata=self._metadata(), timeout=timeout
        )
        if path is not None:
            Path(path).write_bytes(response.document)
        return json.loads(response.document)

    @staticmethod
    def verify_proof(
        document: Any, trusted_hub_key: Ed25519PublicKey | None = None, policy: WitnessPolicy | None = None
    ) -> ProofVerdict:
        """Check every signature and Merkle proof offline. Pin `trusted_hub_key` (the hub's checkpoint key,
        published by its operator): without it the document is only checked against the key it names.
        With `policy` (trusted witness keys and a quorum K), fewer than K cosignatures fail, naming who."""
        return verify_delivery_proof(document, trusted_hub_key, policy)

    # -- cases (docs/cases.md) -----------------------------------------------------------------------
    def open_case(
        self,
        record_id: str,
        kind: str,
        *,
        recipient: str = "",
        title: str = "",
        text: str = "",
        request_id: str = "",
        timeout: float = 10,
    ) -> case_pb.Case:
        """Open a case about one of the caller's records (`kind`: NOT_RECEIVED, CONTENT_DISPUTE,
        REJECTION_APPEAL, OTHER), against `recipient`'s delivery if given; the hub attaches its evidence.
        A fresh request id is made when none is given; pass your own to retry safely."""
        response = self.cases.OpenCase(
            case_pb.OpenCaseRequest(
                request_id=request_id or str(uuid.uuid4()),
                kind=case_pb.CaseKind.Value(f"CASE_KIND_{kind}"),
                record=case_pb.RecordSubject(record_id=record_id, recipient=recipient),
                title=title,
                text=text,
            ),
            metadata=self._metadata(),
            timeout=timeout,
        )
        case: case_pb.Case = response.case
        return case

    def list_cases(
        self, *, record_id: str = "", page_size: int = 100, timeout: float = 10
    ) -> Iterator[case_pb.Case]:
        """The cases the caller is a party to (newest first), following the pages."""
        token = ""
        while True:
            page = self.cases.ListCases(
                case_pb.ListCasesRequest(record_id=record_id, page_size=page_size, page_token=token),
                metadata=self._metadata(),
                timeout=timeout,
            )
            yield from page.cases
            token = page.next_page_token
            if not token:
                return

    def get_case(self, case_id: str, timeout: float = 10) -> case_pb.Case:
        """One case with its evidence, thread and audited history."""
        case: case_pb.Case = self.cases.GetCase(
            case_pb.GetCaseRequest(case_id=case_id), metadata=self._metadata(), timeout=timeout
        ).case
        return case

    def add_case_message(
        self, case_id: str, text: str, *, request_id: str = "", timeout: float = 10
    ) -> case_pb.Case:
        """Answer in a case's thread."""
        case: case_pb.Case = self.cases.AddCaseMessage(
            case_pb.AddCaseMessageRequest(
                case_id=case_id, text=text, request_id=request_id or str(uuid.uuid4())
            ),
            metadata=self._metadata(),
            timeout=timeout,
        ).case
        return case

    def close(self) -> None:
        self.channel.close()
