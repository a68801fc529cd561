"""Group commit: requests that arrive while the database is busy share the next transaction.

The batch's items are handled inside one transaction, either all at once (a `BatchStep`, which answers
each item with its outcome or its refusal) or one by one (`one_by_one(step)`). A refusal is an
`AckhubError` raised *before the item writes anything*, so it is that item's answer and the others still
commit.
Any other failure fails the whole batch (nothing of it was confirmed to anyone); a unique-constraint race
with another hub process is retried item by item, each in its own transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from hub.errors import AckhubError
from hub.store.db import Database

I = TypeVar("I")  # noqa: E741 (item)
O = TypeVar("O")  # noqa: E741 (outcome)


BatchStep = Callable[[Session, list[I]], list[O | AckhubError]]


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


class Batcher(Generic[I, O]):
    def __init__(self, db: Database, step: BatchStep[I, O], max_batch: int = 256) -> None:
        self.db = db
        self.step = step
        self.max_batch = max_batch
        self._pending: list[tuple[I, asyncio.Future[O]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> O:
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            items = [item for item, _ in batch]
            try:
                outcomes = await self.db.run(self._run, items)
            except Exception as exc:  # the transaction failed: every caller in it hears so
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # the caller went away (cancelled RPC)
                if isinstance(outcome, AckhubError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _run(self, items: list[I]) -> list[O | AckhubError]:
        try:
            return self._in_one_transaction(items)
        except IntegrityError:
            if len(items) == 1:
                return self._in_one_transaction(items)  # the race is over: the step now sees the winner
            return [self._run([item])[0] for item in items]

    def _in_one_transaction(self, items: list[I]) -> list[O | AckhubError]:
        with self.db.transaction() as session:
            return self.step(session, items)
