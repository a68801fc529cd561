"""C2SP signed notes, tlog checkpoints and Ed25519 cosignatures, byte for byte as the specifications say
(c2sp.org/signed-note, c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature). Standard library and
`cryptography` only: the witness (witness/) and any partner's verifier use this module without the hub.

A signed note is its text (ending in a newline), one empty line, then signature lines

    — <key name> base64(4-byte key hash || signature)

where, for an Ed25519 key of type byte `t`, key hash = SHA-256(name || 0x0A || t || 32-byte public key)[:4].
Type 0x01 signs the note text itself (the log's signature); type 0x04 is a witness cosignature, whose
signature is an 8-byte big-endian POSIX time followed by the Ed25519 signature of

    cosignature/v1
    time <that time>
    <the note text>

A key is written as a verifier key ("vkey", the format of Go's golang.org/x/mod/sumdb/note):
`<name>+<key hash, 8 hex digits>+<base64(type byte || 32-byte public key)>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01  # signed-note Ed25519: a log's (or any signer's) signature over the note text
COSIGNATURE_V1 = 0x04  # tlog-cosignature: a witness's timestamped Ed25519 cosignature
DASH = "\u2014"  # em dash, the start of every signature line
MAX_SIGNATURES = 32  # the specification asks verifiers to accept at least 16
MAX_NOTE_BYTES = 64 * 1024
_NAME = re.compile(r"[^\s+]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_TYPES = {ED25519: "Ed25519 signed-note key", COSIGNATURE_V1: "Ed25519 cosignature/v1 key"}


class NoteError(ValueError):
    """Malformed note, checkpoint or key text; the message says exactly what is wrong."""


def check_key_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_hash(name: str, kind: int, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key id: SHA-256(name || 0x0A || type byte || 32-byte public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + raw_public_key(public_key)).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A trusted (name, Ed25519 public key, signature type)."""

    name: str
    public_key: Ed25519PublicKey
    kind: int = ED25519

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.kind, self.public_key)

    def vkey(self) -> str:
        material = base64.b64encode(bytes([self.kind]) + raw_public_key(self.public_key)).decode()
        return f"{self.name}+{self.key_hash.hex()}+{material}"

    def verify(self, text: bytes, signature: bytes) -> int | None:
        """The signature's bytes after the key hash, checked over `text`: None when it does not verify;
        for a cosignature its time (POSIX seconds), else 0."""
        try:
            if self.kind == COSIGNATURE_V1:
                if len(signature) != 8 + 64:
                    return None
                (when,) = struct.unpack(">Q", signature[:8])
                if when >= 1 << 63:
                    return None
                self.public_key.verify(signature[8:], cosigned_message(text, when))
                return int(when)
            if len(signature) != 64:
                return None
            self.public_key.verify(signature, text)
            return 0
        except InvalidSignature:
            return None


def parse_vkey(text: str) -> Verifier:
    """`name+hash+base64(type || key)`; refuses anything but an Ed25519 key (type 0x01 or 0x04)."""
    parts = text.strip().split("+", 2)  # the base64 may itself hold a '+'; the name cannot
    if len(parts) != 3:
        raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
    name, hash_hex, material = parts
    check_key_name(name)
    try:
        raw = base64.b64decode(material, validate=True)
        wanted = bytes.fromhex(hash_hex)
    except (binascii.Error, ValueError):
        raise NoteError("the verifier key's hash or key is not hex and base64") from None
    if not raw or raw[0] not in _TYPES:
        kind = f"0x{raw[0]:02x}" if raw else "none"
        raise NoteError(f"the verifier key is of type {kind}, not an Ed25519 key (0x01 or 0x04)")
    if len(raw) != 33:
        raise NoteError(f"an Ed25519 verifier key holds 32 key bytes, this one {len(raw) - 1}")
    verifier = Verifier(name, Ed25519PublicKey.from_public_bytes(raw[1:]), raw[0])
    if len(wanted) != 4 or wanted != verifier.key_hash:
        raise NoteError(f"the verifier key's hash {hash_hex} does not belong to its name and key")
    return verifier


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey
    kind: int = ED25519

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.private_key.public_key(), self.kind)

    def sign(self, text: bytes, when: int = 0) -> str:
        """A signature line over the note text (a cosignature at POSIX time `when` for type 0x04)."""
        if self.kind == COSIGNATURE_V1:
            body = struct.pack(">Q", when) + self.private_key.sign(cosigned_message(text, when))
        else:
            body = self.private_key.sign(text)
        return signature_line(self.name, self.verifier.key_hash + body)


