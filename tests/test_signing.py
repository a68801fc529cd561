"""The acknowledgement canonical text and signatures against the shared test vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ackhub.audit.acks import AckFields, load_private_key, load_public_key, sign_ack, verify_ack
from ackhub.audit.times import parse_rfc3339_ms, to_rfc3339_ms

# A copy of the project's shared ack-v1 vectors (tests read nothing outside the repository).
VECTORS = json.loads((Path(__file__).parent / "data" / "ack-v1.json").read_text())["vectors"]


def _fields(vector: dict[str, Any]) -> AckFields:
    f = vector["fields"]
    return AckFields(
        f["delivery"],
        f["record"],
        f["digest"],
        f["recipient"],
        f["key"],
        f["status"],
        f["reason"],
        parse_rfc3339_ms(f["time"]),
    )


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["fields"]["delivery"])
def test_canonical_text_matches_vector(vector: dict[str, Any]) -> None:
    """The canonical text is byte for byte the one in the vector, Chinese reason included."""
    assert _fields(vector).canonical_text() == vector["canonical_text"].encode("utf-8")


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["fields"]["delivery"])
def test_signature_matches_vector(vector: dict[str, Any]) -> None:
    """Signing with the vector's seed gives exactly its signature, which verifies with both key forms."""
    private = load_private_key(vector["private_key_seed_hex"])
    signature = sign_ack(private, _fields(vector))
    assert base64.b64encode(signature).decode() == vector["signature_base64"]
    assert verify_ack(load_public_key(vector["public_key_pem"]), _fields(vector), signature)
    assert verify_ack(load_public_key(vector["public_key_raw_base64"]), _fields(vector), signature)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["fields"]["delivery"])
def test_digest_is_sha256_of_payload(vector: dict[str, Any]) -> None:
    """The digest field is SHA-256 of the payload bytes."""
    import hashlib

    assert (
        hashlib.sha256(base64.b64decode(vector["payload_base64"])).hexdigest() == vector["fields"]["digest"]
    )


def test_any_changed_field_breaks_the_signature() -> None:
    """Changing any one field of a signed acknowledgement makes verification fail."""
    vector = VECTORS[1]
    fields = _fields(vector)
    signature = base64.b64decode(vector["signature_base64"])
    public = load_public_key(vector["public_key_pem"])
    for name, value in [
        ("delivery", "dlv-9"),
        ("record", "rec-9"),
        ("digest", "0" * 64),
        ("recipient", "fx"),
        ("key", "k2"),
        ("status", "REJECTED"),
        ("reason", "x"),
        ("time_ms", fields.time_ms + 1),
    ]:
        changed = AckFields(**{**fields.__dict__, name: value})
        assert not verify_ack(public, changed, signature), name


def test_reason_with_line_break_is_refused() -> None:
    """A reason with a line break cannot be put in the canonical text (it would forge a line)."""
    fields = AckFields("d", "r", "0" * 64, "tax", "k", "REJECTED", "a\nstatus=ACCEPTED", 0)
    with pytest.raises(ValueError, match="line breaks"):
        fields.canonical_text()


def test_time_format_round_trips() -> None:
    """Times are RFC 3339 UTC with exactly three fraction digits and parse back to the same instant."""
    assert to_rfc3339_ms(1795392000123) == "2026-11-23T00:00:00.123Z"
    assert parse_rfc3339_ms("2026-11-23T08:00:00.123Z") == parse_rfc3339_ms("2026-11-23T08:00:00.000Z") + 123
    with pytest.raises(ValueError, match="milliseconds"):
        parse_rfc3339_ms("2026-11-23T08:00:00Z")
