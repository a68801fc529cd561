"""End-to-end exchange benchmark: N records from customs to tax and FX over `Subscribe` streams, each
answered with signed acknowledgements that the hub verifies and stores.

A real hub (`ackhub serve`, scheduled sweeps on) runs in its own process on loopback, so the agencies'
Python work here does not share its GIL. Customs publishes from a few threads; tax answers RECEIVED then
ACCEPTED (route level BUSINESS), FX answers RECEIVED (route level RECEIVED). A delivery is closed when the
hub's `AckResult` for its closing acknowledgement reaches the recipient on the stream.

    .venv/bin/python bench/exchange.py                      # 2000 records, SQLite then PostgreSQL
    .venv/bin/python bench/exchange.py --records 20000 --backends postgres --json

Every wait is bounded (`--timeout` per backend); the PostgreSQL database is created fresh and dropped.
"""

# The repository goes on the path before `hub` is imported (run as a script, only bench/ is on it).
# ruff: noqa: E402

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from queue import Queue
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from hub._proto.ackhub.v1 import types_pb2
from hub.config import Settings, load_settings
from hub.identifiers import USCC_CHARSET, check_declaration_number, check_uscc, uscc_check_character
from hub.sdk.agency import AgencyClient, Delivery, Handler, Verdict, start_subscription
from hub.signing import public_key_base64

RECORD_TYPE = "customs.export_declaration.released"
PUBLISHER = "customs"
# recipient → (route ack level, the status whose AckResult closes its delivery)
RECIPIENTS = {"tax": ("BUSINESS", "ACCEPTED"), "fx": ("RECEIVED", "RECEIVED")}
_STATUS = {"RECEIVED": types_pb2.ACK_STATUS_RECEIVED, "ACCEPTED": types_pb2.ACK_STATUS_ACCEPTED}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
BUSY_WARNING_PCT = 20  # machine CPU busy in the second before a run above which figures are flagged


@dataclass(frozen=True)
class Options:
    records: int
    warmup: int
    publishers: int
    window: int
    payload_bytes: int
    rate: float
    timeout: float
    backends: tuple[str, ...]
    pg_admin: str
    hub_log_level: str
    seed: int
    as_json: bool
    keep: bool
    analyze: bool


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
    goods = [
        {
            "line": line,
            "hs_code": rng.choice(["8471300000", "8517130000", "6403990090", "9403609990"]),
            "quantity": rng.randint(1, 5000),
            "unit": rng.choice(["台", "个", "双", "件"]),
            "fob_usd": round(rng.uniform(100, 90_000), 2),
        }
        for line in range(1, 4)
    ]
    document: dict[str, Any] = {
        "declaration_number": declaration,
        "customs_office": office,
        "exporter": {"uscc": uscc, "name": f"基准贸易有限公司 {uscc[-6:]}"},
        "trade_mode": "0110",
        "released_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "currency": "USD",
        "goods": goods,
        "remarks": "",
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    document["remarks"] = "x" * max(0, size - len(text))
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), uscc, declaration


# -- the hub process ---------------------------------------------------------------------------------


def _toml(value: str | int) -> str:
    return json.dumps(value, ensure_ascii=True)  # a JSON string or integer is a valid TOML one


def hub_config(database_url: str, keys: dict[str, Ed25519PrivateKey], opts: Options) -> str:
    """The hub's TOML: the three agencies with the bench's keys, one route, loopback on a free port, no
    per-caller rate limit. Attempts wait 30 s for an answer and the deadline is 10 min, so nothing is
    retried or escalated unless the hub really loses an answer."""
    lines = [
        "[server]",
        f"listen = {_toml('127.0.0.1:0')}",
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


class HubProcess:
    """`python -m hub.cli serve --config ...` with its log in a file; learns its port from the log."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACKHUB_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.process.returncode}:\n{self.tail()}")
            for line in self.log.read_text(errors="replace").splitlines():
                if '"hub.started"' in line:
                    return f"127.0.0.1:{json.loads(line)['port']}"
            time.sleep(0.05)
        raise TimeoutError(f"the hub did not start within {timeout:.0f} s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float:
        """User and system CPU time of all the hub's threads so far."""
        text = Path(f"/proc/{self.pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mib(self, field: str) -> float:
        """`VmHWM` (peak resident set) or `VmRSS` (now) of the hub, in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


# -- measuring ---------------------------------------------------------------------------------------


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank p50/p95/p99/max, in milliseconds (values are seconds)."""
    if not values:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 2)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1] * 1000, 2)}


