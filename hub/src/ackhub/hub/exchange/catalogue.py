"""The catalogue of record types: every type the hub routes has a published, versioned schema that an
adapter brings (`ackhub.core.adapter.SchemaVersion`), and every payload is checked against it at publish, before
anything is stored.

A schema is a JSON Schema 2020-12 file: of the JSON payload, or for a binary type of the protobuf JSON
mapping of the message the payload must decode as. It is compiled twice, once, at start:

- fastjsonschema turns it into Python code that decides valid / invalid in about 20 µs for a 1 KiB
  declaration (jsonschema's validator takes 150-250 µs: more than the 10 % of a publish's CPU the hub
  allows itself; bench/catalogue.py measures both);
- jsonschema's `Draft202012Validator` explains a refusal: the first `MAX_VIOLATIONS` problems, each a field
  violation whose field is a path into the payload (`payload.goods[0].hs_code`).

fastjsonschema implements drafts 4 to 7, so a schema may use only the keywords the two read alike
(`KEYWORDS`); anything else is refused at start, with its file and line, as is a schema that is not valid
2020-12, an example that does not match its schema, and a type two adapters bring.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import fastjsonschema
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from jsonschema.exceptions import SchemaError

from ackhub.adapters.loader import Adapters
from ackhub.core.adapter import JSON, PROTOBUF, SchemaVersion
from ackhub.core.errors import ConfigError, FieldViolation, InvalidArgument
from ackhub.core.identifiers import check_declaration_number, check_hs_code, check_uscc
from ackhub.hub.config import RECORD_TYPE, Settings

__all__ = ["MAX_VIOLATIONS", "Catalogue", "RecordTypeVersion", "build", "china_date", "media_type"]

MAX_VIOLATIONS = 10  # a refusal names at most this many problems of a payload
SOURCE = "record type catalogue"
_RECORD_TYPE = re.compile(RECORD_TYPE)
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _check_date_time(value: str) -> str | None:
    """RFC 3339 with a time zone: 2026-11-24T08:15:00.000Z."""
    try:
        if _DATE_TIME.match(value):
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            return None
    except ValueError:
        pass
    return f"is an RFC 3339 time with its zone, such as 2026-11-24T08:15:00.000Z; got {value[:40]!r}"


def _check_date(value: str) -> str | None:
    try:
        if len(value) == 10:
            date.fromisoformat(value)
            return None
    except ValueError:
        pass
    return f"is a date written YYYY-MM-DD; got {value[:40]!r}"


# The formats a schema may name; each answers None or what is wrong (the violation's description).
FORMATS: Mapping[str, Callable[[str], str | None]] = {
    "uscc": check_uscc,
    "declaration-number": check_declaration_number,
    "hs-code": check_hs_code,
    "date-time": _check_date_time,
    "date": _check_date,
}
# The keywords JSON Schema 2020-12 and draft 7 (what fastjsonschema compiles) read alike.
KEYWORDS = frozenset(
    (
        *("$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated"),
        *("type", "enum", "const", "format", "pattern", "minLength", "maxLength"),
        *("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
        *("properties", "required", "additionalProperties", "minProperties", "maxProperties"),
        *("items", "minItems", "maxItems", "uniqueItems"),
        *("allOf", "anyOf", "oneOf", "not", "if", "then", "else"),
    )
)
_ONE_SCHEMA = ("additionalProperties", "items", "not", "if", "then", "else")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def china_date(now_ms: int) -> date:
    """The calendar day in China Standard Time (UTC+8) at `now_ms`: deprecation dates are such days."""
    return (datetime.fromtimestamp(now_ms / 1000, tz=UTC) + timedelta(hours=8)).date()


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` → `application/json`."""
    return content_type.split(";", 1)[0].strip().lower()


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(lambda value, check=check: not isinstance(value, str) or check(value) is None)
    return checker


_FORMAT_CHECKER = _format_checker()
_FAST_FORMATS = {name: (lambda value, check=check: check(value) is None) for name, check in FORMATS.items()}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(type(value), "value")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _where(path: Sequence[Any]) -> str:
    """`payload.goods[0].hs_code` for the path ("goods", 0, "hs_code")."""
    out = "payload"
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", step):
            out += f".{step}"
        else:
            out += f"[{json.dumps(step, ensure_ascii=False)}]"
    return out


