"""`ackhub demo`: the hub on loopback with three simulated agencies, and a live view of what happens.

- customs publishes a released export declaration about every half second;
- the tax bureau answers at once, RECEIVED then ACCEPTED, and rejects a small share with a reason;
- the FX administration answers after 1-3 s and loses about 30% of what it is sent, so retries,
  escalation cases and cases closed by a late acknowledgement appear within a minute.

The hub runs on its own event loop in a background thread; the agencies are threads using the SDK; the
main thread prints the status once a second. The hub's JSON logs go to a file next to the database.
The agencies' private keys are derived from public seeds: demo only, never for production.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO, TypeVar

import grpc
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from ackhub.audit.times import to_rfc3339_ms
from ackhub.client.agency import AgencyClient, Delivery, Verdict, start_subscription
from ackhub.core.errors import ConfigError
from ackhub.core.identifiers import uscc_check_character
from ackhub.hub.auth.jwt import issue_token
from ackhub.hub.config import Console, Settings, load_settings
from ackhub.hub.exchange import queries
from ackhub.hub.exchange.states import CASE_CLOSED_BY_ACK, CASE_OPEN, DELIVERY_STATES
from ackhub.hub.launch import HubThread
from ackhub.hub.logging import configure
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AttemptRow, DeliveryRow, EscalationRow, RecordRow
from ackhub.v1 import exchange_service_pb2 as pb

T = TypeVar("T")
log = structlog.get_logger("ackhub.demo")

DEMO_CONFIG = Path(__file__).resolve().parents[4] / "examples" / "demo.toml"  # in the repository
RECORD_TYPE = "customs.export_declaration.released"
PUBLISH_EVERY_S = 0.5
TAX_REJECT_SHARE = 0.05
FX_LOSS_SHARE = 0.3
FX_DELAY_S = (1.0, 3.0)
TAX_ACCEPTED = "已受理出口退税申报 / export tax refund filing registered"
TAX_REJECTED = "出口企业未办理出口退(免)税备案 / exporter is not registered for export tax refund"
FX_ACCEPTED = "已纳入出口收汇核查 / added to export receipts verification"


# -- keys ------------------------------------------------------------------------------------------
def demo_private_key(agency: str) -> Ed25519PrivateKey:
    """The agency's demo key, from the public seed SHA-256("ackhub-demo:<agency>"): anyone can derive it."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"ackhub-demo:{agency}".encode()).digest())


def demo_key_id(agency: str) -> str:
    return f"{agency}-demo-1"


# -- what customs publishes -----------------------------------------------------------------------
@dataclass(frozen=True)
class Enterprise:
    uscc: str
    name: str
    customs_office: str  # the 4-digit code of the customs office it declares at


@dataclass(frozen=True)
class Goods:
    hs_code: str
    description: str
    unit: str
    unit_price_usd: tuple[int, int]  # a range, whole dollars


def _enterprise(first17: str, name: str, office: str) -> Enterprise:
    return Enterprise(first17 + uscc_check_character(first17), name, office)