class Tracker:
    """One phase's bookkeeping, shared by publisher threads and the recipients' stream threads."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.expected = records * len(RECIPIENTS)
        self.lock = threading.Lock()
        self.published_at: dict[str, tuple[str, float]] = {}  # delivery id → (recipient, call start)
        self.closed_at: dict[str, float] = {}  # delivery id → when its closing AckResult arrived
        self.publish_calls: list[tuple[float, float]] = []  # (start, end)
        self.acks_ok = 0
        self.duplicate_acks = 0
        self.redeliveries = 0
        self.errors: list[str] = []
        self.done = threading.Event()  # every delivery closed, or a failure

    def published(self, start: float, end: float, receipt: Any) -> None:
        with self.lock:
            self.publish_calls.append((start, end))
            for ref in receipt.deliveries:
                self.published_at[ref.delivery_id] = (ref.recipient, start)
        if len(receipt.deliveries) != len(RECIPIENTS):
            self.fail(f"record {receipt.record_id} got {len(receipt.deliveries)} deliveries")

    def delivered(self, delivery: Delivery) -> None:
        if delivery.attempt > 1:
            with self.lock:
                self.redeliveries += 1

    def ack_result(self, agency: str, result: Any, at: float) -> None:
        if not result.ok:
            self.fail(f"{agency}: hub refused the ack of {result.delivery_id}: {result.error.message}")
            return
        with self.lock:
            self.acks_ok += 1
            self.duplicate_acks += int(result.duplicate)
            if result.status == _STATUS[RECIPIENTS[agency][1]]:
                self.closed_at.setdefault(result.delivery_id, at)
            finished = len(self.closed_at) >= self.expected
        if finished:
            self.done.set()

    def fail(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)
        self.done.set()

    def progress(self) -> tuple[int, int]:
        with self.lock:
            return len(self.publish_calls), len(self.closed_at)


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
    """Publish records `indices` one after another (at their turn of `--rate`, when given)."""
    for index in indices:
        if tracker.done.is_set():
            return  # a failure elsewhere: stop early
        if opts.rate > 0:
            due = start + (index - first) / opts.rate
            if tracker.done.wait(max(0.0, due - time.perf_counter())):
                return
        payload, uscc, declaration = make_record(index, opts.payload_bytes, opts.seed, data)
        began = time.perf_counter()
        try:
            receipt = client.publish(
                RECORD_TYPE, payload, subject_uscc=uscc, declaration_number=declaration, timeout=30
            )
        except grpc.RpcError as error:
            tracker.fail(f"publish of record {index}: {error.code().name}: {error.details()}")
            return
        tracker.published(began, time.perf_counter(), receipt)


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
        published, closed = tracker.progress()
        report(f"{label}: published {published}/{tracker.records}, closed {closed}/{tracker.expected}", False)
        if not hub.alive():
            tracker.fail(f"the hub process died:\n{hub.tail()}")
        elif time.perf_counter() > deadline:
            tracker.fail(f"timed out with {closed} of {tracker.expected} deliveries closed")
    for thread in threads:
        thread.join(35)
    published, closed = tracker.progress()
    report(f"{label}: published {published}/{tracker.records}, closed {closed}/{tracker.expected}", True)
    return start


def summarize(tracker: Tracker, start: float) -> dict[str, Any]:
    """The phase's figures: rates over first publish → last closing ack, latencies per delivery."""
    with tracker.lock:
        calls = list(tracker.publish_calls)
        closed = dict(tracker.closed_at)
        published = dict(tracker.published_at)
    first = min((s for s, _ in calls), default=start)
    last_publish = max((e for _, e in calls), default=first)
    last_close = max(closed.values(), default=first)
    elapsed = max(last_close - first, 1e-9)
    by_recipient: dict[str, list[float]] = {agency: [] for agency in RECIPIENTS}
    for delivery_id, (recipient, began) in published.items():
        if delivery_id in closed:
            by_recipient[recipient].append(closed[delivery_id] - began)
    every = [v for values in by_recipient.values() for v in values]
    publish_elapsed = max(last_publish - first, 1e-9)
    return {
        "records": len(calls),
        "deliveries_closed": len(closed),
        "acks_verified": tracker.acks_ok,
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(len(calls) / elapsed, 1),
        "deliveries_closed_per_s": round(len(closed) / elapsed, 1),
        "acks_per_s": round(tracker.acks_ok / elapsed, 1),
        "latency_ms": {"all": percentiles(every), **{a: percentiles(v) for a, v in by_recipient.items()}},
        "publish": {
            "elapsed_s": round(publish_elapsed, 3),
            "calls_per_s": round(len(calls) / publish_elapsed, 1),
            "latency_ms": percentiles([e - s for s, e in calls]),
        },
        "redeliveries": tracker.redeliveries,
        "duplicate_acks": tracker.duplicate_acks,
    }


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
    """Start the hub, connect the agencies (kept in `clients`, for the caller to close), run the warm-up
    and the measured phase, and put the figures in `result`."""
    target = hub.start(timeout=60)
    report(f"{backend}: hub pid {hub.pid} on {target} ({result['database']})", True)
    trackers = [Tracker(opts.warmup)]

    def phase() -> Tracker:
        return trackers[-1]

    for agency in RECIPIENTS:
        client = AgencyClient(target, agency, key_id=f"{agency}-bench-1", private_key=keys[agency])
        client.results = StampedResults(agency, phase)
        clients.append(client)
        start_subscription(client, handler_for(agency, phase), window=opts.window)
    publishers = [AgencyClient(target, PUBLISHER) for _ in range(opts.publishers)]
    clients.extend(publishers)
    for client in publishers:
        grpc.channel_ready_future(client.channel).result(timeout=10)
    deadline = time.perf_counter() + opts.timeout
    enterprises = make_enterprises(random.Random(opts.seed))
    if opts.warmup:
        run_phase(trackers[0], publishers, 0, opts, enterprises, hub, deadline, report, f"{backend} warm-up")
        if trackers[0].errors:
            raise RuntimeError("; ".join(trackers[0].errors))
    if backend == "postgres" and opts.analyze:
        analyze(database_url)
        result["database"] += "; ANALYZE after warm-up"
    tracker = Tracker(opts.records)
    trackers.append(tracker)
    hub_cpu, client_cpu, machine = hub.cpu_seconds(), time.process_time(), machine_busy_jiffies()
    start = run_phase(tracker, publishers, opts.warmup, opts, enterprises, hub, deadline, report, backend)
    busy = [b - a for a, b in zip(machine, machine_busy_jiffies(), strict=True)]
    wall = time.perf_counter() - start
    result.update(summarize(tracker, start))
    result["hub"] = {
        "pid": hub.pid,
        "peak_rss_mib": round(hub.memory_mib("VmHWM"), 1),
        "rss_mib_at_end": round(hub.memory_mib("VmRSS"), 1),
        "cpu_s": round(hub.cpu_seconds() - hub_cpu, 2),
    }
    result["client_cpu_s"] = round(time.process_time() - client_cpu, 2)
    result["machine_cpu_busy_pct"] = round(100 * busy[0] / max(busy[1], 1), 1)
    result["wall_s"] = round(wall, 3)
    result["errors"] = list(tracker.errors)


