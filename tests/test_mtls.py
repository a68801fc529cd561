"""Mutual TLS on loopback: the development CA's client certificates identify agencies; expired ones, ones
from another CA and none at all are refused in the handshake; a certificate speaks for its own agency only."""

from __future__ import annotations

import datetime as dt
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ackhub.core.clock import ManualClock
from ackhub.core.errors import ConfigError
from ackhub.hub.auth import pki
from ackhub.hub.cli import main
from ackhub.hub.config import parse_settings
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import exchange_service_pb2_grpc
from tests.harness import RunningHub, base_config, error_details, start_hub
from tests.records import declaration
from tests.security_data import ALPHA, DECLARATION, TYPE

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(name="ca_dir", scope="module")
def fixture_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    assert main(["pki", "init", "--dir", str(folder)]) == 0
    for agency in ("customs", "commerce", "nobody"):
        assert main(["pki", "issue", agency, "--ca-dir", str(folder)]) == 0
    return folder


@pytest.fixture(name="tls_hub")
def fixture_tls_hub(ca_dir: Path, tmp_path: Path, clock: ManualClock) -> Iterator[RunningHub]:
    def edit(config: dict[str, Any]) -> None:
        config["server"] |= {
            "auth": "secure",
            "tls_cert_file": str(ca_dir / pki.HUB_CERT),
            "tls_key_file": str(ca_dir / pki.HUB_KEY),
            "tls_client_ca_file": str(ca_dir / pki.CA_CERT),
        }

    running = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)
    try:
        yield running
    finally:
        running.stop()


def _stub(hub: RunningHub, ca_dir: Path, cert: bytes | None, key: bytes | None) -> Any:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(ca_dir / pki.CA_CERT).read_bytes(), private_key=key, certificate_chain=cert
    )
    channel = grpc.secure_channel(hub.target, credentials)
    hub.clients.append(channel)  # type: ignore[arg-type]  # closed with the hub
    return exchange_service_pb2_grpc.ExchangeServiceStub(channel)


def _as(hub: RunningHub, ca_dir: Path, agency: str) -> Any:
    return _stub(
        hub, ca_dir, (ca_dir / f"{agency}.pem").read_bytes(), (ca_dir / f"{agency}-key.pem").read_bytes()
    )


def _publish_request() -> pb.PublishRecordRequest:
    return pb.PublishRecordRequest(
        request_id=str(uuid.uuid4()), record_type=TYPE, subject_uscc=ALPHA,
        declaration_number=DECLARATION, content_type="application/json", payload=declaration(),
    )  # fmt: skip


def test_pki_writes_private_keys_owner_only(ca_dir: Path) -> None:
    """Every private key the CA commands write is mode 0600, and none is overwritten."""
    for key in ca_dir.glob("*-key.pem"):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, key
    assert main(["pki", "issue", "customs", "--ca-dir", str(ca_dir)]) == 1


def test_a_client_certificate_is_the_agency(tls_hub: RunningHub, ca_dir: Path) -> None:
    """Customs' certificate publishes as customs; headers naming someone else change nothing."""
    customs = _as(tls_hub, ca_dir, "customs")
    receipt = customs.PublishRecord(_publish_request(), metadata=(("x-ackhub-agency", "tax"),)).receipt
    record = customs.GetRecord(pb.GetRecordRequest(record_id=receipt.record_id)).record
    assert record.publisher == "customs"


def test_a_certificate_speaks_for_its_own_agency_only(tls_hub: RunningHub, ca_dir: Path) -> None:
    """Commerce's certificate cannot read customs' record to tax nor subscribe as tax."""
    receipt = _as(tls_hub, ca_dir, "customs").PublishRecord(_publish_request()).receipt
    commerce = _as(tls_hub, ca_dir, "commerce")
    with pytest.raises(grpc.RpcError) as hidden:
        commerce.GetRecord(
            pb.GetRecordRequest(record_id=receipt.record_id), metadata=(("x-ackhub-agency", "tax"),)
        )
    assert error_details(hidden.value)[0] == grpc.StatusCode.NOT_FOUND
    stream = commerce.Subscribe(
        iter([pb.SubscribeRequest(open=pb.SubscribeOpen(agency_id="tax"))]), timeout=5
    )
    with pytest.raises(grpc.RpcError) as refused:
        next(stream)
    assert error_details(refused.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THIS_AGENCY")


def test_a_certificate_for_an_unregistered_agency_is_unauthenticated(
    tls_hub: RunningHub, ca_dir: Path
) -> None:
    """A valid certificate whose common name is no configured agency is refused as UNKNOWN_AGENCY."""
    with pytest.raises(grpc.RpcError) as refused:
        _as(tls_hub, ca_dir, "nobody").PublishRecord(_publish_request(), timeout=5)
    assert error_details(refused.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_AGENCY")


@pytest.mark.parametrize("kind", ["expired", "other CA", "none"])
def test_bad_certificates_fail_the_handshake(tls_hub: RunningHub, ca_dir: Path, kind: str) -> None:
    """An expired certificate, one from another CA, or none: the TLS handshake fails and nothing is stored."""
    ca = pki.load(ca_dir / pki.CA_CERT, ca_dir / pki.CA_KEY)
    past = NOW - dt.timedelta(days=30)
    issued = {
        "expired": pki.issue(ca, "customs", now=past, days=1, not_before=past - dt.timedelta(days=1)),
        "other CA": pki.issue(pki.make_ca("rogue CA", now=NOW), "customs", now=NOW),
        "none": None,
    }[kind]
    stub = _stub(tls_hub, ca_dir, issued and issued.certificate_pem, issued and issued.key_pem)
    with pytest.raises(grpc.RpcError) as refused:
        stub.PublishRecord(_publish_request(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_development_auth_is_refused_off_loopback(tmp_path: Path) -> None:
    """`auth = "development"` on a non-loopback address is a configuration error unless forced."""
    config = base_config(f"sqlite:///{tmp_path / 'hub.db'}")
    config["server"]["listen"] = "0.0.0.0:7443"
    with pytest.raises(ConfigError, match="not loopback"):
        parse_settings(config, "test", {})
    config["server"]["force_development_auth"] = True
    assert parse_settings(config, "test", {}).server.auth == "development"
    config["server"] |= {"auth": "secure", "force_development_auth": False}
    assert parse_settings(config, "test", {}).server.listen == "0.0.0.0:7443"
