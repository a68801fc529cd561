"""Opaque page tokens (AIP-158): keyset pagination on a row's sequence number, bound to the filter so a
token cannot be replayed against another query."""

from __future__ import annotations

import base64
import hashlib
import json

from ackhub.core.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 500


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "cannot be negative")])
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


def _fingerprint(filters: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def encode_token(after_seq: int, filters: dict[str, object]) -> str:
    raw = json.dumps({"s": after_seq, "f": _fingerprint(filters)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, filters: dict[str, object]) -> int | None:
    """The sequence number to continue below, or None for the first page."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        seq, fingerprint = int(data["s"]), str(data["f"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")]) from None
    if fingerprint != _fingerprint(filters):
        raise InvalidArgument([FieldViolation("page_token", "was issued for different filters")])
    return seq
