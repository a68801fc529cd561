"""A circuit breaker per recipient: after `failure_threshold` unanswered attempts in a row the hub stops
sending to it for a cooldown (doubling up to `max_cooldown`), then sends one probe; an acknowledgement
closes the circuit and the backlog goes out in order. State is per hub process."""

from __future__ import annotations

from dataclasses import dataclass

from hub.config import Breaker as BreakerSettings

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"


@dataclass
class CircuitBreaker:
    settings: BreakerSettings
    state: str = CLOSED
    failures: int = 0
    open_until_ms: int = 0
    cooldown_ms: int = 0
    probe_out: bool = False

    def allowance(self, now_ms: int, wanted: int) -> int:
        """How many of `wanted` attempts may go now."""
        if self.state == OPEN and now_ms >= self.open_until_ms:
            self.state, self.probe_out = HALF_OPEN, False
        if self.state == CLOSED:
            return wanted
        if self.state == HALF_OPEN and not self.probe_out:
            return min(1, wanted)
        return 0

    def sent(self, count: int) -> None:
        if self.state == HALF_OPEN and count:
            self.probe_out = True

    def unanswered(self, count: int, now_ms: int) -> None:
        """`count` earlier attempts went unanswered (found when they came due again)."""
        if count == 0:
            return
        self.failures += count
        if self.state == HALF_OPEN or self.failures >= self.settings.failure_threshold:
            self.cooldown_ms = (
                min(self.cooldown_ms * 2, self.settings.max_cooldown)
                if self.state == HALF_OPEN
                else self.settings.cooldown
            )
            self.state, self.open_until_ms, self.probe_out = OPEN, now_ms + self.cooldown_ms, False

    def answered(self) -> None:
        self.state, self.failures, self.cooldown_ms, self.probe_out = CLOSED, 0, 0, False


class Breakers:
    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self._by_agency: dict[str, CircuitBreaker] = {}

    def __getitem__(self, agency: str) -> CircuitBreaker:
        breaker = self._by_agency.get(agency)
        if breaker is None:
            breaker = self._by_agency[agency] = CircuitBreaker(self.settings)
        return breaker

    def states(self) -> dict[str, str]:
        return {agency: b.state for agency, b in self._by_agency.items()}
