"""The RabbitMQ baseline of bench/exchange.py: the same records, in the same shape, through a message broker
that does not sign, verify or audit anything. Run it through exchange.py:

    .venv/bin/python -m bench.exchange --backends rabbitmq --records 2000

What it does, on the machine's RabbitMQ (`--amqp-url`, default guest@127.0.0.1:5672, loopback only):

- declares a fresh fanout exchange `ackhub_bench_<random>` bound to two fresh durable classic queues,
  `<exchange>.tax` and `<exchange>.fx`; they are deleted at the end (and expire by themselves 10 minutes
  after a run that died before deleting them);
- `--publishers` threads, each with its own connection and channel in confirm mode, publish every record
  (the payload exchange.py makes for the hub, with the subject and the declaration number as headers) as a
  persistent message (delivery_mode 2, mandatory) and wait for the broker's confirm before the next: like
  ackhub's publishers, which wait for the receipt;
- one consumer thread per queue, each with its own connection, prefetch = `--window`, acknowledges each
  message with one basic_ack (manual acknowledgement). Tax acknowledges once, where ackhub's tax sends two
  signed acknowledgements (RECEIVED, ACCEPTED);
- a delivery counts as acknowledged when basic_ack has returned in the consumer, pika having written the
  ack frame to the socket. RabbitMQ does not answer an ack, so there is nothing later to wait for; ackhub's
  latency instead runs until the hub's answer to the closing acknowledgement is back at the recipient.

Every call is bounded: 5 s to connect, 30 s while the broker blocks publishers (resource alarm), the phase
timeout of exchange.py for everything else (a publisher still blocked then is abandoned, daemon thread).
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from bench.exchange import Options, Tracker, Workload

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
CONNECT_TIMEOUT_S = 5.0
BLOCKED_TIMEOUT_S = 30.0  # how long a publisher waits while the broker blocks it (memory or disk alarm)
QUEUE_EXPIRES_MS = 10 * 60 * 1000  # a queue left by a run that died goes away after 10 unused minutes
JOIN_TIMEOUT_S = 35.0

Report = Callable[[str, bool], None]


class BaselineUnavailable(Exception):
    """pika is not installed or the broker cannot be reached: the baseline is left out, not failed."""


def redact(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe(error: BaseException) -> str:
    """pika's exceptions often have an empty str(); their repr names the cause."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text.strip("(),' ") else repr(error)


def load_pika() -> Any:
    """The pika module (typed Any: it ships no type information), or BaselineUnavailable."""
    try:
        return importlib.import_module("pika")
    except ImportError as error:
        raise BaselineUnavailable(
            f"pika is not installed ({error}): .venv/bin/pip install 'pika>=1.3,<2'"
        ) from error


def broker_pid() -> int | None:
    """The local RabbitMQ node's process (Erlang's beam.smp running `rabbit`), for its CPU and memory;
    None when there is none this process may read."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            if (proc / "comm").read_text().strip() == "beam.smp" and b"rabbit" in (
                proc / "cmdline"
            ).read_bytes():
                return int(proc.name)
    return None


class Consumer(threading.Thread):
    """One queue's consumer, on its own connection: acknowledges every message once, then tells the
    current phase's tracker when basic_ack returned."""

    def __init__(self, broker: Broker, agency: str) -> None:
        super().__init__(name=f"amqp-consumer-{agency}", daemon=True)
        self.broker = broker
        self.agency = agency
        self.queue = broker.queue(agency)
        self.ready = threading.Event()  # consuming, or failed
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        connection = None
        try:
            connection = self.broker.connect(f"consumer {self.agency}")
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.broker.opts.window)
            channel.basic_consume(self.queue, self.on_message, auto_ack=False)
            self.ready.set()
            while not self.stopping.is_set():
                connection.process_data_events(time_limit=0.1)
        except Exception as error:
            self.error = describe(error)
            self.broker.tracker.fail(f"{self.agency} consumer: {self.error}")
        finally:
            self.ready.set()
            if connection is not None:
                with suppress(Exception):
                    connection.close()

    def on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        tracker = self.broker.tracker
        if method.redelivered:
            tracker.redelivered()
        channel.basic_ack(delivery_tag=method.delivery_tag)
        at = time.perf_counter()
        key = f"{properties.message_id}/{self.agency}"
        with tracker.lock:
            duplicate = key in tracker.closed_at
        tracker.ack(key, closing=True, at=at, duplicate=duplicate)


class Broker:
    """The baseline's exchange and queues on one RabbitMQ, with the publishers' channels and the
    consumers. `open()` declares and connects; `close()` stops, disconnects and deletes."""

    def __init__(self, pika: Any, opts: Options, workload: Workload) -> None:
        self.pika = pika
        self.opts = opts
        self.workload = workload
        self.exchange = f"ackhub_bench_{uuid.uuid4().hex[:12]}"
        self.pid = broker_pid()
        self.tracker: Tracker = workload.tracker(0, 0.0)  # the current phase's; consumers report to it
        self.admin: Any = None
        self.version = ""
        self.declared = False
        self.consumers: list[Consumer] = []
        self.publishers: list[tuple[Any, Any]] = []  # (connection, channel in confirm mode)
        self.abandoned = False  # a publisher thread outlived its phase: its connection is not touched again
        self.cleanup: dict[str, Any] = {"deleted": False}

    def queue(self, agency: str) -> str:
        return f"{self.exchange}.{agency}"

    def parameters(self, role: str) -> Any:
        params = self.pika.URLParameters(self.opts.amqp_url)
        params.connection_attempts = 1
        params.socket_timeout = CONNECT_TIMEOUT_S
        params.stack_timeout = 2 * CONNECT_TIMEOUT_S
        params.blocked_connection_timeout = BLOCKED_TIMEOUT_S
        # No heartbeats: publishers sit idle between phases, and every wait here has its own bound.
        params.heartbeat = 0
        params.client_properties = {"connection_name": f"ackhub-bench {self.exchange} {role}"}
        return params

    def connect(self, role: str) -> Any:
        return self.pika.BlockingConnection(self.parameters(role))

    def reach(self) -> None:
        """The first connection: its failure is the one that makes the baseline unavailable."""
        try:
            self.admin = self.connect("admin")
        except (self.pika.exceptions.AMQPError, OSError) as error:
            raise BaselineUnavailable(
                f"cannot connect to {redact(self.opts.amqp_url)}: {describe(error)}"
            ) from error
        # pika keeps the broker's Connection.Start properties on its connection implementation.
        properties = getattr(getattr(self.admin, "_impl", None), "server_properties", None) or {}
        version = properties.get("version", "")
        self.version = version.decode() if isinstance(version, bytes) else str(version)

    def open(self) -> None:
        """Declare the exchange and the queues, start the consumers, connect the publishers."""
        channel = self.admin.channel()
        channel.exchange_declare(self.exchange, "fanout", durable=True, auto_delete=True)
        self.declared = True
        for agency in self.workload.recipients:
            arguments = {"x-queue-type": "classic", "x-expires": QUEUE_EXPIRES_MS}
            channel.queue_declare(self.queue(agency), durable=True, arguments=arguments)
            channel.queue_bind(self.queue(agency), self.exchange)
        channel.close()
        self.consumers = [Consumer(self, agency) for agency in self.workload.recipients]
        for consumer in self.consumers:
            consumer.start()
        for consumer in self.consumers:
            if not consumer.ready.wait(2 * CONNECT_TIMEOUT_S + 5) or consumer.error:
                raise RuntimeError(
                    f"the {consumer.agency} consumer did not start: {consumer.error or 'timeout'}"
                )
        for i in range(max(self.opts.publishers, self.opts.offered_publishers)):
            connection = self.connect(f"publisher {i}")
            channel = connection.channel()
            channel.confirm_delivery()
            self.publishers.append((connection, channel))

    def publish_share(self, tracker: Tracker, channel: Any, indices: range, first: int, start: float) -> None:
        """Publish records `indices`, each confirmed before the next, at their turn of the tracker's rate
        when it has one (record `first` is due at `start`)."""
        pika = self.pika
        for index in indices:
            if tracker.done.is_set():
                return  # a failure elsewhere: stop early
            payload, uscc, declaration = self.workload.record(index)
            properties = pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,  # persistent
                message_id=str(index),
                type=self.workload.record_type,
                app_id=self.workload.publisher,
                timestamp=int(time.time()),
                headers={"subject_uscc": uscc, "declaration_number": declaration},
            )
            due = None
            if tracker.rate > 0:
                due = start + (index - first) / tracker.rate
                if tracker.done.wait(max(0.0, due - time.perf_counter())):
                    return
            began = time.perf_counter()
            try:  # returns once the broker confirmed it; raises when it is returned or refused
                channel.basic_publish(self.exchange, "", payload, properties, mandatory=True)
            except Exception as error:
                tracker.fail(f"publish of record {index}: {describe(error)}")
                return
            deliveries = [(f"{index}/{agency}", agency) for agency in self.workload.recipients]
            tracker.publish_done(began, time.perf_counter(), deliveries, due)

    def run_phase(self, tracker: Tracker, first: int, deadline: float, report: Report, label: str) -> float:
        """Publish `tracker.records` records from `first` and wait until every message was acknowledged by
        both consumers; returns when it started."""
        self.tracker = tracker
        tracker.begin(self.pid)
        start = time.perf_counter()
        publishers = self.publishers[: self.opts.publishers_for(tracker.rate)]
        count = len(publishers)
        threads = [
            threading.Thread(
                target=self.publish_share,
                args=(tracker, channel, range(first + i, first + tracker.records, count), first, start),
                name=f"amqp-publish-{i}",
                daemon=True,
            )
            for i, (_connection, channel) in enumerate(publishers)
        ]
        for thread in threads:
            thread.start()
        while not tracker.done.wait(0.5):
            tracker.sample()
            published, closed = tracker.progress()
            report(
                f"{label}: published {published}/{tracker.records}, acked {closed}/{tracker.expected}", False
            )
            stopped = [c for c in self.consumers if not c.is_alive()]
            if stopped:
                tracker.fail(f"the {stopped[0].agency} consumer stopped: {stopped[0].error}")
            elif time.perf_counter() > deadline:
                tracker.fail(f"timed out with {closed} of {tracker.expected} deliveries acknowledged")
        tracker.end()
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
        if any(thread.is_alive() for thread in threads):
            self.abandoned = True
            tracker.fail(
                f"a publisher was still waiting for a confirm {JOIN_TIMEOUT_S:.0f} s after the phase"
            )
        published, closed = tracker.progress()
        report(f"{label}: published {published}/{tracker.records}, acked {closed}/{tracker.expected}", True)
        return start

    def close(self) -> None:
        """Stop the consumers, close the publishers, delete the queues and the exchange; what went wrong
        while deleting goes to `self.cleanup`."""
        for consumer in self.consumers:
            consumer.stopping.set()
        for consumer in self.consumers:
            consumer.join(JOIN_TIMEOUT_S)
        if not self.abandoned:
            for connection, _channel in self.publishers:
                with suppress(Exception):
                    connection.close()
        if self.declared:
            try:
                if self.admin is None or not self.admin.is_open:
                    self.admin = self.connect("admin")
                channel = self.admin.channel()
                for agency in self.workload.recipients:
                    channel.queue_delete(self.queue(agency))
                channel.exchange_delete(self.exchange)  # already gone with auto_delete: still succeeds
                self.cleanup["deleted"] = True
            except Exception as error:
                self.cleanup["error"] = f"could not delete {self.exchange} and its queues: {describe(error)}"
        if self.admin is not None:
            with suppress(Exception):
                self.admin.close()

    def method(self) -> str:
        return (
            f"fanout exchange → {len(self.workload.recipients)} durable classic queues, persistent messages, "
            f"each publish confirmed before the next ({self.opts.publishers} publishers, "
            f"{self.opts.offered_publishers} under the offered load), one basic_ack per "
            f"message per consumer (tax acks once), prefetch {self.opts.window}; latency ends when basic_ack "
            "returned; no signatures, no verification, no audit log, no retries or escalation"
        )


