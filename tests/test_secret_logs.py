"""Secrets stay out of the logs: a real `ackhub serve` subprocess at debug level handles publishing,
acknowledgements, tracing, proofs and refused tokens; its log holds no token, private key or payload."""

from __future__ import annotations

import base64
import threading
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from ackhub.client.agency import AgencyClient, Verdict
from ackhub.core.clock import SystemClock
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import exchange_service_pb2_grpc, trace_service_pb2, trace_service_pb2_grpc, types_pb2
from tests.harness import base_config, key_id, private_key, wait_for
from tests.process_hub import HubProcess, free_port
from tests.records import declaration
from tests.security_data import ALPHA, DECLARATION, EC_KEY, ED_KEY, TYPE, bearer, write_jwks


def _secrets(tokens: list[str], payload: bytes, workdir: Path) -> dict[str, bytes]:
    """Every string that must never be logged, by what it is."""
    found = {f"token {i}": t.encode() for i, t in enumerate(tokens)}
    found |= {f"token {i} signature": t.rsplit(".", 1)[1].encode() for i, t in enumerate(tokens)}
    found["payload"] = payload
    found["payload (base64)"] = base64.b64encode(payload)
    for agency in ("customs", "tax", "fx"):
        raw = private_key(agency).private_bytes_raw()
        found[f"{agency} key (hex)"] = raw.hex().encode()
        found[f"{agency} key (base64)"] = base64.b64encode(raw)
    for name, key in (("jwt ed25519", ED_KEY), ("jwt p-256", EC_KEY)):
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        found[name] = pem.splitlines()[1]
    for pem_file in workdir.glob("*.pem"):  # the hub's audit signing key, made on first start
        found[pem_file.name] = pem_file.read_bytes().splitlines()[1]
    return found


def test_a_full_run_logs_no_token_key_or_payload(tmp_path: Path) -> None:
    """Publish, acknowledge, trace, prove and refuse at debug level; then scan the whole log."""
    config = base_config(f"sqlite:///{tmp_path / 'hub.db'}")
    config["server"] |= {"listen": f"127.0.0.1:{free_port()}", "log_level": "debug"}
    config["auth"] = {"jwks_file": str(write_jwks(tmp_path / "jwks.json"))}
    hub = HubProcess(config, tmp_path)
    clock = SystemClock()
    payload = declaration(note=f"secret PAYLOAD-{uuid.uuid4().hex}")
    metadata: dict[str, Any] = {
        "customs": bearer(clock, "agency", "customs"),
        "tax": bearer(clock, "agency", "tax", kid="ec-2026-01"),
        "fx": bearer(clock, "agency", "fx"),
        "enterprise": bearer(clock, "enterprise", ALPHA),
        "operator": bearer(clock, "operator", "olga", jurisdiction="0202"),
        "forged": (
            ("authorization", "Bearer " + bearer(clock, "enterprise", ALPHA)[0][1][7:-8] + "AAAAAAAA"),
        ),
        "wrong audience": bearer(clock, "enterprise", ALPHA, audience="elsewhere"),
    }
    clients: list[AgencyClient] = []
    try:
        hub.start()
        for agency in ("customs", "tax", "fx"):
            client = AgencyClient(hub.target, agency, key_id=key_id(agency), private_key=private_key(agency))
            client.metadata = metadata[agency]
            clients.append(client)
        customs, tax, fx = clients
        for client, verdict in ((tax, Verdict.accept()), (fx, Verdict.received())):
            threading.Thread(target=client.subscribe, args=(lambda _d, v=verdict: v,), daemon=True).start()
        record_id = customs.publish(
            TYPE, payload, subject_uscc=ALPHA, declaration_number=DECLARATION
        ).record_id
        with grpc.insecure_channel(hub.target) as channel:
            exchange = exchange_service_pb2_grpc.ExchangeServiceStub(channel)

            def settled() -> bool:
                listed = exchange.ListDeliveries(
                    pb.ListDeliveriesRequest(record_id=record_id), metadata=metadata["operator"]
                )
                return len(listed.deliveries) == 2 and {d.state for d in listed.deliveries} <= {
                    types_pb2.DELIVERY_STATE_ACCEPTED,
                    types_pb2.DELIVERY_STATE_RECEIVED,
                }

            wait_for(settled, what="both deliveries acknowledged")
            trace = trace_service_pb2_grpc.TraceServiceStub(channel)
            trace.TraceRecord(
                trace_service_pb2.TraceRecordRequest(record_id=record_id), metadata=metadata["enterprise"]
            )
            trace.GetDeliveryProof(
                trace_service_pb2.GetDeliveryProofRequest(record_id=record_id),
                metadata=metadata["enterprise"],
            )
            for refused in ("forged", "wrong audience"):
                with pytest.raises(grpc.RpcError) as error:
                    trace.ListRecords(trace_service_pb2.ListRecordsRequest(), metadata=metadata[refused])
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    finally:
        for client in clients:
            client.close()
        if hub.process is not None and hub.process.poll() is None:
            hub.terminate()
        hub.close()
    log = hub.log_path.read_bytes()
    assert b"delivery.acknowledged" in log and b"rpc.refused" in log  # the run was logged at all
    tokens = [m[0][1][7:] for m in metadata.values()]
    leaked = [what for what, secret in _secrets(tokens, payload, tmp_path).items() if secret in log]
    assert not leaked, f"found in the hub's log: {leaked}"
