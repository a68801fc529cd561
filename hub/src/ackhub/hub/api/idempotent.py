"""The servicers' side of idempotent mutating calls: the request_id checked, then the change and the record
of its answer committed together (ackhub.hub.store.idempotency)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from ackhub.hub.exchange.validation import Violations
from ackhub.hub.store import idempotency
from ackhub.hub.store.db import Database

M = TypeVar("M", bound=Message)
T = TypeVar("T")


async def once(
    db: Database,
    now_ms: int,
    actor: str,
    rpc: str,
    request: Any,
    response_type: type[M],
    change: Callable[[], tuple[M, T]],
) -> idempotency.Outcome[M, T]:
    """`change` (on a database thread) and, with a request_id, the record of its answer, committed
    together; a replay answers the first response."""
    if request.request_id:
        bad = Violations()
        bad.uuid("request_id", request.request_id)
        bad.raise_if_any()
    key = idempotency.key_of(actor, rpc, request.request_id, request)
    return await db.run(idempotency.once, db, key, response_type, change, now_ms)
