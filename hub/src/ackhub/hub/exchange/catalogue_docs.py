"""docs/record-types.md, rendered from the catalogue the hub serves (`scripts/gen_record_types.py` writes
it; tests/test_catalogue.py fails when the committed page and the catalogue differ)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ackhub.hub.exchange.catalogue import MAX_VIOLATIONS, Catalogue, RecordTypeVersion

ROOT = Path(__file__).resolve().parents[5]  # the repository
HEADER = f"""# Record types

<!-- Generated from the record type catalogue by scripts/gen_record_types.py: do not edit by hand. -->

Every record type the hub routes has a published, versioned schema, brought by the adapter of the
authority that defines it. `PublishRecord` checks each payload against the version of its type the
publisher names in `schema_version` (unset: the type's first version) before anything is stored, and stores the version
with the record (`Record.schema_version`); a payload that does not match is `INVALID_ARGUMENT` with reason
`PAYLOAD_INVALID` and one `BadRequest` field violation per problem (the first {MAX_VIOLATIONS}), whose field
is a path into the payload, e.g. `payload.goods[0].hs_code`. A content type other than the type's is
refused on `content_type`; an empty one is stored as the type's. The same catalogue is served by
`ackhub.v1.CatalogueService` (`ListRecordTypes`, `GetRecordType`), schemas and examples included.

Schemas are JSON Schema 2020-12 documents (for a binary type, of the protobuf JSON mapping of its message,
field names as in the .proto). Formats the hub checks beyond JSON Schema's own: `uscc` (GB 32100-2015,
check character verified), `declaration-number` (18 digits: office, year, import 1 / export 0, sequence),
`hs-code` (6, 8, 10 or 13 digits), `date-time` (RFC 3339 with a zone) and `date` (`YYYY-MM-DD`).
How schemas may change within a version, when a change is a new version, how long a deprecated version
is still taken and which versions each recipient takes: [schema-evolution.md](schema-evolution.md).
"""


def render(catalogue: Catalogue) -> str:
    lines = [
        HEADER,
        "| record type | brought by | current version | content type | what it is |",
        "|---|---|---|---|---|",
    ]
    for name in catalogue.record_types():
        current = catalogue.current(name)
        assert current is not None
        lines.append(
            f"| [`{name}`](#{_anchor(name)}) | {current.adapter} | {current.version} | "
            f"`{current.content_type}` | {current.title} |"
        )
    for name in catalogue.record_types():
        lines += ["", f"## `{name}`"]
        for version in catalogue.versions(name):
            lines += list(_version(version))
    return "\n".join(lines) + "\n"


def _anchor(name: str) -> str:
    return name.replace(".", "")


def _version(version: RecordTypeVersion) -> Iterator[str]:
    source = version.source.resolve()
    shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source.name
    yield ""
    yield f"### Version {version.version}: {version.title}"
    yield ""
    yield version.description
    yield ""
    carried = f"`{version.content_type}`"
    if version.message_type:
        carried += f", the bytes of a `{version.message_type}` message"
    yield f"Brought by the `{version.adapter}` adapter; payloads are {carried}. Schema: `{shown}`."
    if version.deprecated_until is not None:
        yield ""
        yield (
            f"**Deprecated**: taken until {version.deprecated_until.isoformat()} (China Standard Time), with "
            "the deprecation in each receipt; refused from the next day (`SCHEMA_VERSION_RETIRED`). Publish "
            "a newer version."
        )
    yield ""
    yield "| field | type | required | rules | meaning |"
    yield "|---|---|---|---|---|"
    yield from _fields(version.schema, "")
    for index, example in enumerate(version.examples, start=1):
        yield ""
        label = "Example" if len(version.examples) == 1 else f"Example {index}"
        yield f"{label}{' (JSON mapping)' if version.message_type else ''}:"
        yield ""
        yield "```json"
        yield json.dumps(example, ensure_ascii=False, indent=2)
        yield "```"


def _fields(schema: Mapping[str, Any], prefix: str) -> Iterator[str]:
    required = set(schema.get("required", []))
    conditional: dict[str, list[str]] = {}  # required only when another field has a value (if/then)
    for condition in schema.get("allOf", []):
        when = condition.get("if", {}).get("properties", {})
        for name in condition.get("then", {}).get("required", []):
            conditional.setdefault(name, []).extend(
                f"when `{k}` is `{t.get('const')}`" for k, t in when.items()
            )
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        kind = sub.get("type", "")
        if not kind and all(isinstance(v, str) for v in sub.get("enum", [None])):
            kind = "string"
        if kind == "array":
            kind = f"array of {sub.get('items', {}).get('type', 'values')}"
        needed = "yes" if name in required else "; ".join(conditional.get(name, [])) or "no"
        yield f"| `{path}` | {kind or 'value'} | {needed} | {_rules(sub)} | {sub.get('description', '')} |"
        if sub.get("type") == "object":
            yield from _fields(sub, f"{path}.")
        elif sub.get("type") == "array" and sub.get("items", {}).get("type") == "object":
            yield from _fields(sub["items"], f"{path}[].")


def _rules(schema: Mapping[str, Any]) -> str:
    found: list[str] = []
    if "enum" in schema:
        found.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "format" in schema:
        found.append(f"format `{schema['format']}`")
    if "pattern" in schema:
        found.append(f"`{schema['pattern']}`".replace("|", "\\|"))
    for key, words in (
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("minimum", "≥ {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "≤ {}"),
    ):
        if key in schema:
            found.append(words.format(schema[key]))
    return "; ".join(found)
