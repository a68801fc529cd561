"""The authority adapter interface, defined once.

An adapter describes one kind of authority (tax, FX, commerce, origin-certificate issuers) to the hub:

- `Adapter.kind` — the authority's kind, as in the configuration's `agencies[].kind`;
- `Adapter.record_types()` — the record types it sends and receives (`RecordType`): validation of a
  payload, and the mapping between the authority's native format and the hub's fields;
- `Adapter.permit_kinds()` — the permits it issues (`PermitKind`): number validation, the content rules,
  and the rules verification applies (`PermitRules`: uses, tolerance, validity);
- `Adapter.check_signature()` — how an issuer's signature on a permit version is checked;
- `Adapter.lookup()` — optionally, how to fetch a permit from the authority's own registry on demand;
- `Adapter.catalogue()` — the record types it brings to the hub's published catalogue (`SchemaVersion`):
  each version's schema file (JSON Schema 2020-12 with its title, description and examples), and for a
  binary type the protobuf message it carries. A type is brought by one adapter only.

Adapters are discovered through the entry-point group `ackhub.adapters` (see `adapters.loader`); a new
authority needs no change to `hub/`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import Message

from ackhub.core.errors import FieldViolation
from ackhub.core.identifiers import check_hs_code, check_uscc
from ackhub.core.permit_document import PermitDocument

__all__ = [
    "JSON",
    "PROTOBUF",
    "Adapter",
    "IssuerKey",
    "IssuerUnreachable",
    "JsonRecordType",
    "PermitKind",
    "PermitRules",
    "RecordType",
    "RegistryAnswer",
    "SchemaVersion",
]


JSON = "application/json"
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class SchemaVersion:
    """One version of a record type in the hub's catalogue, as the adapter that brings it declares it.

    `schema_file` is a JSON Schema (2020-12) with `title`, `description` and `examples`: of the JSON
    payload, or for a binary type (`content_type` PROTOBUF) of the protobuf JSON mapping of `message`
    (field names as in the .proto), which the payload must decode as."""

    record_type: str
    version: int
    schema_file: Path
    content_type: str = JSON
    message: type[Message] | None = None
    # Set when a newer version replaces this one: the last day (China Standard Time) publishers may still
    # use it. Until then it keeps working (the receipt says it is deprecated); from the next day a publish
    # with it is refused. The newest version of a type is never deprecated (docs/schema-evolution.md).
    deprecated_until: date | None = None


@dataclass(frozen=True)
class IssuerKey:
    """A registered issuer key (its electronic specimen); signatures on permits issued after
    `revoked_after` do not count."""

    key_id: str
    public_key: Ed25519PublicKey
    revoked_after: date | None = None


@dataclass(frozen=True)
class PermitRules:
    """How verification and draw-down treat a permit of a kind."""

    max_uses: int  # declarations that may draw on it
    tolerance_permille: int  # bulk lines may exceed their quantity by this much, in total
    latest_valid_to: date  # the latest `valid_to` the kind allows for this permit
    requires_customs_office: bool


@dataclass(frozen=True)
class RegistryAnswer:
    """A permit as the issuer's registry returned it: the mapped document and its signature."""

    document: PermitDocument
    key_id: str
    signature: bytes


class IssuerUnreachable(Exception):
    """The issuer's registry did not answer usefully (network error, timeout, 5xx, garbage)."""

    def __init__(self, issuer: str, why: str) -> None:
        super().__init__(f"the registry of issuer {issuer!r} is unreachable: {why}")
        self.issuer = issuer
        self.why = why


class RecordType(ABC):
    """A record type an authority sends (publishes) or receives, in its native format."""

    name: ClassVar[str]  # the hub's record type, e.g. "customs.export_declaration.released"
    direction: ClassVar[Literal["sends", "receives"]]
    content_type: ClassVar[str] = "application/json"

    @abstractmethod
    def validate(self, payload: bytes) -> list[FieldViolation]:
        """Every problem of a native payload; empty when valid."""

    @abstractmethod
    def to_native(self, fields: Mapping[str, Any]) -> bytes:
        """The hub's fields → the authority's bytes."""

    @abstractmethod
    def from_native(self, payload: bytes) -> dict[str, Any]:
        """The authority's bytes → the hub's fields (raises ValueError when the payload is invalid)."""


class JsonRecordType(RecordType):
    """A JSON record whose native field names differ from the hub's (`native_names`: hub → native)."""

    native_names: ClassVar[Mapping[str, str]]
    required: ClassVar[Sequence[str]]  # hub field names

    def check_fields(self, fields: Mapping[str, Any]) -> list[FieldViolation]:
        """Checks beyond presence, on hub field names; override to add them."""
        bad: list[FieldViolation] = []
        if "uscc" in fields and isinstance(fields["uscc"], str):
            problem = check_uscc(fields["uscc"])
            if problem:
                bad.append(FieldViolation(self.native_names["uscc"], problem))
        return bad

    def validate(self, payload: bytes) -> list[FieldViolation]:
        try:
            native = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return [FieldViolation("payload", f"is not JSON: {exc}")]
        if not isinstance(native, dict):
            return [FieldViolation("payload", "must be a JSON object")]
        missing = [
            FieldViolation(self.native_names[name], "is required")
            for name in self.required
            if native.get(self.native_names[name]) in (None, "", [])
        ]
        if missing:
            return missing
        return self.check_fields(self._to_hub(native))

    def _to_hub(self, native: Mapping[str, Any]) -> dict[str, Any]:
        return {hub: native[theirs] for hub, theirs in self.native_names.items() if theirs in native}

    def to_native(self, fields: Mapping[str, Any]) -> bytes:
        native = {
            self.native_names[name]: value for name, value in fields.items() if name in self.native_names
        }
        return json.dumps(native, ensure_ascii=False, sort_keys=True).encode("utf-8")

    def from_native(self, payload: bytes) -> dict[str, Any]:
        problems = self.validate(payload)
        if problems:
            raise ValueError("; ".join(f"{p.field}: {p.description}" for p in problems))
        return self._to_hub(json.loads(payload))


