"""Idempotent mutating calls (AIP-155), one mechanism for every RPC that has no natural key of its own.

A call made with a `request_id` is remembered as (caller, rpc, request_id) → the SHA-256 of the request
(without its request_id) and the serialized response, in the same transaction as the change it made:
either both are committed or neither is, so a retry after a lost answer or a crash never applies the
change twice. The same request again answers the stored response, whatever happened since (the case may
have been noted on, the permit amended); the same id with another request is ALREADY_EXISTS
`REQUEST_ID_REUSED` and changes nothing. A refused call stores nothing: it may be retried as it is.

Ids are scoped by caller and method: two operators, or one operator's ResolveEscalation and
AddEscalationNote, never collide. Calls without a request_id are not remembered (each is applied).

PublishRecord, CreatePermit, AmendPermit and DrawDownPermit keep their own keys (the record's or the
draw-down's request id, the permit's signed content), which predate this table and answer the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from ackhub.core.errors import AlreadyExists
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import IdempotentRequestRow

log = structlog.get_logger("ackhub.store")
M = TypeVar("M", bound=Message)
T = TypeVar("T")


@dataclass(frozen=True)
class Key:
    """Who asked what under which id, and the digest of the request's content."""

    caller: str
    rpc: str
    request_id: str
    digest: str


def key_of(caller: str, rpc: str, request_id: str, request: Message) -> Key | None:
    """The key of `request` (a message whose `request_id` field holds `request_id`), or None when it
    carries no id. The digest covers every other field, in protobuf's deterministic encoding."""
    if not request_id:
        return None
    content = type(request)()
    content.CopyFrom(request)
    content.ClearField("request_id")
    digest = hashlib.sha256(content.SerializeToString(deterministic=True)).hexdigest()
    return Key(caller, rpc, request_id, digest)


@dataclass(frozen=True)
class Outcome(Generic[M, T]):
    """The response, and what the change left to do after its commit (None on a replay: nothing)."""

    response: M
    after: T | None

    @property
    def replayed(self) -> bool:
        return self.after is None


def _stored(db: Database, key: Key, response_type: type[M]) -> M | None:
    with db.transaction() as session:
        row = session.exec(
            select(IdempotentRequestRow).where(
                IdempotentRequestRow.caller == key.caller,
                IdempotentRequestRow.rpc == key.rpc,
                IdempotentRequestRow.request_id == key.request_id,
            )
        ).first()
        if row is None:
            return None
        if row.request_digest != key.digest:
            raise AlreadyExists(
                f"request {key.request_id!r} was already used for a different {key.rpc} request by "
                f"{key.caller}; use a new request_id for a new request",
                reason="REQUEST_ID_REUSED",
                metadata={
                    "request_id": key.request_id,
                    "rpc": key.rpc,
                    "stored_digest": f"sha256:{row.request_digest}",
                    "request_digest": f"sha256:{key.digest}",
                },
            )
        return response_type.FromString(row.response)


def once(
    db: Database,
    key: Key | None,
    response_type: type[M],
    change: Callable[[], tuple[M, T]],
    now_ms: int,
) -> Outcome[M, T]:
    """Run on a database thread: `change` (which opens `db.transaction()` as usual, and so joins this
    one) and the record of its response commit together; a key already recorded answers its response
    without calling `change`. Two identical calls racing: the second's insert fails on the key, its
    transaction (change included) is rolled back, and it answers the first's response."""
    if key is None:
        response, after = change()
        return Outcome(response, after)
    for turn in range(2):
        try:
            with db.transaction() as session:
                stored = _stored(db, key, response_type)
                if stored is not None:
                    return Outcome(stored, None)
                response, after = change()
                session.add(
                    IdempotentRequestRow(
                        caller=key.caller,
                        rpc=key.rpc,
                        request_id=key.request_id,
                        request_digest=key.digest,
                        response=response.SerializeToString(deterministic=True),
                        created_ms=now_ms,
                    )
                )
            return Outcome(response, after)
        except IntegrityError:  # another process or thread committed the same key first: answer its
            if turn:  # response (or refuse a different request) on the next turn
                raise
            log.debug("idempotency.raced", rpc=key.rpc, request_id=key.request_id, caller=key.caller)
    raise AssertionError("unreachable")  # pragma: no cover