def run_baseline(opts: Options, workload: Workload, report: Report) -> dict[str, Any]:
    """The baseline's phases on `workload`: a result shaped like one of exchange.py's backends (each
    measured phase's figures under its name, `errors`, `ok`), with `available` False and the reason when
    pika or the broker cannot be reached."""
    result: dict[str, Any] = {"backend": "rabbitmq", "database": "RabbitMQ (unavailable)", "errors": []}
    try:
        broker = Broker(load_pika(), opts, workload)
        broker.reach()
    except BaselineUnavailable as error:
        report(f"rabbitmq: UNAVAILABLE: {error}", True)
        return {**result, "available": False, "unavailable_reason": str(error), "ok": False}
    result.update(
        available=True,
        database=f"RabbitMQ {broker.version} (classic durable queues, persistent messages, publisher confirms)",
        method=broker.method(),
        broker={
            "url": redact(opts.amqp_url),
            "version": broker.version,
            "pid": broker.pid,
            "exchange": broker.exchange,
            "queues": [broker.queue(agency) for agency in workload.recipients],
        },
    )
    report(
        f"rabbitmq: RabbitMQ {broker.version} at {redact(opts.amqp_url)}, exchange {broker.exchange}", True
    )
    try:
        broker.open()
        for phase in workload.phases:
            tracker = workload.tracker(phase.records, phase.rate)
            deadline = time.perf_counter() + opts.timeout
            start = broker.run_phase(tracker, phase.first, deadline, report, f"rabbitmq {phase.label}")
            if phase.name is None:  # the warm-up
                if tracker.errors:
                    raise RuntimeError("warm-up: " + "; ".join(tracker.errors))
                continue
            result[phase.name] = tracker.figures(start)
            if tracker.errors:
                result["errors"] += [f"{phase.label}: {error}" for error in tracker.errors]
                break
    except Exception as error:
        result["errors"].append(f"{type(error).__name__}: {describe(error)}")
    finally:
        broker.close()
        result["broker"]["cleanup"] = broker.cleanup
        if "error" in broker.cleanup:
            result["errors"].append(broker.cleanup["error"])
    result["ok"] = not result["errors"]
    return result
