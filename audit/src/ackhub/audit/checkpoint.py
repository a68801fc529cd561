"""Signed checkpoints: the hub's statement "the audit tree of `origin` had `tree_size` leaves and this root".

A checkpoint is a C2SP tlog-checkpoint: a signed note (ackhub.audit.note) whose text is

    <origin>
    <tree size, decimal>
    <root hash, base64>
    time <RFC 3339 UTC, milliseconds>

(each line ends with a newline; the time is an extension line), signed with the hub's Ed25519 key under
the key name `origin`: `— <origin> base64(key hash || signature)`, key hash = SHA-256(origin || 0x0A ||
0x01 || public key)[:4]. Witnesses add their cosignature lines below it. `key_id` (the first 8 bytes of
SHA-256 of the raw public key, hex) is the hub's own name for the key in its store and its API.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ackhub.audit.acks import load_public_key, public_key_base64
from ackhub.audit.note import ED25519, Verifier, signature_line
from ackhub.audit.note import key_hash as note_key_hash
from ackhub.audit.times import to_rfc3339_ms


def key_id(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(base64.b64decode(public_key_base64(public_key))).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    time_ms: int
    key_id: str
    public_key: str  # base64 of the 32 raw bytes
    signature: bytes

    def note(self) -> bytes:
        return note_text(self.origin, self.tree_size, self.root_hash, self.time_ms)

    def verify(self, trusted: Ed25519PublicKey | None = None) -> str | None:
        """None when the signature is good (by `trusted`, or else by the key the checkpoint names);
        otherwise why not."""
        try:
            named = load_public_key(self.public_key)
        except ValueError:
            return "its public key is not an Ed25519 key"
        if trusted is not None and public_key_base64(trusted) != self.public_key:
            return f"it is signed by key {self.key_id}, not by the trusted key {key_id(trusted)}"
        if key_id(named) != self.key_id:
            return f"its key id {self.key_id} does not belong to its public key"
        try:
            named.verify(self.signature, self.note())
        except InvalidSignature:
            return f"its signature does not verify with key {self.key_id}"
        return None

    def verifier(self) -> Verifier:
        """The hub's key as a signed-note verifier (key name = origin); ValueError if not Ed25519."""
        return Verifier(self.origin, load_public_key(self.public_key), ED25519)

    def signed_note(self, cosignatures: Sequence[str] = ()) -> str:
        """The checkpoint as a C2SP signed note: the hub's signature line, then `cosignatures` (witnesses'
        signature lines, each ending with a newline)."""
        key = load_public_key(self.public_key)
        line = signature_line(self.origin, note_key_hash(self.origin, ED25519, key) + self.signature)
        return self.note().decode() + "\n" + line + "".join(cosignatures)

    def to_json(self, cosignatures: Sequence[str] = ()) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "time": to_rfc3339_ms(self.time_ms),
            "time_ms": self.time_ms,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "signature": base64.b64encode(self.signature).decode(),
            "note": self.note().decode(),
            "signed_note": self.signed_note(cosignatures),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """Raises KeyError, TypeError or ValueError for a malformed object."""
        return cls(
            origin=str(data["origin"]),
            tree_size=int(data["tree_size"]),
            root_hash=base64.b64decode(data["root_hash"], validate=True),
            time_ms=int(data["time_ms"]),
            key_id=str(data["key_id"]),
            public_key=str(data["public_key"]),
            signature=base64.b64decode(data["signature"], validate=True),
        )


def note_text(origin: str, tree_size: int, root_hash: bytes, time_ms: int) -> bytes:
    root = base64.b64encode(root_hash).decode()
    return f"{origin}\n{tree_size}\n{root}\ntime {to_rfc3339_ms(time_ms)}\n".encode()


def log_verifier(origin: str, public_key: Ed25519PublicKey) -> Verifier:
    """The hub's checkpoint key as a signed-note verifier key (print it with `.vkey()`)."""
    return Verifier(origin, public_key, ED25519)


def sign(key: Ed25519PrivateKey, origin: str, tree_size: int, root_hash: bytes, time_ms: int) -> Checkpoint:
    public = key.public_key()
    return Checkpoint(
        origin,
        tree_size,
        root_hash,
        time_ms,
        key_id(public),
        public_key_base64(public),
        key.sign(note_text(origin, tree_size, root_hash, time_ms)),
    )
