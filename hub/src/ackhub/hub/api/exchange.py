"""`ackhub.v1.ExchangeService`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeAlias

import structlog

from ackhub.connectors.stream import StreamConnector
from ackhub.core.connector import Outbound
from ackhub.core.errors import AckhubError, FieldViolation, InvalidArgument
from ackhub.core.principal import Principal
from ackhub.core.wire import ack_input
from ackhub.hub.api import convert
from ackhub.hub.auth import policy
from ackhub.hub.exchange import queries
from ackhub.hub.exchange.hub import Exchange
from ackhub.hub.exchange.publish import Deprecation, PublishRequest, Receipt
from ackhub.v1 import exchange_service_pb2 as pb
from ackhub.v1 import exchange_service_pb2_grpc as pb_grpc
from ackhub.v1 import types_pb2

log = structlog.get_logger("ackhub.api")
Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable types
MAX_RETRY_AFTER_MS = 24 * 3_600_000
MAX_RECORDS_PER_CALL = 500  # PublishRecords
MAX_ACKS_IN_PROGRESS = 256  # per stream: beyond this, the hub stops reading the stream until some finish
MAX_BATCH = 256  # deliveries or results per stream message on a stream opened with `batches`


def _publish_request(message: pb.PublishRecordRequest) -> PublishRequest:
    return PublishRequest(
        request_id=message.request_id,
        record_type=message.record_type,
        subject_uscc=message.subject_uscc,
        declaration_number=message.declaration_number,
        content_type=message.content_type,
        payload=message.payload,
        schema_version=message.schema_version,
    )


def _receipt(receipt: Receipt, request: pb.PublishRecordRequest) -> pb.Receipt:
    return pb.Receipt(
        record_id=receipt.record_id,
        digest=f"sha256:{receipt.digest}",
        accept_time=convert.timestamp(receipt.accepted_ms),
        deliveries=[pb.DeliveryRef(delivery_id=d, recipient=r) for d, r in receipt.deliveries],
        replayed=receipt.replayed,
        idempotent=bool(request.request_id),  # an empty one is no key: each call is another record
        schema_version=receipt.schema_version,
        deprecation=_deprecation(receipt.deprecation) if receipt.deprecation else None,
    )


def _deprecation(deprecation: Deprecation) -> pb.SchemaDeprecation:
    end = deprecation.end_date.isoformat()
    return pb.SchemaDeprecation(
        version=deprecation.version,
        end_date=end,
        replacement_version=deprecation.replacement,
        message=f"{deprecation.record_type} version {deprecation.version} is deprecated and taken until "
        f"{end} (China Standard Time); publish version {deprecation.replacement}",
    )


def _delivery(item: Outbound) -> pb.DeliveryMessage:
    return pb.DeliveryMessage(
        delivery_id=item.delivery_id,
        attempt=item.attempt,
        record=convert.record(item.record),
        required_level=convert.level(item.required_level),
    )


def _responses(items: list[object], batches: bool) -> Iterator[pb.SubscribeResponse]:
    """The stream messages for what the outbox held, in order: on a stream opened with `batches`, each
    run of deliveries and each run of acknowledgement results goes in one message."""
    run: list[object] = []
    for item in [*items, None]:
        if run and (item is None or type(item) is not type(run[0]) or not batches):
            if isinstance(run[0], Outbound):
                messages = [_delivery(o) for o in run]  # type: ignore[arg-type]
                if len(messages) == 1:
                    yield pb.SubscribeResponse(delivery=messages[0])
                else:
                    yield pb.SubscribeResponse(deliveries=pb.DeliveryBatch(deliveries=messages))
            else:
                results = [r.ack_result for r in run]  # type: ignore[attr-defined]
                if len(results) == 1:
                    yield run[0]  # type: ignore[misc]
                else:
                    yield pb.SubscribeResponse(ack_results=pb.AckResultBatch(results=results))
            run = []
        if item is not None:
            run.append(item)


class ExchangeServicer(pb_grpc.ExchangeServiceServicer):
    def __init__(self, exchange: Exchange, streams: StreamConnector) -> None:
        self.exchange = exchange
        self.streams = streams

    async def PublishRecord(
        self, request: pb.PublishRecordRequest, context: Context
    ) -> pb.PublishRecordResponse:
        publisher = policy.caller()
        receipt = await self.exchange.publish(publisher, _publish_request(request))
        return pb.PublishRecordResponse(receipt=_receipt(receipt, request))

    async def PublishRecords(
        self, request: pb.PublishRecordsRequest, context: Context
    ) -> pb.PublishRecordsResponse:
        publisher = policy.caller()
        if not request.records:
            raise InvalidArgument([FieldViolation("records", "is required: at least one record")])
        if len(request.records) > MAX_RECORDS_PER_CALL:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "records",
                        f"has {len(request.records)} records; at most {MAX_RECORDS_PER_CALL} per call",
                    )
                ]
            )
        outcomes = await self.exchange.publish_many(publisher, [_publish_request(r) for r in request.records])
        return pb.PublishRecordsResponse(
            results=[
                pb.PublishResult(error=convert.error_detail(outcome))
                if isinstance(outcome, AckhubError)
                else pb.PublishResult(receipt=_receipt(outcome, record))
                for outcome, record in zip(outcomes, request.records, strict=True)
            ]
        )

    async def AcknowledgeDelivery(
        self, request: pb.AcknowledgeDeliveryRequest, context: Context
    ) -> pb.AcknowledgeDeliveryResponse:
        caller = policy.caller()
        if not request.HasField("acknowledgement"):
            raise InvalidArgument([FieldViolation("acknowledgement", "is required")])
        outcome = await self.exchange.acknowledge(caller, ack_input(request.acknowledgement), via="unary")
        return pb.AcknowledgeDeliveryResponse(
            delivery=convert.delivery(outcome.delivery), duplicate=outcome.duplicate
        )

    async def GetRecord(self, request: pb.GetRecordRequest, context: Context) -> pb.GetRecordResponse:
        caller = policy.caller()
        record, deliveries = await self.exchange.db.read(
            queries.get_record, self.exchange.db, caller, request.record_id
        )
        return pb.GetRecordResponse(
            record=convert.record(record), deliveries=[convert.delivery(d) for d in deliveries]
        )

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Context
    ) -> pb.ListDeliveriesResponse:
        caller = policy.caller()
        queries.check_agency_filter("recipient", request.recipient, self.exchange.agency_ids)
        page = await self.exchange.db.read(
            queries.list_deliveries,
            self.exchange.db,
            caller,
            record_id=request.record_id,
            recipient=request.recipient,
            state=convert.enum_name(convert.STATE_NAMES, request.state),
            closure=convert.enum_name(convert.CLOSURE_NAMES, request.closure),
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListDeliveriesResponse(
            deliveries=[convert.delivery(d) for d in page.items], next_page_token=page.next_token
        )

    async def Subscribe(
        self, request_iterator: AsyncIterator[pb.SubscribeRequest], context: Context
    ) -> AsyncIterator[pb.SubscribeResponse]:
        caller = policy.caller()
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        if first.WhichOneof("kind") != "open":
            raise InvalidArgument([FieldViolation("open", "the first message of a stream must be `open`")])
        policy.require_same_agency(caller, first.open.agency_id)
        limit = self.exchange.settings.server.stream_window
        if first.open.window < 0:
            raise InvalidArgument([FieldViolation("open.window", "cannot be negative")])
        window = min(first.open.window or limit, limit)
        channel = self.streams.open(caller.id, window)
        log.info("stream.opened", agency=caller.id, session_id=channel.id, window=window)
        reader = asyncio.create_task(self._read(request_iterator, caller, channel.outbox))
        self.exchange.dispatcher.wake()
        batches = first.open.batches
        try:
            yield pb.SubscribeResponse(
                opened=pb.SubscribeOpened(session_id=channel.id, window=window, batches=batches)
            )
            while True:
                items = [await channel.outbox.get()]
                while (
                    batches
                    and len(items) < MAX_BATCH
                    and not channel.outbox.empty()
                    and items[-1] is not None
                ):
                    items.append(channel.outbox.get_nowait())
                ended = items[-1] is None
                for message in _responses([i for i in items if i is not None], batches):
                    yield message
                if ended:
                    break
        finally:
            reader.cancel()
            self.streams.close(channel)
            log.info("stream.closed", agency=caller.id, session_id=channel.id)

    async def _read(
        self, requests: AsyncIterator[pb.SubscribeRequest], caller: Principal, outbox: asyncio.Queue[object]
    ) -> None:
        """Acknowledgements and retry-after requests arriving on the stream. Each message's
        acknowledgements (one, or a batch) are handled together, and messages concurrently (up to
        `MAX_ACKS_IN_PROGRESS` acknowledgements), so one stream's acknowledgements share group commits;
        they enter the batcher in arrival order, and each is answered on the stream once stored or
        refused."""
        pending: set[asyncio.Task[None]] = set()
        room = asyncio.Semaphore(MAX_ACKS_IN_PROGRESS)
        try:
            async for request in requests:
                kind = request.WhichOneof("kind")
                if kind in ("acknowledgement", "acknowledgements"):
                    acks = (
                        [request.acknowledgement]
                        if kind == "acknowledgement"
                        else list(request.acknowledgements.acknowledgements)
                    )
                    for start in range(0, len(acks), MAX_ACKS_IN_PROGRESS):
                        some = acks[start : start + MAX_ACKS_IN_PROGRESS]
                        for _ in some:
                            await room.acquire()
                        task = asyncio.create_task(self._answer(caller, some, outbox, room))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                elif kind == "retry_after":
                    wait_ms = request.retry_after.retry_after.ToMilliseconds()
                    if 0 < wait_ms <= MAX_RETRY_AFTER_MS:
                        await self.exchange.retry_after(caller.id, request.retry_after.delivery_id, wait_ms)
                    else:
                        log.info("stream.bad_retry_after", agency=caller.id, wait_ms=wait_ms)
            await asyncio.gather(*pending)  # the agency closed its side: answer what it sent first
        except Exception:
            log.exception("stream.read_failed", agency=caller.id)
        finally:
            outbox.put_nowait(None)

    async def _answer(
        self,
        caller: Principal,
        messages: list[types_pb2.Acknowledgement],
        outbox: asyncio.Queue[object],
        room: asyncio.Semaphore,
    ) -> None:
        """Handle acknowledgements that arrived together and answer each, in order. One whose transaction
        failed gets no answer (logged): the agency has no result for it, so the delivery is sent again."""
        try:
            answers = await self.exchange.acknowledge_many(
                caller, [ack_input(message) for message in messages], via="stream"
            )
            for message, answer in zip(messages, answers, strict=True):
                if isinstance(answer, AckhubError):
                    result = pb.AckResult(
                        delivery_id=message.delivery_id,
                        status=message.status,
                        ok=False,
                        error=convert.error_detail(answer),
                    )
                elif isinstance(answer, BaseException):
                    log.error(
                        "stream.ack_failed",
                        agency=caller.id,
                        delivery_id=message.delivery_id,
                        exc_info=answer,
                    )
                    continue
                else:
                    result = pb.AckResult(
                        delivery_id=message.delivery_id,
                        status=message.status,
                        ok=True,
                        duplicate=answer.duplicate,
                    )
                outbox.put_nowait(pb.SubscribeResponse(ack_result=result))
        finally:
            for _ in messages:
                room.release()
