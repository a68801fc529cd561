"""`CaseBook`: the use cases of cases between parties, one method per thing a party does. The gRPC service
(ackhub.hub.api.cases), the operators' console and the enterprise portal all call it with the caller's
`Principal`; it validates, authorizes row by row (ackhub.hub.auth.policy), stores the change with its audit event
in one transaction, and tells the notifiers.

Every mutation takes an optional `request_id` (AIP-155): the same caller with the same id and the same
request gets the first answer again (`Answer.replayed`); with another request, ALREADY_EXISTS. A refused
call stores nothing.

Who is awaited (docs/cases.md): on opening, the party the case is against — the recipient for NOT_RECEIVED
and REJECTION_APPEAL, the permit's issuer (or the record's publisher) for CONTENT_DISPUTE, customs for
OTHER. When the awaited party answers, the turn passes to customs (the operators decide); any party may
hand the turn to another named party. Each turn has the kind's deadline (`[cases] deadlines`); a missed one
climbs the escalation ladder — the delivery's route ladder for a case about a delivery, `[cases]
escalation` otherwise — and notifies the rung's notifiers and the party's own (`[cases] party_notifiers`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from ackhub.audit.times import to_rfc3339_ms
from ackhub.core.clock import Clock
from ackhub.core.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ackhub.core.identifiers import check_uscc
from ackhub.core.ids import new_id
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.cases import store
from ackhub.hub.cases.evidence import issuer_of_check, permit_evidence, record_evidence
from ackhub.hub.cases.views import (
    CLOSED_STATES,
    KINDS,
    RESOLVED,
    STATES,
    SUBJECT_PERMIT_CHECK,
    SUBJECT_RECORD,
    WITHDRAWN,
    Answer,
    CaseFilter,
    CaseView,
    NewAttachment,
    RecordSubject,
    Subject,
)
from ackhub.hub.config import Settings
from ackhub.hub.exchange.escalation import Notice
from ackhub.hub.exchange.notify import Notifications
from ackhub.hub.exchange.routing import policy_of
from ackhub.hub.exchange.validation import Violations
from ackhub.hub.ledger import proof
from ackhub.hub.ledger.ledger import AuditLedger
from ackhub.hub.pagination import decode_token, encode_token, page_size
from ackhub.hub.permits.issuers import Issuers
from ackhub.hub.store.cases import CasePartyRow, CaseRequestRow, CaseRow
from ackhub.hub.store.db import Database, is_unique_race
from ackhub.hub.store.models import DeliveryRow, PermitCheckRow, RecordRow

MAX_TITLE = 200
MAX_FILENAME = 255
SWEEP_BATCH = 500
REJECTED = "REJECTED"


@dataclass(frozen=True)
class Page:
    cases: list[CaseView]
    next_token: str


def _digest(method: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"method": method, **fields}, sort_keys=True).encode()).hexdigest()


def _files(attachments: Sequence[NewAttachment]) -> list[list[Any]]:
    return [[a.filename, a.content_type, store.sha256_hex(a.content)] for a in attachments]


def _visible_case(session: Session, caller: Principal, case_id: str) -> CaseRow:
    """The case, if the caller may see it; NOT_FOUND alike for a missing case and another party's."""
    case = session.exec(select(CaseRow).where(CaseRow.id == case_id)).first()
    if case is None:
        raise NotFound("case", case_id)
    parties = [p.party for p in store.parties_of(session, [case.id])[case.id]]
    if not policy.may_see_case(caller, case, parties):
        raise NotFound("case", case_id)
    return case


def _customs(case: CaseRow, parties: Sequence[str]) -> str:
    """The customs office party of the case (the operators who decide when nobody else is awaited)."""
    return next(
        (p for p in parties if p.startswith("customs:")), policy.customs_party(case.declaration_number)
    )


