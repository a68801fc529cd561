"""Scale benchmark: does the hub stay as fast with a million stored records as with a thousand?

For each backend (`--backends sqlite,postgres`) and each size (`--sizes 1000,1000000`) it builds a fresh
store with the hub's own migrations, bulk-loads records in the shape a running hub leaves them (below), and
measures:

- the retry sweep (`hub.exchange.sweep.sweep`) with nothing due and with a fixed amount of due work, and
  the dispatcher's due-claim query (`ackhub.hub.exchange.claims.claim`), in process, each in a transaction
  that is rolled back so every repetition finds the same work;
- `TraceRecord`, `ListRecords` (several shapes) and `GetDeliveryProof` p50/p99 through a real hub over
  gRPC (`ackhub serve` in its own process, enterprises authenticated by JWT);
- start and restart to serving: from launching `ackhub serve` to the first SERVING health check and the
  first answered RPC, the hub's RSS after start and after the proofs, and how long a clean stop takes;
- the query plans (EXPLAIN QUERY PLAN / EXPLAIN) of every statement those operations run, flagging any
  that scans a table that grows with the records.

    .venv/bin/python -m bench.scale                                    # SQLite: 1,000 then 1,000,000
    .venv/bin/python -m bench.scale --sizes 1000,100000 --backends sqlite,postgres --json > scale.json

The stored shape, per record: a customs export declaration (`--payload-bytes`, 1 KiB of JSON) for one of
many enterprises (a few big exporters hold most records), 2 deliveries (tax at level BUSINESS, fx at
RECEIVED), one attempt each, 3 signed acknowledgements and 6 audit events, all sequenced into the audit
tree and covered by signed checkpoints (the interior tree hashes stored too, unless `--no-tree-nodes`
makes a store from before migration 0004). A small share is still open (0.2 %, at least 64 records, all in the
last hour): PENDING, SENT awaiting a retry (half of those due now) or RECEIVED awaiting the business
answer, with their deadline checks set; 0.5 % (at least 25) were REJECTED and escalated, most cases
resolved. Every size holds the same due work — 20 deliveries past their deadline and 20 open cases whose
next rung is due — so the sweep's ratio isolates the cost of finding it. Worker processes make the rows
(`--workers`), which go in with executemany (SQLite, through chunk files) or COPY (PostgreSQL), not the
ORM, with the secondary indexes the migrations made dropped meanwhile and rebuilt from their own
definitions afterwards; the PostgreSQL database `ackhub_scale_<random>` is created on
`--pg-admin` and dropped afterwards (`--keep` keeps stores and logs). PostgreSQL is ANALYZEd after the load
(as autovacuum would); SQLite is not (the hub never runs ANALYZE).

Every wait is bounded; progress goes to stderr; the table (or `--json`) to stdout; `--render FILE` prints
the table of a saved `--json` run. Figures and findings: bench/SCALE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import grpc
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, inspect
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from ackhub.audit import checkpoint as checkpoints
from ackhub.audit import merkle
from ackhub.audit.acks import AckFields, public_key_base64, sign_ack
from ackhub.core.clock import ManualClock, SystemClock
from ackhub.core.identifiers import uscc_check_character
from ackhub.core.principal import Principal
from ackhub.hub import launch
from ackhub.hub.auth.jwt import issue
from ackhub.hub.config import RouteRecipient, Settings, parse_settings
from ackhub.hub.exchange import sweep as sweeps
from ackhub.hub.exchange import trace
from ackhub.hub.exchange.claims import Claim, ClaimRequest, claim
from ackhub.hub.exchange.keys import sync_agencies
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.ledger.keys import signing_key
from ackhub.hub.ledger.ledger import AuditLedger
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AuditEventRow
from ackhub.v1 import trace_service_pb2 as trace_pb
from ackhub.v1 import trace_service_pb2_grpc as trace_grpc
from ackhub.v1 import types_pb2

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

is_stored_level: Callable[[int], bool] | None
try:  # the store keeps interior hashes of the audit tree (ackhub.hub.ledger.tree); hubs before 0004 keep none
    from ackhub.hub.ledger.tree import is_stored_level
except ImportError:  # pragma: no cover - measuring a hub from before the change
    is_stored_level = None

DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
RECORD_TYPE = "customs.export_declaration.released"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
DUE = 20  # deliveries past their deadline, and open cases whose next rung is due, at every size
CLAIM_LIMIT = 16  # deliveries per claim_due call (the dispatcher refills a stream's window in such bites)


def claim_due(
    db: Database, recipient: str, limit: int, now_ms: int, connector: str, session_id: str, rng: random.Random
) -> Claim:
    """The dispatcher's due-claim query for one recipient, in a transaction of its own."""
    with db.transaction() as session:
        return claim(session, ClaimRequest(recipient, limit, now_ms, connector, session_id), rng)


OPEN_SHARE, OPEN_MIN = 0.002, 64
REJECTED_SHARE, REJECTED_MIN = 0.005, DUE + 5
# Tables whose rows grow with the records: a full scan of one of these is what the benchmark looks for.
GROWING = (
    "records",
    "deliveries",
    "attempts",
    "acknowledgements",
    "audit_events",
    "escalations",
    "audit_tree_nodes",
)
BIG_TABLE = 10_000  # a scan of a smaller table can be the planner's right choice
ISSUER_KEY = Ed25519PrivateKey.generate()


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    pg_admin: str
    calls: int
    proof_calls: int
    repeats: int
    payload_bytes: int
    seed: int
    timeout: float
    as_json: bool
    keep: bool
    tree_nodes: bool
    workers: int
    render: str


# -- the store's shape -------------------------------------------------------------------------------


def hub_settings_dict(database_url: str, listen: str, keys: dict[str, Ed25519PrivateKey]) -> dict[str, Any]:
    """The hub's configuration: customs publishes to tax (BUSINESS) and fx (RECEIVED), 4 h deadlines,
    retries from 30 s, a second escalation rung after 1 h; enterprises authenticate with the bench's JWTs."""

    def recipient(agency: str, level: str) -> dict[str, Any]:
        return {
            "agency": agency,
            "ack_level": level,
            "deadline": "4h",
            "retry": {"first_interval": "30s", "max_interval": "5m"},
            "escalation": [{"after": "0s"}, {"after": "1h"}],
        }

    return {
        "server": {
            "listen": listen,
            "database_url": database_url,
            "sweep_interval": "1s",
            "log_level": "info",
        },
        "limits": {"requests_per_second": 0.0},
        "auth": {"enterprise_jwt_public_key": public_key_base64(ISSUER_KEY.public_key())},
        "agencies": [
            {
                "id": agency,
                "name": agency.upper(),
                "kind": agency,
                "keys": [{"id": f"{agency}-scale-1", "public_key": public_key_base64(key.public_key())}],
            }
            for agency, key in keys.items()
        ],
        "routes": [
            {
                "record_type": RECORD_TYPE,
                "publishers": ["customs"],
                "recipients": [recipient("tax", "BUSINESS"), recipient("fx", "RECEIVED")],
            }
        ],
    }


def toml(value: Any, path: str = "") -> str:
    """Just enough TOML for `hub_settings_dict`: tables, arrays of tables, strings, numbers, lists."""

    def scalar(item: Any) -> str:
        if isinstance(item, list):
            return "[" + ", ".join(scalar(i) for i in item) + "]"
        if isinstance(item, bool):
            return "true" if item else "false"
        return json.dumps(item)

    def tables(item: Any) -> bool:
        return isinstance(item, list) and bool(item) and all(isinstance(i, dict) for i in item)

    lines = [f"{k} = {scalar(v)}" for k, v in value.items() if not isinstance(v, dict) and not tables(v)]
    for key, item in value.items():
        name = f"{path}.{key}" if path else key
        if isinstance(item, dict):
            lines += ["", f"[{name}]", toml(item, name)]
        elif tables(item):
            for entry in item:
                lines += ["", f"[[{name}]]", toml(entry, name)]
    return "\n".join(lines)


