"""A development certificate authority for mutual TLS (cryptography): `ackhub pki init` makes the CA and
the hub's server certificate; `ackhub pki issue AGENCY` a client certificate whose common name is the
agency id, which is how the hub knows the agency (ackhub.hub.auth.identity). Keys are ECDSA P-256; private
keys are written with mode 0600 and never overwritten. In production, use your own CA (docs/security.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
HUB_CERT, HUB_KEY = "hub.pem", "hub-key.pem"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM."""

    certificate_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ackhub"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str, *, now: dt.datetime, days: int = 365) -> Issued:
    """A self-signed CA certificate that may sign end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate.public_bytes(serialization.Encoding.PEM), _pem(key))


def issue(
    ca: Issued,
    common_name: str,
    *,
    now: dt.datetime,
    days: int = 90,
    server_hosts: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
) -> Issued:
    """A certificate signed by `ca`: a client certificate, or a server one when `server_hosts` are given."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or now - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server_hosts:
        names: list[x509.GeneralName] = []
        for host in server_hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(ca.key, hashes.SHA256())
    return Issued(certificate.public_bytes(serialization.Encoding.PEM), _pem(key))


def write_secret(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600); refuse to overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write(issued: Issued, cert_path: Path, key_path: Path) -> None:
    write_secret(key_path, issued.key_pem)
    cert_path.write_bytes(issued.certificate_pem)


def load(cert_path: Path, key_path: Path) -> Issued:
    return Issued(cert_path.read_bytes(), key_path.read_bytes())
