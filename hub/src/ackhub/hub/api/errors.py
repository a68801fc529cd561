"""One error model for every RPC: domain errors become a canonical status code with `google.rpc.Status`
details (`ErrorInfo` with reason, domain `ackhub` and metadata; `BadRequest` field violations). Anything
unexpected is logged and answered INTERNAL without internals. Applied once, by `ErrorInterceptor`.

Request bytes that do not decode (truncated protobuf, a string field that is not UTF-8) are the caller's
error, not ours: the interceptor's deserializer never raises (gRPC would answer UNKNOWN and log an error);
it hands the servicer wrapper an `Undecodable`, which is answered INVALID_ARGUMENT (reason
`UNDECODABLE_REQUEST`) for every RPC, unary or streaming."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import DBAPIError

from ackhub.core.errors import (
    AckhubError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    StoreUnavailable,
)
from ackhub.hub.store.db import driver_error

DOMAIN = "ackhub"
log = structlog.get_logger("ackhub.api")


def to_status(error: AckhubError) -> grpc.Status:
    code = getattr(code_pb2, error.code)
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata))
    details.append(info)
    if error.violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
        details.append(bad)
    if isinstance(error, ResourceExhausted | StoreUnavailable):
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(error.retry_after_ms)
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return rpc_status.to_status(status_pb2.Status(code=code, message=error.message, details=details))


def _internal() -> grpc.Status:
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; the hub logged the details")
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, method: str) -> None:
    if isinstance(exc, AckhubError):
        log.info("rpc.refused", method=method, code=exc.code, reason=exc.reason)
        await context.abort_with_status(to_status(exc))
    if is_store_unavailable(exc):
        log.warning("rpc.store_unavailable", method=method, why=type(exc).__name__)
        await context.abort_with_status(to_status(StoreUnavailable()))
    if isinstance(exc, NotImplementedError):  # a generated servicer's default (grpc.health.v1's List)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this hub")
    log.error("rpc.crashed", method=method, exc_info=exc)
    await context.abort_with_status(_internal())


def is_store_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (a restart, a failover): the same
    call may succeed in a moment. (A commit whose answer was lost may have stored it: the retry, with
    the same request id, is answered as the first call would have been.)"""
    error = driver_error(exc)
    return (isinstance(exc, DBAPIError) and exc.connection_invalidated) or (
        isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
        and not isinstance(error, psycopg.errors.QueryCanceled | psycopg.errors.DeadlockDetected)
    )


@dataclass(frozen=True)
class Undecodable:
    """Request bytes the method's message type could not parse, and why."""

    why: str

    def refusal(self) -> InvalidArgument:
        return InvalidArgument(
            [FieldViolation("request", f"is not a valid protobuf message of this method: {self.why}")],
            reason="UNDECODABLE_REQUEST",
        )


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize` that answers `Undecodable` instead of raising."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, or anything a parser raises on garbage
            return Undecodable(str(exc)[:200] or type(exc).__name__)

    return parse


class _Refused:
    """Set when a stream's request iterator met an undecodable message (then the stream ends)."""

    def __init__(self) -> None:
        self.error: InvalidArgument | None = None

    async def decoded(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Undecodable):
                self.error = request.refusal()
                return
            yield request


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    if isinstance(request, Undecodable):
                        raise request.refusal()
                    return await inner_unary(request, context)
                except Exception as exc:
                    if isinstance(exc, grpc.aio.AbortError):
                        raise
                    await _abort(context, exc, method)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def stream(
                requests: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                refused = _Refused()
                try:
                    async for response in inner_stream(refused.decoded(requests), context):
                        yield response
                    if refused.error is not None:
                        raise refused.error
                except Exception as exc:
                    if isinstance(exc, grpc.aio.AbortError):
                        raise
                    await _abort(context, exc, method)

            return grpc.stream_stream_rpc_method_handler(
                stream,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:  # grpc.health.v1.Health/Watch
            inner_out = handler.unary_stream

            async def out_generator(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    await _abort(context, request.refusal(), method)
                async for response in inner_out(request, context):
                    yield response

            async def out_writer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
                if isinstance(request, Undecodable):
                    await _abort(context, request.refusal(), method)
                await inner_out(request, context)  # writes with context.write (Health/Watch does)

            return grpc.unary_stream_rpc_method_handler(
                out_writer if inspect.iscoroutinefunction(inner_out) else out_generator,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler
