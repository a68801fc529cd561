"""Prometheus metrics for `/metrics`: gauges computed at scrape time from the store and the circuit breakers,
and an acknowledgement-latency histogram observed as acknowledgements arrive (`Exchange.ack_observers`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import col, select

from hub.clock import Clock
from hub.exchange.acknowledge import AckOutcome
from hub.exchange.breaker import CLOSED, HALF_OPEN, OPEN
from hub.exchange.states import DELIVERY_STATES
from hub.store.cluster import Registry
from hub.store.db import Database
from hub.store.models import AttemptRow, DeliveryRow, EscalationRow

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class StoreCollector(Collector):
    """Deliveries by state, escalation cases, retries and breaker states, read when scraped."""

    def __init__(self, db: Database, breakers: Callable[[], dict[str, str]], agencies: list[str]) -> None:
        self.db = db
        self.breakers = breakers
        self.agencies = agencies

    def collect(self) -> Iterator[Metric]:
        with self.db.transaction() as session:
            states = dict(
                session.exec(select(DeliveryRow.state, func.count()).group_by(DeliveryRow.state)).all()
            )
            cases = session.exec(
                select(EscalationRow.state, EscalationRow.reason, func.count()).group_by(
                    EscalationRow.state, EscalationRow.reason
                )
            ).all()
            retries = session.exec(select(func.count()).where(col(AttemptRow.number) > 1)).one()
        deliveries = GaugeMetricFamily("ackhub_deliveries", "Deliveries by state", labels=["state"])
        for state in DELIVERY_STATES:
            deliveries.add_metric([state], float(states.get(state, 0)))
        yield deliveries
        escalations = GaugeMetricFamily(
            "ackhub_escalations", "Escalation cases by state and reason", labels=["state", "reason"]
        )
        for state, reason, count in cases:
            escalations.add_metric([state, reason], float(count))
        yield escalations
        yield GaugeMetricFamily(
            "ackhub_delivery_retries", "Attempts after the first, over all deliveries", value=float(retries)
        )
        breaker = GaugeMetricFamily(
            "ackhub_circuit_breaker_state",
            "1 for the state each agency's circuit is in",
            labels=["agency", "state"],
        )
        known = self.breakers()
        for agency in self.agencies:
            current = known.get(agency, CLOSED)
            for state in (CLOSED, OPEN, HALF_OPEN):
                breaker.add_metric([agency, state], 1.0 if current == state else 0.0)
        yield breaker


class ProcessesCollector(Collector):
    """The hub processes sharing the database (hub/store/cluster.py), the same whichever one is scraped,
    and which one answered this scrape. The store's gauges above are the whole deployment's too; the
    circuit breakers and the latency histogram are the answering process's own (docs/deploy.md)."""

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
    """The console's own registry (never the global one, so several hubs can run in one process)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        breakers: Callable[[], dict[str, str]],
        agencies: list[str],
        processes: Registry | None = None,
    ) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        self.ack_latency = Histogram(
            "ackhub_ack_latency_seconds",
            "From a record's acceptance to each closing acknowledgement of its delivery",
            ["agency", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(db, breakers, agencies))
        if processes is not None:
            self.registry.register(ProcessesCollector(processes, clock))

    def observe_ack(self, outcome: AckOutcome) -> None:
        if outcome.duplicate:
            return
        delivery = outcome.delivery
        seconds = max(0, self.clock.now_ms() - delivery.created_ms) / 1000
        self.ack_latency.labels(delivery.recipient, delivery.state).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
