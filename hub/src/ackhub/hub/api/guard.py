"""The one interceptor in front of every servicer: who is calling (client certificate, token or, in
development, metadata), may that role call this method (`hub.auth.policy.RULES`), is the caller within its
rate, and is the request within the size limits. Only then does the servicer run, with the principal bound
for `hub.auth.policy.caller()`. Refusals are domain errors; `ErrorInterceptor` (outside) answers them."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from ackhub.core.clock import Clock
from ackhub.core.errors import FieldViolation, InvalidArgument, ResourceExhausted
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.auth.identity import Authenticator

MAX_VIOLATIONS = 10


@dataclass(frozen=True)
class SizeLimits:
    max_string_bytes: int = 8192  # any string field of a request, UTF-8
    max_bytes: int = 4 * 1024 * 1024  # any bytes field (payloads are checked again, precisely, on publish)
    max_items: int = 10_000  # any repeated field

    @property
    def smallest(self) -> int:
        """A message whose whole encoding is no longer than this has no field or list beyond any limit
        (each string and bytes value is inside the encoding, and every list item takes a byte at least)."""
        return min(self.max_string_bytes, self.max_bytes, self.max_items)


def size_violations(message: Message, limits: SizeLimits, prefix: str = "") -> list[FieldViolation]:
    """Every field of `message` (recursively) that is longer than the limits allow."""
    found: list[FieldViolation] = []
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if field.is_repeated:
            if len(value) > limits.max_items:
                found.append(FieldViolation(name, f"has {len(value)} items; at most {limits.max_items}"))
                continue
            items = list(value.items()) if is_map else list(enumerate(value))
            for key, item in items:
                if is_map and isinstance(key, str) and len(key.encode()) > limits.max_string_bytes:
                    found.append(
                        FieldViolation(name, f"has a key longer than {limits.max_string_bytes} bytes")
                    )
                found.extend(_one(f"{name}[{key!s:.32}]", item, limits))
        else:
            found.extend(_one(name, value, limits))
        if len(found) >= MAX_VIOLATIONS:
            break
    return found[:MAX_VIOLATIONS]


def _one(name: str, value: Any, limits: SizeLimits) -> list[FieldViolation]:
    if isinstance(value, Message):
        if value.ByteSize() <= limits.smallest:  # each of a batch's records, say: nothing to walk
            return []
        return size_violations(value, limits, f"{name}.")
    if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > limits.max_string_bytes:
        return [FieldViolation(name, f"is longer than {limits.max_string_bytes} bytes")]
    if isinstance(value, bytes) and len(value) > limits.max_bytes:
        return [FieldViolation(name, f"is {len(value)} bytes; at most {limits.max_bytes} are allowed")]
    return []


class RateLimiter:
    """A token bucket per principal: `burst` requests at once, refilled at `rate` per second (hub clock)."""

    def __init__(self, clock: Clock, rate: float, burst: int) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, int]] = {}  # actor → (tokens, at ms)
        self._lock = threading.Lock()

    def take(self, actor: str) -> int:
        """0 if the request may go ahead, else how many milliseconds to wait before the next one."""
        if self.rate <= 0:
            return 0
        now = self.clock.now_ms()
        with self._lock:
            tokens, at = self._buckets.get(actor, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0, now - at) * self.rate / 1000)
            if tokens >= 1:
                self._buckets[actor] = (tokens - 1, now)
                return 0
            self._buckets[actor] = (tokens, now)
            return max(1, math.ceil((1 - tokens) * 1000 / self.rate))


def certificate_agency(context: Any, trust: bool) -> str | None:
    """The agency a verified client certificate names (its common name), when the port requires one."""
    if not trust:
        return None
    auth = context.auth_context() or {}
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    names = auth.get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else None


class GuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        sizes: SizeLimits,
        *,
        trust_client_certificates: bool,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.sizes = sizes
        self._small = sizes.smallest
        self.trust = trust_client_certificates

    def _admit(self, method: str, context: Any) -> Principal:
        principal = self.authenticator.authenticate(
            context.invocation_metadata() or (), certificate_agency(context, self.trust)
        )
        policy.authorize(method, principal)
        wait_ms = self.limiter.take(principal.actor)
        if wait_ms:
            raise ResourceExhausted(
                f"too many requests from {principal.actor}; retry in {wait_ms} ms",
                retry_after_ms=wait_ms,
                metadata={"caller": principal.actor},
            )
        return principal

    def _check(self, request: Any) -> None:
        # The common case skips the walk over the fields (`SizeLimits.smallest`).
        if isinstance(request, Message) and request.ByteSize() > self._small:
            violations = size_violations(request, self.sizes)
            if violations:
                raise InvalidArgument(violations)

    async def _checked(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            self._check(request)
            yield request

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or policy.is_public(method):
            return handler
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                principal = self._admit(method, context)
                self._check(request)
                policy.bind(principal)
                return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def stream(requests: Any, context: Any) -> AsyncIterator[Any]:
                principal = self._admit(method, context)
                policy.bind(principal)
                async for response in inner_stream(self._checked(requests), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_out = handler.unary_stream

            async def out_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                principal = self._admit(method, context)
                self._check(request)
                policy.bind(principal)
                async for response in inner_out(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(
                out_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner_in = handler.stream_unary

        async def in_stream(requests: Any, context: Any) -> Any:
            principal = self._admit(method, context)
            policy.bind(principal)
            return await inner_in(self._checked(requests), context)

        return grpc.stream_unary_rpc_method_handler(
            in_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