def run_backend(
    backend: str, opts: Options, work: Path, report: Callable[[str, bool], None]
) -> dict[str, Any]:
    """One complete run on a fresh store: its figures, what the store holds afterwards, and any errors."""
    store = sqlite_store(work) if backend == "sqlite" else postgres_store(opts.pg_admin, opts.keep)
    before = machine_busy_jiffies()
    time.sleep(1)
    busy_before = [b - a for a, b in zip(before, machine_busy_jiffies(), strict=True)]
    with store as (database_url, database):
        keys = {agency: Ed25519PrivateKey.generate() for agency in (PUBLISHER, *RECIPIENTS)}
        config = work / f"hub-{backend}.toml"
        config.write_text(hub_config(database_url, keys, opts), encoding="utf-8")
        load_settings(config, environ={})  # a bad configuration fails here, with every problem named
        hub = HubProcess(config, work / f"hub-{backend}.log")
        result: dict[str, Any] = {
            "backend": backend,
            "database": database,
            "machine_busy_before_pct": round(100 * busy_before[0] / max(busy_before[1], 1), 1),
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
            hub.stop()
        if "records" in result:
            try:
                result["store"] = store_counts(database_url)
                if not result["errors"]:
                    result["errors"] = check_store(result["store"], opts.warmup + opts.records)
            except Exception as error:
                result["errors"].append(f"store check: {type(error).__name__}: {error}")
        if result["errors"]:
            result["hub_log_tail"] = hub.tail()
        result["ok"] = not result["errors"]
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


ROWS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("records/s, end to end", lambda r: r["records_per_s"]),
    ("deliveries closed/s", lambda r: r["deliveries_closed_per_s"]),
    ("signed acks verified/s", lambda r: r["acks_per_s"]),
    ("elapsed s (first publish → last ack)", lambda r: r["elapsed_s"]),
    ("latency ms p50 (publish → closing ack)", lambda r: r["latency_ms"]["all"]["p50"]),
    ("latency ms p95", lambda r: r["latency_ms"]["all"]["p95"]),
    ("latency ms p99", lambda r: r["latency_ms"]["all"]["p99"]),
    ("latency ms max", lambda r: r["latency_ms"]["all"]["max"]),
    (
        "  tax (ACCEPTED) p50 / p99",
        lambda r: f"{r['latency_ms']['tax']['p50']} / {r['latency_ms']['tax']['p99']}",
    ),
    (
        "  fx (RECEIVED) p50 / p99",
        lambda r: f"{r['latency_ms']['fx']['p50']} / {r['latency_ms']['fx']['p99']}",
    ),
    ("publish calls/s", lambda r: r["publish"]["calls_per_s"]),
    (
        "publish call ms p50 / p99",
        lambda r: f"{r['publish']['latency_ms']['p50']} / {r['publish']['latency_ms']['p99']}",
    ),
    ("redeliveries / duplicate acks", lambda r: f"{r['redeliveries']} / {r['duplicate_acks']}"),
    ("hub RSS MiB peak / at end", lambda r: f"{r['hub']['peak_rss_mib']} / {r['hub']['rss_mib_at_end']}"),
    (
        "hub CPU s (of elapsed)",
        lambda r: f"{r['hub']['cpu_s']} ({100 * r['hub']['cpu_s'] / r['wall_s']:.0f}%)",
    ),
    ("bench client CPU s", lambda r: r["client_cpu_s"]),
    ("machine CPU busy % (all cores)", lambda r: r["machine_cpu_busy_pct"]),
]


