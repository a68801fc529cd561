"""Finding adapters: every entry point of the group `ackhub.adapters` names an `Adapter` subclass.

Each is checked against the interface when loaded; a broken one is reported by name with what is wrong
and the others still load (as pluggy does for plugins).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from ackhub.core.adapter import Adapter, PermitKind

GROUP = "ackhub.adapters"
_RECORD_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class Loaded:
    adapter: Adapter
    source: str  # "module:Class (distribution version)"


@dataclass
class Adapters:
    """The loaded adapters by kind, the broken ones by entry-point name, and every permit kind."""

    loaded: dict[str, Loaded] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    permit_kinds: dict[str, tuple[Adapter, PermitKind]] = field(default_factory=dict)

    def get(self, kind: str) -> Adapter | None:
        loaded = self.loaded.get(kind)
        return loaded.adapter if loaded else None

    def permit_kind(self, code: str) -> tuple[Adapter, PermitKind] | None:
        return self.permit_kinds.get(code)


def _problems(name: str, adapter: Adapter) -> list[str]:
    found: list[str] = []
    if getattr(adapter, "kind", None) != name:
        found.append(f"its kind is {getattr(adapter, 'kind', None)!r}, the entry point is named {name!r}")
    for record_type in adapter.record_types():
        if not _RECORD_TYPE.match(getattr(record_type, "name", "")):
            found.append(f"record type {getattr(record_type, 'name', None)!r} is not dotted lower-case words")
        if getattr(record_type, "direction", None) not in ("sends", "receives"):
            found.append(f"record type {record_type.name!r} has no direction (sends or receives)")
    for kind in adapter.permit_kinds():
        code = getattr(kind, "code", "")
        if not code.startswith(f"{name}."):
            found.append(f"permit kind {code!r} does not start with {name + '.'!r}")
    if adapter.permit_kinds() and adapter.usage_record_type() is None:
        found.append("it issues permits but names no usage record type")
    return found


def load(points: Iterable[EntryPoint] | None = None) -> Adapters:
    """Load every adapter of the group (or of `points`), never raising for a broken one."""
    result = Adapters()
    for point in sorted(entry_points(group=GROUP) if points is None else points, key=lambda p: p.name):
        try:
            target = point.load()
            if not (inspect.isclass(target) and issubclass(target, Adapter)):
                raise TypeError(f"{point.value} is not a subclass of ackhub.core.adapter.Adapter")
            adapter = target()
            problems = _problems(point.name, adapter)
            if problems:
                raise TypeError("; ".join(problems))
            if point.name in result.loaded:
                raise TypeError(
                    f"kind {point.name!r} is already provided by {result.loaded[point.name].source}"
                )
            clashes = [k.code for k in adapter.permit_kinds() if k.code in result.permit_kinds]
            if clashes:
                raise TypeError(f"permit kinds {clashes} are already provided")
        except Exception as exc:  # a plugin may fail in any way; it must not stop the others
            result.broken[point.name] = f"{type(exc).__name__}: {exc}"
            continue
        dist = point.dist
        origin = f" ({dist.name} {dist.version})" if dist is not None else ""
        result.loaded[point.name] = Loaded(adapter, f"{point.value}{origin}")
        for kind in adapter.permit_kinds():
            result.permit_kinds[kind.code] = (adapter, kind)
    return result
