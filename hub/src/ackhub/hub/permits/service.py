"""`Permits`: the permit use cases the gRPC service calls. Blocking store work runs off the event loop;
registry lookups (network) happen between transactions, never inside one."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ackhub.core.clock import Clock
from ackhub.core.errors import NotFound
from ackhub.core.permit_document import PermitDocument, from_json
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.config import Settings
from ackhub.hub.exchange.hub import Exchange
from ackhub.hub.permits import drawdown, registration
from ackhub.hub.permits.issuers import Issuers
from ackhub.hub.permits.registry import Lookup, Registries
from ackhub.hub.permits.verify import DeclarationQuery, LineVerdict, NeedsLookup, limit_of, verify
from ackhub.hub.store.batching import Batcher, one_by_one
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import DrawDownRow, PermitLineRow, PermitRow, PermitVersionRow

log = structlog.get_logger("ackhub.permits")


@dataclass(frozen=True)
class PermitView:
    """A permit as GetPermit shows it; `row` is None for a permit known only from the issuer's registry."""

    document: PermitDocument
    key_id: str
    signature: bytes
    row: PermitRow | None
    lines: list[PermitLineRow]
    versions: list[PermitVersionRow]
    max_uses: int
    balances: list[tuple[int, int, int, int, str]]  # line, quantity, drawn, remaining, unit


_VerifyItem = tuple[Principal, DeclarationQuery, dict[tuple[str, str], Lookup] | None, int]