def render_table(report: dict[str, Any]) -> str:
    params, results = report["params"], report["backends"]
    head = (
        f"ackhub exchange bench — {params['records']} records ({params['payload_bytes']} B JSON) from customs to "
        f"tax (BUSINESS: RECEIVED+ACCEPTED) and fx (RECEIVED); {params['publishers']} publishers, "
        f"window {params['window']}, warm-up {params['warmup']}"
        + (f", paced at {params['rate']}/s" if params["rate"] else ", as fast as possible")
        + f"\nmachine: {report['machine']['cpus']} CPUs {report['machine']['cpu_model']}, "
        f"Python {report['machine']['python']}; hub in its own process\n"
    )
    names = list(results)
    width = max(len(label) for label, _ in ROWS) + 2
    titles = [results[n]["database"].split(" (")[0] + ("" if results[n]["ok"] else " FAILED") for n in names]
    lines = [head, "".ljust(width) + "".join(title.rjust(22) for title in titles)]
    for label, get in ROWS:
        cells = []
        for name in names:
            try:
                cells.append(str(get(results[name])))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("—")
        lines.append(label.ljust(width) + "".join(c.rjust(22) for c in cells))
    lines.append("")
    lines += [f"{name}: {results[name]['database']}" for name in names]
    for name in names:
        busy = results[name].get("machine_busy_before_pct", 0)
        if busy > BUSY_WARNING_PCT:
            lines.append(
                f"\n{name}: WARNING: the machine was {busy}% busy before the run; other work disturbs these figures"
            )
        if results[name].get("kept"):
            lines.append(f"{name}: kept {results[name]['kept']}")
        for error in results[name]["errors"]:
            lines.append(f"\n{name}: FAILED: {error}")
        if results[name].get("hub_log_tail"):
            tail = "\n".join(results[name]["hub_log_tail"].splitlines()[-5:])
            lines.append(f"{name}: hub log (last lines; all of them with --json):\n{tail}")
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


