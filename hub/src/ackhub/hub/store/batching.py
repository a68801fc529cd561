"""Group commit: work that arrives while the database is busy shares the next transaction.

A `GroupCommit` has lanes, one per kind of work (publishing, acknowledging, claiming deliveries to
send). Each time the database is free, everything waiting in every lane goes into one transaction: each
lane's step runs over its items, lanes in ascending `order`, and one commit (one fsync on SQLite) settles
them all. A step handles its batch all at once (a `BatchStep`, which answers each item with its outcome
or its refusal) or one by one (`one_by_one(step)`). A refusal is an `AckhubError` raised *before the item
writes anything*, so it is that item's answer and the others still commit.

Any other failure fails the whole transaction (nothing of it was confirmed to anyone); a unique-constraint
race with another hub process is retried item by item, each in its own transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import structlog
from sqlmodel import Session

from ackhub.core.errors import AckhubError
from ackhub.hub.store.bulk import Read, prefetch
from ackhub.hub.store.db import Database, is_transient, is_unique_race

log = structlog.get_logger("ackhub.store")
DEADLOCK_TRIES = 3  # tries of a transaction that PostgreSQL chose as a deadlock's victim
PG_IN_FLIGHT = 2  # group commits at once on PostgreSQL (measured: docs/performance.md)
I = TypeVar("I")  # noqa: E741 (item)
O = TypeVar("O")  # noqa: E741 (outcome)


BatchStep = Callable[[Session, list[I]], list[O | AckhubError]]
# The reads a lane's step will make for a batch that depend neither on each other's answers nor on what
# the lanes before it write: read ahead together at the start of the transaction (`bulk.prefetch`).
ReadsOf = Callable[[list[I]], list[Read]]


def one_by_one(step: Callable[[Session, I], O]) -> BatchStep[I, O]:
    """A batch step that runs `step` on each item in turn, keeping each refusal as that item's answer."""

    def run(session: Session, items: list[I]) -> list[O | AckhubError]:
        outcomes: list[O | AckhubError] = []
        for item in items:
            try:
                outcomes.append(step(session, item))
            except AckhubError as refusal:
                outcomes.append(refusal)
        return outcomes

    return run


class Lane(Generic[I, O]):
    """One kind of work of a `GroupCommit`; `submit` waits until the item's transaction committed."""

    def __init__(
        self, group: GroupCommit, step: BatchStep[I, O], order: int, reads: ReadsOf[I] | None = None
    ) -> None:
        self.group = group
        self.step = step
        self.order = order
        self.reads = reads
        self.pending: list[tuple[I, asyncio.Future[O]]] = []

    async def submit(self, item: I) -> O:
        return await self.enqueue(item)

    def enqueue(self, item: I) -> asyncio.Future[O]:
        """Queue `item` for the next transaction now, in this turn of the event loop; the future settles
        once it committed (or was refused)."""
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        self.group.kick()
        return future


# A lane's share of one transaction: its step, the items taken and the reads it can make ahead.
_Work = tuple[BatchStep[Any, Any], list[Any], ReadsOf[Any] | None]


class GroupCommit:
    def __init__(self, db: Database, max_batch: int = 256, in_flight: int | None = None) -> None:
        """On SQLite one transaction at a time: what arrives while it runs shares the next. (Two at once
        kept SQLite's database thread from waiting for the event loop between them, but the second one
        formed at once, with whatever was waiting, so transactions were smaller and more: 12 % more hub
        CPU one record at a time in bench/exchange.py, see docs/performance.md.)

        On PostgreSQL up to `in_flight` (default `PG_IN_FLIGHT`) at once, each on a database thread and
        connection of its own: a transaction there is mostly waiting for the server's answers (a round
        trip per statement, then the commit's WAL flush), so one at a time left the hub idle and the
        publishers waiting (docs/performance.md). Their rows cannot collide unnoticed: acknowledgements
        lock their deliveries in one order, claims skip locked rows, and a deadlock or a unique-key race
        with another transaction is retried (`_run`)."""
        self.db = db
        self.max_batch = max_batch  # items per lane per transaction
        self.max_in_flight = in_flight or (1 if db.is_sqlite else PG_IN_FLIGHT)
        self._lanes: list[Lane[Any, Any]] = []
        self._in_flight = 0
        self._scheduled = False
        self._committing: set[asyncio.Task[None]] = set()  # referenced until done

    def lane(self, step: BatchStep[I, O], order: int = 0, reads: ReadsOf[I] | None = None) -> Lane[I, O]:
        """A new lane; within each transaction, lanes run in ascending `order`. `reads`: what its step
        will read that can be read ahead, with every other lane's, in one round trip at the start."""
        lane: Lane[I, O] = Lane(self, step, order, reads)
        self._lanes.append(lane)
        self._lanes.sort(key=lambda each: each.order)
        return lane

    def kick(self) -> None:
        """Form a transaction at the end of this turn of the event loop (so that everything queued in
        the same turn shares it), unless as many as may be are running (then the end of one forms the
        next)."""
        if not self._scheduled and self._in_flight < self.max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._form)

    def _form(self) -> None:
        self._scheduled = False
        if self._in_flight >= self.max_in_flight or not any(lane.pending for lane in self._lanes):
            return
        taken: list[list[tuple[Any, asyncio.Future[Any]]]] = []
        work: list[_Work] = []
        for lane in self._lanes:
            if lane.pending:
                batch, lane.pending = lane.pending[: self.max_batch], lane.pending[self.max_batch :]
                taken.append(batch)
                work.append((lane.step, [item for item, _ in batch], lane.reads))
        self._in_flight += 1
        task = asyncio.create_task(self._commit(taken, work))
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    async def _commit(self, taken: list[list[tuple[Any, asyncio.Future[Any]]]], work: list[_Work]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self.db.run(self._run, work)
        except Exception as exc:  # the transaction failed: every caller in it hears so
            for batch in taken:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            return
        finally:
            self._in_flight -= 1
            self.kick()
        log.debug(
            "store.group_commit",
            items=[len(items) for _, items, _ in work],
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        for batch, lane_outcomes in zip(taken, outcomes, strict=True):
            for (_, future), outcome in zip(batch, lane_outcomes, strict=True):
                if future.done():
                    continue  # the caller went away (cancelled RPC)
                if isinstance(outcome, AckhubError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _run(self, work: list[_Work], tries: int = DEADLOCK_TRIES) -> list[list[Any]]:
        try:
            return self._in_one_transaction(work)
        except Exception as failure:
            if is_transient(failure) and tries > 1:  # rolled back whole: nothing of it happened
                log.info("store.retry", why=type(failure).__name__)
                return self._run(work, tries - 1)
            if not is_unique_race(failure):
                raise
            if sum(len(items) for _, items, _ in work) == 1:
                return self._in_one_transaction(work)  # the race is over: the step now sees the winner
            return [
                [self._run([(step, [item], reads)])[0][0] for item in items] for step, items, reads in work
            ]

    def _in_one_transaction(self, work: list[_Work]) -> list[list[Any]]:
        with self.db.transaction() as session:
            if not self.db.is_sqlite:
                prefetch(session, [read for _, items, reads in work if reads for read in reads(items)])
            return [step(session, items) for step, items, _ in work]


class Batcher(Generic[I, O]):
    """A group commit with a single lane, for work that shares transactions only with its own kind."""

    def __init__(self, db: Database, step: BatchStep[I, O], max_batch: int = 256) -> None:
        self._lane = GroupCommit(db, max_batch).lane(step)

    async def submit(self, item: I) -> O:
        return await self._lane.submit(item)
