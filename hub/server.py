"""Wiring: the store, the exchange, the gRPC server with its interceptors, health and reflection, the
dispatcher and the periodic sweep. `HubServer` is what `ackhub serve` runs and what tests start."""

from __future__ import annotations

import asyncio
import random

import grpc
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from connectors.stream import StreamConnector
from hub._proto.ackhub.v1 import (
    exchange_service_pb2,
    exchange_service_pb2_grpc,
    operations_service_pb2,
    operations_service_pb2_grpc,
)
from hub.api.errors import ErrorInterceptor
from hub.api.exchange import ExchangeServicer
from hub.api.operations import OperationsServicer
from hub.auth.identity import DevelopmentAuthenticator
from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.exchange.breaker import Breakers
from hub.exchange.dispatcher import Dispatcher
from hub.exchange.hub import Exchange
from hub.exchange.keys import KeyRing, sync_agencies
from hub.exchange.notify import Notifications
from hub.exchange.routing import Router
from hub.store.db import Database

log = structlog.get_logger("ackhub.server")
SERVICES = (
    exchange_service_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name,
    operations_service_pb2.DESCRIPTOR.services_by_name["OperationsService"].full_name,
)


class HubServer:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        scheduled_sweeps: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.scheduled_sweeps = scheduled_sweeps
        self.rng = rng
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self.exchange: Exchange | None = None
        self.streams = StreamConnector()
        self.db = Database(settings.server.database_url)
        self._sweeping = asyncio.Lock()

    async def start(self) -> int:
        """Migrate, register agencies and keys, and listen; returns the bound port."""
        settings = self.settings
        await self.db.run(self.db.migrate)

        def _sync() -> KeyRing:
            with self.db.transaction() as session:
                return sync_agencies(session, settings, self.clock.now_ms())

        keys = await self.db.run(_sync)
        notifications = Notifications(settings.notifiers)
        dispatcher = Dispatcher(
            self.db, self.clock, [self.streams], Breakers(settings.breaker), notifications, self.rng
        )
        self.exchange = Exchange(
            settings, self.db, self.clock, Router(settings), keys, dispatcher, notifications
        )
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", settings.server.max_payload_bytes + 1024 * 1024),
                ("grpc.max_send_message_length", settings.server.max_payload_bytes + 1024 * 1024),
            ],
        )
        auth = DevelopmentAuthenticator(a.id for a in settings.agencies)
        exchange_service_pb2_grpc.add_ExchangeServiceServicer_to_server(
            ExchangeServicer(self.exchange, auth, self.streams), server
        )
        operations_service_pb2_grpc.add_OperationsServiceServicer_to_server(
            OperationsServicer(self.exchange, auth), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        self.port = server.add_insecure_port(settings.server.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {settings.server.listen}")
        await server.start()
        self._server = server
        for name in ("", *SERVICES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._dispatch_task = asyncio.create_task(dispatcher.run(idle_ms=settings.server.sweep_interval))
        if self.scheduled_sweeps:
            self._scheduler = AsyncIOScheduler()
            self._scheduler.add_job(
                self._sweep,
                "interval",
                seconds=settings.server.sweep_interval / 1000,
                max_instances=1,
                coalesce=True,
                id="sweep",
            )
            self._scheduler.start()
        log.info(
            "hub.started",
            listen=settings.server.listen,
            port=self.port,
            database=self.db.engine.url.render_as_string(hide_password=True),
            agencies=len(settings.agencies),
            routes=len(settings.routes),
        )
        return self.port

    async def _sweep(self) -> None:
        assert self.exchange is not None
        async with self._sweeping:
            await self._sweep_once(self.exchange)

    async def _sweep_once(self, exchange: Exchange) -> None:
        try:
            result = await exchange.sweep()
            if result.deadlines or result.steps:
                log.info("sweep.done", deadlines=result.deadlines, escalation_steps=result.steps)
        except Exception:
            log.exception("sweep.failed")

    async def stop(self, grace: float = 1.0) -> None:
        if self._scheduler is not None:
            self._scheduler.pause()
            async with self._sweeping:  # let a running sweep finish rather than cancel it midway
                self._scheduler.shutdown(wait=False)
        if self.exchange is not None:
            self.exchange.dispatcher.stop()
        if self._server is not None:
            await self._server.stop(grace)
        if self._dispatch_task is not None:
            await self._dispatch_task
        self.db.close()
        log.info("hub.stopped")

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()
