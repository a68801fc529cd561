"""Whether a change to one version of a record type's schema is backward compatible: every payload the old
schema accepted, the new one must accept too (publishers built against a version keep working). The JSON
Schema counterpart of `buf breaking`, run by `scripts/check_schemas.py` in `make lint`.

The check is structural and conservative: what it cannot prove compatible (a changed pattern, a changed
`allOf`) it reports. An incompatible change is a new version: a new file `<type>.v<N+1>.json`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated"}
)
_LOWER = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")  # may only go down
_UPPER = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")  # may only go up
_EXACT = (
    "pattern",
    "format",
    "multipleOf",
    "uniqueItems",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
)
Problem = tuple[list[Any], str]  # (path in the new schema, why)


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None
    found = {kind} if isinstance(kind, str) else set(kind)
    return found | {"integer"} if "number" in found else found


def incompatibilities(old: Any, new: Any, path: list[Any] | None = None) -> Iterator[Problem]:
    """What in `new` refuses a payload `old` accepted, each with its path in `new`."""
    path = path or []
    if old is True or old == {}:  # any value was accepted here
        if new is False or (isinstance(new, Mapping) and set(new) - ANNOTATIONS):
            yield path, "constrains a value that any value was accepted for before"
        return
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        if old != new and new is not True:
            yield path, "a boolean schema changed"
        return
    old_types, new_types = _types(old), _types(new)
    if new_types is not None and (old_types is None or not old_types <= new_types):
        yield [*path, "type"], f"type narrowed from {sorted(old_types or ['any'])} to {sorted(new_types)}"
    if "enum" in new and (
        "enum" not in old or not set(map(repr, old["enum"])) <= set(map(repr, new["enum"]))
    ):
        yield [*path, "enum"], "enum lost values (or was added): an enum may only gain values"
    if "const" in new and old.get("const", object()) != new["const"]:
        yield [*path, "const"], "const added or changed"
    added = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    if added:
        yield [*path, "required"], f"newly required: {', '.join(added)} (add optional fields only)"
    for key in _LOWER:
        if key in new and (key not in old or new[key] > old[key]):
            yield [*path, key], f"{key} raised (or added) to {new[key]}"
    for key in _UPPER:
        if key in new and (key not in old or new[key] < old[key]):
            yield [*path, key], f"{key} lowered (or added) to {new[key]}"
    for key in _EXACT:
        if key in new and old.get(key) != new[key]:
            yield [*path, key], f"{key} added or changed (only removing it is surely compatible)"
    yield from _properties(old, new, path)
    if "items" in new:
        yield from incompatibilities(old.get("items", True), new["items"], [*path, "items"])


def _properties(old: Mapping[str, Any], new: Mapping[str, Any], path: list[Any]) -> Iterator[Problem]:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_extra, new_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
    if new_extra is False and old_extra is not False:
        yield (
            [*path, "additionalProperties"],
            "additionalProperties became false: unknown fields were accepted",
        )
    for name, schema in new_props.items():
        where = [*path, "properties", name]
        if name in old_props:
            yield from incompatibilities(old_props[name], schema, where)
        elif old_extra is not False:  # any value was accepted under this name; the new schema constrains it
            yield from incompatibilities(old_extra, schema, where)
    for name in old_props:
        if name not in new_props and new_extra is False:
            yield [*path, "properties"], f"property {name!r} removed while unknown fields are refused"