def signature_line(name: str, signature: bytes) -> str:
    return f"{DASH} {name} {base64.b64encode(signature).decode()}\n"


def cosigned_message(text: bytes, when: int) -> bytes:
    return b"cosignature/v1\ntime " + str(when).encode() + b"\n" + text


@dataclass(frozen=True)
class Signature:
    name: str
    key_hash: bytes  # 4 bytes
    signature: bytes  # what follows the key hash
    line: str  # as written, with its newline

    def by(self, verifier: Verifier) -> bool:
        return self.name == verifier.name and self.key_hash == verifier.key_hash


@dataclass(frozen=True)
class Note:
    text: bytes  # ends with a newline; no separating blank line
    signatures: tuple[Signature, ...] = field(default=())

    def render(self) -> str:
        return self.text.decode() + "\n" + "".join(s.line for s in self.signatures)

    def with_signatures(self, lines: list[str]) -> Note:
        """This note with more signature lines (each checked for form; one per (name, key hash))."""
        extra = parse_signature_lines("".join(lines))
        signatures = list(self.signatures)
        for signature in extra:
            if not any(signature.name == s.name and signature.key_hash == s.key_hash for s in signatures):
                signatures.append(signature)
        return Note(self.text, tuple(signatures))

    def verified_by(self, verifier: Verifier) -> int | None:
        """None unless a signature of `verifier`'s name and key hash verifies; else its time (0 for a
        plain signature)."""
        for signature in self.signatures:
            if signature.by(verifier):
                return verifier.verify(self.text, signature.signature)
        return None


def parse_signature_lines(text: str) -> list[Signature]:
    if text and not text.endswith("\n"):
        raise NoteError("a signature line must end with a newline")
    signatures = []
    for line in text.splitlines(keepends=True):
        if not line.startswith(DASH + " "):
            raise NoteError(f"not a signature line (— name signature): {line.rstrip()[:80]!r}")
        parts = line[2:].rstrip("\n").split(" ")
        if len(parts) != 2:
            raise NoteError(f"a signature line has a key name and a base64 signature: {line.rstrip()[:80]!r}")
        name, encoded = parts
        check_key_name(name)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteError(f"the signature of {name!r} is not base64") from None
        if len(raw) < 5:
            raise NoteError(f"the signature of {name!r} is too short to hold a key hash")
        signatures.append(Signature(name, raw[:4], raw[4:], line))
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures")
    return signatures


def parse_note(data: bytes | str) -> Note:
    """A signed note; its text is separated from the signatures by the last empty line."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError(f"the note is larger than {MAX_NOTE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the note is not UTF-8") from None
    if any(c < " " and c != "\n" for c in text):
        raise NoteError("the note holds a control character other than newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no empty line before its signatures")
    signatures = parse_signature_lines(text[split + 2 :])
    if not signatures:
        raise NoteError("the note has no signature")
    return Note(text[: split + 1].encode(), tuple(signatures))


# -- checkpoints -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointText:
    """The body of a tlog checkpoint: origin, tree size, root hash, then extension lines."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def encode(self) -> bytes:
        lines = [
            self.origin,
            str(self.tree_size),
            base64.b64encode(self.root_hash).decode(),
            *self.extensions,
        ]
        return "".join(f"{line}\n" for line in lines).encode()


def parse_checkpoint_text(text: bytes) -> CheckpointText:
    lines = text.decode().split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has at least three lines, each ending with a newline")
    origin, size, root, *extensions = lines[:-1]
    if not origin:
        raise NoteError("the checkpoint's origin line is empty")
    if not _DECIMAL.fullmatch(size):
        raise NoteError(f"the checkpoint's tree size {size[:30]!r} is not a decimal without leading zeroes")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise NoteError("the checkpoint's root hash is not base64") from None
    if len(root_hash) != 32:
        raise NoteError(f"the checkpoint's root hash is {len(root_hash)} bytes, not 32")
    if any(not line for line in extensions):
        raise NoteError("the checkpoint has an empty extension line")
    return CheckpointText(origin, int(size), root_hash, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    note: Note
    body: CheckpointText

    def render(self) -> str:
        return self.note.render()


def parse_checkpoint(data: bytes | str) -> SignedCheckpoint:
    note = parse_note(data)
    return SignedCheckpoint(note, parse_checkpoint_text(note.text))


def cosigners(note: Note, verifiers: list[Verifier]) -> dict[str, int]:
    """Which of `verifiers` (cosignature keys) cosigned the note: name → cosignature time."""
    found = {}
    for verifier in verifiers:
        when = note.verified_by(verifier)
        if when is not None:
            found[verifier.name] = when
    return found