# Made-up exporters with valid USCC check characters (the first three are the examples of
# shared/domain/identifiers.md).
ENTERPRISES = (
    _enterprise("91310115MA1G4L1W0", "上海浦江茶业进出口有限公司 Shanghai Pujiang Tea Trading", "2248"),
    _enterprise("91110000600037341", "北京京华机电设备有限公司 Beijing Jinghua Electromechanical", "0101"),
    _enterprise("91350100M000100Y4", "福州闽江贸易有限公司 Fuzhou Minjiang Trading", "3501"),
    _enterprise("91440300MA5F2K7X1", "深圳市南山电子科技有限公司 Shenzhen Nanshan Electronics", "5316"),
    _enterprise("91330206MA2GQ8HN4", "宁波北仑光伏材料有限公司 Ningbo Beilun Solar Materials", "3104"),
    _enterprise("91320594MA1N3PQ20", "苏州工业园区纺织品有限公司 Suzhou Industrial Park Textiles", "2305"),
    _enterprise("91350200MA31E6UR7", "厦门海沧电池有限公司 Xiamen Haicang Batteries", "3714"),
)
GOODS = (
    Goods("0902209000", "其他绿茶 green tea, other", "kg", (8, 20)),
    Goods("8471300000", "便携式自动数据处理设备 portable computers", "unit", (300, 900)),
    Goods("8517130000", "智能手机 smartphones", "unit", (120, 600)),
    Goods("8507600090", "锂离子蓄电池 lithium-ion accumulators", "piece", (20, 80)),
    Goods("8541430000", "光伏组件 photovoltaic modules", "piece", (60, 140)),
    Goods("6110200090", "棉制针织套头衫 cotton knitted pullovers", "piece", (5, 15)),
)
DESTINATIONS = ("DEU", "USA", "JPN", "SGP", "AUS", "NLD", "ARE", "BRA")


def declaration_number(office: str, year: int, sequence: int) -> str:
    """18 digits: customs office (4), year (4), 0 for export, sequence (9)."""
    return f"{office}{year:04d}0{sequence % 1_000_000_000:09d}"


class Declarations:
    """A stream of plausible released export declarations: (exporter, declaration number, JSON payload)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sequence = rng.randrange(100_000_000, 900_000_000)

    def next(self) -> tuple[Enterprise, str, bytes]:
        rng = self.rng
        self.sequence += 1
        now = datetime.now(UTC)
        exporter = rng.choice(ENTERPRISES)
        number = declaration_number(exporter.customs_office, now.year, self.sequence)
        lines = []
        for index, goods in enumerate(rng.sample(GOODS, rng.randint(1, 3)), start=1):
            quantity = rng.randint(10, 2000)
            value = Decimal(quantity) * Decimal(rng.randint(*goods.unit_price_usd))
            lines.append(
                {
                    "line": index,
                    "hs_code": goods.hs_code,
                    "description": goods.description,
                    "quantity": quantity,
                    "unit": goods.unit,
                    "fob_value_usd": f"{value:.2f}",
                }
            )
        payload = {
            "declaration_number": number,
            "customs_office": exporter.customs_office,
            "release_time": to_rfc3339_ms(int(now.timestamp() * 1000)),
            "trade_mode": "0110",  # general trade
            "exporter": {"uscc": exporter.uscc, "name": exporter.name},
            "destination_country": rng.choice(DESTINATIONS),
            "incoterm": "FOB",
            "fob_value_usd": f"{sum(Decimal(str(line['fob_value_usd'])) for line in lines):.2f}",
            "goods": lines,
        }
        return exporter, number, json.dumps(payload, ensure_ascii=False).encode()


# -- the simulated agencies -----------------------------------------------------------------------
def _share(text: str, salt: str) -> float:
    """A stable number in [0, 1) for `text`: the same record always gets the same answer."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode()).digest()[:8], "big") / 2**64


def tax_handler(delivery: Delivery) -> list[Verdict]:
    """The tax bureau answers at once: RECEIVED, then ACCEPTED, or REJECTED for a small share of records."""
    verdicts = [Verdict.received()]
    if delivery.business_ack_required:
        if _share(delivery.record.record_id, "tax") < TAX_REJECT_SHARE:
            verdicts.append(Verdict.reject(TAX_REJECTED))
        else:
            verdicts.append(Verdict.accept(TAX_ACCEPTED))
    return verdicts


