"""Durations written the way people write them in configuration: `250ms`, `5s`, `10m`, `2h`, `1d`."""

from __future__ import annotations

import re

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """`1m30s` → 90000. Raises ValueError naming the text when it is not a duration."""
    cleaned = text.strip()
    position, total = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not cleaned or position != len(cleaned):
        raise ValueError(f"{text!r} is not a duration such as '500ms', '30s', '10m', '2h' or '1d'")
    return int(total)
