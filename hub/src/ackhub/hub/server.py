"""Wiring: the store, the exchange, the gRPC server with its interceptors, health and reflection, the
dispatcher and the periodic sweep. `HubServer` is what `ackhub serve` runs and what tests start."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ackhub.adapters.loader import Adapters
from ackhub.adapters.loader import load as load_adapters
from ackhub.audit.acks import load_public_key
from ackhub.audit.checkpoint import key_id as audit_key_id
from ackhub.audit.checkpoint import log_verifier
from ackhub.connectors._push import PushConnector
from ackhub.connectors.stream import StreamConnector
from ackhub.core.clock import Clock, SystemClock
from ackhub.hub.api.audit import AuditServicer
from ackhub.hub.api.cases import CaseServicer
from ackhub.hub.api.catalogue import CatalogueServicer
from ackhub.hub.api.errors import ErrorInterceptor
from ackhub.hub.api.exchange import ExchangeServicer
from ackhub.hub.api.guard import GuardInterceptor
from ackhub.hub.api.operations import OperationsServicer
from ackhub.hub.api.permits import PermitServicer
from ackhub.hub.api.subscriptions import SubscriptionServicer
from ackhub.hub.api.trace import TraceServicer
from ackhub.hub.auth.tls import listen
from ackhub.hub.cases import CaseBook
from ackhub.hub.config import Settings
from ackhub.hub.connectors import push_connectors
from ackhub.hub.exchange.breaker import Breakers
from ackhub.hub.exchange.catalogue import build as build_catalogue
from ackhub.hub.exchange.dispatcher import Dispatcher
from ackhub.hub.exchange.hub import Exchange
from ackhub.hub.exchange.keys import KeyRing, sync_agencies
from ackhub.hub.exchange.notify import Notifications
from ackhub.hub.exchange.routing import Router
from ackhub.hub.ledger.keys import signing_key
from ackhub.hub.ledger.ledger import AuditLedger
from ackhub.hub.notifications.outbox import start_cursor
from ackhub.hub.notifications.send import NotificationService
from ackhub.hub.notifications.subscriptions import Rules
from ackhub.hub.permits.issuers import Issuers
from ackhub.hub.permits.registry import Registries
from ackhub.hub.permits.service import Permits
from ackhub.hub.store import activity
from ackhub.hub.store.activity import Activity
from ackhub.hub.store.batching import GroupCommit
from ackhub.hub.store.cluster import (
    AgencyStatus,
    Peer,
    ProcessStatus,
    Registry,
    Wakeups,
    deployment_status,
    shared_secret,
)
from ackhub.hub.store.db import Database, first_line
from ackhub.hub.store.upkeep import UPKEEP_INTERVAL_MS, upkeep
from ackhub.hub.witnesses import Witnesses
from ackhub.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    case_service_pb2,
    case_service_pb2_grpc,
    catalogue_service_pb2,
    catalogue_service_pb2_grpc,
    exchange_service_pb2,
    exchange_service_pb2_grpc,
    operations_service_pb2,
    operations_service_pb2_grpc,
    permit_service_pb2,
    permit_service_pb2_grpc,
    subscription_service_pb2,
    subscription_service_pb2_grpc,
    trace_service_pb2,
    trace_service_pb2_grpc,
)

if TYPE_CHECKING:
    from ackhub.hub.console.app import ConsoleServer

log = structlog.get_logger("ackhub.server")
# Audit events made leaves per transaction of the sequencing job (~2 ms on SQLite, with the tree's hashes),
# and transactions per run (20,000 events): group commits queued meanwhile run between two chunks, so
# sequencing delays none of them by more than one chunk.
SEQUENCE_CHUNK = 200
SEQUENCE_CHUNKS_PER_RUN = 100
SERVICES = (
    exchange_service_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name,
    operations_service_pb2.DESCRIPTOR.services_by_name["OperationsService"].full_name,
    permit_service_pb2.DESCRIPTOR.services_by_name["PermitService"].full_name,
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    catalogue_service_pb2.DESCRIPTOR.services_by_name["CatalogueService"].full_name,
    case_service_pb2.DESCRIPTOR.services_by_name["CaseService"].full_name,
    subscription_service_pb2.DESCRIPTOR.services_by_name["SubscriptionService"].full_name,
)


class HubServer:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        scheduled_sweeps: bool = True,
        rng: random.Random | None = None,
        adapters: Adapters | None = None,
    ) -> None:
        """`adapters`: the loaded adapters (default: those of the `ackhub.adapters` entry points)."""
        self.settings = settings
        self.clock = clock or SystemClock()
        self.scheduled_sweeps = scheduled_sweeps
        self.rng = rng
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self.exchange: Exchange | None = None
        self.permits: Permits | None = None
        self.cases: CaseBook | None = None  # cases between parties (hub/cases/)
        self.ledger: AuditLedger | None = None
        self.witnesses: Witnesses | None = None  # sends checkpoints to [[audit.witnesses]] to cosign
        self.streams = StreamConnector()
        self.activity = Activity()  # when agencies were last seen, written with each heartbeat
        self.push: list[PushConnector] = []  # grpc_push, webhook, filedrop: as configured
        # Adapters from the `ackhub.adapters` entry points, and the record types they bring: a schema that
        # does not compile, or a route for a type without one, is a ConfigError here, before anything runs.
        self.adapters = load_adapters() if adapters is None else adapters
        self.catalogue = build_catalogue(self.adapters)
        self.router = Router(settings, self.catalogue)
        self.process_id = str(uuid.uuid4())
        # How this process's database connections are named (pg_stat_activity, wake-up notifications).
        self.db = Database(
            settings.server.database_url, application_name=f"ackhub-{os.getpid()}-{self.process_id[:8]}"
        )
        self.registry = Registry(self.db, settings, self.process_id)
        self.wakeups: Wakeups | None = None  # PostgreSQL: other processes' new deliveries
        self._sweeping = asyncio.Lock()
        self.console: ConsoleServer | None = None  # the operators' web console, when [console] is set
        # Enterprises' notifications (hub/notifications/): announced from the audit log, sent by webhook
        # and e-mail; its loop runs with the scheduled sweeps (tests call `run_once`).
        self.notifications: NotificationService | None = None

    async def start(self) -> int:
        """Migrate, register agencies and keys, and listen; returns the bound port."""
        settings = self.settings
        await self.db.run(self.db.prepare)  # StartupError: unreachable, or at another schema revision

        def _sync() -> KeyRing:
            with self.db.transaction() as session:
                return sync_agencies(session, settings, self.clock.now_ms())

        keys = await self.db.run(_sync)
        await self.db.run(self.registry.register, self.clock.now_ms())  # StartupError: differs from peers
        notifications = Notifications(settings.notifiers)
        key, key_source = signing_key(settings.audit.signing_key_file, settings.server.database_url)
        self.push = push_connectors(settings, key, audit_key_id(key.public_key()), self.clock)
        writes = GroupCommit(self.db)
        dispatcher = Dispatcher(
            self.db,
            writes,
            self.clock,
            [self.streams, *self.push],
            Breakers(settings.breaker),
            notifications,
            self.rng,
        )
        self.exchange = Exchange(
            settings, self.db, self.clock, self.router, keys, dispatcher, notifications, writes
        )
        self.exchange.ack_observers.append(
            lambda outcome: self.activity.acknowledged(outcome.delivery.recipient, self.clock.now_ms())
        )
        self.exchange.publish_observers.append(
            lambda publisher, _receipt: self.activity.published(publisher.id, self.clock.now_ms())
        )
        if not self.db.is_sqlite:
            self.wakeups = Wakeups(self.db.conninfo, self.db.application_name, dispatcher.wake_for)
            self.wakeups.start()
        for connector in self.push:
            await connector.start(self.exchange)
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor(), self._guard()],
            options=[
                ("grpc.max_receive_message_length", settings.server.max_payload_bytes + 1024 * 1024),
                ("grpc.max_send_message_length", settings.server.max_payload_bytes + 1024 * 1024),
            ],
        )
        self.ledger = AuditLedger(self.db, key, settings.audit.origin, self.clock)
        log.info(
            "audit.key",
            source=key_source,
            origin=settings.audit.origin,
            vkey=log_verifier(settings.audit.origin, key.public_key()).vkey(),
        )
        self.witnesses = Witnesses(settings, self.ledger, self.clock, notifications=notifications)
        await self.witnesses.start(background=self.scheduled_sweeps)
        exchange_service_pb2_grpc.add_ExchangeServiceServicer_to_server(
            ExchangeServicer(self.exchange, self.streams), server
        )
        operations_service_pb2_grpc.add_OperationsServiceServicer_to_server(
            OperationsServicer(self.exchange), server
        )
        audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(self.ledger), server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            TraceServicer(self.db, self.ledger, {a.id: a.name for a in settings.agencies}), server
        )
        self.permits = self._permits(self.exchange)
        permit_service_pb2_grpc.add_PermitServiceServicer_to_server(PermitServicer(self.permits), server)
        self.cases = CaseBook(settings, self.db, self.clock, notifications, self.ledger, self.permits.issuers)
        case_service_pb2_grpc.add_CaseServiceServicer_to_server(CaseServicer(self.cases), server)
        catalogue_service_pb2_grpc.add_CatalogueServiceServicer_to_server(
            CatalogueServicer(self.catalogue, {route.record_type for route in settings.routes}), server
        )
        # before any subscription can be made: what is already logged is not news to anyone
        await self.db.run(start_cursor, self.db)
        self.notifications = self._notifications()
        subscription_service_pb2_grpc.add_SubscriptionServiceServicer_to_server(
            SubscriptionServicer(self.db, self.clock, self.subscription_rules()), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        self.port = listen(server, settings.server)
        if self.port == 0:
            raise OSError(f"cannot listen on {settings.server.listen}")
        await server.start()
        self._server = server
        for name in ("", *SERVICES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._dispatch_task = asyncio.create_task(dispatcher.run(idle_ms=settings.server.sweep_interval))
        if self.scheduled_sweeps:
            self._scheduler = AsyncIOScheduler()
            every = settings.server.sweep_interval
            self._every(every, self._sweep, "sweep")
            self._every(every, self.heartbeat, "heartbeat")
            if self.db.is_sqlite:
                self._every(every, self.db.run_wal_checkpoint, "wal-checkpoint")
            else:
                self._every(UPKEEP_INTERVAL_MS, self._upkeep, "store-upkeep")
            self._every(settings.audit.sequence_interval, self._sequence_audit, "audit-sequence")
            self._every(settings.audit.checkpoint_interval, self.checkpoint, "audit-checkpoint")
            self._scheduler.start()
            self.notifications.start(settings.server.sweep_interval)
        if settings.console is not None:
            from ackhub.hub.console.app import ConsoleServer

            secret = await self.db.run(shared_secret, self.db, "console-session", self.clock.now_ms())
            self.console = ConsoleServer(self, secret)
            await self.console.start()
        log.info(
            "hub.started",
            listen=settings.server.listen,
            port=self.port,
            database=self.db.engine.url.render_as_string(hide_password=True),
            agencies=len(settings.agencies),
            routes=len(settings.routes),
        )
        return self.port

    def _every(self, interval_ms: int, job: Callable[[], Awaitable[None]], name: str) -> None:
        """A scheduled job that never runs twice at once and skips the runs it missed."""
        assert self._scheduler is not None
        self._scheduler.add_job(
            job, "interval", seconds=interval_ms / 1000, max_instances=1, coalesce=True, id=name
        )

    def _guard(self) -> GuardInterceptor:
        """Authentication, the authorization policy, rate and size limits (ackhub.hub.api.guard)."""
        from ackhub.hub.api.guard import RateLimiter, SizeLimits
        from ackhub.hub.auth.identity import Authenticator
        from ackhub.hub.auth.jwt import Tokens

        settings = self.settings
        tokens = None
        if settings.auth.jwks_file or settings.auth.enterprise_jwt_public_key:
            default = settings.auth.enterprise_jwt_public_key
            tokens = Tokens(
                self.clock,
                issuer=settings.auth.enterprise_jwt_issuer,
                audience=settings.auth.enterprise_jwt_audience,
                jwks_file=settings.auth.jwks_file,
                default_key=load_public_key(default) if default else None,
                max_lifetime_ms=settings.auth.max_token_lifetime,
            )
        limits = settings.limits
        return GuardInterceptor(
            Authenticator(settings.server.auth, (a.id for a in settings.agencies), tokens),
            RateLimiter(self.clock, limits.requests_per_second, limits.burst),
            SizeLimits(limits.max_string_bytes, settings.server.max_payload_bytes, limits.max_repeated_items),
            trust_client_certificates=settings.server.tls_client_ca_file is not None,
        )

    def subscription_rules(self) -> Rules:
        """What subscriptions this deployment accepts (ackhub.hub.notifications.subscriptions)."""
        settings = self.settings
        return Rules(
            secure=settings.server.auth == "secure",
            can_email=bool(settings.notifications.smtp_host),
            record_types=frozenset(r.record_type for r in settings.routes),
        )

    def _notifications(self) -> NotificationService:
        settings = self.settings
        return NotificationService(
            settings.notifications,
            self.db,
            self.clock,
            {a.id: a.name or a.id for a in settings.agencies},
            secure=settings.server.auth == "secure",
        )

    def _permits(self, exchange: Exchange) -> Permits:
        """Adapters from the `ackhub.adapters` entry points; a broken one is logged by name, the rest load."""
        adapters = self.adapters
        for kind, loaded in adapters.loaded.items():
            log.info("adapter.loaded", adapter=kind, source=loaded.source)
        for name, why in adapters.broken.items():
            log.error("adapter.broken", adapter=name, why=why)
        issuers = Issuers(self.settings, adapters)
        registries = Registries(issuers, self.clock, self.settings.permits.registry_cache)
        return Permits(self.settings, self.db, self.clock, issuers, registries, exchange)

    async def _sweep(self) -> None:
        assert self.exchange is not None
        async with self._sweeping:
            await self._sweep_once(self.exchange)

    async def _sweep_once(self, exchange: Exchange) -> None:
        try:
            result = await exchange.sweep()
            if result.deadlines or result.steps:
                log.info("sweep.done", deadlines=result.deadlines, escalation_steps=result.steps)
            if self.cases is not None:
                told = await self.cases.sweep()
                if told:
                    log.info("sweep.cases", notices=len(told))
        except Exception:
            log.exception("sweep.failed")

    def process_status(self) -> ProcessStatus:
        """This process's agencies' streams and circuit breakers, as the heartbeat shares them."""
        breakers = self.exchange.dispatcher.breakers.states() if self.exchange is not None else {}
        return ProcessStatus(self.streams.connected(), breakers)

    def deployment(self, now_ms: int) -> tuple[list[Peer], dict[str, AgencyStatus]]:
        """Blocking: the live processes, and each agency's streams and worst breaker over them, this
        process's as they are now (the console's Agencies page and /metrics)."""
        peers = self.registry.live(now_ms)
        return peers, deployment_status(peers, self.process_id, self.process_status())

    async def heartbeat(self) -> None:
        """The scheduled job: renew this process's row in the registry, with its status, and write when
        agencies were last seen (every sweep)."""
        seen = self.activity.take()
        try:
            await self.db.run(self.registry.heartbeat, self.clock.now_ms(), self.process_status())
            await self.db.run(activity.record, self.db, seen)
        except Exception as error:  # the database is away; the next beat tries again
            self.activity.put_back(seen)
            log.warning("cluster.heartbeat_failed", why=first_line(error))

    async def _upkeep(self) -> None:
        """The scheduled job on PostgreSQL: statistics and vacuum of the busy tables when they are due
        (ackhub.hub.store.upkeep), on a thread and connection of its own, not a database thread."""
        try:
            done = await asyncio.to_thread(upkeep, self.db)
        except Exception as error:  # the database is away; the next round tries again
            log.warning("store.upkeep_failed", why=first_line(error))
            return
        if done:
            log.info("store.upkeep", done=[f"{command} {table}" for command, table in done])

    async def _sequence_audit(self) -> None:
        """The scheduled job: make new audit events leaves of the tree, in small transactions every
        `audit.sequence_interval`, so that sequencing never holds the database thread for long. (In one
        transaction of a second's events, it held it for 60 to 80 ms at 200 records/s; in chunks of 500
        once a second, for 25-30 ms, which still made the slowest 1 % of deliveries: bench/exchange.py.)"""
        async with self._sweeping:  # a stop waits for it, as for a sweep
            try:
                for _ in range(SEQUENCE_CHUNKS_PER_RUN):
                    if await self.db.run(self._sequence_chunk) < SEQUENCE_CHUNK:
                        break
            except Exception:
                log.exception("audit.sequence_failed")

    def _sequence_chunk(self) -> int:
        """Sequence one chunk (and extend the stored tree over it); returns how many events it made leaves."""
        assert self.ledger is not None
        return self.ledger.sequence_some(SEQUENCE_CHUNK)

    async def checkpoint(self) -> None:
        """The scheduled job: sequence new audit events and sign a checkpoint if the tree grew."""
        assert self.ledger is not None
        try:
            signed = await self.db.run(self.ledger.checkpoint)
            if self.witnesses is not None:
                self.witnesses.offer(signed)  # sent in the background: signing never waits for witnesses
        except Exception:
            log.exception("audit.checkpoint_failed")

    async def stop(self, grace: float = 1.0) -> None:
        if self.console is not None:
            await self.console.stop()
        if self._scheduler is not None:
            self._scheduler.pause()
            async with self._sweeping:  # let a running sweep finish rather than cancel it midway
                self._scheduler.shutdown(wait=False)
        if self.notifications is not None:
            await self.notifications.stop()
        if self.exchange is not None:
            self.exchange.dispatcher.stop()
        if self._server is not None:
            await self._server.stop(grace)
        if self._dispatch_task is not None:
            await self._dispatch_task
        for connector in self.push:
            await connector.aclose()
        if self.permits is not None:
            await self.permits.registries.close()
        if self.ledger is not None:
            await self.checkpoint()  # a clean stop leaves every event in a signed tree
        if self.witnesses is not None:
            await self.witnesses.stop()
        if self.exchange is not None:
            self.exchange.signatures.close()
        if self.wakeups is not None:
            await self.wakeups.stop()
        try:
            await self.db.run(activity.record, self.db, self.activity.take())
            await self.db.run(self.registry.leave)
        except Exception:
            log.warning("cluster.leave_failed")  # its heartbeat goes stale instead
        self.db.close()
        log.info("hub.stopped")

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()
