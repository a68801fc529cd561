"""The console's Cases page: operators list cases between parties (filter by party, kind and state), read
one with its evidence, thread and audited history, add messages and resolve — all through the same
`CaseBook` the gRPC `CaseService` uses, so the same rules and audit events apply."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ackhub.core.errors import AckhubError, NotFound
from ackhub.core.principal import Principal
from ackhub.hub.cases import KINDS, STATES, CaseBook, CaseFilter
from ackhub.hub.console.downloads import file_download
from ackhub.hub.console.i18n import translator

if TYPE_CHECKING:
    from ackhub.hub.console.app import Console

log = structlog.get_logger("ackhub.console")


class CasesPage:
    """`GET /cases`, `GET /cases/{case_id}`, `POST /cases/{case_id}/message` and `/resolve`, and
    `GET /cases/{case_id}/messages/{message_id}/files/{n}`."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @property
    def book(self) -> CaseBook:
        book = self.console.hub.cases
        assert book is not None
        return book

    async def list(self, request: Request, who: Principal, _: str) -> Response:
        params = request.query_params
        kind = params.get("kind", "") if params.get("kind", "") in KINDS else ""
        state = params.get("state", "") if params.get("state", "") in STATES else ""
        party = params.get("party", "").strip()[:160]
        page = await self.book.list_cases(who, CaseFilter(kind=kind, state=state, party=party), size=200)
        return self.console.render(
            request,
            "cases.html",
            who,
            cases=page.cases,
            kinds=KINDS,
            states=STATES,
            kind=kind,
            state=state,
            party=party,
            now=self.console.now(),
        )

    async def detail(self, request: Request, who: Principal, _: str) -> Response:
        t = translator(self.console.lang(request))
        try:
            case = await self.book.get(who, request.path_params["case_id"])
        except NotFound:
            return self.console.render(request, "message.html", who, 404, message=t("refused.jurisdiction"))
        return self.console.render(
            request,
            "case.html",
            who,
            c=case,
            now=self.console.now(),
            done=request.query_params.get("done", ""),
        )

    async def attachment(self, request: Request, who: Principal, _: str) -> Response:
        """A file of a case's message, to download (the case's parties and operators of its office)."""
        params = request.path_params
        try:
            found = await self.book.attachment(who, params["case_id"], params["message_id"], params["index"])
        except NotFound:
            t = translator(self.console.lang(request))
            return self.console.render(request, "message.html", who, 404, message=t("refused.jurisdiction"))
        log.info(
            "console.case_file", actor=who.actor, case_id=params["case_id"], message_id=params["message_id"]
        )
        return file_download(found)

    async def act(self, request: Request, who: Principal, _: str) -> Response:
        case_id = request.path_params["case_id"]
        what = request.path_params["what"]
        form: dict[str, str] = request.state.form
        t = translator(self.console.lang(request))
        try:
            if what == "message":
                await self.book.add_message(
                    who, case_id, form.get("text", ""), await_party=form.get("await_party", "")
                )
            elif what == "resolve":
                await self.book.resolve(who, case_id, form.get("resolution", ""))
            else:
                return Response("unknown action", 404)
        except NotFound:
            return self.console.render(request, "message.html", who, 404, message=t("refused.jurisdiction"))
        except AckhubError as exc:
            return self.console.render(request, "message.html", who, 400, message=t("error", why=str(exc)))
        log.info("console.case_action", action=what, actor=who.actor, case_id=case_id)
        done = {"message": "case_message", "resolve": "case_resolved"}[what]
        return RedirectResponse(f"/cases/{quote(case_id, safe='')}?done={done}", 303)