def uuid7(ms: int, kind: int, counter: int) -> str:
    """A UUIDv7-shaped id, time-ordered like the hub's (ackhub.core.ids) but deterministic."""
    value = (ms << 80) | (0x7 << 76) | (kind << 64) | (0b10 << 62) | counter
    return str(uuid.UUID(int=value))


_MASK64 = (1 << 64) - 1


def splitmix64(value: int) -> int:
    """A well-mixed 64-bit hash of an integer: the same per-record choices in every worker process."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def enterprises(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    divisions = ["110000", "310000", "440300", "320500", "330200", "370200"]
    codes = []
    for index in range(count):
        body = f"91{rng.choice(divisions)}{index:08d}{rng.choice('0123456789ABCDEFGHJKLMNPQRTUWXY')}"
        codes.append(body + uscc_check_character(body))
    return codes


@dataclass
class Counters:
    """The next value of each generated key."""

    seq: int  # audit event
    leaf: int
    delivery: int = 1
    attempt: int = 1
    ack: int = 1
    case: int = 1

    def advanced(self, deliveries: int, attempts: int, acks: int, cases: int, events: int) -> Counters:
        return Counters(
            self.seq + events,
            self.leaf + events,
            self.delivery + deliveries,
            self.attempt + attempts,
            self.ack + acks,
            self.case + cases,
        )


class Shape:
    """Everything about record i that does not need generating it: when it was published, its ids, its
    owner, its declaration number, what state it is in and how many rows of each kind it has. The same in
    every process (no shared random state), so chunks of records can be made in parallel."""

    def __init__(self, records: int, now_ms: int, seed: int, deadline_ms: int) -> None:
        self.records = records
        self.now_ms = now_ms
        self.seed = seed
        self.deadline_ms = deadline_ms
        self.open = min(records // 2, max(OPEN_MIN, round(records * OPEN_SHARE)))
        self.rejected = min(records // 4, max(REJECTED_MIN, round(records * REJECTED_SHARE)))
        self.enterprises = max(16, records // 40)
        self.sample_every = max(1, records // 1000)  # these records' acknowledgements carry real signatures
        self.body = records - self.open
        self.rejected_every = max(1, self.body // self.rejected)
        self.end = now_ms - 10_000
        self.open_from = self.end - HOUR_MS
        self.body_from = self.end - 30 * DAY_MS
        self.year = time.gmtime(now_ms / 1000).tm_year
        self.uscc = enterprises(self.enterprises, seed)
        self._owners: Counter[str] | None = None

    def accepted_ms(self, i: int) -> int:
        """The closed body is spread over 30 days, the open tail over the last hour."""
        if i < self.body:
            return self.body_from + (self.open_from - self.body_from) * i // max(1, self.body)
        return self.open_from + (self.end - self.open_from) * (i - self.body) // max(1, self.open)

    def record_id(self, i: int) -> str:
        return uuid7(self.accepted_ms(i), 0, i)

    def subject(self, i: int) -> str:
        """A few big exporters hold most records: the owner's rank is uniform³."""
        unit = splitmix64(self.seed * 1_000_003 + i) / 2**64
        return self.uscc[int(self.enterprises * unit**3)]

    def declaration(self, i: int) -> str:
        return f"{('2201', '5316', '0101', '4200', '2233')[i % 5]}{self.year}0{i + 1:09d}"

    def sampled(self) -> list[int]:
        return list(range(0, self.body, self.sample_every))

    def owners(self) -> Counter[str]:
        if self._owners is None:
            self._owners = Counter(self.subject(i) for i in range(self.records))
        return self._owners

    def kind(self, i: int) -> tuple[str, int]:
        """(what record i is, its index among those of its kind)."""
        if i >= self.body:
            j = i - self.body
            return ("pending" if j % 10 == 0 else "sent" if j % 10 <= 4 else "received"), j
        if i % self.rejected_every == self.rejected_every - 1 and i // self.rejected_every < self.rejected:
            index = i // self.rejected_every
            return ("rejected, case open" if index < DUE else "rejected, resolved"), index
        return "accepted", i

    def rows(self, i: int) -> tuple[int, int, int, int, int]:
        """(deliveries, attempts, acknowledgements, escalation cases, audit events) of record i."""
        kind, j = self.kind(i)
        if kind == "accepted":
            return 2, 2, 3, 0, 6
        if kind == "rejected, case open":
            return 2, 2, 3, 1, 7
        if kind == "rejected, resolved":
            return 2, 2, 3, 1, 8
        if kind == "pending":
            return 2, 0, 0, 0, 1
        if kind == "sent":
            tries = 1 + j % 3
            return 2, 1 + tries, 1, 0, 3 + tries
        return 2, 2, 2, 0, 5


@dataclass
class Tables:
    """Rows waiting to be written, by table; columns in `COLUMNS` order."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows.setdefault(table, []).append(row)

    def take(self) -> dict[str, list[tuple[Any, ...]]]:
        rows, self.rows = self.rows, {}
        return rows


def _columns(names: str) -> tuple[str, ...]:
    return tuple(names.split())


COLUMNS: dict[str, tuple[str, ...]] = {
    "records": _columns(
        "seq id request_id publisher record_type subject_uscc declaration_number content_type payload digest "
        "accepted_ms"
    ),
    "deliveries": _columns(
        "seq id record_id record_type publisher recipient state required_level policy attempts created_ms "
        "next_attempt_ms deadline_ms deadline_check_ms last_attempt_ms received_ms final_ms reason "
        "escalation_id escalated closed_ms closed_by"
    ),
    "attempts": _columns("id delivery_id number connector session_id sent_ms outcome outcome_ms"),
    "acknowledgements": _columns(
        "id delivery_id record_id recipient status reason ack_time_ms key_id signature received_ms via"
    ),
    "escalations": _columns(
        "seq id delivery_id record_id record_type recipient level reason detail state opened_ms next_step_ms "
        "closed_ms resolution resolved_by late_ms"
    ),
    "audit_events": _columns(
        "seq time_ms kind actor record_id delivery_id escalation_id data leaf_index leaf_hash"
    ),
    "audit_tree_nodes": _columns("level position hash"),
    "audit_checkpoints": _columns("tree_size root_hash time_ms origin key_id public_key signature"),
}
ORDER = tuple(COLUMNS)  # foreign keys: records before deliveries


def _text(value: str | None) -> str:
    """A JSON string (or null) for ids, kinds, actors and the bench's fixed texts: none needs escaping."""
    return "null" if value is None else f'"{value}"'


