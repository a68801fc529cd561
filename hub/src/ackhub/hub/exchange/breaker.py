"""A circuit breaker per recipient: after `failure_threshold` unanswered attempts in a row the hub stops
sending to it for a cooldown, then sends one probe; an acknowledgement closes the circuit and the backlog
goes out in order, while an unanswered probe opens it again for twice as long (up to `max_cooldown`).
State is per hub process."""

from __future__ import annotations

from dataclasses import dataclass

from ackhub.hub.config import Breaker as BreakerSettings

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"


@dataclass
class CircuitBreaker:
    settings: BreakerSettings
    state: str = CLOSED
    failures: int = 0
    open_until_ms: int = 0
    cooldown_ms: int = 0
    probe_expires_ms: int | None = None  # set while the half-open probe awaits its answer
    closed_since_ms: int = 0  # attempts sent before this cannot count against the circuit

    def allowance(self, now_ms: int, wanted: int) -> int:
        """How many of `wanted` attempts may go now."""
        if self.state == OPEN and now_ms >= self.open_until_ms:
            self.state, self.probe_expires_ms = HALF_OPEN, None
        if self.state == HALF_OPEN and self.probe_expires_ms is not None and now_ms >= self.probe_expires_ms:
            self._open(now_ms, longer=True)
        if self.state == CLOSED:
            return wanted
        if self.state == HALF_OPEN and self.probe_expires_ms is None:
            return min(1, wanted)
        return 0

    def sent(self, count: int, expires_ms: int) -> None:
        if self.state == HALF_OPEN and count:
            self.probe_expires_ms = expires_ms

    def unanswered(self, sent_ms: list[int], now_ms: int) -> None:
        """Attempts sent at `sent_ms` went unanswered (found when they came due again). Only those sent
        while the circuit was closed count; while it is not closed, only the probe's fate decides."""
        if self.state != CLOSED:
            return
        self.failures += sum(1 for sent in sent_ms if sent >= self.closed_since_ms)
        if self.failures >= self.settings.failure_threshold:
            self._open(now_ms, longer=False)

    def answered(self, now_ms: int) -> None:
        if self.state != CLOSED:
            self.closed_since_ms = now_ms
        self.state, self.failures, self.cooldown_ms, self.probe_expires_ms = CLOSED, 0, 0, None

    def _open(self, now_ms: int, longer: bool) -> None:
        self.cooldown_ms = (
            min(self.cooldown_ms * 2, self.settings.max_cooldown) if longer else self.settings.cooldown
        )
        self.state, self.open_until_ms, self.probe_expires_ms = OPEN, now_ms + self.cooldown_ms, None


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
