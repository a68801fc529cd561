"""A real hub on loopback for tests: `HubServer` on its own event loop in a background thread, agencies
with real keys, and helpers that wait for a condition with a bound instead of sleeping and hoping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.adapters.loader import Adapters
from ackhub.audit.acks import public_key_base64
from ackhub.client.agency import AgencyClient
from ackhub.client.headers import AGENCY_HEADER, OPERATOR_HEADER
from ackhub.core.clock import Clock
from ackhub.hub.config import Settings, parse_settings
from ackhub.hub.launch import HubThread
from ackhub.v1 import exchange_service_pb2_grpc, operations_service_pb2_grpc

T = TypeVar("T")

# Deterministic test keys: seed = agency name padded to 32 bytes.
AGENCIES = {"customs": "customs", "tax": "tax", "fx": "fx", "commerce": "commerce"}


def private_key(agency: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(agency.encode().ljust(32, b"\0"))


def key_id(agency: str) -> str:
    return f"{agency}-test-1"


def base_config(database_url: str) -> dict[str, Any]:
    """Customs publishes released export declarations to tax (business level) and fx (technical level)."""
    agencies = [
        {
            "id": a,
            "name": a.title(),
            "kind": a if a != "commerce" else "commerce",
            "keys": [{"id": key_id(a), "public_key": public_key_base64(private_key(a).public_key())}],
        }
        for a in AGENCIES
    ]
    retry = {
        "first_interval": "1s",
        "multiplier": 2.0,
        "max_interval": "8s",
        "jitter": 0.0,
        "max_attempts": 3,
    }
    return {
        "server": {
            "listen": "127.0.0.1:0",
            "database_url": database_url,
            "sweep_interval": "100ms",
            "stream_window": 8,
            "max_payload_bytes": 65536,
        },
        "breaker": {"failure_threshold": 3, "cooldown": "5s", "max_cooldown": "40s"},
        "agencies": agencies,
        "routes": [
            {
                "record_type": "customs.export_declaration.released",
                "publishers": ["customs"],
                "recipients": [
                    {
                        "agency": "tax",
                        "ack_level": "BUSINESS",
                        "deadline": "30s",
                        "retry": retry,
                        "escalation": [
                            {"after": "0s", "notify": ["log"]},
                            {"after": "60s", "notify": ["log"]},
                        ],
                    },
                    {"agency": "fx", "ack_level": "RECEIVED", "deadline": "30s", "retry": retry},
                ],
            }
        ],
    }


class RunningHub(HubThread):
    """The hub's in-process launcher, started, with stubs and agency clients for the test; scheduled sweeps
    off unless asked for (the tests sweep when they choose)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        scheduled_sweeps: bool = False,
        adapters: Adapters | None = None,
    ) -> None:
        super().__init__(settings, clock=clock, scheduled_sweeps=scheduled_sweeps, adapters=adapters)
        self.port = self.start()
        self.target = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.exchange_stub = exchange_service_pb2_grpc.ExchangeServiceStub(self.channel)
        self.operations_stub = operations_service_pb2_grpc.OperationsServiceStub(self.channel)
        self.clients: list[AgencyClient] = []

    def sweep(self) -> Any:
        assert self.server.exchange is not None
        return self.run(self.server.exchange.sweep())

    def dispatch(self) -> None:
        """Run the dispatcher now, until every open slot has what is due."""
        assert self.server.exchange is not None
        dispatcher = self.server.exchange.dispatcher

        async def drain() -> None:
            while await dispatcher.dispatch_once(full=True):
                pass

        self.run(drain())

    def agency(self, agency: str, clock: Clock | None = None) -> AgencyClient:
        client = AgencyClient(
            self.target, agency, key_id=key_id(agency), private_key=private_key(agency), clock=clock
        )
        self.clients.append(client)
        return client

    @staticmethod
    def as_agency(agency: str) -> tuple[tuple[str, str]]:
        return ((AGENCY_HEADER, agency),)

    @staticmethod
    def as_operator(name: str = "alice") -> tuple[tuple[str, str]]:
        return ((OPERATOR_HEADER, name),)

    def stop(self, grace_s: float = 0.5) -> None:
        for client in self.clients:
            client.close()
        self.channel.close()
        super().stop(grace_s)


def start_hub(
    database_url: str,
    clock: Clock | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    adapters: Adapters | None = None,
) -> RunningHub:
    """A hub on `base_config`, after `edit` changed the configuration dict in place; with `adapters`
    instead of the installed ones when given."""
    config = base_config(database_url)
    if edit is not None:
        edit(config)
    return RunningHub(parse_settings(config, "test", {}), clock=clock, adapters=adapters)


def wait_for(condition: Callable[[], T], timeout: float = 10, what: str = "condition") -> T:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def error_details(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str], dict[str, str]]:
    """(code, ErrorInfo reason, ErrorInfo metadata, {field: description}) of a refused call."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status details on {error!r}"
    reason, metadata, fields = "", {}, {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "ackhub"
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = {v.field: v.description for v in bad.field_violations}
    return error.code(), reason, metadata, fields


def table_counts(hub: RunningHub) -> dict[str, int]:
    """Rows per table, to show that a refused request changed nothing."""
    from sqlalchemy import func, select
    from sqlmodel import SQLModel

    with hub.server.db.transaction() as session:
        return {
            name: int(session.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in SQLModel.metadata.tables.items()
        }


class Inbox:
    """A subscription handler that keeps every delivery and answers as told (by default: nothing)."""

    def __init__(self, answer: Callable[[Any], Any] | None = None) -> None:
        self.deliveries: list[Any] = []
        self.answer = answer
        self._lock = threading.Lock()

    def __call__(self, delivery: Any) -> Any:
        with self._lock:
            self.deliveries.append(delivery)
        return self.answer(delivery) if self.answer else None

    def ids(self) -> list[str]:
        with self._lock:
            return [d.delivery_id for d in self.deliveries]

    def attempts(self, delivery_id: str) -> list[int]:
        with self._lock:
            return [d.attempt for d in self.deliveries if d.delivery_id == delivery_id]
