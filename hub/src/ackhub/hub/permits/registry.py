"""On-demand lookup in an issuer's own registry, for permits that were never pushed to the hub.

Answers (found and not found) are reused for `permits.registry_cache`, timed by the injected clock; an
unreachable registry is never cached, so the next verification asks again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import structlog

from ackhub.core.adapter import IssuerUnreachable, RegistryAnswer
from ackhub.core.clock import Clock
from ackhub.hub.permits.issuers import Issuer, Issuers

log = structlog.get_logger("ackhub.permits")


@dataclass(frozen=True)
class Lookup:
    """What the registries said about one (kind, number): an answer, not found (None), or unreachable."""

    answer: RegistryAnswer | None
    unreachable: str = ""  # why, when no registry could answer


class Registries:
    def __init__(self, issuers: Issuers, clock: Clock, cache_ms: int) -> None:
        self.issuers = issuers
        self.clock = clock
        self.cache_ms = cache_ms
        self._cache: dict[tuple[str, str, str], tuple[int, RegistryAnswer | None]] = {}
        self._client: httpx.AsyncClient | None = None

    def can_look_up(self, kind: str) -> bool:
        return bool(self.issuers.with_registry(kind))

    async def _ask(self, issuer: Issuer, kind: str, number: str) -> RegistryAnswer | None:
        key = (issuer.id, kind, number)
        now = self.clock.now_ms()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._client is None:
            self._client = httpx.AsyncClient()
        assert issuer.config.registry_url is not None
        try:
            answer = await asyncio.wait_for(
                issuer.adapter.lookup(self._client, issuer.config.registry_url, issuer.id, kind, number),
                timeout=issuer.config.registry_timeout / 1000,
            )
        except TimeoutError:
            raise IssuerUnreachable(
                issuer.id, f"no answer within {issuer.config.registry_timeout} ms"
            ) from None
        if len(self._cache) > 100_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self.cache_ms, answer)
        log.info(
            "permits.registry_lookup", issuer=issuer.id, kind=kind, number=number, found=answer is not None
        )
        return answer

    async def lookup(self, kind: str, number: str) -> Lookup:
        """Ask every issuer of `kind` that has a registry; the first that knows the permit wins."""
        unreachable: list[str] = []
        for issuer in self.issuers.with_registry(kind):
            try:
                answer = await self._ask(issuer, kind, number)
            except IssuerUnreachable as exc:
                log.warning("permits.registry_unreachable", issuer=issuer.id, why=exc.why)
                unreachable.append(str(exc))
                continue
            if answer is not None:
                return Lookup(answer)
        return Lookup(None, "; ".join(unreachable))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
