"""End-to-end exchange benchmark: ackhub side by side with a RabbitMQ baseline, in one run on one machine.

ackhub: customs publishes records that the hub routes to tax and FX over `Subscribe` streams; tax answers
each delivery with signed RECEIVED then ACCEPTED acknowledgements (route level BUSINESS), FX with a signed
RECEIVED (level RECEIVED), and the hub verifies and stores each. A real hub (`ackhub serve`, sweeps on) runs
in its own process on loopback on a fresh SQLite file or PostgreSQL database, so the agencies' Python work
here does not share its GIL. A delivery is closed when the hub's `AckResult` for its closing acknowledgement
reaches the recipient's stream.

Baseline (bench/rabbitmq.py): the same records through the machine's RabbitMQ: a fresh fanout exchange to
two fresh durable queues, persistent messages, publisher confirms, a tax and an fx consumer that each
acknowledge every message once (basic_ack), prefetch = the ackhub window. No signatures, no verification,
no audit log, no retries or escalation.

Each backend runs a warm-up (not measured), then `--records` records at full speed (publishers send as fast
as their calls return), then `--offered-records` records at an offered load of `--offered-rate` records/s.
Both sides publish from `--publishers` threads at full speed and `--offered-publishers` threads under the
offered load, each waiting for its receipt (ackhub) or confirm (RabbitMQ) before its next record. Printed
last: ackhub ÷ baseline acknowledged deliveries per second, per ackhub backend.

    .venv/bin/python -m bench.exchange          # 20000 records, then 4000 at 200/s: SQLite, PostgreSQL, RabbitMQ
    .venv/bin/python -m bench.exchange --records 300 --offered-records 200 --backends sqlite,rabbitmq
    .venv/bin/python -m bench.exchange --json > bench.json      # one JSON object; progress on stderr

Every wait is bounded (`--timeout` per phase). The PostgreSQL database, the SQLite file and the RabbitMQ
exchange and queues are created for the run and removed afterwards. The exit code is 1 when a run failed; an
unreachable RabbitMQ (or pika not installed) is reported loudly as UNAVAILABLE and leaves it at 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from queue import Queue
from typing import Any, TextIO
from urllib.parse import urlsplit

import grpc
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from ackhub.audit.acks import public_key_base64
from ackhub.client.agency import AgencyClient, Delivery, Handler, Publication, Verdict, start_subscription
from ackhub.core.identifiers import USCC_CHARSET, check_declaration_number, check_uscc, uscc_check_character
from ackhub.hub import launch
from ackhub.hub.config import Settings, load_settings
from ackhub.v1 import types_pb2
from bench import rabbitmq

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

RECORD_TYPE = "customs.export_declaration.released"
PUBLISHER = "customs"
# recipient → (route ack level, the status whose AckResult closes its delivery)
RECIPIENTS = {"tax": ("BUSINESS", "ACCEPTED"), "fx": ("RECEIVED", "RECEIVED")}
_STATUS = {"RECEIVED": types_pb2.ACK_STATUS_RECEIVED, "ACCEPTED": types_pb2.ACK_STATUS_ACCEPTED}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
HUB_BACKENDS = ("sqlite", "postgres")
BASELINE = "rabbitmq"
BUSY_WARNING_PCT = 20  # machine CPU busy in the second before a run above which figures are flagged
KEPT_UP_SHARE = (
    0.95  # an offered-load phase kept up when it published and closed at ≥ 95% of the offered rate
)


@dataclass(frozen=True)
class Options:
    records: int
    warmup: int
    publishers: int
    window: int
    payload_bytes: int
    timeout: float  # seconds per phase (warm-up, full speed, offered load)
    backends: tuple[str, ...]
    pg_admin: str
    hub_log_level: str
    seed: int
    as_json: bool
    keep: bool
    analyze: bool
    offered_rate: float = 200.0  # records/s of the offered-load phase; 0 skips it
    offered_records: int = 4000  # records of the offered-load phase; 0 skips it
    amqp_url: str = rabbitmq.DEFAULT_AMQP_URL
    batch: int = 1  # ackhub at full speed: records per PublishRecords call (1: PublishRecord)
    # Publisher threads of the offered-load phase: enough that one slow answer does not hold the next
    # records back (with 4 at 200/s, each call must return within 20 ms or the schedule slips).
    offered_publishers: int = 16
    workers: tuple[int, ...] = (1,)  # hub processes per PostgreSQL run (`ackhub serve --workers N`)
    hub_repo: Path | None = None  # another checkout whose hub to run (before/after pairs)

    def publishers_for(self, rate: float) -> int:
        return self.offered_publishers if rate > 0 else self.publishers


@dataclass(frozen=True)
class Phase:
    """Records `first` .. `first + records - 1`, published at `rate` records/s (0: as fast as possible).
    `name` is the phase's key in the results; the warm-up has none and is not measured."""

    name: str | None
    label: str
    first: int
    records: int
    rate: float


def phase_plan(opts: Options) -> tuple[Phase, ...]:
    """Warm-up, full speed, offered load: the same for every backend, the baseline included."""
    plan = []
    if opts.warmup:
        plan.append(Phase(None, "warm-up", 0, opts.warmup, 0.0))
    if opts.records:
        plan.append(Phase("full_speed", "full speed", opts.warmup, opts.records, 0.0))
    if opts.offered_records and opts.offered_rate:
        first = opts.warmup + opts.records
        label = f"offered {opts.offered_rate:g}/s"
        plan.append(Phase("offered_load", label, first, opts.offered_records, opts.offered_rate))
    return tuple(plan)


# -- test data ---------------------------------------------------------------------------------------


def make_enterprises(rng: random.Random, count: int = 64) -> list[str]:
    """Valid USCCs: 9 (registered by market regulation), 1 (enterprise), a division, an org code, check."""
    divisions = ["110000", "310000", "440300", "320500", "330200", "370200"]
    codes = []
    for _ in range(count):
        body = "91" + rng.choice(divisions) + "".join(rng.choice(USCC_CHARSET[:10]) for _ in range(8))
        body += rng.choice(USCC_CHARSET)
        code = body + uscc_check_character(body)
        assert check_uscc(code) is None, code
        codes.append(code)
    return codes


