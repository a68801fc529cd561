"""Signed notes, checkpoints and cosignatures byte for byte as C2SP specifies them, checked against the
Go reference implementation's published vectors (golang.org/x/mod/sumdb/note, transparency-dev/formats)."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit import checkpoint as checkpoints
from ackhub.audit.note import (
    COSIGNATURE_V1,
    ED25519,
    NoteError,
    Signer,
    parse_checkpoint,
    parse_note,
    parse_vkey,
    raw_public_key,
)

# golang.org/x/mod/sumdb/note's documented example: its keys, its text and the note it signs.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY_MATERIAL = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # base64(0x01 || seed)
PETER_TEXT = (
    b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
PETER_NOTE = (
    PETER_TEXT.decode()
    + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
# transparency-dev/formats' cosignature/v1 (type 0x04) verifier key.
COSIGNATURE_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"


def test_the_go_reference_note_is_reproduced_and_verified() -> None:
    """Signing the reference text with the reference key gives the reference note, which verifies."""
    seed = base64.b64decode(PETER_SKEY_MATERIAL)[1:]
    signer = Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed), ED25519)
    assert signer.verifier.vkey() == PETER_VKEY
    assert PETER_TEXT.decode() + "\n" + signer.sign(PETER_TEXT) == PETER_NOTE
    note = parse_note(PETER_NOTE)
    assert note.text == PETER_TEXT and note.verified_by(parse_vkey(PETER_VKEY)) == 0
    tampered = parse_note(PETER_NOTE.replace("cryptography", "cryptographY"))
    assert tampered.verified_by(parse_vkey(PETER_VKEY)) is None


def test_key_hashes_follow_the_specifications() -> None:
    """key hash = SHA-256(name || 0x0A || type || key)[:4] for type 0x01 and 0x04 keys alike."""
    for vkey, kind in ((PETER_VKEY, ED25519), (COSIGNATURE_VKEY, COSIGNATURE_V1)):
        verifier = parse_vkey(vkey)
        name, hash_hex, _ = vkey.split("+")
        raw = raw_public_key(verifier.public_key)
        assert verifier.kind == kind
        assert hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + raw).digest()[:4].hex() == hash_hex


def test_a_cosignature_is_a_timestamped_signature_over_the_cosigned_message() -> None:
    """The cosignature line holds key hash, 8-byte big-endian time and the Ed25519 signature of
    "cosignature/v1\\ntime T\\n" + the checkpoint text."""
    key = Ed25519PrivateKey.from_private_bytes(b"w" * 32)
    signer = Signer("tax.example/witness", key, COSIGNATURE_V1)
    text = b"customs.example/ackhub\n5\n" + base64.b64encode(b"\1" * 32) + b"\n"
    line = signer.sign(text, 1_700_000_000)
    name, encoded = line.removeprefix("— ").rstrip("\n").split(" ")
    raw = base64.b64decode(encoded)
    assert name == "tax.example/witness" and raw[:4] == signer.verifier.key_hash
    assert struct.unpack(">Q", raw[4:12]) == (1_700_000_000,)
    key.public_key().verify(raw[12:], b"cosignature/v1\ntime 1700000000\n" + text)  # raises if wrong
    note = parse_note(text.decode() + "\n" + line)
    assert note.verified_by(signer.verifier) == 1_700_000_000


def test_the_hubs_checkpoint_is_a_c2sp_checkpoint() -> None:
    """A checkpoint renders as a signed note an independent parser reads: origin, size, root, the time
    extension line, and the hub's signature under the key name `origin` with the spec's key hash."""
    key = Ed25519PrivateKey.from_private_bytes(b"h" * 32)
    signed = checkpoints.sign(key, "customs.example/ackhub", 7, b"\2" * 32, 1_764_921_600_123)
    parsed = parse_checkpoint(signed.signed_note())
    assert parsed.body.origin == "customs.example/ackhub" and parsed.body.tree_size == 7
    assert parsed.body.root_hash == b"\2" * 32
    assert parsed.body.extensions == ("time 2025-12-05T08:00:00.123Z",)
    expected = hashlib.sha256(b"customs.example/ackhub\n\x01" + raw_public_key(key.public_key())).digest()[:4]
    assert parsed.note.signatures[0].key_hash == expected
    vkey = checkpoints.log_verifier("customs.example/ackhub", key.public_key()).vkey()
    assert parsed.note.verified_by(parse_vkey(vkey)) == 0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a\nb\n", "no empty line"),
        ("a\n\n", "no signature"),
        ("a\n\nnot a signature\n", "not a signature line"),
        ("a\n\n— name !!!\n", "not base64"),
        ("a\x01\n\n— n AAAAAAAA\n", "control character"),
        ("a\n\n— na+me AAAAAAAA\n", "without spaces or"),
    ],
)
def test_malformed_notes_are_refused_precisely(text: str, words: str) -> None:
    """Each malformed note is a NoteError saying what is wrong."""
    with pytest.raises(NoteError, match=words):
        parse_note(text)


@pytest.mark.parametrize(
    ("vkey", "words"),
    [
        ("name+00000000", "a verifier key is <name>"),
        ("name+c74f20a3+" + base64.b64encode(b"\2" + b"\0" * 32).decode(), "type 0x02, not an Ed25519"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not belong"),
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str, words: str) -> None:
    """A verifier key of another type, or whose hash does not match, is refused."""
    with pytest.raises(NoteError, match=words):
        parse_vkey(vkey)


def test_malformed_checkpoint_bodies_are_refused() -> None:
    """A size with leading zeroes or a root that is not 32 bytes is not a checkpoint."""
    key = Signer("o", Ed25519PrivateKey.from_private_bytes(b"k" * 32))
    for body, words in (
        (b"o\n07\n" + base64.b64encode(b"\0" * 32) + b"\n", "leading zeroes"),
        (b"o\n7\nAAAA\n", "3 bytes"),
    ):
        with pytest.raises(NoteError, match=words):
            parse_checkpoint(body.decode() + "\n" + key.sign(body))
