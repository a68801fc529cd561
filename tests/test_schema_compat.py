"""Schema evolution within a version: what `scripts/check_schemas.py` (in `make lint`) lets through and
what it refuses, on the released export declaration's real schema."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ackhub.hub.exchange.schema_compat import incompatibilities

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "adapters" / "src" / "ackhub" / "adapters" / "schemas"
SCHEMA = json.loads(
    (
        ROOT
        / "adapters"
        / "src"
        / "ackhub"
        / "adapters"
        / "schemas"
        / "customs.export_declaration.released.v1.json"
    ).read_text(encoding="utf-8")
)


def _changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    new = copy.deepcopy(SCHEMA)
    change(new)
    return new


def _goods(schema: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = schema["properties"]["goods"]["items"]
    return item


COMPATIBLE: dict[str, Callable[[dict[str, Any]], None]] = {
    "a new optional field (unknown fields were refused)": lambda s: s["properties"].update(
        {"gross_weight_kg": {"type": "number"}}
    ),
    "an enum gains a value": lambda s: s["properties"]["incoterm"]["enum"].append("DAT"),
    "a limit relaxed": lambda s: s["properties"]["goods"].update(maxItems=99),
    "a pattern removed": lambda s: s["properties"]["trade_mode"].pop("pattern"),
    "a field no longer required": lambda s: s["required"].remove("trade_mode"),
    "descriptions and examples reworded": lambda s: s.update(description="changed", examples=[]),
}
INCOMPATIBLE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a new required field": (lambda s: s["required"].append("remarks"), "required"),
    "an enum loses a value": (
        lambda s: s["properties"]["incoterm"]["enum"].remove("EXW"),
        "properties.incoterm.enum",
    ),
    "a type narrowed": (
        lambda s: _goods(s)["properties"]["quantity"].update(type="integer"),
        "properties.goods.items.properties.quantity.type",
    ),
    "a pattern changed": (
        lambda s: s["properties"]["customs_office"].update(pattern="^0[0-9]{3}$"),
        "properties.customs_office.pattern",
    ),
    "a limit tightened": (
        lambda s: s["properties"]["goods"].update(maxItems=20),
        "properties.goods.maxItems",
    ),
    "a field removed while unknown fields are refused": (
        lambda s: s["properties"].pop("remarks"),
        "properties",
    ),
    "a format added": (
        lambda s: s["properties"]["customs_office"].update(format="hs-code"),
        "properties.customs_office.format",
    ),
}


@pytest.mark.parametrize("change", COMPATIBLE.values(), ids=list(COMPATIBLE))
def test_compatible_changes_pass(change: Callable[[dict[str, Any]], None]) -> None:
    """Changes under which every payload the old schema accepted is still accepted: no problem."""
    assert list(incompatibilities(SCHEMA, _changed(change))) == []


@pytest.mark.parametrize(("change", "where"), INCOMPATIBLE.values(), ids=list(INCOMPATIBLE))
def test_incompatible_changes_are_named_by_their_place(
    change: Callable[[dict[str, Any]], None], where: str
) -> None:
    """Changes that refuse a payload the old schema accepted: reported at their path in the new schema."""
    found = list(incompatibilities(SCHEMA, _changed(change)))
    assert [".".join(map(str, path)) for path, _ in found] == [where], found


def test_the_committed_schemas_are_compatible_with_the_last_commit() -> None:
    """`scripts/check_schemas.py --against HEAD` (what `make lint` runs against main) passes."""
    done = subprocess.run(
        [sys.executable, "scripts/check_schemas.py", "--against", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