class SlowLossyAgency:
    """The FX administration: loses a share of what it is sent and answers the rest after a delay, from
    timer threads, so a slow answer does not hold up the deliveries behind it."""

    def __init__(self, client: AgencyClient, rng: random.Random) -> None:
        self.client = client
        self.rng = rng
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, delivery: Delivery) -> None:
        if self.rng.random() < FX_LOSS_SHARE:
            log.info("demo.fx_lost_delivery", delivery_id=delivery.delivery_id, attempt=delivery.attempt)
            return None
        timer = threading.Timer(self.rng.uniform(*FX_DELAY_S), self._answer, args=(delivery,))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return None
            self._timers.add(timer)
        timer.start()
        return None  # the answer goes out later, on the same stream

    def _answer(self, delivery: Delivery) -> None:
        try:
            statuses = [("RECEIVED", "")]
            if delivery.business_ack_required:
                statuses.append(("ACCEPTED", FX_ACCEPTED))
            for status, reason in statuses:
                ack = self.client.sign(delivery.record, delivery.delivery_id, status, reason)
                self.client.send(pb.SubscribeRequest(acknowledgement=ack))
        except Exception as exc:  # the stream may be closing; the hub will simply retry
            log.warning("demo.fx_answer_failed", delivery_id=delivery.delivery_id, error=str(exc))
        finally:
            with self._lock:
                self._timers.discard(threading.current_thread())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()


class Customs:
    """Publishes an export declaration about every `PUBLISH_EVERY_S` until `stop` is set."""

    def __init__(self, client: AgencyClient, rng: random.Random, stop: threading.Event) -> None:
        self.client = client
        self.rng = rng
        self.stop = stop
        self.declarations = Declarations(rng)
        self.failed = 0
        self.thread = threading.Thread(target=self._run, daemon=True, name="demo-customs")

    def _run(self) -> None:
        while not self.stop.wait(PUBLISH_EVERY_S * self.rng.uniform(0.6, 1.4)):
            exporter, number, payload = self.declarations.next()
            try:
                self.client.publish(
                    RECORD_TYPE,
                    payload,
                    subject_uscc=exporter.uscc,
                    declaration_number=number,
                    request_id=str(uuid.uuid4()),
                    timeout=5,
                )
            except grpc.RpcError as error:
                self.failed += 1
                log.warning("demo.publish_failed", declaration_number=number, error=str(error))


class Agencies:
    """customs, tax and fx, connected to the hub at `target`."""

    def __init__(self, target: str, stop: threading.Event) -> None:
        self.clients = {
            agency: AgencyClient(
                target, agency, key_id=demo_key_id(agency), private_key=demo_private_key(agency)
            )
            for agency in ("customs", "tax", "fx")
        }
        self.fx = SlowLossyAgency(self.clients["fx"], random.Random())
        self.customs = Customs(self.clients["customs"], random.Random(), stop)
        self.refused_acks = 0
        self._closed = False

    def start(self) -> None:
        start_subscription(self.clients["tax"], tax_handler)
        start_subscription(self.clients["fx"], self.fx)
        self.customs.thread.start()

    def notes(self) -> list[str]:
        """What went wrong on the agencies' side (nothing, normally); each refused acknowledgement is logged."""
        for client in self.clients.values():
            while not client.results.empty():
                result = client.results.get_nowait()
                if not result.ok:
                    self.refused_acks += 1
                    log.error(
                        "demo.ack_refused",
                        agency=client.agency_id,
                        delivery_id=result.delivery_id,
                        reason=result.error.reason,
                        message=result.error.message,
                    )
        notes = []
        if self.customs.failed:
            notes.append(f"publishes failed {self.customs.failed} (see the log)")
        if self.refused_acks:
            notes.append(f"acknowledgements refused {self.refused_acks} (see the log)")
        return notes

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.customs.stop.set()
        if self.customs.thread.is_alive():
            self.customs.thread.join(10)
        self.fx.close()
        for client in self.clients.values():
            client.close()