def _violations(error: ValidationError) -> Iterator[FieldViolation]:
    """One jsonschema error as the field violations a partner reads."""
    path, kind, value = list(error.absolute_path), error.validator, error.instance
    expected: Any = error.validator_value  # jsonschema types these as possibly unset; here they are set
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if kind == "required":
        for name in expected:
            if isinstance(value, dict) and name not in value:
                yield FieldViolation(_where([*path, name]), "is required")
        return
    if kind == "additionalProperties" and isinstance(value, dict):
        known = schema.get("properties", {})
        for name in value:
            if name not in known:
                yield FieldViolation(_where([*path, name]), "is not a field of this record type")
        return
    if kind == "format" and isinstance(value, str):
        description = FORMATS[expected](value) or f"is not a valid {expected}"
    elif kind == "type":
        description = f"must be {' or '.join(_listed(expected))}; got a {_json_type(value)}"
    elif kind == "enum":
        description = f"is one of {', '.join(map(_short, expected))}; got {_short(value)}"
    elif kind == "pattern":
        description = f"must match {expected}; got {_short(value)}"
    else:
        description = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    if "description" in schema and kind in ("pattern", "enum", "type"):
        description += f" ({schema['description'][:160]})"
    yield FieldViolation(_where(path), description)


def _listed(value: Any) -> list[str]:
    return [
        f"a {t}" if t != "integer" else "an integer" for t in ([value] if isinstance(value, str) else value)
    ]