class Generator:
    """Makes the rows of records, from given counters on, with each audit event's leaf hash (in order)."""

    def __init__(
        self, shape: Shape, keys: dict[str, Ed25519PrivateKey], policy: dict[str, str], start: Counters
    ) -> None:
        self.shape = shape
        self.keys = keys
        self.policy = policy
        self.at = Counters(**start.__dict__)
        self.out = Tables()
        self.leaves = bytearray()  # 32 bytes per event, in leaf order
        self.payload_bytes = 1024
        self.checked: set[str] = set()  # event kinds whose leaf data was compared with the hub's

    def event(
        self,
        time_ms: int,
        kind: str,
        actor: str,
        record_id: str | None,
        delivery_id: str | None,
        stored: str,
        escalation_id: str | None = None,
    ) -> None:
        """`stored` is the event's data as canonical JSON (sorted keys, no spaces), as `audit.log` writes it."""
        seq, leaf = self.at.seq, self.at.leaf
        self.at.seq += 1
        self.at.leaf += 1
        # As the hub's sequencer makes it (the stored canonical `data` spliced in), checked below against
        # `audit_log.leaf_data` for every kind and a sample.
        leaf_data = audit_log.leaf_bytes(
            leaf, seq, time_ms, kind, actor, record_id, delivery_id, escalation_id, stored
        )
        if kind not in self.checked or leaf % 997 == 0:
            row = AuditEventRow(
                seq=seq,
                time_ms=time_ms,
                kind=kind,
                actor=actor,
                record_id=record_id,
                delivery_id=delivery_id,
                escalation_id=escalation_id,
                data=stored,
            )
            if audit_log.leaf_data(row, leaf) != leaf_data:
                raise AssertionError(f"the bench's leaf data of a {kind} event is not the hub's")
            self.checked.add(kind)
        value = merkle.leaf_hash(leaf_data)
        self.leaves += value
        self.out.add(
            "audit_events",
            (seq, time_ms, kind, actor, record_id, delivery_id, escalation_id, stored, leaf, value),
        )

    def ack(
        self,
        record: tuple[str, str],
        delivery_id: str,
        recipient: str,
        status: str,
        reason: str,
        at: int,
        sample: bool,
        state: str,
    ) -> None:
        record_id, digest = record
        key = f"{recipient}-scale-1"
        fields = AckFields(delivery_id, record_id, digest, recipient, key, status, reason, at - 5)
        if sample:
            signature = sign_ack(self.keys[recipient], fields)
        else:
            signature = hashlib.sha512(f"{delivery_id}/{status}".encode()).digest()
        self.out.add(
            "acknowledgements",
            (
                self.at.ack,
                delivery_id,
                record_id,
                recipient,
                status,
                reason,
                at - 5,
                key,
                signature,
                at,
                "stream",
            ),
        )
        self.at.ack += 1
        stored = (
            f'{{"ack_time_ms":{at - 5},"key":"{key}","reason":{_text(reason)},"signature":"{signature.hex()}",'
            f'"state":"{state}","status":"{status}"}}'
        )
        self.event(at, f"delivery.{status.lower()}", f"agency:{recipient}", record_id, delivery_id, stored)

    def attempt(self, record_id: str, delivery_id: str, number: int, sent: int, answered: int | None) -> None:
        outcome = "SENT" if answered is None else "ACKED"
        self.out.add(
            "attempts",
            (self.at.attempt, delivery_id, number, "stream", "session-scale", sent, outcome, answered),
        )
        self.at.attempt += 1
        stored = f'{{"attempt":{number},"connector":"stream","session":"session-scale"}}'
        self.event(sent, "delivery.attempt", "system:hub", record_id, delivery_id, stored)

    def delivery(
        self,
        record_id: str,
        delivery_id: str,
        recipient: str,
        t: int,
        *,
        state: str,
        attempts: int,
        next_attempt: int | None = None,
        deadline_check: int | None = None,
        last_attempt: int | None = None,
        received: int | None = None,
        final: int | None = None,
        reason: str = "",
        escalation_id: str | None = None,
        escalated: bool = False,
    ) -> None:
        level = "BUSINESS" if recipient == "tax" else "RECEIVED"
        # closed as the hub closes it (ackhub.hub.exchange.states): fx by its RECEIVED, tax by its business answer
        closed_by = "RECEIVED" if level == "RECEIVED" and received is not None else (state if final else None)
        closed_ms = received if closed_by == "RECEIVED" else final
        self.out.add(
            "deliveries",
            (
                self.at.delivery,
                delivery_id,
                record_id,
                RECORD_TYPE,
                "customs",
                recipient,
                state,
                level,
                self.policy[recipient],
                attempts,
                t,
                next_attempt,
                t + self.shape.deadline_ms,
                deadline_check,
                last_attempt,
                received,
                final,
                reason,
                escalation_id,
                escalated,
                closed_ms,
                closed_by,
            ),
        )
        self.at.delivery += 1

    def payload(self, declaration: str, uscc: str, t: int) -> bytes:
        text = (
            f'{{"declaration_number":"{declaration}","customs_office":"{declaration[:4]}",'
            f'"exporter":{{"uscc":"{uscc}","name":"规模测试贸易有限公司 {uscc[-6:]}"}},"trade_mode":"0110",'
            f'"released_ms":{t},"currency":"USD","goods":[{{"line":1,"hs_code":"8471300000",'
            f'"quantity":{t % 5000 + 1},"unit":"台","fob_usd":{t % 90_000 / 7:.2f}}}],"remarks":"'
        )
        size = len(text.encode()) + 2
        return (text + "x" * max(0, self.payload_bytes - size) + '"}').encode()

    def record(self, i: int) -> None:
        shape = self.shape
        t = shape.accepted_ms(i)
        record_id, tax_id, fx_id, request_id = (uuid7(t, kind, i) for kind in range(4))
        uscc, declaration = shape.subject(i), shape.declaration(i)
        payload = self.payload(declaration, uscc, t)
        digest = hashlib.sha256(payload).hexdigest()
        row = (i + 1, record_id, request_id, "customs", RECORD_TYPE, uscc, declaration, "application/json")
        self.out.add("records", (*row, payload, digest, t))
        published = (
            f'{{"declaration_number":"{declaration}","deliveries":{{"fx":"{fx_id}","tax":"{tax_id}"}},'
            f'"digest":"sha256:{digest}","record_type":"{RECORD_TYPE}","request_id":"{request_id}",'
            f'"subject_uscc":"{uscc}"}}'
        )
        self.event(t, "record.published", "agency:customs", record_id, None, published)
        sample = i % shape.sample_every == 0
        kind, j = shape.kind(i)
        if kind in ("pending", "sent", "received"):
            self.still_open(kind, j, (record_id, digest), tax_id, fx_id, t, sample)
        else:
            self.closed(kind, j, (record_id, digest), tax_id, fx_id, t, sample)

    def closed(
        self, kind: str, j: int, record: tuple[str, str], tax_id: str, fx_id: str, t: int, sample: bool
    ) -> None:
        record_id = record[0]
        self.attempt(record_id, tax_id, 1, t + 40, t + 120)
        self.attempt(record_id, fx_id, 1, t + 40, t + 90)
        self.delivery(
            record_id, fx_id, "fx", t, state="RECEIVED", attempts=1, last_attempt=t + 40, received=t + 90
        )
        self.ack(record, fx_id, "fx", "RECEIVED", "", t + 90, sample, "RECEIVED")
        self.ack(record, tax_id, "tax", "RECEIVED", "", t + 120, sample, "RECEIVED")
        if kind == "accepted":
            reason = "registered for export tax refund"
            self.delivery(
                record_id,
                tax_id,
                "tax",
                t,
                state="ACCEPTED",
                attempts=1,
                last_attempt=t + 40,
                received=t + 120,
                final=t + 250,
                reason=reason,
            )
            self.ack(record, tax_id, "tax", "ACCEPTED", reason, t + 250, sample, "ACCEPTED")
            return
        reason, case_id = "value mismatch", uuid7(t + 250, 4, j)
        still_open = kind == "rejected, case open"  # waiting for its next rung, due now
        resolution = "phoned the tax bureau; corrected and resent"
        self.out.add(
            "escalations",
            (
                self.at.case,
                case_id,
                tax_id,
                record_id,
                RECORD_TYPE,
                "tax",
                1,
                "REJECTED",
                reason,
                "OPEN" if still_open else "RESOLVED",
                t + 250,
                self.shape.now_ms - 30_000 if still_open else None,
                None if still_open else t + 2 * HOUR_MS,
                "" if still_open else resolution,
                "" if still_open else "operator:alice",
                None,
            ),
        )
        self.at.case += 1
        self.delivery(
            record_id,
            tax_id,
            "tax",
            t,
            state="REJECTED",
            attempts=1,
            last_attempt=t + 40,
            received=t + 120,
            final=t + 250,
            reason=reason,
            escalation_id=case_id,
            escalated=still_open,
        )
        opened = f'{{"detail":"{reason}","level":1,"reason":"REJECTED"}}'
        self.event(t + 250, "escalation.opened", "system:hub", record_id, tax_id, opened, case_id)
        self.ack(record, tax_id, "tax", "REJECTED", reason, t + 250, sample, "REJECTED")
        if not still_open:
            resolved = f'{{"reason":"{resolution}"}}'
            self.event(
                t + 2 * HOUR_MS, "escalation.resolved", "operator:alice", record_id, tax_id, resolved, case_id
            )

    def still_open(
        self, kind: str, j: int, record: tuple[str, str], tax_id: str, fx_id: str, t: int, sample: bool
    ) -> None:
        """1 in 10 PENDING, 4 in 10 SENT (half of those due now), the rest RECEIVED by tax, awaiting its
        business answer (the oldest DUE of those past their deadline now)."""
        record_id, now = record[0], self.shape.now_ms
        deadline = t + self.shape.deadline_ms
        if kind == "pending":
            for delivery_id, agency in ((tax_id, "tax"), (fx_id, "fx")):
                self.delivery(
                    record_id,
                    delivery_id,
                    agency,
                    t,
                    state="PENDING",
                    attempts=0,
                    next_attempt=t,
                    deadline_check=deadline,
                )
            return
        self.attempt(record_id, fx_id, 1, t + 40, t + 90)
        self.delivery(
            record_id, fx_id, "fx", t, state="RECEIVED", attempts=1, last_attempt=t + 40, received=t + 90
        )
        self.ack(record, fx_id, "fx", "RECEIVED", "", t + 90, sample, "RECEIVED")
        if kind == "sent":
            tries = 1 + j % 3
            for number in range(1, tries + 1):
                self.attempt(record_id, tax_id, number, t + 40 + (number - 1) * 30_000, None)
            self.delivery(
                record_id,
                tax_id,
                "tax",
                t,
                state="SENT",
                attempts=tries,
                next_attempt=now - 1_000 if j % 10 <= 2 else now + HOUR_MS,
                deadline_check=deadline,
                last_attempt=t + 40 + (tries - 1) * 30_000,
            )
            return
        self.attempt(record_id, tax_id, 1, t + 40, t + 120)
        late = j // 10 * 5 + j % 10 - 5 < DUE
        self.delivery(
            record_id,
            tax_id,
            "tax",
            t,
            state="RECEIVED",
            attempts=1,
            deadline_check=now - 60_000 if late else deadline,
            last_attempt=t + 40,
            received=t + 120,
        )
        self.ack(record, tax_id, "tax", "RECEIVED", "", t + 120, sample, "RECEIVED")


