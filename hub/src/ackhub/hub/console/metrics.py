"""Prometheus metrics for `/metrics`: gauges computed at scrape time from the store and the deployment's
streams and circuit breakers,
and an acknowledgement-latency histogram observed as acknowledgements arrive (`Exchange.ack_observers`).
Every metric named here is documented in docs/operations.md and may be used by the alert rules and the
dashboard under deploy/ (tests/test_alerting.py checks they name no other)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import col, select

from ackhub.core.clock import Clock
from ackhub.core.principal import SYSTEM, Principal
from ackhub.hub.console.data import OpenDeliveries, open_deliveries
from ackhub.hub.exchange.acknowledge import AckOutcome
from ackhub.hub.exchange.breaker import CLOSED, HALF_OPEN, OPEN
from ackhub.hub.exchange.publish import Receipt
from ackhub.hub.exchange.routing import policy_of
from ackhub.hub.exchange.states import CASE_OPEN
from ackhub.hub.store.cluster import AgencyStatus, Registry
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AuditCheckpointRow, AuditEventRow, DeliveryRow, EscalationRow

# Set by `ackhub serve --workers N` for its children (ackhub.hub.workers): a folder where each process keeps
# its counters and histograms, so that whichever process answers a scrape on the shared port reports them
# summed over all of them (prometheus_client's multiprocess mode, read when prometheus_client is imported).
SHARED_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class StoreGauges:
    """What a scrape reads from the store: each through an index over a small set (the open deliveries,
    the open cases, the newest checkpoint, the events after it), never by counting a whole table, so a
    scrape costs the same at a million stored records as at a thousand (docs/operations.md)."""

    open: dict[str, OpenDeliveries]  # agency → its open deliveries
    cases: dict[tuple[str, int], int]  # (agency, level) → open escalation cases
    at_top: dict[str, int]  # agency → open cases at the top rung of their delivery's escalation ladder
    checkpoint_ms: int | None  # when the newest signed checkpoint was made
    unsigned_ms: int | None  # when the oldest event no signed checkpoint covers yet was appended


def read_gauges(db: Database, now_ms: int) -> StoreGauges:
    with db.transaction() as session:
        found = open_deliveries(session, SYSTEM, now_ms)
        cases = session.exec(
            select(EscalationRow.recipient, EscalationRow.level, DeliveryRow.policy)
            # outer: a top-level case (a witness's refusal) has no delivery, and counts as at the top
            .join(DeliveryRow, col(DeliveryRow.id) == col(EscalationRow.delivery_id), isouter=True)
            .where(EscalationRow.state == CASE_OPEN)
        ).all()
        latest = session.exec(
            select(AuditCheckpointRow.tree_size, AuditCheckpointRow.time_ms)
            .order_by(col(AuditCheckpointRow.tree_size).desc())
            .limit(1)
        ).first()
        size, checkpoint_ms = latest if latest is not None else (0, None)
        # Leaves are numbered in order: the first one after the checkpoint is its oldest unsigned event;
        # with none, the oldest event not yet a leaf (the sequencer runs every few seconds: they are few).
        unsigned_ms = session.exec(
            select(AuditEventRow.time_ms).where(AuditEventRow.leaf_index == size)
        ).first()
        if unsigned_ms is None:
            pending = session.exec(
                select(func.min(AuditEventRow.seq)).where(col(AuditEventRow.leaf_index).is_(None))
            ).one()
            if pending is not None:
                unsigned_ms = session.exec(
                    select(AuditEventRow.time_ms).where(AuditEventRow.seq == pending)
                ).first()
    by_level: dict[tuple[str, int], int] = {}
    at_top: dict[str, int] = {}
    for agency, level, policy in cases:  # open cases are few: each is read, its ladder parsed once per route
        by_level[(agency, level)] = by_level.get((agency, level), 0) + 1
        if policy is None or level >= len(policy_of(policy).escalation):
            at_top[agency] = at_top.get(agency, 0) + 1
    return StoreGauges(found, by_level, at_top, checkpoint_ms, unsigned_ms)


class StoreCollector(Collector):
    """The gauges operators alert on (deploy/prometheus/ackhub-alerts.yml), per agency, read when scraped."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        deployment: Callable[[], dict[str, AgencyStatus]],
        agencies: list[str],
    ) -> None:
        """`deployment`: each agency's streams and worst circuit breaker over every live hub process
        (`ackhub.hub.store.cluster.deployment_status`), so that any process's scrape says the same."""
        self.db = db
        self.clock = clock
        self.deployment = deployment
        self.agencies = agencies

    def collect(self) -> Iterator[Metric]:
        now_ms = self.clock.now_ms()
        gauges = read_gauges(self.db, now_ms)
        agencies = sorted({*self.agencies, *gauges.open})
        open_count = GaugeMetricFamily(
            "ackhub_open_deliveries",
            "Deliveries still waiting for the acknowledgement their route requires",
            labels=["agency"],
        )
        oldest = GaugeMetricFamily(
            "ackhub_oldest_open_delivery_age_seconds",
            "Age of the agency's oldest open delivery (0 when it has none)",
            labels=["agency"],
        )
        late = GaugeMetricFamily(
            "ackhub_open_deliveries_past_deadline",
            "Open deliveries whose acknowledgement deadline has passed",
            labels=["agency"],
        )
        for agency in agencies:
            found = gauges.open.get(agency, OpenDeliveries(0, now_ms, 0))
            open_count.add_metric([agency], float(found.count))
            oldest.add_metric([agency], max(0, now_ms - found.oldest_ms) / 1000)
            late.add_metric([agency], float(found.past_deadline))
        yield from (open_count, oldest, late)
        cases = GaugeMetricFamily(
            "ackhub_open_escalations",
            "Open escalation cases by the level they reached",
            labels=["agency", "level"],
        )
        for (agency, level), count in sorted(gauges.cases.items()):
            cases.add_metric([agency, str(level)], float(count))
        yield cases
        top = GaugeMetricFamily(
            "ackhub_open_escalations_at_top_level",
            "Open escalation cases that reached the last rung of their route's escalation ladder",
            labels=["agency"],
        )
        for agency in sorted({*agencies, *gauges.at_top}):  # with a witness's top-level case
            top.add_metric([agency], float(gauges.at_top.get(agency, 0)))
        yield top
        breaker = GaugeMetricFamily(
            "ackhub_circuit_breaker_state",
            "1 for the state each agency's circuit is in (the worst over the deployment's processes)",
            labels=["agency", "state"],
        )
        streams = GaugeMetricFamily(
            "ackhub_agency_streams",
            "Subscribe streams the agency has open, over every live hub process",
            labels=["agency"],
        )
        known = self.deployment()
        for agency in self.agencies:
            status = known.get(agency)
            current = status.breaker if status is not None else CLOSED
            for state in (CLOSED, OPEN, HALF_OPEN):
                breaker.add_metric([agency, state], 1.0 if current == state else 0.0)
            streams.add_metric([agency], float(status.streams if status is not None else 0))
        yield breaker
        yield streams
        if gauges.checkpoint_ms is not None:
            yield GaugeMetricFamily(
                "ackhub_audit_checkpoint_age_seconds",
                "Seconds since the newest signed audit checkpoint (a quiet hub signs none: see the next)",
                value=max(0, now_ms - gauges.checkpoint_ms) / 1000,
            )
        yield GaugeMetricFamily(
            "ackhub_audit_unsigned_age_seconds",
            "How long the oldest audit event no signed checkpoint covers has waited (0 when all are covered)",
            value=max(0, now_ms - gauges.unsigned_ms) / 1000 if gauges.unsigned_ms is not None else 0.0,
        )