def make_record(index: int, size: int, seed: int, enterprises: list[str]) -> tuple[bytes, str, str]:
    """(about `size` bytes of JSON, subject USCC, declaration number) for record `index` (export)."""
    rng = random.Random(seed * 1_000_003 + index)
    office = rng.choice(["2201", "5316", "0101", "4200", "2233"])
    declaration = f"{office}{datetime.now(UTC).year}0{index + 1:09d}"
    assert check_declaration_number(declaration) is None, declaration
    uscc = rng.choice(enterprises)
    values = [round(rng.uniform(100, 90_000), 2) for _ in range(3)]
    goods = [
        {
            "line": line,
            "hs_code": rng.choice(["8471300000", "8517130000", "6403990090", "9403609990"]),
            "quantity": rng.randint(1, 5000),
            "unit": rng.choice(["台", "个", "双", "件"]),
            "fob_value_usd": f"{value:.2f}",
        }
        for line, value in enumerate(values, start=1)
    ]
    # As the catalogue's schema of the record type says (adapters/schemas/), so that publish accepts it.
    document: dict[str, Any] = {
        "declaration_number": declaration,
        "customs_office": office,
        "exporter": {"uscc": uscc, "name": f"基准贸易有限公司 {uscc[-6:]}"},
        "trade_mode": "0110",
        "release_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "destination_country": rng.choice(["DEU", "USA", "JPN"]),
        "incoterm": "FOB",
        "fob_value_usd": f"{sum(values):.2f}",
        "goods": goods,
        "remarks": "",
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    document["remarks"] = "x" * max(0, size - len(text))
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), uscc, declaration


# -- the hub process ---------------------------------------------------------------------------------


def _toml(value: str | int) -> str:
    return json.dumps(value, ensure_ascii=True)  # a JSON string or integer is a valid TOML one


def hub_config(
    database_url: str, keys: dict[str, Ed25519PrivateKey], opts: Options, listen: str = "127.0.0.1:0"
) -> str:
    """The hub's TOML: the three agencies with the bench's keys, one route, loopback on a free port, no
    per-caller rate limit. Attempts wait 30 s for an answer and the deadline is 10 min, so nothing is
    retried or escalated unless the hub really loses an answer."""
    lines = [
        "[server]",
        f"listen = {_toml(listen)}",
        f"database_url = {_toml(database_url)}",
        f"stream_window = {_toml(opts.window)}",
        f"sweep_interval = {_toml('1s')}",
        f"max_payload_bytes = {_toml(max(65536, opts.payload_bytes * 2))}",
        f"log_level = {_toml(opts.hub_log_level)}",
        "",
    ]
    for agency, key in keys.items():
        lines += [
            "[[agencies]]",
            f"id = {_toml(agency)}",
            f"name = {_toml(agency.upper())}",
            f"kind = {_toml(agency)}",  # customs, tax and fx are kinds too
            "[[agencies.keys]]",
            f"id = {_toml(agency + '-bench-1')}",
            f"public_key = {_toml(public_key_base64(key.public_key()))}",
            "",
        ]
    if "limits" in Settings.model_fields:  # the per-caller rate limit would measure itself, not the hub
        lines += ["[limits]", "requests_per_second = 0.0", ""]
    lines += ["[[routes]]", f"record_type = {_toml(RECORD_TYPE)}", f"publishers = [{_toml(PUBLISHER)}]", ""]
    for agency, (level, _closing) in RECIPIENTS.items():
        lines += [
            "[[routes.recipients]]",
            f"agency = {_toml(agency)}",
            f"ack_level = {_toml(level)}",
            f"deadline = {_toml('10m')}",
            "[routes.recipients.retry]",
            f"first_interval = {_toml('30s')}",
            f"max_interval = {_toml('5m')}",
            "",
        ]
    return "\n".join(lines)


