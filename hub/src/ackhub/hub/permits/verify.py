"""Verification: does a permit cover a goods line? VALID, or every precise reason it does not.

`evaluate` is pure (a permit snapshot and a query in, reasons out) and is shared by verification and
draw-down, so both apply exactly the same rules. `verify` checks a declaration's lines in one transaction,
records each line's check and audits the call.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import insert
from sqlmodel import Session, col, select

from ackhub.core.ids import new_id
from ackhub.core.permit_document import PermitDocument, covers, format_quantity, from_json
from ackhub.core.principal import Principal
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.permits.issuers import Issuers
from ackhub.hub.permits.registry import Lookup
from ackhub.hub.store.models import DrawDownRow, PermitCheckRow, PermitLineRow, PermitRow

REASONS = (
    "NOT_FOUND",
    "SIGNATURE_INVALID",
    "UNKNOWN_ISSUER",
    "HOLDER_MISMATCH",
    "WRONG_CUSTOMS_OFFICE",
    "NOT_YET_VALID",
    "EXPIRED",
    "REVOKED",
    "GOODS_NOT_COVERED",
    "UNIT_MISMATCH",
    "QUANTITY_EXCEEDED",
    "USES_EXHAUSTED",
    "ISSUER_UNREACHABLE",
)


@dataclass(frozen=True)
class GoodsQuery:
    """One goods line of a declaration, to check against the permit it names."""

    item_number: int
    permit_number: str
    permit_kind: str
    hs_code: str
    quantity_milli: int
    unit: str


@dataclass(frozen=True)
class DeclarationQuery:
    declarant_uscc: str
    customs_office: str
    day: date
    declaration_number: str
    lines: tuple[GoodsQuery, ...]


@dataclass(frozen=True)
class LineBalance:
    line_number: int
    hs_code: str
    unit: str
    limit_milli: int  # licensed quantity plus the tolerance for bulk lines
    drawn_milli: int


@dataclass(frozen=True)
class Snapshot:
    """What verification needs of a permit: its signed document and where its draw-downs stand."""

    document: PermitDocument
    key_id: str
    signature: bytes
    revoked: bool
    uses: int
    max_uses: int
    balances: tuple[LineBalance, ...]
    declarations: frozenset[str]  # declarations currently drawing on it
    permit_id: str | None = None  # None for a registry answer not stored yet

    @property
    def uses_left(self) -> int:
        return max(self.max_uses - self.uses, 0)


@dataclass
class LineVerdict:
    item_number: int
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (reason, one sentence)
    permit_line: int = 0
    remaining_milli: int | None = None
    uses_left: int = 0
    permit_version: int = 0
    check_id: str = ""

    @property
    def valid(self) -> bool:
        return not self.reasons

    def add(self, reason: str, detail: str) -> None:
        self.reasons.append((reason, detail))


def limit_of(quantity_milli: int, bulk: bool, tolerance_permille: int) -> int:
    return quantity_milli + (quantity_milli * tolerance_permille // 1000 if bulk else 0)


def snapshot_of(session: Session, permit: PermitRow) -> Snapshot:
    lines = session.exec(
        select(PermitLineRow)
        .where(PermitLineRow.permit_id == permit.id)
        .order_by(col(PermitLineRow.line_number))
    ).all()
    declarations = session.exec(
        select(DrawDownRow.declaration_number)
        .where(DrawDownRow.permit_id == permit.id, DrawDownRow.state == "DRAWN")
        .distinct()
    ).all()
    return Snapshot(
        document=from_json(permit.document),
        key_id=permit.key_id,
        signature=permit.signature,
        revoked=permit.state == "REVOKED",
        uses=permit.uses,
        max_uses=permit.max_uses,
        balances=tuple(
            LineBalance(
                line.line_number,
                line.hs_code,
                line.unit,
                limit_of(line.quantity_milli, line.bulk, permit.tolerance_permille),
                line.drawn_milli,
            )
            for line in lines
        ),
        declarations=frozenset(declarations),
        permit_id=permit.id,
    )


def snapshot_of_answer(lookup: Lookup, issuers: Issuers) -> Snapshot | None:
    """A registry answer as a snapshot with nothing drawn; None when its kind is unknown to the hub."""
    if lookup.answer is None:
        return None
    document = lookup.answer.document
    found = issuers.kind(document.kind)
    if found is None:
        return None
    rules = found[1].rules(document)
    return Snapshot(
        document=document,
        key_id=lookup.answer.key_id,
        signature=lookup.answer.signature,
        revoked=False,
        uses=0,
        max_uses=rules.max_uses,
        balances=tuple(
            LineBalance(
                line.line_number,
                line.hs_code,
                line.unit,
                limit_of(line.quantity_milli, line.bulk, rules.tolerance_permille),
                0,
            )
            for line in document.lines
        ),
        declarations=frozenset(),
    )


def evaluate(
    snapshot: Snapshot,
    declarant_uscc: str,
    customs_office: str,
    day: date,
    declaration_number: str,
    goods: GoodsQuery,
    issuers: Issuers,
    pending: dict[int, int] | None = None,
) -> LineVerdict:
    """Every reason `snapshot` does not cover `goods`. `pending` holds quantities that earlier lines of the
    same declaration take from each permit line; a declaration already drawing needs no further use."""
    document = snapshot.document
    verdict = LineVerdict(goods.item_number, permit_version=document.version, uses_left=snapshot.uses_left)
    issuer = issuers.get(document.issuer)
    if issuer is None:
        verdict.add(
            "UNKNOWN_ISSUER", f"issuer {document.issuer!r} is not configured or its adapter is not loaded"
        )
    else:
        problem = issuer.signature_problem(document, snapshot.key_id, snapshot.signature)
        if problem:
            verdict.add("SIGNATURE_INVALID", problem)
    if snapshot.revoked:
        verdict.add("REVOKED", f"{document.kind} {document.number} was revoked by its issuer")
    if document.holder_uscc != declarant_uscc:
        verdict.add("HOLDER_MISMATCH", f"the permit is held by {document.holder_uscc}, not {declarant_uscc}")
    if document.customs_office and document.customs_office != customs_office:
        verdict.add(
            "WRONG_CUSTOMS_OFFICE",
            f"the permit is for customs office {document.customs_office}, not {customs_office}",
        )
    if day < document.valid_from:
        verdict.add("NOT_YET_VALID", f"the permit is valid from {document.valid_from.isoformat()}")
    if day > document.valid_to:
        verdict.add("EXPIRED", f"the permit expired after {document.valid_to.isoformat()}")
    covering = sorted(
        (b for b in snapshot.balances if covers(b.hs_code, goods.hs_code)),
        key=lambda b: (-len(b.hs_code), b.line_number),
    )
    same_unit = [b for b in covering if b.unit == goods.unit]
    if not covering:
        codes = ", ".join(b.hs_code for b in snapshot.balances)
        verdict.add(
            "GOODS_NOT_COVERED", f"HS code {goods.hs_code} is not covered by the permit's codes {codes}"
        )
    elif not same_unit:
        verdict.add(
            "UNIT_MISMATCH",
            f"the permit counts HS {goods.hs_code} in {covering[0].unit!r}, not {goods.unit!r}",
        )
    else:
        taken = pending or {}
        remaining = {
            b.line_number: b.limit_milli - b.drawn_milli - taken.get(b.line_number, 0) for b in same_unit
        }
        chosen = next(
            (b for b in same_unit if remaining[b.line_number] >= goods.quantity_milli), same_unit[0]
        )
        verdict.permit_line = chosen.line_number
        verdict.remaining_milli = remaining[chosen.line_number]
        if goods.quantity_milli > remaining[chosen.line_number]:
            verdict.add(
                "QUANTITY_EXCEEDED",
                f"{format_quantity(goods.quantity_milli)} {goods.unit} asked, "
                f"{format_quantity(max(remaining[chosen.line_number], 0))} left on permit line {chosen.line_number}",
            )
    if declaration_number not in snapshot.declarations and snapshot.uses >= snapshot.max_uses:
        verdict.add("USES_EXHAUSTED", f"all {snapshot.max_uses} use(s) of the permit are taken")
    return verdict


@dataclass(frozen=True)
class NeedsLookup:
    """Some permits are not stored and an issuer registry could know them: ask, then run again."""

    keys: tuple[tuple[str, str], ...]  # (kind, number)


def verify(
    session: Session,
    caller: Principal,
    query: DeclarationQuery,
    issuers: Issuers,
    lookups: dict[tuple[str, str], Lookup] | None,
    can_look_up: set[str],
    now_ms: int,
) -> list[LineVerdict] | NeedsLookup:
    """Check every line (quantities and uses add up across the declaration's lines), record each check and
    one audit event. Returns `NeedsLookup`, having written nothing, when a registry must be asked first."""
    wanted = sorted({(g.permit_kind, g.permit_number) for g in query.lines})
    snapshots: dict[tuple[str, str], Snapshot | None] = {}
    missing: list[tuple[str, str]] = []
    # Verification writes no permit rows, so within one transaction (a batch of verifications) a permit's
    # snapshot is read once.
    stored: dict[tuple[str, str], Snapshot | None] = session.info.setdefault("permit_snapshots", {})
    for kind, number in wanted:
        if (kind, number) not in stored:
            permit = session.exec(
                select(PermitRow).where(PermitRow.kind == kind, PermitRow.number == number)
            ).first()
            stored[(kind, number)] = snapshot_of(session, permit) if permit is not None else None
        if stored[(kind, number)] is not None:
            snapshots[(kind, number)] = stored[(kind, number)]
        elif lookups is not None and (kind, number) in lookups:
            snapshots[(kind, number)] = snapshot_of_answer(lookups[(kind, number)], issuers)
        elif kind in can_look_up:
            missing.append((kind, number))
        else:
            snapshots[(kind, number)] = None
    if missing:
        return NeedsLookup(tuple(missing))

    pending: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    verdicts: list[LineVerdict] = []
    checks: list[dict[str, object]] = []
    for goods in query.lines:
        key = (goods.permit_kind, goods.permit_number)
        snapshot = snapshots[key]
        if snapshot is None:
            verdict = LineVerdict(goods.item_number)
            lookup = (lookups or {}).get(key)
            if lookup is not None and lookup.unreachable:
                verdict.add("ISSUER_UNREACHABLE", lookup.unreachable)
            else:
                verdict.add(
                    "NOT_FOUND", f"no {goods.permit_kind} numbered {goods.permit_number} is registered"
                )
        else:
            verdict = evaluate(
                snapshot,
                query.declarant_uscc,
                query.customs_office,
                query.day,
                query.declaration_number,
                goods,
                issuers,
                pending[key],
            )
            if verdict.permit_line and not any(r == "QUANTITY_EXCEEDED" for r, _ in verdict.reasons):
                taken = pending[key]
                taken[verdict.permit_line] = taken.get(verdict.permit_line, 0) + goods.quantity_milli
        verdict.check_id = new_id(now_ms)
        checks.append(
            {
                "id": verdict.check_id,
                "time_ms": now_ms,
                "actor": caller.actor,
                "kind": goods.permit_kind,
                "number": goods.permit_number,
                "permit_id": snapshot.permit_id if snapshot else None,
                "permit_version": snapshot.document.version if snapshot else None,
                "declarant_uscc": query.declarant_uscc,
                "customs_office": query.customs_office,
                "declaration_number": query.declaration_number,
                "item_number": goods.item_number,
                "hs_code": goods.hs_code,
                "quantity_milli": goods.quantity_milli,
                "unit": goods.unit,
                "check_date": query.day.isoformat(),
                "verdict": "VALID" if verdict.valid else "INVALID",
                "reasons": ",".join(reason for reason, _ in verdict.reasons),
            }
        )
        verdicts.append(verdict)
    session.execute(insert(PermitCheckRow), checks)  # one multi-row insert, no ORM object per line
    invalid = [v for v in verdicts if not v.valid]
    audit_log.append(
        session,
        kind="permit.verified",
        actor=caller.actor,
        time_ms=now_ms,
        data={
            "declarant_uscc": query.declarant_uscc,
            "customs_office": query.customs_office,
            "declaration_number": query.declaration_number,
            "date": query.day.isoformat(),
            "lines": len(verdicts),
            "permits": [f"{kind}:{number}" for kind, number in wanted][:100],
            "first_check": verdicts[0].check_id if verdicts else None,
            "invalid": {str(v.item_number): [r for r, _ in v.reasons] for v in invalid[:100]},
        },
    )
    return verdicts