class ProcessesCollector(Collector):
    """The hub processes sharing the database (ackhub.hub.store.cluster), the same whichever one is scraped,
    and which one answered this scrape. The gauges above are the whole deployment's too; the latency
    histogram and the counter are the answering process's own, or its machine's under `--workers`
    (docs/deploy.md)."""

    def __init__(self, registry: Registry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now_ms()
        live = self.registry.live(now)
        yield GaugeMetricFamily(
            "ackhub_hub_processes", "Hub processes sharing the database (recent heartbeat)", value=len(live)
        )
        age = GaugeMetricFamily(
            "ackhub_hub_process_heartbeat_age_seconds",
            "Seconds since each live hub process's last heartbeat",
            labels=["process", "host", "pid", "listen"],
        )
        for peer in live:
            age.add_metric([peer.id, peer.host, str(peer.pid), peer.listen], (now - peer.heartbeat_ms) / 1000)
        yield age
        me = GaugeMetricFamily(
            "ackhub_scraped_process", "1 for the hub process that answered this scrape", labels=["process"]
        )
        me.add_metric([self.registry.process_id], 1.0)
        yield me


class Metrics:
    """The console's own registry (never the global one, so several hubs can run in one process).

    Under `--workers` (SHARED_METRICS_ENV set) the counters and the histogram are kept in the shared
    folder and scraped from it, summed over the machine's processes, the dead ones included, so they
    never go backwards when a process restarts; the gauges are read from the store as always."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        deployment: Callable[[], dict[str, AgencyStatus]],
        agencies: list[str],
        processes: Registry | None = None,
    ) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        shared = os.environ.get(SHARED_METRICS_ENV)
        # With a shared folder, these two are written there and scraped from it, not from this registry.
        own = CollectorRegistry() if shared else self.registry
        if shared:
            multiprocess.MultiProcessCollector(self.registry, path=shared)  # type: ignore[no-untyped-call]
        self.ack_latency = Histogram(
            "ackhub_ack_latency_seconds",
            "From a record's acceptance to each closing acknowledgement of its delivery",
            ["agency", "status"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.deprecated_publishes = Counter(
            "ackhub_deprecated_schema_publishes",
            "Records published with a deprecated schema version (still taken until its end date)",
            ["publisher", "record_type", "version", "end_date"],
            registry=own,
        )
        self.registry.register(StoreCollector(db, clock, deployment, agencies))
        if processes is not None:
            self.registry.register(ProcessesCollector(processes, clock))

    def observe_ack(self, outcome: AckOutcome) -> None:
        if outcome.duplicate:
            return
        delivery = outcome.delivery
        seconds = max(0, self.clock.now_ms() - delivery.created_ms) / 1000
        self.ack_latency.labels(delivery.recipient, delivery.state).observe(seconds)

    def observe_deprecated(self, publisher: Principal, receipt: Receipt) -> None:
        """Who still publishes a deprecated version, so operators can chase them before its end date."""
        if receipt.deprecation is not None:
            deprecation = receipt.deprecation
            self.deprecated_publishes.labels(
                publisher.id,
                deprecation.record_type,
                str(deprecation.version),
                deprecation.end_date.isoformat(),
            ).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
