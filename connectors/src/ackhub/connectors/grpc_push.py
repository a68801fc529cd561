"""The gRPC push connector: the hub calls `ackhub.v1.ReceiverService.ReceiveDelivery`, hosted by the
agency, once per attempt. The answer is the agency's signed RECEIVED acknowledgement (or "retry after", or
"abort"); the business acknowledgement follows later through `ExchangeService.AcknowledgeDelivery`.

A call that fails (UNAVAILABLE, DEADLINE_EXCEEDED, any error status) or answers something the hub cannot
verify counts as unanswered: the delivery is retried at its next attempt time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc

from ackhub.connectors._push import Answer, PushConnector
from ackhub.connectors.config import GrpcPush
from ackhub.core import wire
from ackhub.core.connector import Outbound
from ackhub.v1 import receiver_service_pb2 as pb
from ackhub.v1 import receiver_service_pb2_grpc as pb_grpc

MAX_RETRY_AFTER_MS = 24 * 3_600_000
# gRPC's own reconnect backoff (1 s growing to 120 s by default) would keep failing calls long after the
# agency is back; the hub paces attempts itself (retry policy, circuit breaker), so keep it short.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def read_answer(response: pb.ReceiveDeliveryResponse) -> Answer:
    """The agency's answer as an `Answer`; the acknowledgement itself is checked by the exchange."""
    kind = response.WhichOneof("answer")
    if kind == "acknowledgement":
        return Answer(ack=wire.ack_input(response.acknowledgement))
    if kind == "retry_after":
        wait = response.retry_after.ToMilliseconds()
        if 0 < wait <= MAX_RETRY_AFTER_MS:
            return Answer(retry_after_ms=wait)
        return Answer(failure=f"retry_after out of range: {wait} ms")
    if kind == "abort_reason":
        return Answer(abort_reason=response.abort_reason[:2000])
    return Answer(failure="an empty answer")


class GrpcPushConnector(PushConnector):
    name = "grpc_push"

    def __init__(self, receivers: Mapping[str, GrpcPush]) -> None:
        super().__init__({agency: receiver.concurrency for agency, receiver in receivers.items()})
        self.receivers = dict(receivers)
        self._channels = {
            agency: grpc.aio.insecure_channel(r.target, options=CHANNEL_OPTIONS)
            for agency, r in receivers.items()
        }
        self._stubs = {agency: pb_grpc.ReceiverServiceStub(ch) for agency, ch in self._channels.items()}

    async def deliver(self, agency: str, outbound: Outbound) -> None:
        request = pb.ReceiveDeliveryRequest(
            delivery_id=outbound.delivery_id,
            attempt=outbound.attempt,
            record=wire.record(outbound.record),
            required_level=wire.level(outbound.required_level),
        )
        try:
            response = await self._stubs[agency].ReceiveDelivery(
                request, timeout=self.receivers[agency].timeout / 1000
            )
        except grpc.aio.AioRpcError as error:
            answer = Answer(failure=f"{error.code().name}: {error.details()}")
        else:
            answer = read_answer(response)
        await self.settle(agency, outbound, answer)

    async def wait_ready(self, agency: str, timeout_s: float) -> None:
        """Wait until the channel to the agency's receiver is connected (raises TimeoutError)."""
        await asyncio.wait_for(self._channels[agency].channel_ready(), timeout_s)

    async def aclose(self) -> None:
        await super().aclose()
        for channel in self._channels.values():
            await channel.close()
