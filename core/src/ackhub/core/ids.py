"""Time-ordered identifiers (UUID version 7, RFC 9562) so new rows land at the end of their indexes."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0
_RAND_BITS = 74  # 12 bits rand_a + 62 bits rand_b


def new_id(now_ms: int | None = None) -> str:
    """A UUIDv7 string; strictly increasing within this process even when the clock stands still."""
    global _last
    ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    with _lock:
        counter = (ms << _RAND_BITS) | (int.from_bytes(os.urandom(10), "big") >> (80 - _RAND_BITS))
        counter = max(counter, _last + 1)
        _last = counter
    stamp = counter >> _RAND_BITS
    rand_a = (counter >> 62) & 0xFFF
    rand_b = counter & ((1 << 62) - 1)
    return str(uuid.UUID(int=(stamp << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b))