class HubProcess(launch.HubProcess):
    """The hub under test; learns its port from the log. With `workers` > 1 it is `ackhub serve --workers
    N` (a supervisor and N hub processes on one port): ready once all N started, and its CPU and memory
    are the N processes' together."""

    def __init__(self, config: Path, log: Path, workers: int = 1, repo: Path | None = None) -> None:
        super().__init__(config, log, ["--workers", str(workers)] if workers > 1 else [], repo)
        self.workers = workers

    def start(self, timeout: float = 20) -> float:
        """Launch and wait until every hub process logged its start; the address is then in `target`."""
        began = time.perf_counter()
        self.launch(append=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            started = [
                json.loads(line)
                for line in self.log.read_text(errors="replace").splitlines()
                if '"hub.started"' in line
            ]
            if len(started) >= self.workers:
                self.target = f"127.0.0.1:{started[0]['port']}"
                return time.perf_counter() - began
            time.sleep(0.05)
        raise TimeoutError(f"the hub did not start within {timeout:.0f} s:\n{self.tail()}")

    def pids(self) -> list[int]:
        """The hub processes: the one process, or the supervisor's children."""
        if self.workers == 1:
            return [self.pid]
        with suppress(OSError):
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            return [int(child) for child in children]
        return []


# -- measuring ---------------------------------------------------------------------------------------


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def process_cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of all of a process's threads so far; nan when it cannot be read."""
    if pid is None:
        return math.nan
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_memory_mib(pid: int | None, field: str) -> float:
    """`VmHWM` (peak resident set) or `VmRSS` (now) of a process, in MiB; nan when it cannot be read."""
    if pid is None:
        return math.nan
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return math.nan
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return math.nan


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank p50/p95/p99/max, in milliseconds (values are seconds)."""
    if not values:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 2)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1] * 1000, 2)}


class Meter:
    """What one phase cost: CPU time of the server process (the hub, or the RabbitMQ broker), of this
    process (publishers and agencies) and of the whole machine, and the server's resident memory, sampled
    when the phase starts, at every progress tick (0.5 s) and when it ends."""

    def __init__(self, server_pid: int | list[int] | None) -> None:
        """`server_pid`: the server's process, or several (a hub of N processes: their sum)."""
        self.pids = server_pid if isinstance(server_pid, list) else [server_pid]
        self.pid = self.pids[0]
        self.began = time.perf_counter()
        self.server_cpu = self.cpu()
        self.client_cpu = time.process_time()
        self.machine = machine_busy_jiffies()
        self.peak_rss = math.nan
        self.sample()

    def cpu(self) -> float:
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    def sample(self) -> float:
        """The server's resident memory now, in MiB, kept as the peak when it is the highest so far."""
        rss = sum(process_memory_mib(pid, "VmRSS") for pid in self.pids)
        if not math.isnan(rss) and (math.isnan(self.peak_rss) or rss > self.peak_rss):
            self.peak_rss = rss
        return rss

    def stop(self) -> dict[str, Any]:
        rss = self.sample()
        busy = [b - a for a, b in zip(self.machine, machine_busy_jiffies(), strict=True)]
        return {
            "server": {
                "pid": self.pid,
                "peak_rss_mib": round(self.peak_rss, 1),
                "rss_mib_at_end": round(rss, 1),
                "cpu_s": round(self.cpu() - self.server_cpu, 2),
            },
            "client_cpu_s": round(time.process_time() - self.client_cpu, 2),
            "machine_cpu_busy_pct": round(100 * busy[0] / max(busy[1], 1), 1),
            "wall_s": round(time.perf_counter() - self.began, 3),
        }


class Tracker:
    """One phase's bookkeeping, shared by the publisher threads and the recipients' threads. The RabbitMQ
    baseline records into it too (`publish_done`, `ack`, `redelivered`), so both sides' figures come from
    the same `figures()`. Delivery keys are the hub's delivery ids, or `<message id>/<queue>` for the
    baseline."""

    def __init__(self, records: int, rate: float = 0.0) -> None:
        self.records = records
        self.rate = rate  # records/s the publishers are paced at; 0: as fast as possible
        self.expected = records * len(RECIPIENTS)
        self.lock = threading.Lock()
        self.published_at: dict[str, tuple[str, float]] = {}  # delivery key → (recipient, call start)
        self.due_at: dict[str, float] = {}  # delivery key → when its record was due (paced phases)
        self.closed_at: dict[str, float] = {}  # delivery key → when its closing acknowledgement was done
        self.publish_calls: list[tuple[float, float]] = []  # (start, end)
        self.schedule_lags: list[float] = []  # paced phases: how late each publish call started
        self.acks_ok = 0
        self.duplicate_acks = 0
        self.redeliveries = 0
        self.errors: list[str] = []
        self.done = threading.Event()  # every delivery closed, or a failure
        self.meter: Meter | None = None
        self.usage: dict[str, Any] = {}

    # - the phase's measurements

    def begin(self, server_pid: int | list[int] | None) -> None:
        """The phase starts now: take the CPU and memory readings `figures()` reports the cost against.
        What this process holds so far is kept out of its garbage collector's full collections (as
        `ackhub serve` does after start-up): walking it paused every thread here, publishers and agencies
        alike, for ~50 ms, which showed as the slowest latencies of whichever side was being measured."""
        gc.collect()
        gc.freeze()
        self.meter = Meter(server_pid)

    def sample(self) -> None:
        if self.meter is not None:
            self.meter.sample()

    def end(self) -> None:
        if self.meter is not None:
            self.usage = self.meter.stop()

    # - what any transport reports

    def publish_done(
        self, start: float, end: float, deliveries: Iterable[tuple[str, str]], due: float | None = None
    ) -> None:
        """A publish call from `start` to `end` made `deliveries` ((key, recipient) pairs); `due` is when
        the schedule wanted it to start, in a paced phase."""
        with self.lock:
            self.publish_calls.append((start, end))
            if due is not None:
                self.schedule_lags.append(max(0.0, start - due))
            for key, recipient in deliveries:
                self.published_at[key] = (recipient, start)
                if due is not None:
                    self.due_at[key] = due

    def ack(self, key: str, closing: bool, at: float, duplicate: bool = False) -> None:
        """An acknowledgement of delivery `key` was done at `at`; `closing` when it closes the delivery."""
        with self.lock:
            self.acks_ok += 1
            self.duplicate_acks += int(duplicate)
            if closing:
                self.closed_at.setdefault(key, at)
            finished = len(self.closed_at) >= self.expected
        if finished:
            self.done.set()

    def redelivered(self) -> None:
        with self.lock:
            self.redeliveries += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)
        self.done.set()

    def progress(self) -> tuple[int, int]:
        with self.lock:
            return len(self.publish_calls), len(self.closed_at)

    # - what the hub's SDK reports

    def published(self, start: float, end: float, receipt: Any, due: float | None = None) -> None:
        self.publish_done(start, end, [(ref.delivery_id, ref.recipient) for ref in receipt.deliveries], due)
        if len(receipt.deliveries) != len(RECIPIENTS):
            self.fail(f"record {receipt.record_id} got {len(receipt.deliveries)} deliveries")

    def delivered(self, delivery: Delivery) -> None:
        if delivery.attempt > 1:
            self.redelivered()

    def ack_result(self, agency: str, result: Any, at: float) -> None:
        if not result.ok:
            self.fail(f"{agency}: hub refused the ack of {result.delivery_id}: {result.error.message}")
            return
        closing = result.status == _STATUS[RECIPIENTS[agency][1]]
        self.ack(result.delivery_id, closing, at, duplicate=bool(result.duplicate))

    # - the figures

    def figures(self, start: float) -> dict[str, Any]:
        """Rates over first publish → last closing ack, latencies per delivery, what the phase cost, and
        for a paced phase whether it kept up with the offered rate."""
        with self.lock:
            calls = list(self.publish_calls)
            closed = dict(self.closed_at)
            published = dict(self.published_at)
            due_at = dict(self.due_at)
            lags = list(self.schedule_lags)
        first = min((s for s, _ in calls), default=start)
        last_publish = max((e for _, e in calls), default=first)
        last_close = max(closed.values(), default=first)
        elapsed = max(last_close - first, 1e-9)
        by_recipient: dict[str, list[float]] = {agency: [] for agency in RECIPIENTS}
        for key, (recipient, began) in published.items():
            if key in closed:
                by_recipient[recipient].append(closed[key] - began)
        every = [v for values in by_recipient.values() for v in values]
        publish_elapsed = max(last_publish - first, 1e-9)
        figures: dict[str, Any] = {
            "records": len(calls),
            "deliveries_closed": len(closed),
            "acks_verified": self.acks_ok,
            "elapsed_s": round(elapsed, 3),
            "records_per_s": round(len(calls) / elapsed, 1),
            "deliveries_closed_per_s": round(len(closed) / elapsed, 1),
            "acks_per_s": round(self.acks_ok / elapsed, 1),
            "latency_ms": {"all": percentiles(every), **{a: percentiles(v) for a, v in by_recipient.items()}},
            "publish": {
                "elapsed_s": round(publish_elapsed, 3),
                "calls_per_s": round(len(calls) / publish_elapsed, 1),
                "latency_ms": percentiles([e - s for s, e in calls]),
            },
            "redeliveries": self.redeliveries,
            "duplicate_acks": self.duplicate_acks,
            **self.usage,
        }
        if self.rate > 0:
            figures.update(self.offered_figures(calls, closed, due_at, lags))
        return figures

    def offered_figures(
        self,
        calls: list[tuple[float, float]],
        closed: dict[str, float],
        due_at: dict[str, float],
        lags: list[float],
    ) -> dict[str, Any]:
        """Whether a paced phase kept up: publish calls started per second and records closed per second,
        each over the span from its first to its last event plus one interval (so exactly the offered rate
        when on schedule), how late calls started, and latency counted from when each record was due."""
        interval = 1 / self.rate
        starts = [s for s, _ in calls]
        publish_rate = len(starts) / (max(starts) - min(starts) + interval) if starts else 0.0
        closes = list(closed.values())
        records_closed = len(closes) / len(RECIPIENTS)
        ack_rate = records_closed / (max(closes) - min(closes) + interval) if closes else 0.0
        return {
            "offered_rate": self.rate,
            "achieved_publish_rate": round(publish_rate, 1),
            "achieved_close_rate": round(ack_rate, 1),
            "kept_up": min(publish_rate, ack_rate) >= KEPT_UP_SHARE * self.rate,
            "schedule_lag_ms": percentiles(lags),
            "latency_from_schedule_ms": percentiles(
                [closed[k] - due for k, due in due_at.items() if k in closed]
            ),
        }


