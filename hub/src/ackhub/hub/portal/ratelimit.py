"""Rate limits per client address for the portal's sign-in and proof verification: a token bucket per
(purpose, address) kept in the database, so every hub process sharing it counts the same attempts.

A bucket refills at `rate_per_minute` up to `burst`; one attempt takes one token. A bucket left alone long
enough to be full again is indistinguishable from no bucket, so those rows are deleted (at most once a
minute per process, through their `updated_ms` index): the table holds only clients seen lately, however
many addresses have come by."""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import col, select

from ackhub.core.clock import Clock
from ackhub.hub.store.db import Database, is_unique_race
from ackhub.hub.store.portal_models import RateBucketRow

PRUNE_EVERY_MS = 60_000


class RateLimiter:
    def __init__(self, db: Database, clock: Clock, per_minute: float, burst: int) -> None:
        self.db = db
        self.clock = clock
        self.per_ms = per_minute / 60_000
        self.burst = float(burst)
        self.idle_ms = int(self.burst / self.per_ms) + 1  # time for an empty bucket to be full again
        self._pruned_ms = 0

    async def allow(self, key: str) -> bool:
        """Take a token from `key`'s bucket; False when it is empty (the attempt is refused)."""
        return await self.db.run(self._take, key[:200], self.clock.now_ms())

    def _take(self, key: str, now_ms: int) -> bool:
        for _ in range(2):  # a second try when another process created the same bucket meanwhile
            try:
                return self._take_once(key, now_ms)
            except Exception as error:
                if not is_unique_race(error):
                    raise
        return self._take_once(key, now_ms)

    def _take_once(self, key: str, now_ms: int) -> bool:
        with self.db.transaction() as session:
            if now_ms - self._pruned_ms >= PRUNE_EVERY_MS:
                self._pruned_ms = now_ms
                session.exec(
                    delete(RateBucketRow).where(col(RateBucketRow.updated_ms) < now_ms - self.idle_ms)
                )
            bucket = session.exec(
                select(RateBucketRow).where(RateBucketRow.key == key).with_for_update()
            ).first()
            if bucket is None:
                session.add(RateBucketRow(key=key, tokens=self.burst - 1, updated_ms=now_ms))
                return True
            tokens = min(self.burst, bucket.tokens + max(0, now_ms - bucket.updated_ms) * self.per_ms)
            allowed = tokens >= 1
            bucket.tokens = tokens - 1 if allowed else tokens
            bucket.updated_ms = now_ms
            session.add(bucket)
            return allowed

    def forget_idle(self, now_ms: int) -> int:
        """Delete the buckets that are full again; returns how many (for tests and the sweep)."""
        with self.db.transaction() as session:
            stale = delete(RateBucketRow).where(col(RateBucketRow.updated_ms) < now_ms - self.idle_ms)
            return int(session.connection().execute(stale).rowcount or 0)