def parse_args(argv: list[str] | None) -> Options:
    """Command-line options, checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=2000, help="records measured (default 2000)")
    parser.add_argument(
        "--warmup", type=int, default=100, help="records sent first, not measured (default 100)"
    )
    parser.add_argument("--publishers", type=int, default=4, help="concurrent publisher threads (default 4)")
    parser.add_argument("--window", type=int, default=64, help="subscription window (default 64)")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="JSON payload size (default 1024)")
    parser.add_argument("--rate", type=float, default=0, help="records/s offered; 0: as fast as possible")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per backend (default 300)")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument(
        "--pg-admin", default=DEFAULT_PG_ADMIN, help="PostgreSQL URL that may create databases"
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
    if not backends or set(backends) - {"sqlite", "postgres"}:
        parser.error("--backends takes sqlite, postgres or both")
    if args.records < 1 or args.warmup < 0 or args.publishers < 1 or not 1 <= args.window <= 10_000:
        parser.error("--records and --publishers must be at least 1, --warmup 0 or more, --window 1..10000")
    if args.payload_bytes < 1 or args.rate < 0 or args.timeout <= 0:
        parser.error("--payload-bytes and --timeout must be positive, --rate 0 or more")
    return Options(
        records=args.records,
        warmup=args.warmup,
        publishers=args.publishers,
        window=args.window,
        payload_bytes=args.payload_bytes,
        rate=args.rate,
        timeout=args.timeout,
        backends=backends,
        pg_admin=args.pg_admin,
        hub_log_level=args.hub_log_level,
        seed=args.seed,
        as_json=args.json,
        keep=args.keep,
        analyze=not args.no_analyze,
    )


def main(argv: list[str] | None = None) -> int:
    """Run each backend in turn and print the table (or one JSON object); 1 when any run failed."""
    opts = parse_args(argv)
    report = progress_printer(sys.stderr if opts.as_json else sys.stdout)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ackhub-bench-") as scratch:
        work = Path(tempfile.mkdtemp(prefix="ackhub-bench-")) if opts.keep else Path(scratch)
        for backend in opts.backends:
            try:
                results[backend] = run_backend(backend, opts, work, report)
            except Exception as error:  # the store could not be set up: report it, go on with the next
                results[backend] = {"backend": backend, "database": f"{backend} (not set up)", "ok": False}
                results[backend]["errors"] = [f"{type(error).__name__}: {error}"]
    summary = {
        "bench": "exchange",
        "params": {
            "records": opts.records,
            "warmup": opts.warmup,
            "publishers": opts.publishers,
            "window": opts.window,
            "payload_bytes": opts.payload_bytes,
            "rate": opts.rate,
            "hub": "subprocess",
            "hub_log_level": opts.hub_log_level,
            "analyze_after_warmup": opts.analyze,
        },
        "machine": machine_info(),
        "backends": results,
        "ok": all(r["ok"] for r in results.values()),
    }
    if opts.as_json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(render_table(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