@dataclass
class Permits:
    settings: Settings
    db: Database
    clock: Clock
    issuers: Issuers
    registries: Registries
    exchange: Exchange
    _verifies: Batcher[_VerifyItem, list[LineVerdict] | NeedsLookup] = field(init=False)

    def __post_init__(self) -> None:
        self._verifies = Batcher(self.db, one_by_one(self._verify_step))

    @property
    def usage(self) -> drawdown.Usage:
        return drawdown.Usage(
            self.exchange.router,
            Principal("agency", self.settings.permits.usage_publisher),
            self.settings.server.max_payload_bytes,
        )

    def _can_look_up(self) -> set[str]:
        return {code for code in self.issuers.adapters.permit_kinds if self.registries.can_look_up(code)}

    def _verify_step(self, session: Session, item: _VerifyItem) -> list[LineVerdict] | NeedsLookup:
        caller, query, lookups, now_ms = item
        return verify(session, caller, query, self.issuers, lookups, self._can_look_up(), now_ms)

    async def _lookups(self, keys: tuple[tuple[str, str], ...]) -> dict[tuple[str, str], Lookup]:
        return {key: await self.registries.lookup(*key) for key in keys}

    # -- issuers -----------------------------------------------------------------------------------
    async def create(
        self, caller: Principal, signed: registration.SignedDocument, request_id: str
    ) -> tuple[PermitRow, bool]:
        def run() -> tuple[PermitRow, bool]:
            with self.db.transaction() as session:
                return registration.create(
                    session, caller, signed, request_id, self.issuers, self.clock.now_ms()
                )

        try:
            permit, replayed = await self.db.run(run)
        except IntegrityError:  # another hub registered the same number at the same moment
            permit, replayed = await self.db.run(run)
        log.info(
            "permit.created", permit_id=permit.id, kind=permit.kind, number=permit.number, replayed=replayed
        )
        return permit, replayed

    async def amend(
        self, caller: Principal, signed: registration.SignedDocument, request_id: str
    ) -> tuple[PermitRow, bool]:
        def run() -> tuple[PermitRow, bool]:
            with self.db.transaction() as session:
                return registration.amend(
                    session, caller, signed, request_id, self.issuers, self.clock.now_ms()
                )

        permit, replayed = await self.db.run(run)
        log.info("permit.amended", permit_id=permit.id, version=permit.version, replayed=replayed)
        return permit, replayed

    def revoke(self, caller: Principal, kind: str, number: str, reason: str) -> PermitRow:
        """Revokes a permit, on a database thread (so that it runs inside an idempotent call's transaction,
        ackhub.hub.store.idempotency); `revoked` follows the commit."""
        with self.db.transaction() as session:
            return registration.revoke(
                session, caller, kind, number, reason, self.issuers, self.clock.now_ms()
            )

    def revoked(self, permit: PermitRow) -> None:
        log.info("permit.revoked", permit_id=permit.id, kind=permit.kind, number=permit.number)

    def stored(self, kind: str, number: str) -> PermitView | None:
        """The permit as stored (None when the hub holds no such permit), on a database thread."""
        with self.db.transaction() as session:
            row = session.exec(
                select(PermitRow).where(PermitRow.kind == kind, PermitRow.number == number)
            ).first()
            if row is None:
                return None
            lines = registration.lines(session, row.id)
            balances = [
                (
                    line.line_number,
                    line.quantity_milli,
                    line.drawn_milli,
                    limit_of(line.quantity_milli, line.bulk, row.tolerance_permille) - line.drawn_milli,
                    line.unit,
                )
                for line in lines
            ]
            return PermitView(
                from_json(row.document),
                row.key_id,
                row.signature,
                row,
                lines,
                registration.history(session, row.id),
                row.max_uses,
                balances,
            )

    async def get(self, kind: str, number: str) -> PermitView:
        view = await self.db.run(self.stored, kind, number)
        if view is not None:
            return view
        if self.registries.can_look_up(kind):
            lookup = await self.registries.lookup(kind, number)
            found = self.issuers.kind(kind)
            if lookup.answer is not None and found is not None:
                document = lookup.answer.document
                rules = found[1].rules(document)
                return PermitView(
                    document,
                    lookup.answer.key_id,
                    lookup.answer.signature,
                    None,
                    [],
                    [],
                    rules.max_uses,
                    [
                        (
                            line.line_number,
                            line.quantity_milli,
                            0,
                            limit_of(line.quantity_milli, line.bulk, rules.tolerance_permille),
                            line.unit,
                        )
                        for line in document.lines
                    ],
                )
        raise NotFound("permit", f"{kind}:{number}")

    # -- customs -----------------------------------------------------------------------------------
    async def verify(self, caller: Principal, query: DeclarationQuery) -> list[LineVerdict]:
        outcome = await self._verifies.submit((caller, query, None, self.clock.now_ms()))
        if isinstance(outcome, NeedsLookup):
            lookups = await self._lookups(outcome.keys)
            outcome = await self._verifies.submit((caller, query, lookups, self.clock.now_ms()))
        assert not isinstance(outcome, NeedsLookup)
        return outcome

    def _customs(self, caller: Principal, what: str) -> None:
        agency = self.settings.agency(caller.id) if caller.kind == "agency" else None
        policy.require_customs(caller, agency is not None and agency.kind == "customs", what)

    async def draw_down(
        self, caller: Principal, request: drawdown.DrawDownRequest
    ) -> tuple[DrawDownRow, PermitRow, bool]:
        self._customs(caller, "draw down permits")
        kind = request.goods.permit_kind
        can_look_up = self.registries.can_look_up(kind)

        def run(lookup: Lookup | None) -> tuple[DrawDownRow, PermitRow, bool] | NeedsLookup:
            with self.db.transaction() as session:
                return drawdown.draw_down(
                    session,
                    caller,
                    request,
                    self.issuers,
                    self.usage,
                    lookup,
                    can_look_up,
                    self.clock.now_ms(),
                )

        lookup: Lookup | None = None
        for attempt in range(4):
            try:
                outcome = await self.db.run(run, lookup)
            except IntegrityError:
                if attempt == 3:
                    raise
                continue  # a concurrent import of the same permit, or the same request: run again and see it
            if isinstance(outcome, NeedsLookup):
                lookup = await self.registries.lookup(kind, request.goods.permit_number)
                continue
            draw, permit, replayed = outcome
            if not replayed:
                self.exchange.dispatcher.wake()
            log.info(
                "permit.drawn_down",
                draw_down_id=draw.id,
                permit_id=permit.id,
                declaration_number=draw.declaration_number,
                replayed=replayed,
            )
            return outcome
        raise AssertionError("draw-down did not settle")

    def release(
        self, caller: Principal, draw_down_id: str, reason: str
    ) -> tuple[DrawDownRow, PermitRow, bool]:
        """Gives a draw-down back, on a database thread (inside an idempotent call's transaction);
        `released` follows the commit."""
        with self.db.transaction() as session:
            return drawdown.release(
                session, caller, draw_down_id, reason, self.issuers, self.usage, self.clock.now_ms()
            )

    def released(self, draw: DrawDownRow, permit: PermitRow, already: bool) -> None:
        """After a release's commit: the release record goes out to the issuer."""
        if not already:
            self.exchange.dispatcher.wake()
        log.info("permit.draw_down_released", draw_down_id=draw.id, permit_id=permit.id, already=already)
