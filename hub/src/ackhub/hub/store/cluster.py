"""Several hub processes on one database (docs/deploy.md): who is running, whether they agree, the secrets
they share, and how one wakes the others.

- `Registry`: each process registers itself (`hub_processes`) with a digest of the part of its
  configuration that must be the same everywhere (agencies and their keys, routes, breaker, audit origin,
  notifiers, permits). A process whose configuration differs from a live one's is refused at start, with
  the differences named. Heartbeats every sweep interval; a process silent for `STALE_AFTER_INTERVALS`
  intervals no longer counts (it was killed), and a clean stop removes its row. Each heartbeat also
  writes the process's status (`ProcessStatus`: which agencies stream from it, its circuit breakers), so
  the console of any process shows the deployment's (`deployment_status`).
- `shared_secret`: a random secret made once per deployment and kept in the database.
- `Wakeups` (PostgreSQL): LISTEN on `ackhub_due`, which the deliveries trigger (migration 0007) notifies
  at commit with the agencies that have new deliveries. Another process's notification wakes this one's
  dispatcher for those agencies; its own are ignored (they carry its `application_name`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import psycopg
import structlog
from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from ackhub.core.errors import StartupError
from ackhub.hub.config import Settings
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import HubProcessRow, HubSecretRow

log = structlog.get_logger("ackhub.cluster")
STALE_AFTER_INTERVALS = 5  # missed heartbeats after which a process counts as gone
DUE_CHANNEL = "ackhub_due"
# The sections of the configuration that every process of one deployment must share.
SHARED_SECTIONS = ("agencies", "routes", "breaker", "notifiers", "permits")


def shared_configuration(settings: Settings) -> dict[str, Any]:
    """What must agree across processes, as plain JSON data, stored in `hub_processes` and quoted in a
    refusal. (The configuration holds keys as public keys or file paths; a URL written with credentials
    in it would be stored as written.)"""
    data = settings.model_dump(mode="json", include=set(SHARED_SECTIONS))
    data["audit_origin"] = settings.audit.origin
    return data


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def differences(ours: Any, theirs: Any, path: str = "") -> Iterator[str]:
    """Where two configurations differ, as `path: ours ≠ theirs`. Lists of tables with an `id`, a
    `record_type`, an `agency` or a `name` are compared by it, so an agency added in the middle is named
    as such (`routes[customs.export_declaration.released].recipients[fx].ack_level`)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            where = f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}" if path else str(key)
            if key not in theirs:
                yield f"{where}: only in this process's configuration"
            elif key not in ours:
                yield f"{where}: only in the running process's configuration"
            else:
                yield from differences(ours[key], theirs[key], where)
        return
    if isinstance(ours, list) and isinstance(theirs, list):
        keyed = _keyed(ours), _keyed(theirs)
        if keyed[0] is not None and keyed[1] is not None:
            yield from differences(keyed[0], keyed[1], path)
            return
        if len(ours) != len(theirs):
            yield f"{path}: {len(ours)} entries ≠ {len(theirs)}"
            return
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            yield from differences(a, b, f"{path}[{i}]")
        return
    if ours != theirs:
        yield f"{path}: {ours!r} ≠ {theirs!r}"


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    for key in ("id", "record_type", "agency", "name"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            names = [str(i[key]) for i in items]
            if len(set(names)) == len(names):
                return {f"[{name}]": i for name, i in zip(names, items, strict=True)}
    return None


@dataclass(frozen=True)
class ProcessStatus:
    """What one process knows that the store does not: the agencies' open streams on it, its breakers."""

    streams: dict[str, int]  # agency → streams open on this process
    breakers: dict[str, str]  # agency → its circuit breaker's state in this process (CLOSED when absent)

    def to_json(self) -> str:
        return json.dumps({"streams": self.streams, "breakers": self.breakers}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ProcessStatus:
        data = json.loads(text) if text else {}
        return cls(dict(data.get("streams", {})), dict(data.get("breakers", {})))


@dataclass(frozen=True)
class Peer:
    id: str
    host: str
    pid: int
    listen: str
    started_ms: int
    heartbeat_ms: int
    config_digest: str
    status: ProcessStatus  # as of its last heartbeat (empty before the first)

    @property
    def name(self) -> str:
        """How operators tell processes apart: pid@host."""
        return f"{self.pid}@{self.host}"


# Worst first: an agency's breaker in the deployment is the worst of its processes' breakers.
_BREAKER_ORDER = {"OPEN": 0, "HALF_OPEN": 1, "CLOSED": 2}


@dataclass(frozen=True)
class AgencyStatus:
    """An agency across the deployment's live processes."""

    streams: int  # open streams on all processes
    on: list[str]  # the processes (pid@host) it streams from
    breaker: str  # the worst state of its breakers
    breaker_on: list[str]  # the processes whose breaker is in that state, when it is not CLOSED


def deployment_status(peers: list[Peer], own_id: str, own: ProcessStatus) -> dict[str, AgencyStatus]:
    """Every live process's status summed per agency; this process's own as it is now, not as of its
    last heartbeat."""
    merged: dict[str, AgencyStatus] = {}
    statuses = [(p.name, own if p.id == own_id else p.status) for p in peers]
    if not any(p.id == own_id for p in peers):  # not registered yet, or its row was lost
        statuses.append((f"{os.getpid()}@{socket.gethostname()}", own))
    for agency in sorted({a for _, status in statuses for a in (*status.streams, *status.breakers)}):
        on = [name for name, status in statuses if status.streams.get(agency, 0) > 0]
        states = [(status.breakers.get(agency, "CLOSED"), name) for name, status in statuses]
        worst = min((state for state, _ in states), key=lambda state: _BREAKER_ORDER.get(state, 0))
        merged[agency] = AgencyStatus(
            streams=sum(status.streams.get(agency, 0) for _, status in statuses),
            on=on,
            breaker=worst,
            breaker_on=[name for state, name in states if state == worst] if worst != "CLOSED" else [],
        )
    return merged


class Registry:
    """This process's row in `hub_processes`, and what it knows of the others."""

    def __init__(self, db: Database, settings: Settings, process_id: str) -> None:
        self.db = db
        self.process_id = process_id
        self.interval_ms = settings.server.sweep_interval
        self.listen = settings.server.listen
        self.config = shared_configuration(settings)
        self.config_text = _canonical(self.config)
        self.digest = sha256(self.config_text.encode()).hexdigest()
        self.registered = False

    def stale_before(self, now_ms: int) -> int:
        return now_ms - STALE_AFTER_INTERVALS * self.interval_ms

    def register(self, now_ms: int) -> None:
        """Blocking. Refuse (StartupError) if a live process runs another configuration; else join."""
        with self.db.transaction() as session:
            live = session.exec(
                select(HubProcessRow).where(col(HubProcessRow.heartbeat_ms) >= self.stale_before(now_ms))
            ).all()
            for peer in live:
                if peer.config_digest != self.digest and peer.id != self.process_id:
                    found = list(differences(self.config, json.loads(peer.config)))[:10]
                    raise StartupError(
                        f"this process's configuration differs from hub process {peer.id} (pid "
                        f"{peer.pid} on {peer.host}, {peer.listen}) running on the same database. Every "
                        f"process of one deployment needs the same {', '.join(SHARED_SECTIONS)} and audit "
                        f"origin; differences: " + "; ".join(found) + ". Give every process the same "
                        "configuration file (docs/deploy.md)."
                    )
            # Rows of processes gone without a clean stop (killed) are cleared by whoever starts next.
            session.exec(
                delete(HubProcessRow).where(col(HubProcessRow.heartbeat_ms) < self.stale_before(now_ms))
            )
            session.add(
                HubProcessRow(
                    id=self.process_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    listen=self.listen,
                    started_ms=now_ms,
                    heartbeat_ms=now_ms,
                    config_digest=self.digest,
                    config=self.config_text,
                )
            )
        self.registered = True

    def heartbeat(self, now_ms: int, status: ProcessStatus | None = None) -> None:
        with self.db.transaction() as session:
            session.exec(
                update(HubProcessRow)
                .where(col(HubProcessRow.id) == self.process_id)
                .values(heartbeat_ms=now_ms, **({"status": status.to_json()} if status else {}))
            )

    def leave(self) -> None:
        if not self.registered:
            return
        self.registered = False
        with self.db.transaction() as session:
            session.exec(delete(HubProcessRow).where(col(HubProcessRow.id) == self.process_id))

    def live(self, now_ms: int) -> list[Peer]:
        """The processes whose heartbeat is recent, this one included, oldest first."""
        with self.db.transaction() as session:
            rows = session.exec(
                select(HubProcessRow)
                .where(col(HubProcessRow.heartbeat_ms) >= self.stale_before(now_ms))
                .order_by(col(HubProcessRow.started_ms))
            ).all()
            return [
                Peer(
                    r.id,
                    r.host,
                    r.pid,
                    r.listen,
                    r.started_ms,
                    r.heartbeat_ms,
                    r.config_digest,
                    ProcessStatus.from_json(r.status),
                )
                for r in rows
            ]


def shared_secret(db: Database, name: str, now_ms: int) -> bytes:
    """Blocking: the deployment's secret `name`, made (32 random bytes) by the first process to ask."""
    insert = sqlite_insert if db.is_sqlite else pg_insert
    with db.transaction() as session:
        session.exec(
            insert(HubSecretRow)
            .values(name=name, value=os.urandom(32), created_ms=now_ms)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        # The winner's row, ours or another process's: a conflicting insert waits for the other
        # transaction, and the next statement sees what it committed.
        return session.exec(select(HubSecretRow.value).where(HubSecretRow.name == name)).one()


class Wakeups:
    """PostgreSQL: listen for other processes' new deliveries and call `wake(agencies)` for them."""

    def __init__(self, conninfo: str, application_name: str, wake: Callable[[set[str]], None]) -> None:
        self.conninfo = conninfo
        self.application_name = application_name
        self.wake = wake
        self.received = 0  # notifications from other processes
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        """Listen, reconnecting after a lost connection (a database restart) with backoff; after each
        reconnect every agency is woken (`wake` of the empty set), for what was published while nobody
        listened."""
        backoff = 0.2
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, application_name=f"{self.application_name}-listen"
                ) as connection:
                    await connection.execute(f"LISTEN {DUE_CHANNEL}")
                    self.connected.set()
                    if not first:
                        self.wake(set())
                    first, backoff = False, 0.2
                    await self._listen(connection)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.connected.clear()
                log.warning("cluster.listen_lost", why=str(error), retry_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _listen(self, connection: psycopg.AsyncConnection[Any]) -> None:
        async for notify in connection.notifies():
            sender, _, agency = notify.payload.partition(" ")
            if sender != self.application_name:
                self.received += 1
                self.wake({agency})