def summarize(tracker: Tracker, start: float) -> dict[str, Any]:
    """The phase's figures (see `Tracker.figures`)."""
    return tracker.figures(start)


class StampedResults(Queue[Any]):
    """Stands in for `AgencyClient.results`: hands each `AckResult` to the current phase's tracker, stamped
    the moment the stream thread reads it (nothing is queued)."""

    def __init__(self, agency: str, phase: Callable[[], Tracker]) -> None:
        super().__init__()
        self.agency = agency
        self.phase = phase

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.phase().ack_result(self.agency, item, time.perf_counter())


def handler_for(agency: str, phase: Callable[[], Tracker]) -> Handler:
    """Tax answers RECEIVED then ACCEPTED in one go; FX answers RECEIVED."""

    def answer(delivery: Delivery) -> Verdict | list[Verdict]:
        phase().delivered(delivery)
        if RECIPIENTS[agency][1] == "ACCEPTED":
            return [Verdict.received(), Verdict.accept("registered for export tax refund")]
        return Verdict.received()

    return answer


def publish_share(
    tracker: Tracker,
    client: AgencyClient,
    indices: range,
    first: int,
    opts: Options,
    start: float,
    data: list[str],
) -> None:
    """Publish records `indices` one after another, each at its turn of the tracker's rate when it has one
    (record `first` is due at `start`); at full speed with `--batch` > 1, that many per PublishRecords."""
    if opts.batch > 1 and tracker.rate <= 0:
        publish_batches(tracker, client, indices, opts, data)
        return
    for index in indices:
        if tracker.done.is_set():
            return  # a failure elsewhere: stop early
        payload, uscc, declaration = make_record(index, opts.payload_bytes, opts.seed, data)
        due = None
        if tracker.rate > 0:
            due = start + (index - first) / tracker.rate
            if tracker.done.wait(max(0.0, due - time.perf_counter())):
                return
        began = time.perf_counter()
        try:
            receipt = client.publish(
                RECORD_TYPE, payload, subject_uscc=uscc, declaration_number=declaration, timeout=30
            )
        except grpc.RpcError as error:
            tracker.fail(f"publish of record {index}: {error.code().name}: {error.details()}")
            return
        tracker.published(began, time.perf_counter(), receipt, due)


def publish_batches(
    tracker: Tracker, client: AgencyClient, indices: range, opts: Options, data: list[str]
) -> None:
    for offset in range(0, len(indices), opts.batch):
        if tracker.done.is_set():
            return
        batch = indices[offset : offset + opts.batch]  # a publisher's share may be strided
        publications = []
        for index in batch:
            payload, uscc, declaration = make_record(index, opts.payload_bytes, opts.seed, data)
            publications.append(Publication(RECORD_TYPE, payload, uscc, declaration))
        began = time.perf_counter()
        try:
            results = client.publish_many(publications, timeout=30)
        except grpc.RpcError as error:
            tracker.fail(
                f"publish of records {batch.start}..{batch.stop - 1}: {error.code().name}: {error.details()}"
            )
            return
        ended = time.perf_counter()
        for index, result in zip(batch, results, strict=True):
            if result.HasField("error"):
                tracker.fail(f"publish of record {index}: {result.error.reason}: {result.error.message}")
                return
            tracker.published(began, ended, result.receipt, None)


def run_phase(
    tracker: Tracker,
    publishers: list[AgencyClient],
    first_index: int,
    opts: Options,
    data: list[str],
    hub: HubProcess,
    deadline: float,
    report: Callable[[str, bool], None],
    label: str,
) -> float:
    """Publish `tracker.records` records and wait until every delivery is closed; returns when it started."""
    count = len(publishers)
    tracker.begin(hub.pids())
    start = time.perf_counter()
    threads = [
        threading.Thread(
            target=publish_share,
            args=(
                tracker,
                client,
                range(first_index + i, first_index + tracker.records, count),
                first_index,
                opts,
                start,
                data,
            ),
            name=f"publish-{i}",
            daemon=True,
        )
        for i, client in enumerate(publishers)
    ]
    for thread in threads:
        thread.start()
    while not tracker.done.wait(0.5):
        tracker.sample()
        published, closed = tracker.progress()
        report(f"{label}: published {published}/{tracker.records}, closed {closed}/{tracker.expected}", False)
        if not hub.alive():
            tracker.fail(f"the hub process died:\n{hub.tail()}")
        elif time.perf_counter() > deadline:
            tracker.fail(f"timed out with {closed} of {tracker.expected} deliveries closed")
    tracker.end()
    for thread in threads:
        thread.join(35)
    published, closed = tracker.progress()
    report(f"{label}: published {published}/{tracker.records}, closed {closed}/{tracker.expected}", True)
    return start


# -- the stores --------------------------------------------------------------------------------------


@contextmanager
def sqlite_store(work: Path) -> Iterator[tuple[str, str]]:
    """A new SQLite file in the run's folder (the hub migrates it)."""
    yield f"sqlite:///{work / 'hub.db'}", f"SQLite {sqlite3.sqlite_version} (file)"


