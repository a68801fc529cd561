"""Checking acknowledgement signatures off the event loop and off the database thread.

A signature check needs only the acknowledgement and its recipient's registered key, not the store, so
it runs before the acknowledgement joins a group commit. Checks are batched (whatever arrived while the
previous batch ran goes in one call) onto a worker thread; the Ed25519 arithmetic releases the GIL, so it
runs on another core beside the hub's Python work. The outcome is carried into the transaction, which
reports it in its usual order, after the checks against the stored delivery.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ackhub.audit.acks import AckFields, verify_ack
from ackhub.core.errors import AckhubError, FieldViolation, InvalidArgument
from ackhub.hub.exchange.keys import KeyRing

FIELD = "acknowledgement"


SignedAck = tuple[str, str, AckFields, bytes]  # recipient, key id, the signed fields, the signature
Verdicts = list[AckhubError | None]


class SignatureChecks:
    def __init__(self, keys: KeyRing, max_batch: int = 512) -> None:
        self.keys = keys
        # Acknowledgements per call on the worker thread (one caller's are never split).
        self.max_batch = max_batch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ackhub-verify")
        self._pending: list[tuple[list[SignedAck], asyncio.Future[Verdicts]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def check(
        self, recipient: str, key_id: str, fields: AckFields, signature: bytes
    ) -> AckhubError | None:
        """None when `signature` verifies with the recipient's registered key `key_id`, else the refusal."""
        (verdict,) = await self.check_many([(recipient, key_id, fields, signature)])
        return verdict

    async def check_many(self, acks: list[SignedAck]) -> Verdicts:
        """`check` for each of `acks`, in order, with one wait for all of them (a stream's batch)."""
        future: asyncio.Future[Verdicts] = asyncio.get_running_loop().create_future()
        self._pending.append((acks, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            calls = self._next_calls()
            try:
                verdicts = await loop.run_in_executor(
                    self._pool, self._check_all, [a for acks, _ in calls for a in acks]
                )
            except Exception as exc:  # a bug, not a bad signature: every waiting caller hears it
                for _, future in calls:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for acks, future in calls:
                if not future.done():
                    future.set_result(verdicts[start : start + len(acks)])
                start += len(acks)

    def _next_calls(self) -> list[tuple[list[SignedAck], asyncio.Future[Verdicts]]]:
        """The waiting calls, oldest first, up to `max_batch` acknowledgements (at least one call)."""
        taken, size = 0, 0
        for acks, _ in self._pending:
            if taken and size + len(acks) > self.max_batch:
                break
            size += len(acks)
            taken += 1
        calls, self._pending = self._pending[:taken], self._pending[taken:]
        return calls

    def _check_all(self, acks: list[SignedAck]) -> Verdicts:
        return [self.refusal(recipient, key_id, fields, sig) for recipient, key_id, fields, sig in acks]

    def refusal(self, recipient: str, key_id: str, fields: AckFields, signature: bytes) -> AckhubError | None:
        if "\n" in fields.reason or "\r" in fields.reason:  # no canonical text: the caller's error, refused
            # here so that one such acknowledgement does not fail the others checked in the same call
            return InvalidArgument([FieldViolation(f"{FIELD}.reason", "cannot contain line breaks")])
        public_key = self.keys.get(recipient, key_id)
        if public_key is None:
            return InvalidArgument(
                [FieldViolation(f"{FIELD}.key_id", f"{key_id!r} is not a registered key of {recipient!r}")],
                reason="UNKNOWN_KEY",
            )
        if not verify_ack(public_key, fields, signature):
            return InvalidArgument(
                [
                    FieldViolation(
                        f"{FIELD}.signature", f"does not verify with key {key_id!r} over the canonical text"
                    )
                ],
                reason="SIGNATURE_INVALID",
            )
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