# -- loading: chunks made in worker processes, written with executemany (SQLite) or COPY (PostgreSQL) -----

_JOB: dict[str, Any] = {}  # what the worker processes need, set before they are forked


@dataclass(frozen=True)
class Chunk:
    first: int
    last: int
    start: Counters
    end: Counters


def make_chunk(chunk: Chunk) -> tuple[Chunk, bytes]:
    """In a worker: make records [first, last) and write them — to a chunk file the main process copies
    from (SQLite, which has one writer) or straight into the store (PostgreSQL, COPY in parallel)."""
    generator = Generator(_JOB["shape"], _JOB["keys"], _JOB["policy"], chunk.start)
    generator.payload_bytes = _JOB["payload_bytes"]
    for i in range(chunk.first, chunk.last):
        generator.record(i)
    if generator.at != chunk.end:
        raise AssertionError(f"records {chunk.first}..{chunk.last} made {generator.at}, planned {chunk.end}")
    rows = generator.out.take()
    if _JOB["backend"] == "sqlite":
        path = Path(_JOB["workdir"]) / f"chunk-{chunk.first}.db"
        path.unlink(missing_ok=True)
        with closing(sqlite3.connect(path)) as lite, lite:
            lite.execute("PRAGMA journal_mode=OFF")
            for table in ORDER:
                if rows.get(table):
                    columns = COLUMNS[table]
                    lite.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
                    marks = ", ".join("?" * len(columns))
                    lite.executemany(f"INSERT INTO {table} VALUES ({marks})", rows[table])
    else:
        with psycopg.connect(_JOB["url"]) as connection:
            copy_rows(connection, rows)
    return chunk, bytes(generator.leaves)


def copy_rows(connection: psycopg.Connection[Any], rows: dict[str, list[tuple[Any, ...]]]) -> None:
    with connection.transaction(), connection.cursor() as cursor:
        for table in ORDER:
            if rows.get(table):
                with cursor.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
                    for row in rows[table]:
                        copy.write_row(row)


class Loader:
    """The main process's side: secondary indexes off while loading (rebuilt afterwards from the very
    definitions the migrations made), rows in, the audit tree's frontier, interior hashes and checkpoints."""

    SERIALS: ClassVar[dict[str, str]] = {
        "records": "seq",
        "deliveries": "seq",
        "attempts": "id",
        "acknowledgements": "id",
        "escalations": "seq",
        "audit_events": "seq",
    }

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url
        self.indexes: list[tuple[str, str]] = []
        if backend == "sqlite":
            self.lite = sqlite3.connect(str(make_url(url).database))
            # No journal while loading (the file is new and nobody else has it open); WAL again at the end.
            for pragma in (
                "journal_mode=OFF",
                "locking_mode=EXCLUSIVE",
                "synchronous=OFF",
                "cache_size=-1000000",
            ):
                self.lite.execute(f"PRAGMA {pragma}")
        else:
            self.pg = psycopg.connect(url, autocommit=True)

    def drop_indexes(self) -> None:
        tables = list(GROWING)
        if self.backend == "sqlite":
            marks = ", ".join("?" * len(tables))
            self.indexes = self.lite.execute(
                f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                f"AND tbl_name IN ({marks})",
                tables,
            ).fetchall()
            for name, _ in self.indexes:
                self.lite.execute(f'DROP INDEX "{name}"')
            return
        self.indexes = self.pg.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)",
            (tables,),
        ).fetchall()
        for name, _ in self.indexes:
            self.pg.execute(f'DROP INDEX "{name}"')

    def take_chunk(self, chunk: Chunk, workdir: Path) -> None:
        if self.backend != "sqlite":
            return  # the worker wrote it
        path = workdir / f"chunk-{chunk.first}.db"
        self.lite.execute("ATTACH DATABASE ? AS chunk", (str(path),))
        try:
            present = {
                r[0] for r in self.lite.execute("SELECT name FROM chunk.sqlite_master WHERE type = 'table'")
            }
            with self.lite:
                for table in ORDER:
                    if table in present:
                        columns = ", ".join(COLUMNS[table])
                        self.lite.execute(
                            f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM chunk.{table} ORDER BY rowid"
                        )
        finally:
            self.lite.execute("DETACH DATABASE chunk")
        path.unlink()

    def write(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        if self.backend == "sqlite":
            with self.lite:
                for table in ORDER:
                    if rows.get(table):
                        marks = ", ".join("?" * len(COLUMNS[table]))
                        sql = f"INSERT INTO {table} ({', '.join(COLUMNS[table])}) VALUES ({marks})"
                        self.lite.executemany(sql, rows[table])
        else:
            copy_rows(self.pg, rows)

    def finish(self) -> None:
        if self.backend == "sqlite":
            for _, sql in self.indexes:
                self.lite.execute(sql)
            self.lite.execute("PRAGMA locking_mode=NORMAL")
            self.lite.execute("PRAGMA journal_mode=WAL")
            self.lite.close()
            return
        self.pg.execute("SET maintenance_work_mem = '512MB'")
        for _, sql in self.indexes:
            self.pg.execute(sql)
        for table, column in self.SERIALS.items():
            self.pg.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
            )
        self.pg.execute("ANALYZE")
        self.pg.close()