@contextmanager
def postgres_store(admin_url: str, keep: bool) -> Iterator[tuple[str, str]]:
    """A fresh database on the local server, dropped afterwards unless `keep`."""
    admin = make_url(admin_url)
    if admin.host not in LOOPBACK:
        raise ValueError(f"--pg-admin must point at a loopback address, not {admin.host!r}")
    name = f"ackhub_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        autovacuum = str(conn.execute("SHOW autovacuum").fetchone()[0])  # type: ignore[index]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin.set(database=name).render_as_string(hide_password=False)
        yield url, f"PostgreSQL {version.split()[0]} (autovacuum {autovacuum})"
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze(database_url: str) -> None:
    """Planner statistics for the warmed-up tables, as autovacuum gives a long-running hub's database
    (without them, `delivery_id IN (...64 ids...)` on acknowledgements is planned as a sequential scan)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("ANALYZE")


def store_counts(database_url: str) -> dict[str, Any]:
    """What the hub stored: deliveries by recipient and state, acknowledgements, audit events, cases."""
    queries = {
        "deliveries": "SELECT recipient, state, count(*) FROM deliveries GROUP BY recipient, state",
        "acknowledgements": "SELECT count(*) FROM acknowledgements",
        "audit_events": "SELECT count(*) FROM audit_events",
        "escalations": "SELECT count(*) FROM escalations",
    }
    rows: dict[str, list[tuple[Any, ...]]] = {}
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=10) as conn:
            rows = {k: list(conn.execute(q).fetchall()) for k, q in queries.items()}
        conn.close()
    else:
        with psycopg.connect(database_url, connect_timeout=5) as pg:
            rows = {k: list(pg.execute(q).fetchall()) for k, q in queries.items()}
    return {
        "deliveries": {f"{r}/{s}": int(n) for r, s, n in rows["deliveries"]},
        **{k: int(rows[k][0][0]) for k in ("acknowledgements", "audit_events", "escalations")},
    }


def check_store(counts: dict[str, Any], records: int) -> list[str]:
    """Every delivery closed, every acknowledgement kept, nothing escalated; else what differs."""
    problems = []
    for agency, (_level, closing) in RECIPIENTS.items():
        found = counts["deliveries"].get(f"{agency}/{closing}", 0)
        if found != records:
            problems.append(f"store: {found} {agency} deliveries {closing}, expected {records}")
    acks = records * sum(2 if closing == "ACCEPTED" else 1 for _l, closing in RECIPIENTS.values())
    if counts["acknowledgements"] != acks:
        problems.append(f"store: {counts['acknowledgements']} acknowledgements, expected {acks}")
    if counts["escalations"]:
        problems.append(f"store: {counts['escalations']} escalation cases, expected none")
    return problems


# -- one backend -------------------------------------------------------------------------------------


def drive(
    backend: str,
    hub: HubProcess,
    keys: dict[str, Ed25519PrivateKey],
    database_url: str,
    opts: Options,
    result: dict[str, Any],
    report: Callable[[str, bool], None],
    clients: list[AgencyClient],
) -> None:
    """Start the hub, connect the agencies (kept in `clients`, for the caller to close), run the phases
    and put each measured phase's figures in `result` under its name."""
    hub.start(timeout=60)
    target = hub.target
    report(f"{backend}: hub pid {hub.pid} on {target} ({result['database']})", True)
    trackers = [Tracker(0)]

    def phase() -> Tracker:
        return trackers[-1]

    for agency in RECIPIENTS:
        client = AgencyClient(target, agency, key_id=f"{agency}-bench-1", private_key=keys[agency])
        client.results = StampedResults(agency, phase)
        clients.append(client)
        start_subscription(client, handler_for(agency, phase), window=opts.window)
    publishers = [
        AgencyClient(target, PUBLISHER) for _ in range(max(opts.publishers, opts.offered_publishers))
    ]
    clients.extend(publishers)
    for client in publishers:
        grpc.channel_ready_future(client.channel).result(timeout=10)
    enterprises = make_enterprises(random.Random(opts.seed))
    for step in phase_plan(opts):
        tracker = Tracker(step.records, step.rate)
        trackers.append(tracker)
        deadline = time.perf_counter() + opts.timeout
        label = f"{backend} {step.label}"
        share = publishers[: opts.publishers_for(step.rate)]
        start = run_phase(tracker, share, step.first, opts, enterprises, hub, deadline, report, label)
        if step.name is None:  # the warm-up
            if tracker.errors:
                raise RuntimeError("warm-up: " + "; ".join(tracker.errors))
            if backend == "postgres" and opts.analyze:
                analyze(database_url)
                result["database"] += "; ANALYZE after warm-up"
            continue
        result[step.name] = tracker.figures(start)
        if tracker.errors:
            result["errors"] += [f"{step.label}: {error}" for error in tracker.errors]
            return


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_name(backend: str, workers: int) -> str:
    """The key of a run in the results: `postgres` for one process, `postgres-2proc` for two."""
    return backend if workers == 1 else f"{backend}-{workers}proc"


def run_backend(
    backend: str, opts: Options, work: Path, report: Callable[[str, bool], None], workers: int = 1
) -> dict[str, Any]:
    """One complete run on a fresh store: its figures, what the store holds afterwards, and any errors."""
    store = sqlite_store(work) if backend == "sqlite" else postgres_store(opts.pg_admin, opts.keep)
    busy_before = machine_busy_before()
    name = run_name(backend, workers)
    with store as (database_url, database):
        keys = {agency: Ed25519PrivateKey.generate() for agency in (PUBLISHER, *RECIPIENTS)}
        config = work / f"hub-{name}.toml"
        listen = "127.0.0.1:0" if workers == 1 else f"127.0.0.1:{free_port()}"
        config.write_text(hub_config(database_url, keys, opts, listen), encoding="utf-8")
        load_settings(config, environ={})  # a bad configuration fails here, with every problem named
        hub = HubProcess(config, work / f"hub-{name}.log", workers, opts.hub_repo)
        if workers > 1:
            database += f", {workers} hub processes"
        result: dict[str, Any] = {
            "backend": name,
            "database": database,
            "machine_busy_before_pct": busy_before,
            "errors": [],
        }
        if opts.keep:
            result["kept"] = {"database_url": database_url, "hub_log": str(hub.log)}
        clients: list[AgencyClient] = []
        try:
            drive(backend, hub, keys, database_url, opts, result, report, clients)
        except Exception as error:
            result["errors"].append(f"{type(error).__name__}: {error}")
        finally:
            for client in clients:
                client.close()
            hub.stop(15)
        if any(step.name in result for step in phase_plan(opts)):
            try:
                result["store"] = store_counts(database_url)
                if not result["errors"]:
                    records = sum(step.records for step in phase_plan(opts))
                    result["errors"] = check_store(result["store"], records)
            except Exception as error:
                result["errors"].append(f"store check: {type(error).__name__}: {error}")
        if result["errors"]:
            result["hub_log_tail"] = hub.tail()
        result["ok"] = not result["errors"]
        return result


def machine_busy_before() -> float:
    """How busy the machine's CPUs were, in %, over one second (before a run: flags a disturbed run)."""
    before = machine_busy_jiffies()
    time.sleep(1)
    busy = [b - a for a, b in zip(before, machine_busy_jiffies(), strict=True)]
    return round(100 * busy[0] / max(busy[1], 1), 1)


@dataclass(frozen=True)
class Workload:
    """What the RabbitMQ baseline is handed: the same records, recipients and phases as the hub gets, and
    the same bookkeeping class, so that its figures are computed by the same code."""

    record: Callable[[int], tuple[bytes, str, str]]  # index → (payload, subject USCC, declaration number)
    record_type: str
    publisher: str
    recipients: tuple[str, ...]
    phases: tuple[Phase, ...]
    tracker: Callable[[int, float], Tracker]  # (records, rate) → a phase's tracker


