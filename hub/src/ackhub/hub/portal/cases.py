"""The portal's cases between parties: the cases about a record on its page, with a form to open one; a
case's page (state, parties, evidence in plain words, the thread, an answer form, withdraw and reopen);
and "my cases". Every read and write goes through `CaseBook` (ackhub.hub.cases) with the signed-in
enterprise's `Principal`, the calls CaseService makes: the same validation, row-level policy (an enterprise
sees the cases naming it as a party; another's is NOT_FOUND, as for none), idempotency and audit events.

Each form carries a `request_id` the page generated (AIP-155), so a form sent twice (a double click, a
reload after a lost answer) opens one case or adds one message; a refusal stores nothing, and the page
says why naming the field, in the reader's language."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import structlog
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ackhub.core.errors import AckhubError, FieldViolation, InvalidArgument, NotFound
from ackhub.core.principal import Principal
from ackhub.hub.cases import KINDS, STATES, CaseBook, CaseFilter, CaseView, RecordSubject
from ackhub.hub.cases.views import NewAttachment
from ackhub.hub.console.downloads import file_download
from ackhub.hub.exchange import trace
from ackhub.hub.portal.i18n import MESSAGES, translator
from ackhub.hub.portal.session import PortalSession

if TYPE_CHECKING:
    from ackhub.hub.portal.app import Portal

log = structlog.get_logger("ackhub.portal")
PREFIX = "/portal"
PAGE_SIZE = 20
RECORD_CASES = 50  # cases shown on a record's page (a record rarely has more than a few)
ACTIONS = ("message", "withdraw", "reopen")
# an HTTP status for each kind of refusal CaseBook gives
STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 409,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
}


@dataclass(frozen=True)
class Line:
    """A sentence of a case's evidence or history, in the reader's language."""

    time_ms: int | None
    kind: str
    sentence: str


def _fresh_id() -> str:
    return str(uuid.uuid4())


class PortalCases:
    """`GET /cases`, `GET /cases/{case_id}`, `POST /cases/{case_id}/{message|withdraw|reopen}` and
    `POST /records/{record_id}/cases`; the record page's section comes from `for_record`."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    @property
    def book(self) -> CaseBook:
        book = self.portal.hub.cases
        assert book is not None
        return book

    @staticmethod
    def caller(who: PortalSession) -> Principal:
        return Principal("enterprise", who.uscc)

    # -- words -------------------------------------------------------------------------------------
    def party_name(self, party: str, who: PortalSession, t: Callable[..., str]) -> str:
        """A case's party as a person reads it: you, an agency's name, a customs office."""
        if not party:
            return t("case.nobody")
        if party == f"enterprise:{who.uscc}":
            return t("case.party.you")
        kind, _, ident = party.partition(":")
        if kind == "agency":
            return self.portal.agency_names.get(ident, ident)
        if kind in ("customs", "operator", "enterprise", "system"):
            return t(f"case.party.{kind}", id=ident)
        return party

    @staticmethod
    def explain(error: AckhubError, t: Callable[..., str]) -> str:
        """A refusal in the reader's words, naming each bad field."""
        if isinstance(error, InvalidArgument):

            def field(name: str) -> str:
                file = _FILE_FIELD.fullmatch(name)
                if file:
                    return t("field.attachment", n=int(file.group(1)) + 1)
                return t("field." + name) if "field." + name in MESSAGES else name

            def said(description: str) -> str:
                return t("case.required") if description.startswith("is required") else description

            return "; ".join(f"{field(v.field)}: {said(v.description)}" for v in error.violations)
        key = f"case.err.{error.reason}"
        if key in MESSAGES:
            return t(key, **{k: v for k, v in error.metadata.items() if isinstance(v, str)})
        return str(error)

    def evidence(self, case: CaseView, t: Callable[..., str]) -> list[Line]:
        """What the hub attached at opening, as the record's timeline says it: each signed acknowledgement,
        or where a delivery stood without one; a permit decision and its registered copy."""
        lines: list[Line] = []
        evidence = case.evidence
        for d in evidence.get("deliveries") or []:
            agency = self.portal.agency_names.get(d.get("recipient", ""), d.get("recipient", ""))
            for ack in d.get("acknowledgements") or []:
                status = ack.get("status", "")
                lines.append(
                    Line(
                        ack.get("ack_ms"),
                        status,
                        t(
                            f"case.ev.{status}" if f"case.ev.{status}" in MESSAGES else "case.ev.other",
                            agency=agency,
                            key=ack.get("key_id", ""),
                            reason=ack.get("reason") or "—",
                            status=status,
                        ),
                    )
                )
            if not d.get("acknowledgements"):
                attempts = d.get("attempts") or []
                if attempts:
                    lines.append(
                        Line(
                            attempts[-1].get("sent_ms"),
                            "UNSIGNED",
                            t("case.ev.unsigned", agency=agency, n=len(attempts)),
                        )
                    )
                else:
                    lines.append(Line(None, "UNSENT", t("case.ev.unsent", agency=agency)))
        permit = evidence.get("permit")
        if isinstance(permit, dict):
            verdict = permit.get("verdict", "")
            reasons = ", ".join(permit.get("reasons") or [])
            lines.append(
                Line(
                    permit.get("check_ms"),
                    "PERMIT",
                    t(
                        "case.ev.permit_valid" if verdict == "VALID" else "case.ev.permit_invalid",
                        kind=permit.get("kind", ""),
                        number=permit.get("number", ""),
                        reasons=reasons or "—",
                    ),
                )
            )
            if permit.get("permit_key_id"):
                lines.append(Line(None, "PERMIT", t("case.ev.permit_held", key=permit["permit_key_id"])))
            else:
                lines.append(Line(None, "PERMIT", t("case.ev.permit_none")))
            if permit.get("signature_problem"):
                lines.append(
                    Line(None, "PROBLEM", t("case.ev.permit_problem", why=permit["signature_problem"]))
                )
        if evidence.get("delivery_proof"):
            lines.append(Line(None, "PROOF", t("case.ev.proof")))
        return lines

    def history(self, case: CaseView, who: PortalSession, t: Callable[..., str]) -> list[Line]:
        """The case's audited changes other than messages (the thread shows those), in plain words."""
        lines = []
        for h in case.history:
            if h.kind == "case.message_added":
                continue
            key = f"case.h.{h.kind}"
            actor = self.party_name(h.actor, who, t)
            lines.append(
                Line(h.time_ms, h.kind, t(key, actor=actor) if key in MESSAGES else f"{h.kind}: {h.detail}")
            )
        return lines

    # -- the record's page -------------------------------------------------------------------------
    async def for_record(self, who: PortalSession, record_id: str) -> list[CaseView]:
        """The cases about the record naming this enterprise, oldest first."""
        page = await self.book.list_cases(
            self.caller(who), CaseFilter(record_id=record_id), size=RECORD_CASES
        )
        return list(reversed(page.cases))

    async def open(self, request: Request, who: PortalSession) -> Response:
        """Open a case about the record from its page; a refusal shows the record page again with the
        form as it was sent (the same request id: nothing was stored)."""
        form: dict[str, str] = request.state.form
        record_id = request.path_params["record_id"][:64]
        t = translator(self.portal.lang(request))
        kind = form.get("kind", "")[:32]
        text = form.get("text", "")
        kept = {
            "kind": kind,
            "recipient": form.get("recipient", "")[:64],
            "title": form.get("title", ""),
            "text": text,
            "request_id": form.get("request_id", "")[:64],
        }
        try:
            if not text.strip():  # the portal asks for words; CaseBook alone would open an empty case
                raise InvalidArgument([FieldViolation("text", "is required")])
            answer = await self.book.open(
                self.caller(who),
                kind,
                RecordSubject(record_id, recipient=kept["recipient"]),
                title=kept["title"],
                text=text,
                request_id=kept["request_id"],
            )
        except NotFound as error:
            if error.reason == "RECORD_NOT_FOUND":
                return self.portal.message(request, who, 404, t("record.not_found"))
            return await self.portal.record_page(request, who, 404, self.explain(error, t), kept)
        except AckhubError as error:
            log.info("portal.case_refused", uscc=who.uscc, record_id=record_id, reason=error.reason)
            status = STATUS.get(error.code, 400)
            return await self.portal.record_page(
                request, who, status, t("case.refused", why=self.explain(error, t)), kept
            )
        log.info("portal.case_opened", uscc=who.uscc, case_id=answer.case.id, replayed=answer.replayed)
        return RedirectResponse(f"{PREFIX}/cases/{quote(answer.case.id, safe='')}?done=opened", 303)

    def open_form(self, traced: trace.Traced, kept: dict[str, str] | None) -> dict[str, Any]:
        """The opening form's choices: every kind (CaseService lets an enterprise open each), and the
        record's recipients for a case about one delivery."""
        form = dict(kept or {})
        form.setdefault("request_id", _fresh_id())
        return {
            "kinds": KINDS,
            "recipients": [d.recipient for d in traced.deliveries],
            "values": form,
        }

    # -- my cases ----------------------------------------------------------------------------------
    async def list(self, request: Request, who: PortalSession) -> Response:
        params = request.query_params
        t = translator(self.portal.lang(request))
        state = params.get("state", "").strip()[:32]
        token = params.get("page", "")[:512]
        context: dict[str, Any] = {
            "cases": [],
            "states": STATES,
            "state": state,
            "next_url": "",
            "first_url": "",
            "failure": "",
            "who_name": lambda party: self.party_name(party, who, t),
        }
        try:
            page = await self.book.list_cases(
                self.caller(who), CaseFilter(state=state), size=PAGE_SIZE, token=token
            )
        except AckhubError as error:
            context["failure"] = t("records.bad", why=self.explain(error, t))
            return self.portal.render(request, "cases.html", who, 400, **context)
        kept = {"state": state} if state else {}
        context["cases"] = page.cases
        if page.next_token:
            context["next_url"] = f"{PREFIX}/cases?" + urlencode({**kept, "page": page.next_token})
        if token:
            context["first_url"] = f"{PREFIX}/cases" + (f"?{urlencode(kept)}" if kept else "")
        return self.portal.render(request, "cases.html", who, **context)

    # -- one case ----------------------------------------------------------------------------------
    async def detail(self, request: Request, who: PortalSession) -> Response:
        return await self.case_page(request, who)

    async def case_page(
        self,
        request: Request,
        who: PortalSession,
        status: int = 200,
        failure: str = "",
        kept: dict[str, str] | None = None,
    ) -> Response:
        t = translator(self.portal.lang(request))
        case_id = request.path_params["case_id"][:64]
        try:
            case = await self.book.get(self.caller(who), case_id)
        except (NotFound, InvalidArgument):
            return self.portal.message(request, who, 404, t("case.not_found"))
        now = self.portal.now()
        form = dict(kept or {})
        # each form its own request id; a refused one keeps its id (nothing was stored under it)
        ids = {action: _fresh_id() for action in ACTIONS}
        if form.get("action") in ids and form.get("request_id"):
            ids[form["action"]] = form["request_id"]
        return self.portal.render(
            request,
            "case.html",
            who,
            status,
            c=case,
            mine=case.opened_by == f"enterprise:{who.uscc}",
            may_reopen=case.closed and case.reopen_until_ms is not None and now <= case.reopen_until_ms,
            evidence=self.evidence(case, t),
            history=self.history(case, who, t),
            who_name=lambda party: self.party_name(party, who, t),
            failure=failure,
            form=form,
            ids=ids,
            files=self.file_limits(),
            done=request.query_params.get("done", ""),
        )

    async def act(self, request: Request, who: PortalSession) -> Response:
        """Answer (add a message), withdraw or reopen; a refusal shows the case again with the words kept."""
        form: dict[str, str] = request.state.form
        case_id = request.path_params["case_id"][:64]
        what = request.path_params["what"]
        if what not in ACTIONS:
            return Response("unknown action", 404)
        t = translator(self.portal.lang(request))
        caller = self.caller(who)
        request_id = form.get("request_id", "")[:64]
        kept = {"action": what, "text": form.get("text", ""), "request_id": request_id}
        try:
            if what == "message":
                files = await self.uploads(request)
                await self.book.add_message(
                    caller, case_id, form.get("text", ""), files, request_id=request_id
                )
            elif what == "withdraw":
                await self.book.withdraw(caller, case_id, form.get("text", ""), request_id=request_id)
            else:
                await self.book.reopen(caller, case_id, form.get("text", ""), request_id=request_id)
        except NotFound:
            return self.portal.message(request, who, 404, t("case.not_found"))
        except AckhubError as error:
            log.info("portal.case_refused", uscc=who.uscc, case_id=case_id, action=what, reason=error.reason)
            return await self.case_page(
                request,
                who,
                STATUS.get(error.code, 400),
                t("case.refused_" + what, why=self.explain(error, t)),
                kept,
            )
        log.info("portal.case_action", uscc=who.uscc, case_id=case_id, action=what)
        return RedirectResponse(f"{PREFIX}/cases/{quote(case_id, safe='')}?done={what}", 303)

    def file_limits(self) -> dict[str, Any]:
        limits = self.book.limits
        return {
            "n": limits.max_attachments,
            "kib": limits.max_attachment_bytes // 1024,
            "types": ", ".join(limits.attachment_types),
            "accept": ",".join(limits.attachment_types),
        }

    async def uploads(self, request: Request) -> Sequence[NewAttachment]:
        """The files sent with the form, read up to one byte past the size limit (the book refuses a file
        over it, naming it, and stores nothing)."""
        limit = self.book.limits.max_attachment_bytes
        files: Sequence[UploadFile] = request.state.files
        return [
            NewAttachment(
                f.filename or "", f.content_type or "application/octet-stream", await f.read(limit + 1)
            )
            for f in files
        ]

    async def attachment(self, request: Request, who: PortalSession) -> Response:
        """A file of a case's message, to download: only for the case's parties (others: 404, as for the
        case). Sent as an attachment, never rendered here, with its own stored media type."""
        case_id = request.path_params["case_id"][:64]
        message_id = request.path_params["message_id"][:64]
        t = translator(self.portal.lang(request))
        try:
            found = await self.book.attachment(
                self.caller(who), case_id, message_id, request.path_params["index"]
            )
        except (NotFound, InvalidArgument):
            return self.portal.message(request, who, 404, t("case.not_found"))
        log.info("portal.case_file", uscc=who.uscc, case_id=case_id, message_id=message_id)
        return file_download(found)


# A refused file's field: attachments[0].content names the first file sent.
_FILE_FIELD = re.compile(r"attachments\[(\d+)\](?:\.\w+)?")