# -- the hub on its own event loop ------------------------------------------------------------------
class DemoHub(HubThread):
    """The demo's hub, in this process."""

    def breaker_notes(self) -> list[str]:
        """Circuit breakers that are not closed (read on the hub's loop), e.g. "fx circuit OPEN"."""

        async def read() -> dict[str, str]:
            exchange = self.server.exchange
            return exchange.dispatcher.breakers.states() if exchange is not None else {}

        states = self.run(read(), 5)
        return [f"{agency} circuit {state}" for agency, state in sorted(states.items()) if state != "CLOSED"]


# -- the live view --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    records: int
    by_state: dict[str, int]
    by_recipient: dict[str, dict[str, int]]
    open_by_recipient: dict[str, int]  # deliveries still waiting for the acknowledgement their route requires
    retries: int
    open_cases: int
    open_by_reason: dict[str, int]
    closed_by_ack: int


def snapshot(db: Database) -> Snapshot:
    """What the store says now."""
    with db.transaction() as session:
        records = int(session.exec(select(func.count()).select_from(RecordRow)).one())
        by_recipient: dict[str, dict[str, int]] = {}
        for recipient, state, count in session.exec(
            select(DeliveryRow.recipient, DeliveryRow.state, func.count()).group_by(
                col(DeliveryRow.recipient), col(DeliveryRow.state)
            )
        ).all():
            by_recipient.setdefault(recipient, {})[state] = count
        open_by_recipient = {
            recipient: count
            for recipient, count in session.exec(
                select(DeliveryRow.recipient, func.count())
                .where(col(DeliveryRow.closed_ms).is_(None))
                .group_by(col(DeliveryRow.recipient))
            ).all()
        }
        retries = int(
            session.exec(select(func.count()).select_from(AttemptRow).where(col(AttemptRow.number) > 1)).one()
        )
        open_by_reason = {
            reason: count
            for reason, count in session.exec(
                select(EscalationRow.reason, func.count())
                .where(EscalationRow.state == CASE_OPEN)
                .group_by(col(EscalationRow.reason))
            ).all()
        }
        closed_by_ack = int(
            session.exec(
                select(func.count())
                .select_from(EscalationRow)
                .where(EscalationRow.state == CASE_CLOSED_BY_ACK)
            ).one()
        )
    return Snapshot(
        records=records,
        by_state=queries.counts_by_state(db),
        by_recipient=by_recipient,
        open_by_recipient=open_by_recipient,
        retries=retries,
        open_cases=queries.open_case_count(db),
        open_by_reason=open_by_reason,
        closed_by_ack=closed_by_ack,
    )


def _clock(elapsed_s: float) -> str:
    seconds = int(elapsed_s)
    return f"{seconds // 60}:{seconds % 60:02d}"


def status_line(elapsed_s: float, snap: Snapshot, address: str, notes: list[str]) -> str:
    """One line per tick, for a log or a pipe."""
    states = " ".join(f"{state} {snap.by_state.get(state, 0)}" for state in DELIVERY_STATES)
    parts = [
        f"[{int(elapsed_s):4d}s] published {snap.records}",
        f"deliveries {states}",
        f"open {sum(snap.open_by_recipient.values())}",
        f"retries {snap.retries}",
        f"open cases {snap.open_cases}",
        f"closed by late ack {snap.closed_by_ack}",
        *notes,
        f"gRPC {address}",
    ]
    return " | ".join(parts)


def status_panel(
    elapsed_s: float, snap: Snapshot, address: str, levels: dict[str, str], notes: list[str]
) -> list[str]:
    """A few lines redrawn in place on a terminal: deliveries by recipient and state, how many of them are
    still open (waiting for the acknowledgement the route requires), then the cases."""
    head = "".join(f"{state:>10}" for state in DELIVERY_STATES)
    lines = [
        f"ackhub demo  {_clock(elapsed_s)}   gRPC {address}   records published {snap.records}",
        f"  {'deliveries':<10}{head}{'open':>8}   closed by",
    ]
    for recipient, level in levels.items():
        counts = snap.by_recipient.get(recipient, {})
        row = "".join(f"{counts.get(state, 0):>10}" for state in DELIVERY_STATES)
        waiting = snap.open_by_recipient.get(recipient, 0)
        closer = "ACCEPTED/REJECTED" if level == "BUSINESS" else "RECEIVED"
        lines.append(f"  {recipient:<10}{row}{waiting:>8}   {closer}")
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(snap.open_by_reason.items()))
    lines.append(
        f"  retries {snap.retries}   open escalation cases {snap.open_cases}"
        + (f" ({reasons})" if reasons else "")
    )
    lines.append(f"  cases closed by a late acknowledgement {snap.closed_by_ack}")
    if notes:
        lines.append("  " + "   ".join(notes))
    return lines


