"""Blocking store work of the case book, each function inside the caller's transaction: reading a case as a
view, writing a change with its audit event and history row, and the deadline sweep. `ackhub.hub.cases.book`
calls these off the event loop."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from ackhub.core.errors import FailedPrecondition, NotFound
from ackhub.core.ids import new_id
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.cases.views import (
    AWAITING_PARTY,
    CLOSED_STATES,
    OPEN,
    Attachment,
    CaseView,
    HistoryEntry,
    Message,
    NewAttachment,
    Party,
)
from ackhub.hub.exchange.escalation import Notice
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.store.cases import CaseAttachmentRow, CaseEventRow, CaseMessageRow, CasePartyRow, CaseRow


def ladder_of(case: CaseRow) -> list[tuple[int, list[str]]]:
    """The case's escalation ladder: (after_ms, notifier names) per rung, fixed when it opened."""
    return [(int(after), list(notify)) for after, notify in json.loads(case.ladder)]


def parties_of(session: Session, case_ids: Sequence[str]) -> dict[str, list[CasePartyRow]]:
    found: dict[str, list[CasePartyRow]] = {i: [] for i in case_ids}
    for row in session.exec(
        select(CasePartyRow)
        .where(col(CasePartyRow.case_id).in_(list(case_ids)))
        .order_by(col(CasePartyRow.party))
    ):
        found[row.case_id].append(row)
    return found


def locked_case(session: Session, caller: Principal, case_id: str) -> tuple[CaseRow, list[str]]:
    """The case, locked for the change, if `caller` may see it; NOT_FOUND otherwise, as for none."""
    if not case_id:
        from ackhub.core.errors import FieldViolation, InvalidArgument

        raise InvalidArgument([FieldViolation("case_id", "is required")])
    case = session.exec(select(CaseRow).where(CaseRow.id == case_id).with_for_update()).first()
    if case is None:
        raise NotFound("case", case_id)
    parties = [p.party for p in parties_of(session, [case.id])[case.id]]
    if not policy.may_see_case(caller, case, parties):
        raise NotFound("case", case_id)
    return case, parties


def require_open(case: CaseRow, what: str) -> None:
    if case.state in CLOSED_STATES:
        raise FailedPrecondition(
            f"case {case.id!r} is {case.state}: it cannot {what}; reopen it first",
            reason="CASE_CLOSED",
            metadata={"case_id": case.id, "state": case.state},
        )


def record_change(
    session: Session,
    case: CaseRow,
    kind: str,
    actor: str,
    now_ms: int,
    detail: str,
    data: dict[str, Any] | None = None,
) -> int:
    """Append the audit event of a change of `case` and its history row; returns the event's `seq`.
    Record cases carry the record (and delivery) id, so the record's trace and proof find them."""
    event = audit_log.append(
        session,
        kind=kind,
        actor=actor,
        time_ms=now_ms,
        record_id=case.record_id,
        delivery_id=case.delivery_id,
        data={
            "case_id": case.id,
            "case_kind": case.kind,
            "state": case.state,
            "detail": detail,
            **(data or {}),
        },
    )
    session.flush()
    assert event.seq is not None
    session.add(
        CaseEventRow(
            case_id=case.id, kind=kind, actor=actor, detail=detail, time_ms=now_ms, audit_seq=event.seq
        )
    )
    case.updated_ms = now_ms
    session.add(case)
    return event.seq


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def attachment_of(session: Session, case_id: str, message_id: str, index: int) -> CaseAttachmentRow | None:
    """The `index`-th file (from 0, in the order sent) of a message of the case."""
    if index < 0:
        return None
    return session.exec(
        select(CaseAttachmentRow)
        .where(CaseAttachmentRow.case_id == case_id, CaseAttachmentRow.message_id == message_id)
        .order_by(col(CaseAttachmentRow.id))
        .offset(index)
        .limit(1)
    ).first()


def add_message(
    session: Session,
    case: CaseRow,
    author: str,
    text: str,
    attachments: Sequence[NewAttachment],
    now_ms: int,
    turn: str,
) -> str:
    """Store a message and its attachments, audited; `turn` says how the awaited party changed."""
    message_id = new_id(now_ms)
    stored: list[dict[str, Any]] = [
        {
            "filename": a.filename,
            "content_type": a.content_type,
            "size_bytes": len(a.content),
            "sha256": sha256_hex(a.content),
        }
        for a in attachments
    ]
    shown = text if len(text) <= 120 else text[:119] + "…"
    detail = f"{author} wrote: {shown}" + (f" ({len(stored)} attachment(s))" if stored else "") + turn
    seq = record_change(
        session,
        case,
        "case.message_added",
        author,
        now_ms,
        detail,
        {"message_id": message_id, "text": text, "attachments": stored, "awaited_party": case.awaited_party},
    )
    session.add(
        CaseMessageRow(
            id=message_id, case_id=case.id, author=author, text=text, created_ms=now_ms, audit_seq=seq
        )
    )
    for attachment, meta in zip(attachments, stored, strict=True):
        session.add(
            CaseAttachmentRow(
                message_id=message_id,
                case_id=case.id,
                filename=attachment.filename,
                content_type=attachment.content_type,
                size_bytes=meta["size_bytes"],
                sha256=meta["sha256"],
                content=attachment.content,
            )
        )
    return message_id


def await_party(case: CaseRow, party: str, deadline_ms: int, now_ms: int) -> None:
    """Hand the turn to `party` (empty: nobody), with a fresh deadline; a climbed ladder stops."""
    case.awaited_party = party
    case.state = AWAITING_PARTY if party else OPEN
    case.respond_by_ms = now_ms + deadline_ms if party else None
    case.level = 0
    case.next_step_ms = None


