"""Signed acknowledgements, version 1: the canonical text and Ed25519 signing and verification.

Every implementation (the hub, the SDK, the Node example) must produce exactly the bytes of
shared/vectors/ack-v1.json.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ackhub.audit.times import to_rfc3339_ms

ACK_STATUSES = ("RECEIVED", "ACCEPTED", "REJECTED")


@dataclass(frozen=True)
class AckFields:
    """What an acknowledgement states; `digest` is 64 lower-case hex digits (without `sha256:`)."""

    delivery: str
    record: str
    digest: str
    recipient: str
    key: str
    status: str
    reason: str
    time_ms: int

    def canonical_text(self) -> bytes:
        if "\n" in self.reason or "\r" in self.reason:
            raise ValueError("an acknowledgement reason cannot contain line breaks")
        lines = [
            "ackhub-ack/v1",
            f"delivery={self.delivery}",
            f"record={self.record}",
            f"digest=sha256:{self.digest}",
            f"recipient={self.recipient}",
            f"key={self.key}",
            f"status={self.status}",
            f"reason={self.reason}",
            f"time={to_rfc3339_ms(self.time_ms)}",
        ]
        return "\n".join(lines).encode("utf-8")


def sign_ack(private_key: Ed25519PrivateKey, fields: AckFields) -> bytes:
    return private_key.sign(fields.canonical_text())


def verify_ack(public_key: Ed25519PublicKey, fields: AckFields, signature: bytes) -> bool:
    try:
        public_key.verify(signature, fields.canonical_text())
    except InvalidSignature:
        return False
    return True


def load_public_key(text: str) -> Ed25519PublicKey:
    """A PEM `PUBLIC KEY` block or the base64 of the 32 raw key bytes."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(stripped.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return key
    raw = base64.b64decode(stripped, validate=True)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_base64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM `PRIVATE KEY` block or the hex of the 32-byte seed."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(stripped.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM key is not an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(stripped))


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