def run_baseline(opts: Options, report: Callable[[str, bool], None]) -> dict[str, Any]:
    """The RabbitMQ baseline (bench/rabbitmq.py) with this run's records and phases."""
    enterprises = make_enterprises(random.Random(opts.seed))

    def record(index: int) -> tuple[bytes, str, str]:
        return make_record(index, opts.payload_bytes, opts.seed, enterprises)

    workload = Workload(record, RECORD_TYPE, PUBLISHER, tuple(RECIPIENTS), phase_plan(opts), Tracker)
    busy_before = machine_busy_before()
    result = rabbitmq.run_baseline(opts, workload, report)
    if result.get("available"):
        result["machine_busy_before_pct"] = busy_before
    return result


# -- output ------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPUs, CPU model, platform and Python, for the report."""
    model = ""
    with suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """ackhub ÷ baseline acknowledged deliveries per second, per ackhub backend and measured phase; empty
    without a successful baseline, None for a phase either side did not complete."""
    baseline = results.get(BASELINE)
    if not baseline or not baseline.get("ok"):
        return {}
    found: dict[str, dict[str, float | None]] = {}
    for name in results:
        if name == BASELINE:
            continue
        found[f"{name}/{BASELINE}"] = {}
        for phase in ("full_speed", "offered_load"):
            if phase not in baseline:
                continue
            ours = (
                results[name].get(phase, {}).get("deliveries_closed_per_s") if results[name]["ok"] else None
            )
            theirs = baseline[phase]["deliveries_closed_per_s"]
            found[f"{name}/{BASELINE}"][phase] = round(ours / theirs, 3) if ours and theirs else None
    return found


def cell(value: Any) -> str:
    """A table cell: '—' for what was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return str(value)


def pair(first: Any, second: Any) -> str:
    return f"{cell(first)} / {cell(second)}"


Row = tuple[str, Callable[[dict[str, Any]], Any]]

PHASE_ROWS: list[Row] = [
    ("records/s, end to end", lambda p: p["records_per_s"]),
    ("deliveries acknowledged/s", lambda p: p["deliveries_closed_per_s"]),
    ("acks/s (ackhub: signed, verified, stored)", lambda p: p["acks_per_s"]),
    ("elapsed s (first publish → last ack)", lambda p: p["elapsed_s"]),
    ("latency ms p50 (publish → final ack)", lambda p: p["latency_ms"]["all"]["p50"]),
    ("latency ms p95", lambda p: p["latency_ms"]["all"]["p95"]),
    ("latency ms p99", lambda p: p["latency_ms"]["all"]["p99"]),
    ("latency ms max", lambda p: p["latency_ms"]["all"]["max"]),
    (
        "  tax p50 / p99 (ackhub: ACCEPTED)",
        lambda p: pair(p["latency_ms"]["tax"]["p50"], p["latency_ms"]["tax"]["p99"]),
    ),
    (
        "  fx p50 / p99 (ackhub: RECEIVED)",
        lambda p: pair(p["latency_ms"]["fx"]["p50"], p["latency_ms"]["fx"]["p99"]),
    ),
    ("publish calls/s", lambda p: p["publish"]["calls_per_s"]),
    (
        "publish call ms p50 / p99",
        lambda p: pair(p["publish"]["latency_ms"]["p50"], p["publish"]["latency_ms"]["p99"]),
    ),
    ("redeliveries / duplicate acks", lambda p: pair(p["redeliveries"], p["duplicate_acks"])),
    (
        "server RSS MiB peak / at end",
        lambda p: pair(p["server"]["peak_rss_mib"], p["server"]["rss_mib_at_end"]),
    ),
    (
        "server CPU s (of elapsed)",
        lambda p: f"{cell(p['server']['cpu_s'])} ({100 * p['server']['cpu_s'] / p['wall_s']:.0f}%)",
    ),
    ("bench client CPU s", lambda p: p["client_cpu_s"]),
    ("machine CPU busy % (all cores)", lambda p: p["machine_cpu_busy_pct"]),
]

OFFERED_ROWS: list[Row] = [
    ("publish calls started/s (achieved)", lambda p: p["achieved_publish_rate"]),
    ("records closed/s (achieved)", lambda p: p["achieved_close_rate"]),
    ("kept up with the offered rate", lambda p: "yes" if p["kept_up"] else "NO"),
    (
        "publish start lag ms p50 / p99",
        lambda p: pair(p["schedule_lag_ms"]["p50"], p["schedule_lag_ms"]["p99"]),
    ),
    (
        "latency ms p50 / p99 from when due",
        lambda p: pair(p["latency_from_schedule_ms"]["p50"], p["latency_from_schedule_ms"]["p99"]),
    ),
]


def phase_cells(result: dict[str, Any], phase: str, rows: list[Row]) -> list[str]:
    """One cell per row for one backend's phase; '—' where the figure is missing."""
    cells = []
    for _label, get in rows:
        try:
            cells.append(cell(get(result[phase])))
        except (KeyError, TypeError, ZeroDivisionError):
            cells.append("—")
    return cells


def title(result: dict[str, Any]) -> str:
    """A backend's column title: its store or broker and version, and whether it failed."""
    name = str(result["database"]).split(" (")[0]
    if result.get("available") is False:
        return name + " UNAVAILABLE"
    return name + ("" if result["ok"] else " FAILED")


def offered_warnings(results: dict[str, Any]) -> list[str]:
    """One line per backend whose offered-load phase fell behind the offered rate."""
    lines = []
    for name, result in results.items():
        offered = result.get("offered_load")
        if not offered or offered.get("kept_up", True):
            continue
        lines.append(
            f"{name}: WARNING: offered load not sustained: {offered['offered_rate']:g} records/s offered, "
            f"{offered['achieved_publish_rate']} publish calls/s started and {offered['achieved_close_rate']} "
            f"records/s closed; publishes started up to {cell(offered['schedule_lag_ms']['max'])} ms late, so "
            f"the phase measured saturation, not latency at {offered['offered_rate']:g}/s"
        )
    return lines


def unavailable_banner(summary: dict[str, Any]) -> str:
    reason = summary.get("baseline_unavailable")
    if not reason:
        return ""
    return (
        f"!!! RabbitMQ baseline UNAVAILABLE: {reason}\n"
        "!!! ackhub's figures only, no ratio; the exit code does not count this as a failure"
    )