@dataclass
class Loaded:
    shape: Shape
    settings: Settings
    tree_size: int
    counts: dict[str, int]
    seconds: float


def load(
    url: str,
    database_url: str,
    workdir: Path,
    records: int,
    settings: Settings,
    keys: dict[str, Ed25519PrivateKey],
    opts: Options,
) -> Loaded:
    """Migrate, register the agencies as a hub does, then bulk-load `records` records and sign checkpoints
    over the events with the key the hub will use."""
    started = time.perf_counter()
    db = Database(database_url)
    db.migrate()
    has_nodes = "audit_tree_nodes" in inspect(db.engine).get_table_names()
    store_nodes = has_nodes and opts.tree_nodes and is_stored_level is not None
    now_ms = SystemClock().now_ms()
    with db.transaction() as session:  # the hub's first start, a little before the first record
        sync_agencies(session, settings, now_ms - 31 * DAY_MS)
    with db.transaction() as session:
        audit_log.sequence(session)
    with db.transaction() as session:
        first_events = session.exec(select(AuditEventRow).order_by(col(AuditEventRow.leaf_index))).all()
    db.close()
    route = settings.routes[0]
    shape = Shape(records, now_ms, opts.seed, route.recipients[0].deadline)
    key, _ = signing_key(None, database_url)
    frontier = merkle.Frontier()
    loader = Loader("sqlite" if url.startswith("sqlite") else "postgres", url)
    loader.drop_indexes()
    pending: dict[str, list[tuple[Any, ...]]] = {"audit_tree_nodes": [], "audit_checkpoints": []}

    def grow(leaves: bytes) -> None:
        for offset in range(0, len(leaves), 32):
            for level, position, node in frontier.append(leaves[offset : offset + 32]):
                if store_nodes and level and is_stored_level is not None and is_stored_level(level):
                    pending["audit_tree_nodes"].append((level, position, node))

    def checkpoint(time_ms: int) -> None:
        signed = checkpoints.sign(key, settings.audit.origin, frontier.size, frontier.root(), time_ms)
        pending["audit_checkpoints"].append(
            (
                signed.tree_size,
                signed.root_hash,
                time_ms,
                signed.origin,
                signed.key_id,
                signed.public_key,
                signed.signature,
            )
        )

    grow(b"".join(e.leaf_hash or b"" for e in first_events))
    at = Counters(seq=max(e.seq or 0 for e in first_events) + 1, leaf=frontier.size)
    size = min(10_000, max(100, records // 20))
    chunks = []
    for first in range(0, records, size):
        start = at
        for i in range(first, min(first + size, records)):
            at = at.advanced(*shape.rows(i))
        chunks.append(Chunk(first, min(first + size, records), start, at))
    _JOB.update(
        shape=shape,
        keys=keys,
        policy={r.agency: RouteRecipient.model_validate(r).model_dump_json() for r in route.recipients},
        payload_bytes=opts.payload_bytes,
        backend=loader.backend,
        workdir=str(workdir),
        url=url,
    )
    workers = max(1, min(opts.workers, len(chunks)))
    last_report = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for chunk, leaves in pool.imap(make_chunk, chunks):
            loader.take_chunk(chunk, workdir)
            grow(leaves)
            if chunk.last < records:  # the last one is signed "now", below
                checkpoint(shape.accepted_ms(chunk.last - 1) + 1_000)
            loader.write(pending)
            pending = {"audit_tree_nodes": [], "audit_checkpoints": []}
            if time.perf_counter() - last_report > 5 or chunk.last == records:
                last_report = time.perf_counter()
                rate = chunk.last / (last_report - started)
                progress(f"  loaded {chunk.last:,}/{records:,} records ({rate:,.0f}/s, {workers} workers)")
    if frontier.size != at.leaf:
        raise AssertionError(f"{frontier.size} leaves in the tree, {at.leaf} planned")
    checkpoint(now_ms - 5_000)
    loader.write(pending)
    analyze = ", then ANALYZE" if loader.backend != "sqlite" else ""
    progress(f"  building the {len(loader.indexes)} secondary indexes the migrations made{analyze}")
    loader.finish()
    counts = table_counts(database_url)
    return Loaded(shape, settings, frontier.size, counts, time.perf_counter() - started)


def table_counts(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    try:
        present = set(inspect(db.engine).get_table_names())
        with db.engine.connect() as connection:
            return {
                table: int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
                for table in GROWING
                if table in present
            }
    finally:
        db.close()


# -- in-process measurements ---------------------------------------------------------------------------


class RollbackDatabase(Database):
    """Every unit of work runs and is flushed, then rolled back: measured, never kept."""

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            session.begin()
            try:
                yield session
                session.flush()
            finally:
                session.expunge_all()  # what was read stays readable; a rollback would expire it
                session.rollback()


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """Nearest-rank p50/p99 and max, in milliseconds."""
    if not seconds:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "n": 0}
    ordered = sorted(seconds)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 2)

    return {"p50": rank(50), "p99": rank(99), "max": round(ordered[-1] * 1000, 2), "n": len(ordered)}


def timed(repeats: int, call: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        out.append(time.perf_counter() - began)
    return out


def rss_mib(pid: int | str = "self", field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return math.nan


@contextmanager
def captured(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements run on `db` while inside, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if not many and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def _pg_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _pg_nodes(child)


def statement_ms(db: Database, statement: str, parameters: Any) -> float:
    """The best of 3 runs of one statement, all rows fetched, in a transaction rolled back."""
    best = math.inf
    with db.engine.connect() as connection:
        for _ in range(3):
            began = time.perf_counter()
            connection.exec_driver_sql(statement, parameters).all()
            best = min(best, time.perf_counter() - began)
        connection.rollback()
    return round(best * 1000, 3)


def explain(db: Database, statement: str, parameters: Any) -> tuple[list[str], list[str]]:
    """(the plan as lines, the growing tables it scans in full)."""
    with db.engine.connect() as connection:
        if db.is_sqlite:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            lines = [str(row[3]) for row in rows]
            scans = [
                line.split()[1]
                for line in lines
                if line.startswith("SCAN ") and len(line.split()) > 1 and line.split()[1] in GROWING
            ]
            return lines, scans
        document = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()
        plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        lines, scans = [], []
        for node in _pg_nodes(plan):
            relation = node.get("Relation Name", "")
            index = f" using {node['Index Name']}" if "Index Name" in node else ""
            lines.append(f"{node['Node Type']}{index}{' on ' + relation if relation else ''}")
            if node["Node Type"] == "Seq Scan" and relation in GROWING:
                scans.append(relation)
        return lines, scans


def single_line(statement: str) -> str:
    return " ".join(statement.split())


def in_process(database_url: str, loaded: Loaded, opts: Options) -> dict[str, Any]:
    """The sweep, the due claim and the hot reads, in this process, rolled back; and their query plans."""
    db = RollbackDatabase(database_url)
    rng = random.Random(opts.seed + 1)
    now = loaded.shape.now_ms + 1_000
    shape = loaded.shape
    big = shape.owners().most_common(1)[0][0]
    some = rng.randrange(shape.records)
    samples = shape.sampled()
    sampled = samples[len(samples) // 2] if samples else some
    key, _ = signing_key(None, database_url)
    results: dict[str, Any] = {}
    try:
        due = sweeps.sweep(db, now)
        results["sweep_found"] = {"deadlines": due.deadlines, "escalation_steps": due.steps}
        results["sweep_idle_ms"] = percentiles(
            timed(opts.repeats, lambda: sweeps.sweep(db, loaded.shape.now_ms - 120_000))
        )
        results["sweep_due_ms"] = percentiles(timed(opts.repeats, lambda: sweeps.sweep(db, now)))
        claim = claim_due(db, "tax", CLAIM_LIMIT, now, "stream", "bench", random.Random(1))
        results["claimed"] = len(claim.outbound)
        results["claim_due_ms"] = percentiles(
            timed(
                opts.repeats,
                lambda: claim_due(db, "tax", CLAIM_LIMIT, now, "stream", "bench", random.Random(1)),
            )
        )
        from ackhub.hub.console.metrics import Metrics

        scrape = Metrics(db, ManualClock(now), dict, [a.id for a in loaded.settings.agencies]).render
        results["metrics_scrape_ms"] = percentiles(timed(opts.repeats, scrape))
        from ackhub.core.principal import SYSTEM
        from ackhub.hub.console import data as console_data

        configured: list[tuple[str, str, str, str]] = [
            (a.id, a.name, a.kind, a.connector) for a in loaded.settings.agencies
        ]

        def agencies_page() -> object:
            return console_data.agencies(db, SYSTEM, configured, now)

        results["agencies_page_ms"] = percentiles(timed(opts.repeats, agencies_page))
        ledger = AuditLedger(db, key, loaded.settings.audit.origin, SystemClock())
        from ackhub.audit.proofs import verify_delivery_proof
        from ackhub.hub.ledger import proof  # imported late: it imports the exchange's trace module

        enterprise = Principal("enterprise", shape.subject(sampled))
        # Rolled-back transactions take with them any interior hashes the ledger stored, so it must forget
        # what it synced after each use and rebuild its frontier from the store (a few reads). A store
        # without any stored interior hashes (`--no-tree-nodes`) would be rebuilt, and rolled back, each
        # time: its proofs are measured over gRPC only, where the hub's first one builds them for good.
        forget = getattr(getattr(ledger, "_tree", None), "forget", lambda: None)
        legacy = is_stored_level is not None and loaded.counts.get("audit_tree_nodes", 0) == 0
        if not legacy:
            before = rss_mib()
            began = time.perf_counter()
            document = proof.build(ledger, enterprise, shape.record_id(sampled))
            results["first_proof_ms"] = round((time.perf_counter() - began) * 1000, 1)
            results["first_proof_rss_growth_mib"] = round(rss_mib() - before, 1)
            forget()
            verdict = verify_delivery_proof(document, key.public_key())
            results["proof_verifies"] = verdict.ok
            if not verdict.ok:
                progress(f"  the delivery proof does not verify: {verdict.failures}")

        def build_proof() -> object:
            try:
                return proof.build(ledger, enterprise, shape.record_id(sampled))
            finally:
                forget()

        if not legacy:
            results["proof_ms"] = percentiles(timed(min(opts.repeats, len(samples) or 1), build_proof))

        def list_records(caller: str, **filters: Any) -> object:
            arguments: dict[str, Any] = {
                "declaration_number": "",
                "record_type": "",
                "start_ms": None,
                "end_ms": None,
                "state": "",
                "size": 50,
                "token": "",
            }
            arguments.update(filters)
            return trace.list_records(db, Principal("enterprise", caller), **arguments)

        operations: dict[str, Callable[[], object]] = {
            "sweep": lambda: sweeps.sweep(db, now),
            "claim_due": lambda: claim_due(db, "tax", CLAIM_LIMIT, now, "stream", "bench", random.Random(1)),
            "TraceRecord": lambda: trace.trace_record(
                db, Principal("enterprise", shape.subject(some)), shape.record_id(some)
            ),
            "ListRecords": lambda: list_records(big),
            "ListRecords state=SENT": lambda: list_records(big, state="SENT"),
            "ListRecords declaration": lambda: list_records(
                shape.subject(some), declaration_number=shape.declaration(some)
            ),
            "GetDeliveryProof": build_proof,
            "audit checkpoint": ledger.checkpoint,
            "/metrics scrape": scrape,
            "console Agencies page": agencies_page,
        }
        if legacy:
            del operations["GetDeliveryProof"], operations["audit checkpoint"]
        plans: dict[str, list[dict[str, Any]]] = {}
        for name, operation in operations.items():
            with captured(db) as statements:
                operation()
            forget()
            seen: set[str] = set()
            plans[name] = []
            for statement, parameters in statements:
                text = single_line(statement)
                if text in seen:
                    continue
                seen.add(text)
                lines, scans = explain(db, statement, parameters)
                took = statement_ms(db, statement, parameters)
                plans[name].append({"statement": text, "plan": lines, "scans": scans, "ms": took})
        results["plans"] = plans
    finally:
        db.close()
    return results


# -- the hub over gRPC -------------------------------------------------------------------------------

FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 50),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Hub(launch.HubProcess):
    """The hub under test; ready when health says SERVING."""

    def __init__(self, config: Path, log: Path, target: str) -> None:
        super().__init__(config, log, target=target)

    def stop(self, timeout: float, kill_wait: float = 10, on_kill: Callable[[], None] | None = None) -> float:
        """SIGTERM and wait (a clean stop signs a last checkpoint); how long it took."""
        warning = f"  the hub did not stop within {timeout:.0f} s: killing it"
        return super().stop(timeout, kill_wait, on_kill or (lambda: progress(warning)))


class Calls:
    """TraceService calls as the enterprises that own the records."""

    def __init__(self, target: str, loaded: Loaded, rng: random.Random) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = trace_grpc.TraceServiceStub(self.channel)
        self.loaded = loaded
        self.rng = rng
        self.tokens: dict[str, tuple[tuple[str, str]]] = {}

    def metadata(self, uscc: str) -> tuple[tuple[str, str]]:
        if uscc not in self.tokens:
            token = issue(
                ISSUER_KEY, uscc, issuer="ackhub-dev", audience="ackhub", now_s=int(time.time()) - 5
            )
            self.tokens[uscc] = (("authorization", f"Bearer {token}"),)
        return self.tokens[uscc]

    def trace(self, index: int) -> None:
        answer = self.stub.TraceRecord(
            trace_pb.TraceRecordRequest(record_id=self.loaded.shape.record_id(index)),
            metadata=self.metadata(self.loaded.shape.subject(index)),
            timeout=30,
        )
        assert len(answer.recipients) == 2, answer

    def list(self, uscc: str, **fields: Any) -> int:
        answer = self.stub.ListRecords(
            trace_pb.ListRecordsRequest(page_size=50, **fields), metadata=self.metadata(uscc), timeout=30
        )
        return len(answer.records)

    def proof(self, index: int) -> None:
        answer = self.stub.GetDeliveryProof(
            trace_pb.GetDeliveryProofRequest(record_id=self.loaded.shape.record_id(index)),
            metadata=self.metadata(self.loaded.shape.subject(index)),
            timeout=120,
        )
        assert json.loads(answer.document)["format"] == "ackhub-delivery-proof/v1"

    def close(self) -> None:
        self.channel.close()


def over_grpc(
    workdir: Path, database_url: str, loaded: Loaded, keys: dict[str, Ed25519PrivateKey], opts: Options
) -> dict[str, Any]:
    port = free_port()
    target = f"127.0.0.1:{port}"
    config = workdir / "hub.toml"
    config.write_text(toml(hub_settings_dict(database_url, target, keys)) + "\n")
    hub = Hub(config, workdir / "hub.log", target)
    rng = random.Random(opts.seed + 2)
    records = loaded.shape.records
    shape = loaded.shape
    owners = shape.owners()
    (big, most), (small, fewest) = owners.most_common(1)[0], owners.most_common()[-1]
    out: dict[str, Any] = {"biggest_enterprise_records": most, "smallest_enterprise_records": fewest}
    calls = Calls(target, loaded, rng)
    try:
        progress("  starting the hub")
        start: dict[str, Any] = {"serving_s": round(hub.start(opts.timeout), 3)}
        began = time.perf_counter()
        calls.trace(rng.randrange(records))
        start["first_rpc_s"] = round(start["serving_s"] + time.perf_counter() - began, 3)
        start["rss_mib"] = rss_mib(hub.pid)
        out["start"] = start
        progress(f"  serving after {start['serving_s']:.2f} s; {opts.calls} calls of each kind")
        out["TraceRecord_ms"] = percentiles(timed(opts.calls, lambda: calls.trace(rng.randrange(records))))
        out["ListRecords_ms"] = percentiles(
            timed(opts.calls, lambda: calls.list(shape.subject(rng.randrange(records))))
        )
        out["ListRecords_biggest_ms"] = percentiles(timed(opts.calls, lambda: calls.list(big)))
        out["ListRecords_smallest_ms"] = percentiles(timed(opts.calls, lambda: calls.list(small)))
        out["ListRecords_state_ms"] = percentiles(
            timed(opts.calls, lambda: calls.list(big, state=types_pb2.DELIVERY_STATE_SENT))
        )

        def by_declaration() -> None:
            index = rng.randrange(records)
            found = calls.list(shape.subject(index), declaration_number=shape.declaration(index))
            assert found == 1, found

        out["ListRecords_declaration_ms"] = percentiles(timed(opts.calls, by_declaration))
        sample = shape.sampled() or [0]
        began = time.perf_counter()
        calls.proof(sample[0])
        out["first_proof_ms"] = round((time.perf_counter() - began) * 1000, 1)
        out["GetDeliveryProof_ms"] = percentiles(
            timed(opts.proof_calls, lambda: calls.proof(rng.choice(sample)))
        )
        out["rss_after_calls_mib"] = rss_mib(hub.pid)
        out["peak_rss_mib"] = rss_mib(hub.pid, "VmHWM")
        out["stop_s"] = round(hub.stop(opts.timeout), 3)
        progress("  restarting the hub")
        restart: dict[str, Any] = {"serving_s": round(hub.start(opts.timeout), 3)}
        began = time.perf_counter()
        calls.trace(rng.randrange(records))
        restart["first_rpc_s"] = round(restart["serving_s"] + time.perf_counter() - began, 3)
        restart["rss_mib"] = rss_mib(hub.pid)
        began = time.perf_counter()
        calls.proof(sample[-1])
        restart["first_proof_ms"] = round((time.perf_counter() - began) * 1000, 1)
        restart["rss_after_proof_mib"] = rss_mib(hub.pid)
        restart["stop_s"] = round(hub.stop(opts.timeout), 3)
        out["restart"] = restart
    finally:
        calls.close()
        hub.stop(30)
    return out


# -- one store ------------------------------------------------------------------------------------------


@contextmanager
def store(backend: str, workdir: Path, opts: Options) -> Iterator[tuple[str, str]]:
    """(URL for the loader, URL for the hub) of a fresh store; dropped afterwards unless --keep."""
    if backend == "sqlite":
        path = workdir / "hub.db"
        url = f"sqlite:///{path}"
        yield url, url
        return
    name = f"ackhub_scale_{uuid.uuid4().hex[:10]}"
    admin = make_url(opts.pg_admin)
    if admin.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--pg-admin must be a loopback address, not {admin.host}")
    with psycopg.connect(opts.pg_admin, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        yield url, url
    finally:
        if opts.keep:
            progress(f"  kept PostgreSQL database {name}")
        else:
            with psycopg.connect(opts.pg_admin, autocommit=True, connect_timeout=10) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_one(backend: str, records: int, opts: Options) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"ackhub-scale-{backend}-{records}-"))
    keys = {agency: Ed25519PrivateKey.generate() for agency in ("customs", "tax", "fx")}
    result: dict[str, Any] = {"backend": backend, "records": records, "loadavg_at_start": loadavg()}
    try:
        with store(backend, workdir, opts) as (url, database_url):
            settings = parse_settings(hub_settings_dict(database_url, "127.0.0.1:0", keys), "bench")
            progress(f"{backend}, {records:,} records: loading")
            loaded = load(url, database_url, workdir, records, settings, keys, opts)
            result["load_s"] = round(loaded.seconds, 1)
            result["rows"] = loaded.counts
            result["audit_events"] = loaded.tree_size
            if backend == "sqlite":
                files = [workdir / "hub.db", workdir / "hub.db-wal"]
                result["store_mib"] = round(sum(f.stat().st_size for f in files if f.exists()) / 2**20)
            progress(f"  loaded in {loaded.seconds:.0f} s: {loaded.counts}; measuring in process")
            result["in_process"] = in_process(database_url, loaded, opts)
            result["grpc"] = over_grpc(workdir, database_url, loaded, keys, opts)
            result["loadavg_at_end"] = loadavg()
    except Exception as error:  # reported with the others, and the exit status says so
        result["error"] = f"{type(error).__name__}: {error}"
        progress(f"  FAILED: {result['error']}")
    finally:
        if opts.keep:
            progress(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- the report -----------------------------------------------------------------------------------------


def loadavg() -> str:
    """The machine's 1, 5 and 15 minute load averages: other work on it skews the figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with suppress(OSError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "system": platform.platform(),
    }


def dig(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


FIGURES: list[tuple[str, str, str]] = [  # label, path in a result, how to show it
    ("machine load average at start", "loadavg_at_start", "text"),
    ("load, s", "load_s", "value"),
    ("audit events", "audit_events", "int"),
    ("sweep, nothing due, ms", "in_process.sweep_idle_ms", "p"),
    ("sweep, 20 + 20 due (rolled back), ms", "in_process.sweep_due_ms", "p"),
    (f"claim_due {CLAIM_LIMIT} (rolled back), ms", "in_process.claim_due_ms", "p"),
    ("/metrics scrape (in process), ms", "in_process.metrics_scrape_ms", "p"),
    ("console Agencies page's reads (in process), ms", "in_process.agencies_page_ms", "p"),
    ("first delivery proof, cold ledger (in process), ms", "in_process.first_proof_ms", "value"),
    ("  bench RSS growth for it, MiB", "in_process.first_proof_rss_growth_mib", "value"),
    ("TraceRecord, ms", "grpc.TraceRecord_ms", "p"),
    ("ListRecords (a random record's owner), ms", "grpc.ListRecords_ms", "p"),
    ("ListRecords (biggest enterprise), ms", "grpc.ListRecords_biggest_ms", "p"),
    ("ListRecords (an enterprise with fewest records), ms", "grpc.ListRecords_smallest_ms", "p"),
    ("ListRecords state=SENT (biggest), ms", "grpc.ListRecords_state_ms", "p"),
    ("ListRecords by declaration, ms", "grpc.ListRecords_declaration_ms", "p"),
    ("GetDeliveryProof, ms", "grpc.GetDeliveryProof_ms", "p"),
    ("first GetDeliveryProof after start, ms", "grpc.first_proof_ms", "value"),
    ("start to SERVING, s", "grpc.start.serving_s", "value"),
    ("restart to SERVING, s", "grpc.restart.serving_s", "value"),
    ("restart to first TraceRecord answer, s", "grpc.restart.first_rpc_s", "value"),
    ("first GetDeliveryProof after restart, ms", "grpc.restart.first_proof_ms", "value"),
    ("hub RSS after restart, MiB", "grpc.restart.rss_mib", "value"),
    ("hub RSS after restart + 1 proof, MiB", "grpc.restart.rss_after_proof_mib", "value"),
    ("hub RSS after all calls / peak, MiB", "grpc.rss_after_calls_mib", "rss"),
    ("clean stop, s", "grpc.stop_s", "value"),
]


def show(result: dict[str, Any], path: str, how: str) -> tuple[str, float | None]:
    """(the cell, the number a ratio is taken of)."""
    value = dig(result, path)
    if value is None:
        return "-", None
    if how == "p":
        return f"{value['p50']:.1f} / {value['p99']:.1f}", float(value["p99"])
    if how == "rss":
        return f"{value:.0f} / {dig(result, 'grpc.peak_rss_mib'):.0f}", float(value)
    if how == "text":
        return str(value).split()[0], None
    if how == "int":
        return f"{value:,}", float(value)
    return f"{value:g}", float(value)


def table(results: list[dict[str, Any]]) -> str:
    backends = list(dict.fromkeys(r["backend"] for r in results))
    header = ["figure (p50 / p99 where two)"]
    columns: list[list[dict[str, Any]]] = []
    for backend in backends:
        runs = sorted((r for r in results if r["backend"] == backend), key=lambda r: r["records"])
        columns.append(runs)
        header += [f"{backend} {r['records']:,}" for r in runs]
        if len(runs) > 1:
            header.append(f"{backend} ratio")
    rows = [header]
    for label, path, how in FIGURES:
        row = [label]
        for runs in columns:
            numbers = []
            for run in runs:
                cell, number = show(run, path, how)
                row.append(cell)
                numbers.append(number)
            if len(runs) > 1:
                first, last = numbers[0], numbers[-1]
                row.append(f"{last / first:.2f}×" if first and last is not None else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def plan_report(results: list[dict[str, Any]]) -> str:
    """Per store: the statements that scan a growing table, and every statement's time with its plan
    (by operation), so that an index search that still reads much of a table shows by its ratio."""
    lines = []
    for result in results:
        plans = dig(result, "in_process.plans") or {}
        rows = result.get("rows", {})
        scanning = [
            (name, s)
            for name, statements in plans.items()
            for s in statements
            if any(rows.get(table, 0) >= BIG_TABLE for table in s["scans"])
        ]
        verdict = (
            f"no full scan of a table of {BIG_TABLE:,} rows or more"
            if not scanning
            else f"{len(scanning)} statement(s) SCAN:"
        )
        lines.append(f"{result['backend']} {result['records']:,}: {verdict}")
        for name, statement in scanning:
            lines.append(f"  {name}: scans {', '.join(statement['scans'])} ({statement['ms']} ms)")
            lines.append(f"    {statement['statement'][:240]}")
            lines += [f"      {step}" for step in statement["plan"]]
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_backend.setdefault(result["backend"], []).append(result)
    for backend, runs in by_backend.items():
        runs = sorted(runs, key=lambda r: r["records"])
        if len(runs) < 2 or not all(dig(r, "in_process.plans") for r in runs):
            continue
        small, large = runs[0], runs[-1]
        lines.append(f"{backend}: each statement, ms at {small['records']:,} → {large['records']:,} records")
        for name, statements in large["in_process"]["plans"].items():
            before = {s["statement"]: s for s in small["in_process"]["plans"].get(name, [])}
            for statement in statements:
                earlier = before.get(statement["statement"])
                was = f"{earlier['ms']:.2f}" if earlier else "-"
                plan = "; ".join(statement["plan"])
                lines.append(f"  {name}: {was} → {statement['ms']:.2f}  [{plan[:150]}]")
                lines.append(f"      {statement['statement'][:200]}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,1000000", help="records per store, in order (1000,1000000)")
    parser.add_argument("--backends", default="sqlite", help="sqlite, postgres or both (sqlite)")
    parser.add_argument(
        "--pg-admin", default=DEFAULT_PG_ADMIN, help="a loopback PostgreSQL to create stores on"
    )
    parser.add_argument("--calls", type=int, default=300, help="gRPC calls of each kind (300)")
    parser.add_argument("--proof-calls", type=int, default=50, help="GetDeliveryProof calls (50)")
    parser.add_argument("--repeats", type=int, default=30, help="in-process repetitions of each (30)")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="payload size per record (1024)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes making records (the CPU count)"
    )
    parser.add_argument(
        "--timeout", type=float, default=180, help="seconds to wait for a hub start or stop (180)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--render", metavar="FILE", help="print the table of a saved --json run, and nothing else"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stores and the hub logs, and say where")
    parser.add_argument(
        "--no-tree-nodes",
        action="store_true",
        help="store no interior audit tree hashes, as a store from before migration 0004 (the ledger "
        "then builds them on its first use)",
    )
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not backends or set(backends) - {"sqlite", "postgres"}:
        parser.error("--backends takes sqlite, postgres or both")
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    if not sizes or min(sizes) < 100:
        parser.error("--sizes takes record counts of at least 100")
    return Options(
        sizes=sizes,
        backends=backends,
        pg_admin=args.pg_admin,
        calls=args.calls,
        proof_calls=args.proof_calls,
        repeats=args.repeats,
        payload_bytes=args.payload_bytes,
        seed=args.seed,
        timeout=args.timeout,
        as_json=args.json,
        keep=args.keep,
        tree_nodes=not args.no_tree_nodes,
        workers=args.workers,
        render=args.render or "",
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.render:
        saved = json.loads(Path(opts.render).read_text())
        print(table(saved["results"]))
        print()
        print(plan_report(saved["results"]))
        return 0
    results = [run_one(backend, size, opts) for backend in opts.backends for size in opts.sizes]
    if opts.as_json:
        params = {k: v for k, v in opts.__dict__.items() if k != "pg_admin"}
        print(json.dumps({"params": params, "machine": machine(), "results": results}, indent=2))
    else:
        info = machine()
        print(
            f"{info['cpu']}, {info['cores']} cores, {info['memory']}; Python {info['python']}, SQLite {info['sqlite']}"
        )
        print(table(results))
        print()
        print(plan_report(results))
        for result in results:
            if "error" in result:
                print(f"{result['backend']} {result['records']:,}: FAILED: {result['error']}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
