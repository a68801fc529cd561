"""The hub's side of witnessing: each new checkpoint goes to every configured witness (C2SP tlog-witness
`add-checkpoint`, with a consistency proof from the size that witness last cosigned), in a task per witness
that retries with backoff. Nothing waits for it: publishing and signing go on whether a witness is slow,
down or refusing. Cosignatures are stored beside their checkpoint (`audit_cosignatures`) and what each
witness last said in `audit_witnesses` (the console shows it).

A witness that refuses — a fork at one size, a failed consistency proof, a log smaller than what it
cosigned — is the alarm this exists for: it is logged (`audit.witness_refused`, error), recorded as an
audit event `audit.witness_refused` once per refusal, counted, shown in red in the console, and opens an
escalation case at the top level (reason WITNESS_REFUSED, tied to no delivery; one open case per witness),
which the escalation notifiers hear of and operators resolve like any other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import col, select

from ackhub.audit.checkpoint import Checkpoint
from ackhub.audit.note import NoteError, SignedCheckpoint, Verifier, parse_checkpoint, parse_note, parse_vkey
from ackhub.audit.proofs import WitnessPolicy
from ackhub.core.clock import Clock
from ackhub.hub.config import AuditWitness, Settings
from ackhub.hub.exchange.escalation import Notice, open_top_level_case
from ackhub.hub.exchange.notify import Notifications
from ackhub.hub.exchange.states import CASE_OPEN, WITNESS_REFUSED
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.ledger.ledger import AuditLedger, to_checkpoint
from ackhub.hub.ledger.tree import MissingLeaf
from ackhub.hub.ledger.verify import TrustAnchor
from ackhub.hub.store.models import AuditCheckpointRow, AuditCosignatureRow, AuditWitnessRow, EscalationRow

log = structlog.get_logger("ackhub.witnesses")
COSIGNED, REFUSED, UNREACHABLE = "COSIGNED", "REFUSED", "UNREACHABLE"
MAX_ROUNDS = 3  # a 409 tells the size the witness holds; one more round with that size settles it


@dataclass(frozen=True)
class Outcome:
    state: str
    tree_size: int  # what the witness holds, as far as the hub knows
    detail: str


class Witnesses:
    def __init__(
        self,
        settings: Settings,
        ledger: AuditLedger,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
        notifications: Notifications | None = None,
    ) -> None:
        self.ledger = ledger
        self.notifications = notifications  # told of the escalation a refusal opens
        self.clock = clock
        self.configs: dict[str, AuditWitness] = {w.name: w for w in settings.audit.witnesses}
        self.verifiers: dict[str, Verifier] = {w.name: parse_vkey(w.key) for w in settings.audit.witnesses}
        self.retry_max_s = settings.audit.witness_retry_max / 1000
        self._client = client  # made on first use: loading the CA bundle costs ~40 ms a start
        self._latest: Checkpoint | None = None
        self._wake = {name: asyncio.Event() for name in self.configs}
        self._tasks: list[asyncio.Task[None]] = []
        self.refusals = 0  # counted for /metrics

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client

    async def start(self, background: bool = True) -> None:
        """Offer the latest stored checkpoint; with `background`, run a sending task per witness."""
        if not self.configs:
            return
        latest = await self.ledger.db.run(self._latest_stored)
        if latest is not None:
            self.offer(latest)
        if background:
            self._tasks = [asyncio.create_task(self._run(name)) for name in self.configs]

    def _latest_stored(self) -> Checkpoint | None:
        with self.ledger.db.transaction() as session:
            row = session.exec(
                select(AuditCheckpointRow).order_by(col(AuditCheckpointRow.tree_size).desc()).limit(1)
            ).first()
            return to_checkpoint(row) if row is not None else None

    def offer(self, checkpoint: Checkpoint) -> None:
        """A new checkpoint to send; returns at once."""
        if self._latest is None or checkpoint.tree_size >= self._latest.tree_size:
            self._latest = checkpoint
        for event in self._wake.values():
            event.set()

    async def send_all(self) -> dict[str, Outcome]:
        """One attempt at each witness now (the background tasks do the same, with retries)."""
        names = list(self.configs)
        outcomes = await asyncio.gather(*(self.send(name) for name in names))
        return dict(zip(names, outcomes, strict=True))

    async def _run(self, name: str) -> None:
        failures = 0
        while True:
            await self._wake[name].wait()
            self._wake[name].clear()
            try:
                outcome = await self.send(name)
            except Exception:
                log.exception("audit.witness_failed", witness=name)
                outcome = Outcome(UNREACHABLE, 0, "internal error")
            if outcome.state == UNREACHABLE:
                failures += 1
                delay = min(self.retry_max_s, 0.5 * 2 ** min(failures, 16))
                with contextlib.suppress(TimeoutError):  # a newer checkpoint wakes it early
                    await asyncio.wait_for(self._wake[name].wait(), delay)
                self._wake[name].set()
            else:
                failures = 0

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    async def anchor(self, origin: str) -> tuple[TrustAnchor | None, str]:
        """The largest checkpoint a configured witness holds for `origin` (GET <url>/checkpoint), with
        its cosignature checked against that witness's key: a trust anchor the store cannot forge. None
        (and why) when no witness answers with one."""
        best: SignedCheckpoint | None = None
        by, why = "", "no witness is configured"
        for name, config in self.configs.items():
            try:
                answer = await self.client.get(
                    config.url.rstrip("/") + "/checkpoint",
                    params={"origin": origin},
                    timeout=config.timeout / 1000,
                )
                checkpoint = parse_checkpoint(answer.text) if answer.status_code == 200 else None
            except (httpx.HTTPError, NoteError) as error:
                why = f"{name}: {error or type(error).__name__}"
                continue
            if checkpoint is None or checkpoint.body.origin != origin:
                why = f"{name} holds no checkpoint of {origin!r}"
            elif checkpoint.note.verified_by(self.verifiers[name]) is None:
                why = f"{name}'s checkpoint is not cosigned by its key"
            elif best is None or checkpoint.body.tree_size > best.body.tree_size:
                best, by = checkpoint, name
        if best is None:
            return None, why
        policy = WitnessPolicy((self.verifiers[by],), 1)
        log_key = Verifier(origin, self.ledger.public_key)
        return TrustAnchor(
            best, log_key, policy=policy
        ), f"the checkpoint of {best.body.tree_size} leaves {by} cosigned"

    # -- one attempt -------------------------------------------------------------------------------
    async def send(self, name: str) -> Outcome:
        db = self.ledger.db
        # The newest checkpoint in the store, not only the one offered: another hub process on the same
        # database may have signed (and sent) a newer one, and a witness must never be shown an older
        # checkpoint as this log's newest (it would rightly call that a rollback).
        checkpoint = await db.run(self._newest, self._latest)
        if checkpoint is None:
            return Outcome(UNREACHABLE, 0, "no checkpoint yet")
        row = await db.run(self._row, name)
        if row is not None and await db.run(self._has_cosignature, name, checkpoint):
            return Outcome(row.state, row.tree_size, row.detail)  # cosigned already: nothing to send
        if row is not None and row.state == REFUSED and row.tree_size > checkpoint.tree_size:
            return Outcome(row.state, row.tree_size, row.detail)  # still smaller than it cosigned: it knows
        old = row.tree_size if row is not None else 0
        outcome = Outcome(UNREACHABLE, old, "")
        for _ in range(MAX_ROUNDS):
            outcome, retry_with = await self._round(name, checkpoint, old)
            if retry_with is None:
                break
            old = retry_with
            if old > checkpoint.tree_size:  # the witness is ahead of what we read: read the store again
                checkpoint = await db.run(self._newest, checkpoint) or checkpoint
        notice = await db.run(self._record, name, outcome, row.state if row is not None else "")
        if notice is not None and self.notifications is not None:
            await self.notifications.dispatch([notice])
        return outcome

    def _newest(self, offered: Checkpoint | None) -> Checkpoint | None:
        stored = self._latest_stored()
        if stored is None or (offered is not None and offered.tree_size >= stored.tree_size):
            return offered
        return stored

    def _has_cosignature(self, name: str, checkpoint: Checkpoint) -> bool:
        """Whether a valid cosignature of `name` on exactly this checkpoint is stored."""
        with self.ledger.db.transaction() as session:
            row = session.get(AuditCosignatureRow, (checkpoint.tree_size, name))
        if row is None:
            return False
        try:
            note = parse_note(checkpoint.signed_note([row.line]))
        except NoteError:
            return False
        return note.verified_by(self.verifiers[name]) is not None

    async def _round(self, name: str, checkpoint: Checkpoint, old: int) -> tuple[Outcome, int | None]:
        """One request; returns what it showed and, after a 409, the size to try again from."""
        config, size = self.configs[name], checkpoint.tree_size
        if old > size:
            # The witness cosigned more leaves than this log now has. Tell it (it raises its own alarm: a
            # signed checkpoint smaller than one it cosigned) and refuse to go on.
            await self._post(config, f"old {old}\n\n" + checkpoint.signed_note())
            return Outcome(
                REFUSED,
                old,
                f"the witness cosigned {old} leaves but this log's newest checkpoint has {size}: "
                f"leaves from {size} on were lost or removed",
            ), None
        try:
            proof = await self.ledger.db.run(self.ledger.tree_consistency, old, size)
        except MissingLeaf as error:
            return Outcome(REFUSED, old, f"cannot prove consistency from {old} leaves: {error}"), None
        body = f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n"
        response = await self._post(config, body + checkpoint.signed_note())
        if response is None:
            return Outcome(UNREACHABLE, old, f"no answer from {config.url}"), None
        text = response.text
        if response.status_code == 200:
            return await self._cosigned(name, checkpoint, text, old), None
        if response.status_code == 409:
            try:
                known = int(text.strip())
            except ValueError:
                return Outcome(UNREACHABLE, old, f"409 without a size: {text[:200]!r}"), None
            if known == old:  # the same size, another root: the witness saw a different tree here
                return Outcome(
                    REFUSED,
                    known,
                    f"the witness cosigned a different tree of {known} leaves: this log's history was "
                    "rewritten (or forked)",
                ), None
            if await self.ledger.db.run(self._missing_checkpoint, name, known):
                log.error(
                    "audit.checkpoints_missing",
                    witness=name,
                    tree_size=known,
                    why="the witness cosigned a checkpoint this store does not hold: checkpoints were deleted",
                )
            return Outcome(UNREACHABLE, known, f"the witness holds {known} leaves"), known
        if response.status_code == 422:
            return Outcome(
                REFUSED,
                old,
                f"the witness rejected the consistency proof from the {old} leaves it cosigned: this log's "
                f"first {old} leaves are not the ones it saw",
            ), None
        if response.status_code in (400, 403, 404):
            return Outcome(REFUSED, old, f"HTTP {response.status_code}: {text.strip()[:300]}"), None
        return Outcome(UNREACHABLE, old, f"HTTP {response.status_code}: {text.strip()[:300]}"), None

    async def _post(self, config: AuditWitness, body: str) -> httpx.Response | None:
        try:
            return await self.client.post(
                config.url.rstrip("/") + "/add-checkpoint",
                content=body.encode(),
                timeout=config.timeout / 1000,
            )
        except httpx.HTTPError as error:
            log.warning("audit.witness_unreachable", url=config.url, error=str(error) or type(error).__name__)
            return None

    async def _cosigned(self, name: str, checkpoint: Checkpoint, text: str, old: int) -> Outcome:
        verifier = self.verifiers[name]
        try:
            note = parse_note(checkpoint.signed_note() + text)
        except NoteError as error:
            return Outcome(UNREACHABLE, old, f"the witness's answer is not signature lines: {error}")
        line = next((s.line for s in note.signatures if s.by(verifier)), None)
        when = note.verified_by(verifier)
        if line is None or when is None:
            return Outcome(UNREACHABLE, old, "the witness answered without a valid cosignature by its key")
        await self.ledger.db.run(self._store, name, checkpoint.tree_size, line, when)
        return Outcome(COSIGNED, checkpoint.tree_size, f"cosigned {checkpoint.tree_size} leaves")

    # -- the store ---------------------------------------------------------------------------------
    def _row(self, name: str) -> AuditWitnessRow | None:
        with self.ledger.db.transaction() as session:
            return session.get(AuditWitnessRow, name)

    def _missing_checkpoint(self, name: str, size: int) -> bool:
        """Whether the store lacks the checkpoint of `size` a witness says it cosigned; if so, that is
        recorded as the audit event `audit.checkpoints_missing`."""
        with self.ledger.db.transaction() as session:
            if size == 0 or session.get(AuditCheckpointRow, size) is not None:
                return False
            audit_log.append(
                session,
                kind="audit.checkpoints_missing",
                actor="system:hub",
                time_ms=self.clock.now_ms(),
                data={"witness": name, "tree_size": size},
            )
            return True

    def _store(self, name: str, tree_size: int, line: str, when_s: int) -> None:
        with self.ledger.db.transaction() as session:
            session.merge(
                AuditCosignatureRow(
                    tree_size=tree_size,
                    witness=name,
                    line=line,
                    cosigned_ms=when_s * 1000,
                    received_ms=self.clock.now_ms(),
                )
            )

    def _record(self, name: str, outcome: Outcome, before: str) -> Notice | None:
        """Store what the witness said; a new refusal is audited and opens a top-level escalation case."""
        now = self.clock.now_ms()
        notice = None
        with self.ledger.db.transaction() as session:
            row = session.get(AuditWitnessRow, name)
            failures = 0 if outcome.state == COSIGNED else (row.failures if row else 0) + 1
            session.merge(
                AuditWitnessRow(
                    name=name,
                    tree_size=outcome.tree_size,
                    state=outcome.state,
                    detail=outcome.detail,
                    failures=failures,
                    updated_ms=now,
                )
            )
            if outcome.state == REFUSED and before != REFUSED:
                audit_log.append(
                    session,
                    kind="audit.witness_refused",
                    actor="system:hub",
                    time_ms=now,
                    data={"witness": name, "tree_size": outcome.tree_size, "why": outcome.detail},
                )
                subject = f"witness:{name}"[:64]
                already = session.exec(
                    select(EscalationRow.id).where(
                        EscalationRow.recipient == subject,
                        EscalationRow.reason == WITNESS_REFUSED,
                        EscalationRow.state == CASE_OPEN,
                    )
                ).first()
                if already is None:
                    notice = open_top_level_case(
                        session,
                        WITNESS_REFUSED,
                        subject,
                        f"witness {name} refused the checkpoint (it holds {outcome.tree_size} leaves): "
                        f"{outcome.detail}"[:2000],
                        now,
                        {"witness": name, "tree_size": outcome.tree_size},
                    )
        if outcome.state == REFUSED:
            self.refusals += 1
            log.error("audit.witness_refused", witness=name, tree_size=outcome.tree_size, why=outcome.detail)
        elif outcome.state == COSIGNED:
            log.info("audit.cosigned", witness=name, tree_size=outcome.tree_size)
        return notice


class WitnessCollector(Collector):
    """`/metrics`: each witness's state, cosigned size and consecutive failures, and refusals seen."""

    def __init__(self, witnesses: Witnesses) -> None:
        self.witnesses = witnesses

    def collect(self) -> Iterator[Metric]:
        with self.witnesses.ledger.db.transaction() as session:
            rows = {row.name: row for row in session.exec(select(AuditWitnessRow))}
        state = GaugeMetricFamily(
            "ackhub_witness_state", "1 for each witness's current state", labels=["witness", "state"]
        )
        size = GaugeMetricFamily(
            "ackhub_witness_tree_size", "The tree size each witness last cosigned", labels=["witness"]
        )
        failures = GaugeMetricFamily(
            "ackhub_witness_failures", "Consecutive attempts that were not cosigned", labels=["witness"]
        )
        for name in self.witnesses.configs:
            row = rows.get(name)
            for value in (COSIGNED, REFUSED, UNREACHABLE):
                state.add_metric([name, value], 1.0 if row is not None and row.state == value else 0.0)
            size.add_metric([name], float(row.tree_size if row else 0))
            failures.add_metric([name], float(row.failures if row else 0))
        refusals = CounterMetricFamily(
            "ackhub_witness_refusals", "Checkpoints a witness refused to cosign (by this process)"
        )
        refusals.add_metric([], float(self.witnesses.refusals))
        yield from (state, size, failures, refusals)
