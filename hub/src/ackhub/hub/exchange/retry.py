"""Retry timing: how long an attempt waits for its acknowledgement before the next one is due."""

from __future__ import annotations

import random

from ackhub.hub.config import RetryPolicy


def attempt_wait_ms(policy: RetryPolicy, attempt: int, escalated: bool, rng: random.Random) -> int:
    """Exponential backoff with ± jitter for attempt number `attempt` (1-based); slower once escalated."""
    if escalated:
        base = float(policy.escalated_interval or policy.max_interval)
    else:
        base = min(policy.first_interval * policy.multiplier ** (attempt - 1), float(policy.max_interval))
    spread = base * policy.jitter
    return max(1, int(base + rng.uniform(-spread, spread)))