def view(
    session: Session,
    case: CaseRow,
    reopen_window_ms: int,
    *,
    full: bool = True,
    party_rows: Sequence[CasePartyRow] | None = None,
) -> CaseView:
    """The case as its parties see it; `full` adds the thread, the history and the whole evidence.
    `party_rows`: the case's parties when the caller read them already (a page reads all at once)."""
    if party_rows is None:
        party_rows = parties_of(session, [case.id])[case.id]
    parties = tuple(Party(p.party, p.role) for p in party_rows)
    evidence: dict[str, Any] = json.loads(case.evidence)
    messages: tuple[Message, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    if full:
        rows = list(
            session.exec(
                select(CaseMessageRow)
                .where(CaseMessageRow.case_id == case.id)
                .order_by(col(CaseMessageRow.seq))
            )
        )
        files: dict[str, list[Attachment]] = {r.id: [] for r in rows}
        for a in session.exec(
            select(CaseAttachmentRow)
            .where(CaseAttachmentRow.case_id == case.id)
            .order_by(col(CaseAttachmentRow.id))
        ):
            files.setdefault(a.message_id, []).append(
                Attachment(a.filename, a.content_type, a.size_bytes, a.sha256)
            )
        messages = tuple(
            Message(r.id, r.author, r.text, tuple(files[r.id]), r.created_ms, r.audit_seq) for r in rows
        )
        history = tuple(
            HistoryEntry(e.kind, e.actor, e.detail, e.time_ms, e.audit_seq)
            for e in session.exec(
                select(CaseEventRow).where(CaseEventRow.case_id == case.id).order_by(col(CaseEventRow.id))
            )
        )
    else:
        evidence = {"summary": evidence.get("summary", "")}
    return CaseView(
        id=case.id,
        kind=case.kind,
        state=case.state,
        subject=case.subject,
        record_id=case.record_id or "",
        delivery_id=case.delivery_id or "",
        check_id=case.check_id or "",
        title=case.title,
        opened_by=case.opened_by,
        opened_ms=case.opened_ms,
        awaited_party=case.awaited_party,
        respond_by_ms=case.respond_by_ms,
        level=case.level,
        declaration_number=case.declaration_number,
        subject_uscc=case.subject_uscc,
        close_reason=case.close_reason,
        closed_by=case.closed_by,
        closed_ms=case.closed_ms,
        reopen_until_ms=case.closed_ms + reopen_window_ms if case.closed_ms is not None else None,
        parties=parties,
        evidence=evidence,
        messages=messages,
        history=history,
        updated_ms=case.updated_ms,
    )


def notice(event: str, case: CaseRow, targets: list[str]) -> Notice:
    """A notice the exchange's notifiers understand (its keys are an escalation's, plus the case's)."""
    return Notice(
        event,
        {
            "escalation_id": case.id,
            "case_id": case.id,
            "kind": case.kind,
            "delivery_id": case.delivery_id,
            "record_id": case.record_id,
            "check_id": case.check_id,
            "recipient": case.awaited_party,
            "awaited_party": case.awaited_party,
            "level": case.level,
            "state": case.state,
            "title": case.title,
        },
        targets,
    )


def _targets(rung: list[str], party: str, party_notifiers: dict[str, list[str]]) -> list[str]:
    name = party.removeprefix("agency:")
    extra = party_notifiers.get(name, []) + party_notifiers.get(party, []) if party else []
    return list(dict.fromkeys([*rung, *extra]))


def sweep_deadlines(
    session: Session, now_ms: int, party_notifiers: dict[str, list[str]], limit: int
) -> list[Notice]:
    """Awaited parties past their deadline: the case climbs to level 1 of its ladder and the party and the
    rung's notifiers hear of it; open cases whose next rung is due climb one more."""
    notices: list[Notice] = []
    missed = session.exec(
        select(CaseRow)
        .where(col(CaseRow.respond_by_ms) <= now_ms)
        .order_by(col(CaseRow.respond_by_ms))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for case in missed:
        deadline = case.respond_by_ms or now_ms
        case.respond_by_ms = None
        if case.state != AWAITING_PARTY:
            session.add(case)
            continue
        ladder = ladder_of(case)
        case.level = 1
        case.next_step_ms = deadline + ladder[1][0] if len(ladder) > 1 else None
        from ackhub.audit.times import to_rfc3339_ms

        record_change(
            session,
            case,
            "case.deadline_missed",
            "system:hub",
            now_ms,
            f"{case.awaited_party} did not answer by {to_rfc3339_ms(deadline)}; escalation level 1",
            {"awaited_party": case.awaited_party, "level": 1, "respond_by_ms": deadline},
        )
        notices.append(
            notice("case.deadline_missed", case, _targets(ladder[0][1], case.awaited_party, party_notifiers))
        )
    due = session.exec(
        select(CaseRow)
        .where(col(CaseRow.next_step_ms) <= now_ms)
        .order_by(col(CaseRow.next_step_ms))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for case in due:
        if case.state in CLOSED_STATES or case.level < 1:
            case.next_step_ms = None
            session.add(case)
            continue
        ladder = ladder_of(case)
        reached_at = (case.next_step_ms or now_ms) - ladder[min(case.level, len(ladder) - 1)][0]
        case.level = min(case.level + 1, len(ladder))
        case.next_step_ms = reached_at + ladder[case.level][0] if case.level < len(ladder) else None
        record_change(
            session,
            case,
            "case.stepped",
            "system:hub",
            now_ms,
            f"still no answer from {case.awaited_party or 'anyone'}; escalation level {case.level}",
            {"awaited_party": case.awaited_party, "level": case.level},
        )
        notices.append(
            notice(
                "case.stepped", case, _targets(ladder[case.level - 1][1], case.awaited_party, party_notifiers)
            )
        )
    return notices