class PermitKind(ABC):
    """A kind of permit an authority issues, e.g. `commerce.import_licence`."""

    code: ClassVar[str]  # "<adapter kind>.<name>"
    title: ClassVar[str]
    max_lines: ClassVar[int] = 100

    @abstractmethod
    def check_number(self, number: str) -> str | None:
        """None when `number` is a valid number of this kind, else one sentence saying what is wrong."""

    @abstractmethod
    def rules(self, document: PermitDocument) -> PermitRules:
        """The rules verification applies to this permit."""

    def validate(self, document: PermitDocument) -> list[FieldViolation]:
        """Every problem of a permit version's content (field names as in `PermitContent`)."""
        bad: list[FieldViolation] = []
        problem = self.check_number(document.number)
        if problem:
            bad.append(FieldViolation("number", problem))
        problem = check_uscc(document.holder_uscc)
        if problem:
            bad.append(FieldViolation("holder_uscc", problem))
        rules = self.rules(document)
        if rules.requires_customs_office and not document.customs_office:
            bad.append(
                FieldViolation("customs_office", f"a {self.title} names the one customs office it is for")
            )
        if document.customs_office and not (
            len(document.customs_office) == 4 and document.customs_office.isdigit()
        ):
            bad.append(FieldViolation("customs_office", f"is 4 digits, got {document.customs_office!r}"))
        if document.valid_to < document.valid_from:
            bad.append(FieldViolation("valid_to", "is before valid_from"))
        elif document.valid_to > rules.latest_valid_to:
            bad.append(
                FieldViolation(
                    "valid_to",
                    f"a {self.title} is valid until {rules.latest_valid_to.isoformat()} at the latest",
                )
            )
        if document.valid_from < document.issue_date:
            bad.append(FieldViolation("valid_from", "is before issue_date"))
        if not document.lines:
            bad.append(FieldViolation("lines", "a permit has at least one goods line"))
        elif len(document.lines) > self.max_lines:
            bad.append(FieldViolation("lines", f"a {self.title} has at most {self.max_lines} goods lines"))
        for index, line in enumerate(document.lines):
            where = f"lines[{index}]"
            if line.line_number != index + 1:
                bad.append(
                    FieldViolation(f"{where}.line_number", f"must be {index + 1} (1, 2, 3 ... in order)")
                )
            problem = check_hs_code(line.hs_code)
            if problem:
                bad.append(FieldViolation(f"{where}.hs_code", problem))
            if line.quantity_milli <= 0:
                bad.append(FieldViolation(f"{where}.quantity", "must be more than 0"))
            if not line.unit:
                bad.append(FieldViolation(f"{where}.unit", "is required"))
        return bad


class Adapter(ABC):
    """One kind of authority."""

    kind: ClassVar[str]  # as agencies[].kind: "tax", "fx", "commerce", "origin", ...
    title: ClassVar[str]

    @abstractmethod
    def record_types(self) -> Sequence[RecordType]:
        """The record types this authority sends and receives."""

    def permit_kinds(self) -> Sequence[PermitKind]:
        """The permits it issues; none by default."""
        return ()

    def usage_record_type(self) -> RecordType | None:
        """The record type that carries draw-downs and releases back to the issuer, if it issues permits."""
        return None

    def catalogue(self) -> Sequence[SchemaVersion]:
        """The record types (each version) this authority brings to the hub's catalogue; none by default."""
        return ()

    def check_signature(
        self, document: PermitDocument, key_id: str, signature: bytes, keys: Mapping[str, IssuerKey]
    ) -> str | None:
        """None when `signature` is the issuer's Ed25519 signature over the canonical text, signed with a
        key that was not revoked on the permit's issue date; else why not."""
        key = keys.get(key_id)
        if key is None:
            return f"key {key_id!r} is not a registered key of issuer {document.issuer!r}"
        if key.revoked_after is not None and document.issue_date > key.revoked_after:
            return (
                f"key {key_id!r} was revoked after {key.revoked_after.isoformat()}; the permit was issued "
                f"{document.issue_date.isoformat()}"
            )
        try:
            key.public_key.verify(signature, document.canonical_text(key_id))
        except InvalidSignature:
            return f"the signature does not verify against key {key_id!r}"
        return None

    async def lookup(
        self, client: httpx.AsyncClient, registry_url: str, issuer: str, kind: str, number: str
    ) -> RegistryAnswer | None:
        """The permit from the issuer's registry, None when the registry does not know it.

        Raises `IssuerUnreachable` when the registry cannot answer. The default: no registry."""
        del client, registry_url, kind, number
        raise IssuerUnreachable(issuer, f"the {self.kind} adapter has no registry lookup")