@dataclass(frozen=True)
class RecordTypeVersion:
    """One version of a record type, compiled: what `GetRecordType` serves and publish checks against."""

    record_type: str
    version: int
    adapter: str  # the adapter kind that brings it
    content_type: str  # JSON or PROTOBUF
    message: type[Message] | None  # the protobuf message of a binary type
    title: str
    description: str
    schema: Mapping[str, Any]
    schema_text: str  # the file as written
    source: Path
    examples: tuple[Any, ...]
    deprecated_until: (
        date | None
    )  # the last day (China Standard Time) publishers may use it; None: not deprecated
    _decide: Callable[[Any], Any] = field(repr=False, compare=False)
    _explain: Draft202012Validator = field(repr=False, compare=False)

    @property
    def message_type(self) -> str:
        return self.message.DESCRIPTOR.full_name if self.message is not None else ""

    def example_payloads(self) -> list[bytes]:
        """The schema's examples as payload bytes (JSON text, or the encoded protobuf message)."""
        if self.message is None:
            return [json.dumps(e, ensure_ascii=False).encode("utf-8") for e in self.examples]
        return [json_format.ParseDict(e, self.message()).SerializeToString() for e in self.examples]

    def document(self, payload: bytes) -> tuple[Any, list[FieldViolation]]:
        """The payload as the JSON value its schema applies to, or why it cannot be one."""
        if self.message is not None:
            try:
                decoded = self.message.FromString(payload)
            except DecodeError as exc:
                return None, [
                    FieldViolation("payload", f"is not an encoded {self.message_type} message: {exc}")
                ]
            return json_format.MessageToDict(decoded, preserving_proto_field_name=True), []
        try:
            return json.loads(payload.decode("utf-8"), parse_constant=_no_constant), []
        except UnicodeDecodeError as exc:
            return None, [
                FieldViolation("payload", f"is not UTF-8: byte {exc.start} cannot start a character")
            ]
        except ValueError as exc:
            return None, [FieldViolation("payload", f"is not JSON: {exc}")]

    def violations(self, payload: bytes) -> list[FieldViolation]:
        """The first `MAX_VIOLATIONS` problems of `payload` (one per field); empty when it is valid."""
        document, problems = self.document(payload)
        if problems:
            return problems
        try:
            self._decide(document)
            return []
        except fastjsonschema.JsonSchemaValueException as verdict:
            found: dict[str, FieldViolation] = {}
            errors = self._explain.iter_errors(document)
            for violation in (v for error in islice(errors, 4 * MAX_VIOLATIONS) for v in _violations(error)):
                found.setdefault(violation.field, violation)
            if not found:  # the two validators disagree: say what the compiled one saw
                where = verdict.path[1:] if verdict.path else []
                found[""] = FieldViolation(_where(where), verdict.message.removeprefix("data"))
            return list(found.values())[:MAX_VIOLATIONS]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class Catalogue:
    """Every version of every record type the adapters bring."""

    def __init__(self, versions: Sequence[RecordTypeVersion]) -> None:
        self._versions: dict[str, dict[int, RecordTypeVersion]] = {}
        for version in sorted(versions, key=lambda v: (v.record_type, v.version)):
            self._versions.setdefault(version.record_type, {})[version.version] = version

    def record_types(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, record_type: str) -> list[RecordTypeVersion]:
        return list(self._versions.get(record_type, {}).values())

    def current(self, record_type: str) -> RecordTypeVersion | None:
        """The newest version of a type, None when the catalogue does not have it."""
        found = self._versions.get(record_type)
        return found[max(found)] if found else None

    def get(self, record_type: str, version: int = 0) -> RecordTypeVersion | None:
        """A version of a type (0: the current one)."""
        return self.current(record_type) if version == 0 else self._versions.get(record_type, {}).get(version)

    def version_for(self, record_type: str, requested: int) -> RecordTypeVersion | None:
        """The version a publish of `record_type` names (0: the type's first version, which a publisher that
        never named a version has always published), if the catalogue has the type
        (a route for a type it lacks is refused at start); `InvalidArgument` naming `schema_version` for a
        version the type does not have."""
        found = self._versions.get(record_type)
        if not found:
            return None
        if requested == 0:
            return found[min(found)]
        version = found.get(requested)
        if version is None:
            known = ", ".join(str(v) for v in found)
            raise InvalidArgument(
                [FieldViolation("schema_version", f"{record_type} has versions {known}; got {requested}")],
                reason="SCHEMA_VERSION_UNKNOWN",
            )
        return version

    def retired(self, version: RecordTypeVersion, today: date) -> InvalidArgument | None:
        """The refusal of a new record of `version` on `today` (China Standard Time) when it is deprecated
        and its last day has passed; None while it is taken. A retry of a record accepted in time is not
        new: it gets its receipt (ackhub.hub.exchange.publish)."""
        if version.deprecated_until is None or today <= version.deprecated_until:
            return None
        current = self.current(version.record_type)
        return InvalidArgument(
            [
                FieldViolation(
                    "schema_version",
                    f"version {version.version} of {version.record_type} was deprecated and taken until "
                    f"{version.deprecated_until.isoformat()} (China Standard Time); publish version "
                    f"{current.version if current else version.version + 1}",
                )
            ],
            reason="SCHEMA_VERSION_RETIRED",
        )

    def check_payload(
        self, record_type: str, content_type: str, payload: bytes, version: RecordTypeVersion | None = None
    ) -> str:
        """The content type to store with a payload of `record_type` (the type's own when none was given),
        checked against `version` (default: the current one); raises `InvalidArgument` naming each problem,
        content type first. A type the catalogue lacks is let through (a route for it is refused at start:
        `route_problems`)."""
        version = version or self.current(record_type)
        if version is None:
            return content_type
        if content_type and media_type(content_type) != version.content_type:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "content_type",
                        f"{record_type} v{version.version} payloads are {version.content_type}; "
                        f"got {content_type[:64]!r}",
                    )
                ],
                reason="PAYLOAD_INVALID",
            )
        problems = version.violations(payload)
        if problems:
            raise InvalidArgument(problems, reason="PAYLOAD_INVALID")
        return content_type or version.content_type

    def route_problems(self, settings: Settings) -> list[tuple[str, str]]:
        """Routes whose record type has no schema in the catalogue, and recipients taking a version the
        type does not have: refused at start."""
        known = ", ".join(self.record_types()) or "none"
        problems: list[tuple[str, str]] = []
        for index, route in enumerate(settings.routes):
            versions = self._versions.get(route.record_type)
            if versions is None:
                problems.append(
                    (
                        f"routes[{index}].record_type",
                        f"{route.record_type!r} is not in the record type catalogue (no adapter brings a "
                        f"schema for it; the catalogue has: {known})",
                    )
                )
                continue
            for number, recipient in enumerate(route.recipients):
                unknown = [v for v in recipient.schema_versions if v not in versions]
                if unknown:
                    problems.append(
                        (
                            f"routes[{index}].recipients[{number}].schema_versions",
                            f"{route.record_type} has no version {', '.join(map(str, unknown))} (the "
                            f"catalogue has {', '.join(map(str, versions))})",
                        )
                    )
        return problems