def scaling(results: dict[str, Any], workers: tuple[int, ...]) -> dict[str, dict[str, float | None]]:
    """PostgreSQL with N hub processes ÷ with the fewest, acknowledged deliveries per second, per phase."""
    base = results.get(run_name("postgres", min(workers)))
    found: dict[str, dict[str, float | None]] = {}
    if not base or not base.get("ok") or len(workers) < 2:
        return found
    for count in sorted(workers)[1:]:
        run = results.get(run_name("postgres", count), {})
        found[f"{run_name('postgres', count)}/{run_name('postgres', min(workers))}"] = {
            phase: (
                round(run[phase]["deliveries_closed_per_s"] / base[phase]["deliveries_closed_per_s"], 3)
                if run.get("ok") and phase in run and phase in base
                else None
            )
            for phase in ("full_speed", "offered_load")
            if phase in base
        }
    return found


def render_scaling(summary: dict[str, Any]) -> list[str]:
    if not summary.get("scaling"):
        return []
    lines = ["PostgreSQL, N hub processes ÷ fewer, acknowledged deliveries per second:"]
    for name, values in summary["scaling"].items():
        lines.append(f"  {name}".ljust(22) + "".join(f"{p}: {cell(v)}".rjust(24) for p, v in values.items()))
    return lines


def render_ratios(summary: dict[str, Any]) -> list[str]:
    """The last lines of the table: ackhub ÷ baseline acknowledged deliveries per second."""
    found, results = summary["ratios"], summary["backends"]
    if BASELINE not in results:
        return [f"ackhub ÷ baseline: no ratio, {BASELINE} is not in --backends"]
    if not any(name != BASELINE for name in results):
        return ["ackhub ÷ baseline: no ratio, neither sqlite nor postgres is in --backends"]
    if not found:
        why = "was UNAVAILABLE" if results[BASELINE].get("available") is False else "FAILED"
        return [f"ackhub ÷ RabbitMQ baseline: no ratio, the baseline {why}"]
    phases = [p for p in ("full_speed", "offered_load") if any(p in r for r in found.values())]
    batch = summary["params"]["batch"]
    heads = {
        "full_speed": f"full speed{f' (batch {batch})' if batch > 1 else ''}",
        "offered_load": f"offered {summary['params']['offered_rate']:g}/s",
    }
    lines = [
        "ackhub ÷ RabbitMQ baseline, acknowledged deliveries per second (1 = as many as the baseline):",
        "".ljust(22) + "".join(heads[p].rjust(18) for p in phases),
    ]
    for name, values in found.items():
        lines.append(f"  {name}".ljust(22) + "".join(cell(values.get(p)).rjust(18) for p in phases))
    return lines


def render_table(summary: dict[str, Any]) -> str:
    params, results = summary["params"], summary["backends"]
    offered = f"{params['offered_records']} at {params['offered_rate']:g} records/s"
    phases = [
        f"{params['records']} records at full speed" if params["records"] else "",
        offered if params["offered_records"] and params["offered_rate"] else "",
    ]
    batching = f" (ackhub at full speed: {params['batch']} records per call)" if params["batch"] > 1 else ""
    head = (
        f"ackhub exchange bench — {', then '.join(p for p in phases if p)}; "
        f"{params['payload_bytes']} B JSON from customs to tax (ackhub: BUSINESS, RECEIVED+ACCEPTED) and fx "
        f"(RECEIVED); {params['publishers']} publishers{batching} ({params['offered_publishers']} under the "
        f"offered load), window {params['window']}, "
        f"warm-up {params['warmup']}"
        f"\nmachine: {summary['machine']['cpus']} CPUs {summary['machine']['cpu_model']}, "
        f"Python {summary['machine']['python']}; hub in its own process\n"
    )
    names = list(results)
    width = max(len(label) for label, _ in PHASE_ROWS + OFFERED_ROWS) + 2
    lines = [head]
    banner = unavailable_banner(summary)
    if banner:
        lines += [banner, ""]
    lines.append("".ljust(width) + "".join(title(results[n]).rjust(22) for n in names))
    sections = [
        (
            "full_speed",
            f"full speed: {params['records']} records, each call as soon as the last returned",
            [],
        ),
        ("offered_load", f"offered load: {offered}", OFFERED_ROWS),
    ]
    for phase, heading, extra in sections:
        if not any(phase in results[n] for n in names):
            continue
        lines.append(f"-- {heading}")
        rows = extra + PHASE_ROWS
        columns = [phase_cells(results[n], phase, rows) for n in names]
        for i, (label, _get) in enumerate(rows):
            lines.append(label.ljust(width) + "".join(column[i].rjust(22) for column in columns))
    lines.append("")
    for name in names:
        lines.append(f"{name}: {results[name]['database']}")
        if results[name].get("method"):
            lines.append(f"  {results[name]['method']}")
    notes = []
    for name in names:
        busy = results[name].get("machine_busy_before_pct", 0)
        if busy > BUSY_WARNING_PCT:
            notes.append(
                f"{name}: WARNING: the machine was {busy}% busy before the run; other work disturbs these figures"
            )
        if results[name].get("kept"):
            notes.append(f"{name}: kept {results[name]['kept']}")
    notes += offered_warnings(results)
    for name in names:
        for error in results[name]["errors"]:
            notes.append(f"{name}: FAILED: {error}")
        if results[name].get("hub_log_tail"):
            tail = "\n".join(results[name]["hub_log_tail"].splitlines()[-5:])
            notes.append(f"{name}: hub log (last lines; all of them with --json):\n{tail}")
    if notes:
        lines += ["", *notes]
    if banner:
        lines += ["", banner]
    lines += ["", *render_ratios(summary)]
    if summary.get("scaling"):
        lines += ["", *render_scaling(summary)]
    return "\n".join(lines)


def progress_printer(stream: TextIO) -> Callable[[str, bool], None]:
    """Progress lines: rewritten in place on a terminal, else one line every two seconds."""
    tty = stream.isatty()
    last = [0.0]

    def report(text: str, final: bool) -> None:
        if tty:
            stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final or time.monotonic() - last[0] >= 2:
            stream.write(text + "\n")
            last[0] = time.monotonic()
        stream.flush()

    return report


