"""Injected time: the hub never reads the wall clock directly, so tests can move time by hand."""

from __future__ import annotations

import functools
import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to; safe to share between threads."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        with self._lock:
            self._now += ms
            return self._now


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