def build(adapters: Adapters) -> Catalogue:
    """The catalogue of every loaded adapter's record types; `ConfigError` listing every problem (a schema
    that does not compile, with its file and line; a type two adapters bring, naming both)."""
    problems: list[tuple[str, str]] = []
    owners: dict[str, str] = {}
    versions: list[RecordTypeVersion] = []
    for kind, loaded in sorted(adapters.loaded.items()):
        for declared in loaded.adapter.catalogue():
            owner = owners.setdefault(declared.record_type, kind)
            if owner != kind:
                problems.append(
                    (
                        declared.record_type,
                        f"two adapters bring this record type: {owner!r} "
                        f"({adapters.loaded[owner].source}) and {kind!r} ({loaded.source})",
                    )
                )
                continue
            if any(v.record_type == declared.record_type and v.version == declared.version for v in versions):
                problems.append(
                    (f"{declared.record_type} v{declared.version}", f"{kind!r} declares it twice")
                )
                continue
            try:
                versions.append(compile_version(declared, kind))
            except _Refused as refused:
                problems.append((refused.where, refused.why))
    problems += _deprecation_problems(versions)
    if problems:
        raise ConfigError(SOURCE, problems)
    return Catalogue(versions)


def _deprecation_problems(versions: Sequence[RecordTypeVersion]) -> list[tuple[str, str]]:
    """A deprecated version needs a newer one to move to: the newest version of a type is never
    deprecated."""
    newest: dict[str, RecordTypeVersion] = {}
    for version in versions:
        if version.record_type not in newest or version.version > newest[version.record_type].version:
            newest[version.record_type] = version
    return [
        (
            str(version.source),
            f"version {version.version} of {name} is its newest, and cannot be deprecated: publishers "
            "would have no version to move to (add the next version first)",
        )
        for name, version in sorted(newest.items())
        if version.deprecated_until is not None
    ]


class _Refused(Exception):
    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where, self.why = where, why