def finite(value: Any) -> Any:
    """`value` with every NaN (a figure that was not measured) replaced by None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def parse_args(argv: list[str] | None) -> Options:
    """Command-line options, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records",
        type=int,
        default=20_000,
        help="records of the full-speed phase; 0 skips it (default 20000)",
    )
    parser.add_argument(
        "--offered-rate",
        "--rate",
        type=float,
        default=200.0,
        help="records/s offered in the offered-load phase; 0 skips it (default 200; --rate is the old name)",
    )
    parser.add_argument(
        "--offered-records",
        type=int,
        default=4000,
        help="records of the offered-load phase; 0 skips it (default 4000: 20 s at 200/s)",
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="records sent first, not measured (default 100)"
    )
    parser.add_argument(
        "--publishers", type=int, default=4, help="concurrent publisher threads at full speed (default 4)"
    )
    parser.add_argument(
        "--offered-publishers",
        type=int,
        default=16,
        help="publisher threads of the offered-load phase (default 16): each record goes out at its time "
        "unless all of them are waiting for answers, so a slow answer delays the records behind it only "
        "when the hub is really behind",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="ackhub, full-speed phase: records per PublishRecords call (default 1: one PublishRecord "
        "call per record, as the baseline publishes); the offered-load phase always publishes one by one",
    )
    parser.add_argument(
        "--window", type=int, default=64, help="subscription window = RabbitMQ prefetch (default 64)"
    )
    parser.add_argument("--payload-bytes", type=int, default=1024, help="JSON payload size (default 1024)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds each phase may take, per backend (default 900)"
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgres,rabbitmq",
        help="comma-separated, run in this order: sqlite, postgres (ackhub's stores), rabbitmq (the baseline)",
    )
    parser.add_argument(
        "--workers",
        default="1",
        help="hub processes of each PostgreSQL run, comma-separated (`ackhub serve --workers N` on one "
        "port); e.g. 1,2 runs PostgreSQL twice and prints the scaling ratio (default 1)",
    )
    parser.add_argument(
        "--hub-repo",
        type=Path,
        help="run the hub of another checkout (e.g. a `git worktree` of an earlier commit) with this bench, "
        "for before/after pairs; its configuration keys must be the ones this bench writes. With a .venv of "
        "its own (`make .venv/.installed` there; needed for a checkout from before the ackhub namespace) "
        "it runs with that",
    )
    parser.add_argument(
        "--pg-admin", default=DEFAULT_PG_ADMIN, help="PostgreSQL URL that may create databases (loopback)"
    )
    parser.add_argument(
        "--amqp-url",
        default=rabbitmq.DEFAULT_AMQP_URL,
        help="the baseline's RabbitMQ, on loopback (default %(default)s)",
    )
    parser.add_argument("--hub-log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated records")
    parser.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the hub logs, SQLite file and PostgreSQL database"
    )
    parser.add_argument(
        "--no-analyze", action="store_true", help="skip ANALYZE of the PostgreSQL database after the warm-up"
    )
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not backends or set(backends) - {*HUB_BACKENDS, BASELINE} or len(set(backends)) != len(backends):
        parser.error("--backends takes sqlite, postgres and rabbitmq, each at most once")
    if args.records < 0 or args.warmup < 0 or min(args.publishers, args.offered_publishers) < 1:
        parser.error(
            "--records and --warmup must be 0 or more, --publishers and --offered-publishers at least 1"
        )
    if not 1 <= args.window <= 10_000:
        parser.error("--window must be 1..10000")
    if args.offered_rate < 0 or args.offered_records < 0:
        parser.error("--offered-rate and --offered-records must be 0 or more")
    if not args.records and not (args.offered_rate and args.offered_records):
        parser.error("nothing to measure: --records is 0 and so is --offered-rate or --offered-records")
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be between 1 and 500 (PublishRecords takes at most 500 records)")
    if args.payload_bytes < 1 or args.timeout <= 0:
        parser.error("--payload-bytes and --timeout must be positive")
    if BASELINE in backends and urlsplit(args.amqp_url).hostname not in LOOPBACK:
        parser.error(f"--amqp-url must point at a loopback address, not {urlsplit(args.amqp_url).hostname!r}")
    try:
        workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    except ValueError:
        workers = ()
    if not workers or min(workers) < 1 or len(set(workers)) != len(workers):
        parser.error("--workers takes distinct whole numbers of 1 or more, e.g. 1,2")
    return Options(
        hub_repo=args.hub_repo.resolve() if args.hub_repo else None,
        workers=workers,
        records=args.records,
        warmup=args.warmup,
        publishers=args.publishers,
        offered_publishers=args.offered_publishers,
        window=args.window,
        payload_bytes=args.payload_bytes,
        timeout=args.timeout,
        backends=backends,
        pg_admin=args.pg_admin,
        hub_log_level=args.hub_log_level,
        seed=args.seed,
        as_json=args.json,
        keep=args.keep,
        analyze=not args.no_analyze,
        offered_rate=args.offered_rate,
        offered_records=args.offered_records,
        amqp_url=args.amqp_url,
        batch=args.batch,
    )


def main(argv: list[str] | None = None) -> int:
    """Run each backend in turn and print the table (or one JSON object). 1 when any run failed; an
    unavailable baseline is reported, on stderr too, but is not a failure."""
    opts = parse_args(argv)
    report = progress_printer(sys.stderr if opts.as_json else sys.stdout)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ackhub-bench-") as scratch:
        work = Path(tempfile.mkdtemp(prefix="ackhub-bench-")) if opts.keep else Path(scratch)
        runs = [
            (backend, workers)
            for backend in opts.backends
            for workers in (opts.workers if backend == "postgres" else (1,))
        ]
        for backend, workers in runs:
            name = run_name(backend, workers)
            try:
                if backend == BASELINE:
                    results[name] = run_baseline(opts, report)
                else:
                    results[name] = run_backend(backend, opts, work, report, workers)
            except Exception as error:  # the store could not be set up: report it, go on with the next
                results[name] = {"backend": name, "database": f"{name} (not set up)", "ok": False}
                results[name]["errors"] = [f"{type(error).__name__}: {error}"]
    baseline = results.get(BASELINE, {})
    summary = {
        "bench": "exchange",
        "params": {
            "records": opts.records,
            "offered_records": opts.offered_records,
            "offered_rate": opts.offered_rate,
            "warmup": opts.warmup,
            "publishers": opts.publishers,
            "offered_publishers": opts.offered_publishers,
            "batch": opts.batch,
            "window": opts.window,
            "payload_bytes": opts.payload_bytes,
            "timeout_per_phase_s": opts.timeout,
            "backends": list(opts.backends),
            "postgres_workers": list(opts.workers),
            "hub": "subprocess",
            "hub_repo": str(opts.hub_repo) if opts.hub_repo else None,
            "hub_log_level": opts.hub_log_level,
            "analyze_after_warmup": opts.analyze,
            "amqp_url": rabbitmq.redact(opts.amqp_url),
        },
        "machine": machine_info(),
        "backends": results,
        "baseline_unavailable": baseline.get("unavailable_reason")
        if baseline.get("available") is False
        else None,
        "ratio_of": "acknowledged deliveries per second, ackhub ÷ RabbitMQ baseline, per phase",
        "ratios": ratios(results),
        "scaling": scaling(results, opts.workers),
        "ok": all(r["ok"] or r.get("available") is False for r in results.values()),
    }
    if summary["baseline_unavailable"]:
        print(unavailable_banner(summary), file=sys.stderr)
    if opts.as_json:
        print(json.dumps(finite(summary), ensure_ascii=False, allow_nan=False))
    else:
        print(render_table(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