class LiveView:
    """Redraws the panel in place on a terminal; prints one line per tick otherwise."""

    def __init__(self, out: TextIO, address: str, levels: dict[str, str]) -> None:
        self.out = out
        self.address = address
        self.levels = levels
        self.tty = out.isatty()
        self._drawn = 0

    def show(self, elapsed_s: float, snap: Snapshot, notes: list[str]) -> None:
        if not self.tty:
            print(status_line(elapsed_s, snap, self.address, notes), file=self.out, flush=True)
            return
        width = shutil.get_terminal_size().columns
        lines = [
            line[: width - 1] for line in status_panel(elapsed_s, snap, self.address, self.levels, notes)
        ]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""  # back to the panel's first line
        self.out.write(up + "\x1b[J" + "\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines)


# -- running it -----------------------------------------------------------------------------------
DEMO_MARK = ".ackhub-demo"  # beside a database file the demo made: it may start that file afresh
DEMO_FILES = ("", "-wal", "-shm", "-journal", ".log")  # the database's own files, and the demo's log


def fresh_sqlite_file(database_url: str) -> Path | None:
    """For a SQLite file: create its folder and start afresh. Files left by an earlier demo (marked by a
    `<file>.ackhub-demo` beside them) are deleted; an existing file the demo would use but did not make is
    refused, naming it: the demo never deletes or overwrites what it did not create. None for any other
    database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise ConfigError("--database-url", [("database_url", "the demo needs a SQLite file, not memory")])
    path = Path(url.database)
    mark = Path(f"{path}{DEMO_MARK}")
    theirs = [f for f in (Path(f"{path}{suffix}") for suffix in DEMO_FILES) if f.exists()]
    if theirs and not mark.exists():
        raise ConfigError(
            "--database-url",
            [
                (
                    "database_url",
                    f"{theirs[0]} exists and was not made by `ackhub demo`, which starts from an empty database "
                    "and never overwrites a file it did not create: name a file that does not exist yet "
                    "(the default is var/demo.db)",
                )
            ],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in DEMO_FILES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    mark.write_text("made by `ackhub demo`, which deletes this database when it starts again\n")
    return path


def _client_target(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _on_stop_signals(stop: threading.Event) -> dict[signal.Signals, Any]:
    """SIGINT and SIGTERM ask for a clean stop; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def operator_token(settings: Settings, ttl_s: int = 8 * 3600) -> str:
    """A headquarters operator's token for the console, signed with the demo's token-issuer key."""
    return issue_token(
        demo_private_key("token-issuer"),
        role="operator",
        subject="demo-operator",
        issuer=settings.auth.enterprise_jwt_issuer,
        audience=settings.auth.enterprise_jwt_audience,
        now_s=int(time.time()),
        ttl_s=ttl_s,
        jurisdiction="HQ",
    )


def enterprise_token(settings: Settings, uscc: str, ttl_s: int = 8 * 3600) -> str:
    """An exporter's token for the portal, signed with the demo's token-issuer key."""
    return issue_token(
        demo_private_key("token-issuer"),
        role="enterprise",
        subject=uscc,
        issuer=settings.auth.enterprise_jwt_issuer,
        audience=settings.auth.enterprise_jwt_audience,
        now_s=int(time.time()),
        ttl_s=ttl_s,
    )


def run_demo(
    duration_s: float, listen: str, database_url: str, console_listen: str = "127.0.0.1:7480"
) -> int:
    """Run the demo until Ctrl-C, or for `duration_s` seconds when that is more than 0; the exit code."""
    environ = {**os.environ, "ACKHUB_LISTEN": listen, "ACKHUB_DATABASE_URL": database_url}
    try:
        settings = load_settings(DEMO_CONFIG, environ)
        settings = settings.model_copy(update={"console": Console(listen=console_listen)})
        database_file = fresh_sqlite_file(settings.server.database_url)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    log_path = Path(f"{database_file}.log") if database_file else Path("var") / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Left open on purpose: the hub's loggers keep writing to it until the process ends.
    log_file = log_path.open("w", encoding="utf-8", buffering=1)
    configure(settings.server.log_level, stream=log_file)
    print(f"ackhub demo: the hub's structured JSON logs go to {log_path} (tail -f {log_path})", flush=True)
    print(
        f"database {settings.server.database_url}"
        + (" (a fresh file each run)" if database_file else " (used as it is)"),
        flush=True,
    )

    stop = threading.Event()
    previous_handlers = _on_stop_signals(stop)
    hub = DemoHub(settings)
    agencies: Agencies | None = None
    try:
        try:
            port = hub.start()
        except (OSError, RuntimeError) as error:
            print(f"cannot start the hub on {settings.server.listen}: {error}", file=sys.stderr)
            return 1
        address = _client_target(settings.server.listen, port)
        print(
            f"hub listening on {address} (gRPC, reflection on), e.g.\n"
            f"  grpcurl -plaintext -H 'x-ackhub-operator: alice' {address} "
            "ackhub.v1.OperationsService/ListEscalations\n"
            "customs publishes an export declaration every ~0.5 s; tax answers at once (rejects ~5%); fx answers "
            "after 1-3 s and loses ~30% of deliveries, so retries and escalations appear. Ctrl-C stops.",
            flush=True,
        )
        if hub.server.console is not None:
            host = console_listen.rsplit(":", 1)[0]
            print(
                f"console: http://{host}:{hub.server.console.port}/ — sign in with this operator token "
                f"(headquarters, 8 hours):\n  {operator_token(settings)}",
                flush=True,
            )
            if settings.portal is not None:
                exporter = ENTERPRISES[1]
                print(
                    f"enterprise portal: http://{host}:{hub.server.console.port}/portal/ — sign in as "
                    f"{exporter.name} ({exporter.uscc}) with:\n  {enterprise_token(settings, exporter.uscc)}",
                    flush=True,
                )
        agencies = Agencies(address, stop)
        agencies.start()
        route = settings.route(RECORD_TYPE)
        levels: dict[str, str] = {r.agency: r.ack_level for r in route.recipients} if route else {}
        view = LiveView(sys.stdout, address, levels)
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            view.show(elapsed, snapshot(hub.server.db), agencies.notes() + hub.breaker_notes())
            left = duration_s - elapsed if duration_s > 0 else 1.0
            if left <= 0 or stop.wait(min(1.0, left)):
                break
        agencies.close()
        final = snapshot(hub.server.db)
        print(
            f"stopped after {_clock(time.monotonic() - started)}: {final.records} records published, "
            f"{sum(final.open_by_recipient.values())} deliveries still open, {final.retries} retries, "
            f"{final.open_cases} escalation cases open, "
            f"{final.closed_by_ack} closed by a late acknowledgement. Logs: {log_path}",
            flush=True,
        )
        return 0
    except (TimeoutError, grpc.RpcError) as error:
        print(f"the demo failed: {error}", file=sys.stderr)
        log.exception("demo.failed")
        return 1
    finally:
        stop.set()
        if agencies is not None:
            agencies.close()
        hub.stop()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
