"""One error model for every RPC: domain errors become a canonical status code with `google.rpc.Status`
details (`ErrorInfo` with reason, domain `ackhub` and metadata; `BadRequest` field violations). Anything
unexpected is logged and answered INTERNAL without internals. Applied once, by `ErrorInterceptor`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import psycopg
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import DBAPIError

from hub.errors import AckhubError, ResourceExhausted
from hub.store.db import driver_error

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
    if isinstance(error, ResourceExhausted):
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
        await context.abort_with_status(_unavailable())
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


def _unavailable() -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="STORE_UNAVAILABLE", domain=DOMAIN))
    retry = any_pb2.Any()
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1)))
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.UNAVAILABLE,
            message=("the hub's database is unavailable; try again in a moment, with the same request_id"),
            details=[info, retry],
        )
    )


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
                    return await inner_unary(request, context)
                except Exception as exc:
                    if isinstance(exc, grpc.aio.AbortError):
                        raise
                    await _abort(context, exc, method)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def stream(
                requests: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                try:
                    async for response in inner_stream(requests, context):
                        yield response
                except Exception as exc:
                    if isinstance(exc, grpc.aio.AbortError):
                        raise
                    await _abort(context, exc, method)

            return grpc.stream_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
