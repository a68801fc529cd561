"""The one text form of a moment in signed texts: RFC 3339, UTC, whole milliseconds."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


def to_rfc3339_ms(ms: int) -> str:
    """`2026-11-23T08:00:00.123Z`: the form used in signed acknowledgements."""
    return _utc_second(ms // 1000) + f"{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    """Each second's text made once (acknowledgements arrive in time order): formatting a datetime for
    every acknowledgement's canonical text was 2 % of the interpreter's time in a batched run."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def parse_rfc3339_ms(text: str) -> int:
    """Inverse of `to_rfc3339_ms`; raises ValueError for any other form."""
    if len(text) != 24 or not text.endswith("Z") or text[19] != ".":
        raise ValueError(f"not RFC 3339 UTC with milliseconds: {text!r}")
    moment = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000 + int(text[20:23])