class CaseBook:
    """Cases between parties. `ledger` attaches the record's delivery proof as evidence; `issuers` gives a
    permit's issuer and its key history (both optional, for a hub without them)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        notifications: Notifications,
        ledger: AuditLedger | None = None,
        issuers: Issuers | None = None,
    ) -> None:
        self.settings = settings
        self.limits = settings.cases
        self.db = db
        self.clock = clock
        self.notifications = notifications
        self.ledger = ledger
        self.issuers = issuers
        self.agency_ids = {a.id for a in settings.agencies}

    # --- validation -----------------------------------------------------------------------------------

    def _text(self, bad: Violations, field: str, text: str, required: bool) -> str:
        cleaned = text.strip()
        if required:
            bad.required(field, cleaned)
        limit = self.limits.max_message_chars
        if len(cleaned) > limit:
            bad.add(field, f"is {len(cleaned)} characters; the limit max_message_chars is {limit}")
        return cleaned

    def _attachments(self, bad: Violations, attachments: Sequence[NewAttachment]) -> None:
        limits = self.limits
        if len(attachments) > limits.max_attachments:
            bad.add(
                "attachments",
                f"has {len(attachments)} files; the limit max_attachments is {limits.max_attachments}",
            )
        for i, a in enumerate(attachments):
            where = f"attachments[{i}]"
            if bad.required(f"{where}.filename", a.filename) and (
                len(a.filename) > MAX_FILENAME or any(c in a.filename for c in "/\\\0")
            ):
                bad.add(
                    f"{where}.filename", f"must be a file name of at most {MAX_FILENAME} characters, no path"
                )
            base = a.content_type.split(";")[0].strip().lower()
            if base not in limits.attachment_types:
                bad.add(
                    f"{where}.content_type",
                    f"{a.content_type[:64]!r} is not allowed; the limit attachment_types allows "
                    f"{', '.join(limits.attachment_types)}",
                )
            if len(a.content) > limits.max_attachment_bytes:
                bad.add(
                    f"{where}.content",
                    f"is {len(a.content)} bytes; the limit max_attachment_bytes is {limits.max_attachment_bytes}",
                )
            if not a.content:
                bad.add(f"{where}.content", "is empty")

    @staticmethod
    def _request_id(bad: Violations, request_id: str) -> None:
        if request_id:
            bad.uuid("request_id", request_id)

    @staticmethod
    def _refuse_if_bad(bad: Violations) -> None:
        """INVALID_ARGUMENT for every bad field; reason CASE_LIMIT_EXCEEDED when one is over a limit."""
        if bad.items:
            over = any("the limit" in v.description for v in bad.items)
            raise InvalidArgument(bad.items, reason="CASE_LIMIT_EXCEEDED" if over else None)

    # --- idempotent writes ------------------------------------------------------------------------------

    def _replay(
        self, session: Session, caller: Principal, request_id: str, method: str, digest: str
    ) -> Answer | None:
        if not request_id:
            return None
        first = session.get(CaseRequestRow, (caller.actor, request_id))
        if first is None:
            return None
        if first.method != method or first.digest != digest:
            raise AlreadyExists(
                f"request {request_id!r} was already used by {caller.actor} for another request "
                f"({first.method} on case {first.case_id!r})",
                reason="REQUEST_ID_REUSED",
                metadata={"request_id": request_id, "method": first.method, "case_id": first.case_id},
            )
        answer = json.loads(first.answer)
        return Answer(CaseView.from_json(answer["case"]), True, answer["message_id"])

    def _write(
        self,
        caller: Principal,
        request_id: str,
        method: str,
        digest: str,
        change: Callable[[Session, int], tuple[str, str, list[Notice]]],
    ) -> tuple[Answer, list[Notice]]:
        """Blocking: `change(session, now_ms)` → (case id, message id, notices), in one transaction with the
        request id's first answer. A concurrent twin with the same request id loses the race and replays."""
        for attempt in (1, 2):
            try:
                with self.db.transaction() as session:
                    replayed = self._replay(session, caller, request_id, method, digest)
                    if replayed is not None:
                        return replayed, []
                    now_ms = self.clock.now_ms()
                    case_id, message_id, notices = change(session, now_ms)
                    case = session.exec(select(CaseRow).where(CaseRow.id == case_id)).one()
                    answer = Answer(store.view(session, case, self.limits.reopen_window), False, message_id)
                    if request_id:
                        session.add(
                            CaseRequestRow(
                                actor=caller.actor,
                                request_id=request_id,
                                method=method,
                                digest=digest,
                                case_id=case_id,
                                answer=json.dumps({"case": answer.case.to_json(), "message_id": message_id}),
                                created_ms=now_ms,
                            )
                        )
                    return answer, notices
            except Exception as failure:
                if attempt == 2 or not request_id or not is_unique_race(failure):
                    raise
        raise AssertionError("unreachable")

    async def _mutate(
        self,
        caller: Principal,
        request_id: str,
        method: str,
        digest: str,
        change: Callable[[Session, int], tuple[str, str, list[Notice]]],
    ) -> Answer:
        answer, notices = await self.db.run(self._write, caller, request_id, method, digest, change)
        if notices:
            await self.notifications.dispatch(notices)
        return answer

    def _told(self, case: CaseRow, before: str) -> list[Notice]:
        """`case.awaiting` for the party whose turn it now is, to its own notifiers (`[cases]
        party_notifiers`), when the turn moved to it; nothing for a party without notifiers."""
        party = case.awaited_party
        targets = self.limits.party_notifiers.get(party.removeprefix("agency:"), []) + (
            self.limits.party_notifiers.get(party, []) if party else []
        )
        if not party or party == before or not targets:
            return []
        return [store.notice("case.awaiting", case, list(dict.fromkeys(targets)))]

    # --- opening ----------------------------------------------------------------------------------------

    async def open(
        self,
        caller: Principal,
        kind: str,
        subject: Subject | None,
        *,
        title: str = "",
        text: str = "",
        attachments: Sequence[NewAttachment] = (),
        request_id: str = "",
    ) -> Answer:
        """Open a case about `subject`, with the evidence the hub holds attached. NOT_FOUND when the caller
        may not see the subject, exactly as when it does not exist."""
        bad = Violations()
        self._request_id(bad, request_id)
        if kind not in KINDS:
            bad.add("kind", f"must be one of {', '.join(KINDS)}")
        if subject is None:
            bad.add("subject", "is required: a record or a permit check")
        elif isinstance(subject, RecordSubject):
            bad.required("record.record_id", subject.record_id)
            if subject.delivery_id and subject.recipient:
                bad.add("record.recipient", "name the delivery or its recipient, not both")
        else:
            bad.required("permit_check.check_id", subject.check_id)
        title = title.strip()
        bad.max_length("title", title, MAX_TITLE)
        text = self._text(bad, "text", text, required=False)
        self._attachments(bad, attachments)
        self._refuse_if_bad(bad)
        assert subject is not None
        digest = _digest(
            "OpenCase",
            {"kind": kind, "subject": [type(subject).__name__, *vars(subject).values()], "title": title,
             "text": text, "files": _files(attachments)},
        )  # fmt: skip
        if request_id:  # a replay needs no evidence gathered again
            replayed = await self.db.read(self._replay_read, caller, request_id, "OpenCase", digest)
            if replayed is not None:
                return replayed
        delivery_proof = None
        if isinstance(subject, RecordSubject):
            seen = await self.db.read(self._record_subject, caller, subject, kind)
            if self.ledger is not None and seen.whole_record:
                delivery_proof = await self.db.run(proof.build, self.ledger, caller, subject.record_id)

        def change(session: Session, now_ms: int) -> tuple[str, str, list[Notice]]:
            case = self._new_case(session, caller, kind, subject, title, now_ms, delivery_proof)
            message_id = ""
            if text or attachments:
                message_id = store.add_message(
                    session, case, caller.actor, text or "(attachments)", attachments, now_ms, ""
                )
            return case.id, message_id, self._told(case, "")

        return await self._mutate(caller, request_id, "OpenCase", digest, change)

    def _replay_read(self, caller: Principal, request_id: str, method: str, digest: str) -> Answer | None:
        with self.db.transaction() as session:
            return self._replay(session, caller, request_id, method, digest)

    @dataclass(frozen=True)
    class _Seen:
        record: RecordRow
        deliveries: list[DeliveryRow]  # the deliveries the case concerns
        whole_record: bool  # the caller may see every delivery of the record

    def _record_subject(self, caller: Principal, subject: RecordSubject, kind: str) -> CaseBook._Seen:
        with self.db.transaction() as session:
            return self._seen(session, caller, subject, kind)

    def _seen(self, session: Session, caller: Principal, subject: RecordSubject, kind: str) -> CaseBook._Seen:
        record = session.exec(select(RecordRow).where(RecordRow.id == subject.record_id)).first()
        if record is None:
            raise NotFound("record", subject.record_id)
        everything = list(
            session.exec(
                select(DeliveryRow).where(DeliveryRow.record_id == record.id).order_by(col(DeliveryRow.seq))
            )
        )
        visible = policy.visible_deliveries(caller, record, everything)
        if visible is None:
            raise NotFound("record", subject.record_id)  # the same answer as for a record that does not exist
        concerned = visible
        if subject.delivery_id:
            concerned = [d for d in visible if d.id == subject.delivery_id]
            if not concerned:
                raise NotFound("delivery", subject.delivery_id)
        elif subject.recipient:
            concerned = [d for d in visible if d.recipient == subject.recipient]
            if not concerned:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "record.recipient", f"the record has no delivery to {subject.recipient[:64]!r}"
                        )
                    ]
                )
        if kind in ("NOT_RECEIVED", "REJECTION_APPEAL") and len(concerned) != 1:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "record.delivery_id",
                        f"a {kind} case names the delivery (or its recipient) it is about",
                    )
                ]
            )
        if kind == "REJECTION_APPEAL" and concerned[0].state != REJECTED:
            raise FailedPrecondition(
                f"delivery {concerned[0].id!r} is {concerned[0].state}, not REJECTED: there is no rejection to appeal",
                reason="DELIVERY_NOT_REJECTED",
                metadata={"delivery_id": concerned[0].id, "state": concerned[0].state},
            )
        return CaseBook._Seen(record, concerned, len(visible) == len(everything))

    def _permit_check(
        self, session: Session, caller: Principal, check_id: str
    ) -> tuple[PermitCheckRow, Any, str]:
        """The check, its permit and issuer, if the caller may see the decision: the declarant or the
        holder, the agency that asked or the issuer's agency, customs of the office; NOT_FOUND otherwise."""
        check = session.exec(select(PermitCheckRow).where(PermitCheckRow.id == check_id)).first()
        if check is None:
            raise NotFound("permit_check", check_id)
        permit, issuer_id = issuer_of_check(session, check, self.issuers) if self.issuers else (None, "")
        issuer = self.settings.permits.issuer(issuer_id) if issuer_id else None
        allowed = {
            "enterprise": caller.id in {check.declarant_uscc, permit.holder_uscc if permit else ""},
            "agency": caller.actor == check.actor or (issuer is not None and caller.id == issuer.agency_id),
        }.get(caller.kind)
        if allowed is None:
            allowed = (
                policy.in_jurisdiction(caller, check.declaration_number or check.customs_office)
                or caller.kind == "system"
            )
        if not allowed:
            raise NotFound("permit_check", check_id)
        return check, permit, issuer_id

    def _new_case(
        self,
        session: Session,
        caller: Principal,
        kind: str,
        subject: Subject,
        title: str,
        now_ms: int,
        delivery_proof: dict[str, Any] | None,
    ) -> CaseRow:
        parties: dict[str, str] = {}

        def party(name: str, role: str) -> None:
            parties.setdefault(name, role)

        ladder = [[step.after, list(step.notify)] for step in self.limits.escalation]
        if isinstance(subject, RecordSubject):
            seen = self._seen(session, caller, subject, kind)
            record = seen.record
            evidence = record_evidence(session, seen.deliveries)
            evidence["delivery_proof"] = delivery_proof
            declaration = record.declaration_number or ""
            office = ""
            uscc = record.subject_uscc or ""
            if uscc:
                party(f"enterprise:{uscc}", "ENTERPRISE")
            party(f"agency:{record.publisher}", "PUBLISHER")
            for d in seen.deliveries:
                party(f"agency:{d.recipient}", "RECIPIENT")
            delivery_id = seen.deliveries[0].id if len(seen.deliveries) == 1 else None
            if delivery_id is not None:
                route_ladder = policy_of(seen.deliveries[0].policy).escalation
                ladder = [[step.after, list(step.notify)] for step in route_ladder]
            against = {
                "NOT_RECEIVED": f"agency:{seen.deliveries[0].recipient}" if seen.deliveries else "",
                "REJECTION_APPEAL": f"agency:{seen.deliveries[0].recipient}" if seen.deliveries else "",
                "CONTENT_DISPUTE": f"agency:{record.publisher}",
            }.get(kind, "")
            what = f"record {record.record_type} {declaration or record.id}"
            record_id, check_id = record.id, None
        else:
            check, permit, issuer_id = self._permit_check(session, caller, subject.check_id)
            assert self.issuers is not None or issuer_id == ""
            evidence = permit_evidence(session, check, permit, issuer_id, self.issuers) if self.issuers else {
                "summary": f"{check.kind} {check.number} was verified {check.verdict}", "deliveries": [],
                "delivery_proof": None, "permit": None}  # fmt: skip
            declaration = check.declaration_number
            office = check.customs_office
            uscc = check.declarant_uscc
            party(f"enterprise:{uscc}", "ENTERPRISE")
            if permit is not None and permit.holder_uscc != uscc:
                party(f"enterprise:{permit.holder_uscc}", "ENTERPRISE")
            issuer = self.settings.permits.issuer(issuer_id) if issuer_id else None
            against = f"agency:{issuer.agency_id}" if issuer is not None else ""
            if against:
                party(against, "ISSUER")
            if check.actor.startswith("agency:"):
                party(check.actor, "PUBLISHER")
            what = f"{check.kind} {check.number}"
            record_id, delivery_id, check_id = None, None, check.id
        customs = policy.customs_party(declaration or office)
        party(customs, "CUSTOMS")
        party(caller.actor, "OPENER")
        if kind == "OTHER" or not against or against == caller.actor:
            against = customs
        case = CaseRow(
            id=new_id(now_ms),
            kind=kind,
            state="",
            subject=SUBJECT_RECORD if record_id else SUBJECT_PERMIT_CHECK,
            record_id=record_id,
            delivery_id=delivery_id,
            check_id=check_id,
            declaration_number=declaration,
            subject_uscc=uscc,
            title=title or f"{kind.replace('_', ' ').lower()}: {what}"[:MAX_TITLE],
            opened_by=caller.actor,
            opened_ms=now_ms,
            evidence=json.dumps(evidence, ensure_ascii=False, sort_keys=True),
            ladder=json.dumps(ladder),
            updated_ms=now_ms,
        )
        store.await_party(case, against, self.limits.deadline(kind), now_ms)
        session.add(case)
        for name, role in parties.items():
            session.add(CasePartyRow(case_id=case.id, party=name, role=role))
        store.record_change(
            session,
            case,
            "case.opened",
            caller.actor,
            now_ms,
            f"{caller.actor} opened a {kind} case about {what}; awaiting {against} until "
            f"{to_rfc3339_ms(case.respond_by_ms or now_ms)}. Evidence: {evidence['summary']}",
            {
                "title": case.title,
                "parties": sorted(parties),
                "awaited_party": against,
                "respond_by_ms": case.respond_by_ms,
                "check_id": check_id,
                "evidence_sha256": hashlib.sha256(case.evidence.encode()).hexdigest(),
            },
        )
        return case

    # --- reading ----------------------------------------------------------------------------------------

    async def get(self, caller: Principal, case_id: str) -> CaseView:
        """The case with its thread, history and evidence; NOT_FOUND if the caller is not one of its parties."""
        return await self.db.read(self._get, caller, case_id)

    def _get(self, caller: Principal, case_id: str) -> CaseView:
        with self.db.transaction() as session:
            if not case_id:
                raise InvalidArgument([FieldViolation("case_id", "is required")])
            case = _visible_case(session, caller, case_id)
            return store.view(session, case, self.limits.reopen_window)

    async def attachment(self, caller: Principal, case_id: str, message_id: str, index: int) -> NewAttachment:
        """The bytes of the `index`-th file of a message (from 0); NOT_FOUND for a caller who is not a party
        of the case, as for the case itself."""
        return await self.db.read(self._attachment, caller, case_id, message_id, index)

    def _attachment(self, caller: Principal, case_id: str, message_id: str, index: int) -> NewAttachment:
        with self.db.transaction() as session:
            case = _visible_case(session, caller, case_id)
            row = store.attachment_of(session, case.id, message_id, index)
            if row is None:
                raise NotFound("attachment", f"{message_id}/{index}")
            return NewAttachment(row.filename, row.content_type, row.content)

    async def list_cases(
        self, caller: Principal, filters: CaseFilter, size: int = 0, token: str = ""
    ) -> Page:
        """The cases the caller may see, newest first (without thread, history and evidence details)."""
        bad = Violations()
        if filters.kind and filters.kind not in KINDS:
            bad.add("kind", f"must be one of {', '.join(KINDS)}")
        if filters.state and filters.state not in STATES:
            bad.add("state", f"must be one of {', '.join(STATES)}")
        bad.max_length("party", filters.party, 160)
        bad.raise_if_any()
        return await self.db.read(self._list, caller, filters, size, token)

    def _list(self, caller: Principal, filters: CaseFilter, size: int, token: str) -> Page:
        limit = page_size(size)
        shape: dict[str, object] = {
            "kind": filters.kind,
            "state": filters.state,
            "party": filters.party,
            "record": filters.record_id,
        }
        after = decode_token(token, shape)
        query = select(CaseRow).where(policy.case_clause(caller))
        if filters.kind:
            query = query.where(CaseRow.kind == filters.kind)
        if filters.state:
            query = query.where(CaseRow.state == filters.state)
        if filters.record_id:
            query = query.where(CaseRow.record_id == filters.record_id)
        if filters.party:
            named = select(CasePartyRow.case_id).where(CasePartyRow.party == filters.party)
            query = query.where(col(CaseRow.id).in_(named))
        if after is not None:
            query = query.where(col(CaseRow.seq) < after)
        with self.db.transaction() as session:
            rows = list(session.exec(query.order_by(col(CaseRow.seq).desc()).limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            page_parties = store.parties_of(session, [r.id for r in rows])  # one query for the page
            views = [
                store.view(session, r, self.limits.reopen_window, full=False, party_rows=page_parties[r.id])
                for r in rows
            ]
        return Page(views, encode_token(rows[-1].seq or 0, shape) if more else "")

    def cases_of_record(self, session: Session, record_id: str) -> list[CaseRow]:
        """Blocking, in the caller's transaction: every case about the record, oldest first (the record's
        trace and delivery proof show them to whoever may see the record)."""
        return list(
            session.exec(select(CaseRow).where(CaseRow.record_id == record_id).order_by(col(CaseRow.seq)))
        )

    # --- answering and closing --------------------------------------------------------------------------

    async def add_message(
        self,
        caller: Principal,
        case_id: str,
        text: str,
        attachments: Sequence[NewAttachment] = (),
        *,
        await_party: str = "",
        request_id: str = "",
    ) -> Answer:
        """Add to the thread of an open case. The awaited party's message passes the turn to customs;
        `await_party` (one of the case's parties) hands it to that party instead."""
        bad = Violations()
        self._request_id(bad, request_id)
        bad.required("case_id", case_id)
        text = self._text(bad, "text", text, required=True)
        self._attachments(bad, attachments)
        bad.max_length("await_party", await_party, 160)
        self._refuse_if_bad(bad)
        digest = _digest(
            "AddCaseMessage",
            {"case_id": case_id, "text": text, "files": _files(attachments), "await": await_party},
        )

        def change(session: Session, now_ms: int) -> tuple[str, str, list[Notice]]:
            case, parties = store.locked_case(session, caller, case_id)
            before = case.awaited_party
            store.require_open(case, "take messages")
            if await_party and await_party not in parties:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "await_party",
                            f"{await_party!r} is not a party of the case ({', '.join(parties)})",
                        )
                    ]
                )
            customs = _customs(case, parties)
            answering = case.awaited_party == caller.actor or (
                caller.kind in policy.STAFF and case.awaited_party.startswith("customs:")
            )
            turn = ""
            if await_party:
                store.await_party(case, await_party, self.limits.deadline(case.kind), now_ms)
            elif answering:
                store.await_party(
                    case,
                    "" if case.awaited_party == customs else customs,
                    self.limits.deadline(case.kind),
                    now_ms,
                )
            if await_party or answering:
                turn = (
                    f" (now awaiting {case.awaited_party})"
                    if case.awaited_party
                    else " (nobody is awaited now)"
                )
            message_id = store.add_message(session, case, caller.actor, text, attachments, now_ms, turn)
            return case.id, message_id, self._told(case, before)

        return await self._mutate(caller, request_id, "AddCaseMessage", digest, change)

    def _close(
        self, state: str, kind: str
    ) -> Callable[[Principal, str, str, str], Callable[[Session, int], tuple[str, str, list[Notice]]]]:
        def make(
            caller: Principal, case_id: str, reason: str, verb: str
        ) -> Callable[[Session, int], tuple[str, str, list[Notice]]]:
            def change(session: Session, now_ms: int) -> tuple[str, str, list[Notice]]:
                case, _ = store.locked_case(session, caller, case_id)
                if state == WITHDRAWN:
                    policy.require_case_opener(caller, case)
                store.require_open(case, f"be {verb}")
                store.await_party(case, "", 0, now_ms)
                case.state = state
                case.close_reason = reason
                case.closed_by = caller.actor
                case.closed_ms = now_ms
                store.record_change(
                    session,
                    case,
                    kind,
                    caller.actor,
                    now_ms,
                    f"{verb} by {caller.actor}: {reason}",
                    {"reason": reason},
                )
                return case.id, "", [store.notice(kind, case, ["log"])]

            return change

        return make

    async def _closing(
        self,
        caller: Principal,
        case_id: str,
        reason: str,
        request_id: str,
        method: str,
        state: str,
        kind: str,
        verb: str,
    ) -> Answer:
        bad = Violations()
        self._request_id(bad, request_id)
        bad.required("case_id", case_id)
        reason = self._text(bad, "resolution" if state == RESOLVED else "reason", reason, required=True)
        self._refuse_if_bad(bad)
        digest = _digest(method, {"case_id": case_id, "reason": reason})
        return await self._mutate(
            caller, request_id, method, digest, self._close(state, kind)(caller, case_id, reason, verb)
        )

    async def resolve(
        self, caller: Principal, case_id: str, resolution: str, *, request_id: str = ""
    ) -> Answer:
        """Close the case with a resolution (operators; the policy table says who may call this)."""
        policy.require_staff(caller, "resolve cases")
        return await self._closing(
            caller, case_id, resolution, request_id, "ResolveCase", RESOLVED, "case.resolved", "resolved"
        )

    async def withdraw(self, caller: Principal, case_id: str, reason: str, *, request_id: str = "") -> Answer:
        """Close the case as withdrawn: by the party that opened it, or an operator."""
        return await self._closing(
            caller, case_id, reason, request_id, "WithdrawCase", WITHDRAWN, "case.withdrawn", "withdrawn"
        )

    async def reopen(self, caller: Principal, case_id: str, reason: str, *, request_id: str = "") -> Answer:
        """Open a closed case again, within `[cases] reopen_window` of its closing; customs is awaited."""
        bad = Violations()
        self._request_id(bad, request_id)
        bad.required("case_id", case_id)
        reason = self._text(bad, "reason", reason, required=True)
        self._refuse_if_bad(bad)
        digest = _digest("ReopenCase", {"case_id": case_id, "reason": reason})
        window = self.limits.reopen_window

        def change(session: Session, now_ms: int) -> tuple[str, str, list[Notice]]:
            case, parties = store.locked_case(session, caller, case_id)
            if case.state not in CLOSED_STATES:
                raise FailedPrecondition(
                    f"case {case.id!r} is {case.state}: only a resolved or withdrawn case can be reopened",
                    reason="CASE_NOT_CLOSED",
                    metadata={"case_id": case.id, "state": case.state},
                )
            closed = case.closed_ms or 0
            if now_ms > closed + window:
                raise FailedPrecondition(
                    f"case {case.id!r} was {case.state} at {to_rfc3339_ms(closed)}; it could be reopened until "
                    f"{to_rfc3339_ms(closed + window)} (reopen_window)",
                    reason="REOPEN_WINDOW_PASSED",
                    metadata={
                        "case_id": case.id,
                        "state": case.state,
                        "reopen_until": to_rfc3339_ms(closed + window),
                    },
                )
            was = case.state
            case.close_reason, case.closed_by, case.closed_ms = "", "", None
            customs = _customs(case, parties)
            store.await_party(case, customs, self.limits.deadline(case.kind), now_ms)
            store.record_change(
                session, case, "case.reopened", caller.actor, now_ms,
                f"reopened by {caller.actor} (was {was}): {reason}; awaiting {customs}", {"reason": reason, "was": was},
            )  # fmt: skip
            return case.id, "", [store.notice("case.reopened", case, ["log"]), *self._told(case, "")]

        return await self._mutate(caller, request_id, "ReopenCase", digest, change)

    async def add_party(
        self, caller: Principal, case_id: str, party: str, *, await_party: bool = False, request_id: str = ""
    ) -> Answer:
        """Name another party (`agency:<id>` or `enterprise:<USCC>`; operators only), optionally awaited."""
        policy.require_staff(caller, "add parties to cases")
        bad = Violations()
        self._request_id(bad, request_id)
        bad.required("case_id", case_id)
        kind, _, ident = party.partition(":")
        if kind == "agency":
            if ident not in self.agency_ids:
                bad.add("party", f"unknown agency {ident[:64]!r}")
        elif kind == "enterprise":
            problem = check_uscc(ident)
            if problem:
                bad.add("party", problem)
        else:
            bad.add("party", "must be 'agency:<id>' or 'enterprise:<USCC>'")
        bad.raise_if_any()
        digest = _digest("AddCaseParty", {"case_id": case_id, "party": party, "await": await_party})

        def change(session: Session, now_ms: int) -> tuple[str, str, list[Notice]]:
            case, parties = store.locked_case(session, caller, case_id)
            before = case.awaited_party
            store.require_open(case, "take parties")
            if party not in parties:
                session.add(CasePartyRow(case_id=case.id, party=party, role="ADDED"))
            if await_party:
                store.await_party(case, party, self.limits.deadline(case.kind), now_ms)
            store.record_change(
                session, case, "case.party_added", caller.actor, now_ms,
                f"{caller.actor} added {party}" + (f"; now awaiting {party}" if await_party else ""),
                {"party": party, "awaited_party": case.awaited_party},
            )  # fmt: skip
            return case.id, "", self._told(case, before)

        return await self._mutate(caller, request_id, "AddCaseParty", digest, change)

    # --- deadlines --------------------------------------------------------------------------------------

    def _sweep(self, now_ms: int) -> list[Notice]:
        notices: list[Notice] = []
        while True:
            with self.db.transaction() as session:
                found = store.sweep_deadlines(session, now_ms, self.limits.party_notifiers, SWEEP_BATCH)
            notices += found
            if len(found) < SWEEP_BATCH:
                return notices

    async def sweep(self) -> list[Notice]:
        """The periodic job: missed answers climb their ladder and notify; returns what was told."""
        notices: list[Notice] = await self.db.run(self._sweep, self.clock.now_ms())
        await self.notifications.dispatch(notices)
        return notices