def compile_version(declared: SchemaVersion, adapter: str) -> RecordTypeVersion:
    """One declared version, checked and compiled; `_Refused` says where (file:line) and why not."""
    path = declared.schema_file
    if not _RECORD_TYPE.match(declared.record_type):
        raise _Refused(str(path), f"record type {declared.record_type!r} is not dotted lower-case words")
    if declared.version < 1:
        raise _Refused(
            str(path), f"version {declared.version} of {declared.record_type}: versions start at 1"
        )
    if declared.content_type not in (JSON, PROTOBUF) or (declared.content_type == PROTOBUF) != bool(
        declared.message
    ):
        raise _Refused(
            str(path),
            f"content type is {JSON} or {PROTOBUF}, and a protobuf message goes with {PROTOBUF} only",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _Refused(str(path), f"cannot read the schema: {exc.strerror or exc}") from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", 1)
        raise _Refused(f"{path}:{line}", f"is not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise _Refused(f"{path}:1", "a schema is a JSON object")
    if schema.get("$schema") != DRAFT_2020_12:
        raise _Refused(f"{path}:{line_of(text, ['$schema'])}", f'"$schema" must be "{DRAFT_2020_12}"')
    try:
        _meta_checked(text)
    except SchemaError as exc:
        raise _Refused(
            f"{path}:{line_of(text, list(exc.absolute_path))}", f"not a valid schema: {exc.message}"
        ) from None
    for where, problem in _unsupported(schema, []):
        raise _Refused(f"{path}:{line_of(text, where)}", problem)
    explain = Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)
    try:
        decide = _fast_decider(text)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise _Refused(f"{path}:1", f"does not compile: {exc}") from None
    examples = schema.get("examples", [])
    if not examples:
        raise _Refused(f"{path}:1", "has no examples: the catalogue shows at least one")
    version = RecordTypeVersion(
        record_type=declared.record_type,
        version=declared.version,
        adapter=adapter,
        content_type=declared.content_type,
        message=declared.message,
        title=str(schema.get("title", declared.record_type)),
        description=str(schema.get("description", "")),
        schema=schema,
        schema_text=text,
        source=path,
        examples=tuple(examples),
        deprecated_until=declared.deprecated_until,
        _decide=decide,
        _explain=explain,
    )
    for index in range(len(examples)):
        try:
            payload = version.example_payloads()[index]
        except json_format.ParseError as exc:
            raise _Refused(
                f"{path}:{line_of(text, ['examples', index])}",
                f"example {index} is not a {version.message_type} message: {exc}",
            ) from None
        bad = version.violations(payload)
        if bad:
            raise _Refused(
                f"{path}:{line_of(text, ['examples', index])}",
                f"example {index} does not match the schema: {bad[0].field} {bad[0].description}",
            )
    return version


# A schema's meta-check and compilation are remembered per text: they are most of a hub's start (~0.2 s for
# the built-in adapters), and a process that starts many hubs (the tests start hundreds) repeats them.
# A failure is not remembered (`lru_cache` keeps only results), so a bad schema is refused every time.
@functools.lru_cache(maxsize=256)
def _meta_checked(text: str) -> None:
    Draft202012Validator.check_schema(json.loads(text))


@functools.lru_cache(maxsize=256)
def _fast_decider(text: str) -> Callable[[Any], Any]:
    draft_07 = {**json.loads(text), "$schema": "http://json-schema.org/draft-07/schema#"}
    decider: Callable[[Any], Any] = fastjsonschema.compile(draft_07, formats=_FAST_FORMATS)
    return decider


def _unsupported(schema: Any, path: list[Any]) -> Iterator[tuple[list[Any], str]]:
    """Keywords outside `KEYWORDS`, and formats outside `FORMATS`, anywhere in the schema."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        here = [*path, key]
        if key not in KEYWORDS:
            yield (
                here,
                f"keyword {key!r} is not one the hub validates with (supported: {', '.join(sorted(KEYWORDS))})",
            )
        elif key == "format" and value not in FORMATS:
            yield here, f"format {value!r} is unknown (known: {', '.join(FORMATS)})"
        elif key == "properties":
            for name, sub in value.items():
                yield from _unsupported(sub, [*here, name])
        elif key in _ONE_SCHEMA:
            yield from _unsupported(value, here)
        elif key in _SCHEMA_LISTS:
            for index, sub in enumerate(value):
                yield from _unsupported(sub, [*here, index])


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def line_of(text: str, path: Sequence[Any]) -> int:
    """The line of `text` (a JSON document) where the value at `path` starts; as far as the path leads."""

    def skip(pos: int) -> int:
        return _SPACE.match(text, pos).end()  # type: ignore[union-attr]  # the pattern matches anything

    pos = skip(0)  # where the value reached so far starts
    try:
        for step in path:
            if text[pos] == "{" and isinstance(step, str):
                cur = skip(pos + 1)
                while text[cur] == '"':
                    key, cur = _DECODER.raw_decode(text, cur)
                    cur = skip(skip(cur) + 1)  # past the colon
                    if key == step:
                        break
                    cur = skip(_DECODER.raw_decode(text, cur)[1])
                    if text[cur] == ",":
                        cur = skip(cur + 1)
                else:
                    break
                pos = cur
            elif text[pos] == "[" and isinstance(step, int):
                cur = skip(pos + 1)
                for _ in range(step):
                    cur = skip(_DECODER.raw_decode(text, cur)[1])
                    if text[cur] == ",":
                        cur = skip(cur + 1)
                if text[cur] == "]":
                    break
                pos = cur
            else:
                break
    except (IndexError, ValueError):
        pass
    return text.count("\n", 0, pos) + 1
