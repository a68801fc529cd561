"""The schema files that ship with these adapters: `schemas/<record type>.v<version>.json`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from google.protobuf.message import Message

from ackhub.core.adapter import JSON, PROTOBUF, SchemaVersion

SCHEMAS = Path(__file__).parent / "schemas"


def bundled(
    record_type: str,
    version: int,
    message: type[Message] | None = None,
    deprecated_until: date | None = None,
) -> SchemaVersion:
    """A version of `record_type` whose schema file is in this distribution (a protobuf type with `message`;
    `deprecated_until`: the last day publishers may still use it, once a newer version replaces it)."""
    return SchemaVersion(
        record_type,
        version,
        SCHEMAS / f"{record_type}.v{version}.json",
        PROTOBUF if message is not None else JSON,
        message,
        deprecated_until,
    )
