"""The console's Starlette app and the uvicorn server that runs it on the hub's own event loop, so pages
and actions use the same `Exchange`, ledger and breakers as the gRPC services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
import uvicorn
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ackhub.audit.tiles import TilePathError, parse_tile_path
from ackhub.core.errors import AckhubError, NotFound, Unauthenticated
from ackhub.core.principal import Principal
from ackhub.hub.auth import policy
from ackhub.hub.cases import CaseFilter
from ackhub.hub.console import charts, data
from ackhub.hub.console.cases import CasesPage
from ackhub.hub.console.i18n import LANGUAGES, choose, translator
from ackhub.hub.console.metrics import Metrics
from ackhub.hub.console.session import LANG_COOKIE, SESSION_COOKIE, Sessions, tokens_from_settings
from ackhub.hub.exchange import queries
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.ledger.ledger import cosignature_lines, to_checkpoint
from ackhub.hub.ledger.verify import verify_log
from ackhub.hub.store.cluster import AgencyStatus
from ackhub.hub.witnesses import WitnessCollector

if TYPE_CHECKING:
    from ackhub.hub.server import HubServer

log = structlog.get_logger("ackhub.console")
HERE = Path(__file__).parent
FEED_POLL_S = 0.25
FEED_LOOKBACK = 200  # re-read this many seqs back: PostgreSQL commits out of seq order
Handler = Callable[[Request, Principal, str], Awaitable[Response]]


def _time(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = int(ms // 1000)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# The order of the overview's "deliveries by state" bars: waiting first, then what is done.
_STATE_ORDER = {state: i for i, state in enumerate(("PENDING", "SENT", "RECEIVED", "ACCEPTED", "REJECTED"))}
_MEANING_ORDER = {
    m: i
    for i, m in enumerate((data.WAITING, data.CLOSED_MEANING, data.ACCEPTED_MEANING, data.REJECTED_MEANING))
}


def _by_meaning(states: dict[tuple[str, bool], int]) -> list[tuple[str, str, int]]:
    """(state, meaning, deliveries) for the chart: RECEIVED splits into waiting and closed by the route."""
    rows = [(state, data.meaning(state, closed), n) for (state, closed), n in states.items()]
    return sorted(rows, key=lambda r: (_MEANING_ORDER[r[1]], _STATE_ORDER.get(r[0], 9)))


def _local(path: str) -> str:
    """A path on this site to return to after sign-in or a language switch; "/" for anything else."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


@dataclass
class Console:
    """The pages and actions; `hub` is the running `HubServer` whose objects they use."""

    hub: HubServer
    sessions: Sessions
    metrics: Metrics

    def __post_init__(self) -> None:
        self.stopping = asyncio.Event()
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,
        )
        self.env.filters["time"] = _time
        self.env.filters["duration"] = _duration
        self.env.globals["meaning"] = data.meaning

    @property
    def db(self) -> Any:
        return self.hub.db

    def now(self) -> int:
        return self.hub.clock.now_ms()

    # -- plumbing ----------------------------------------------------------------------------------
    def lang(self, request: Request) -> str:
        return choose(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language", ""))

    def render(
        self, request: Request, name: str, who: Principal | None = None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        lang = self.lang(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        html = self.env.get_template(name).render(
            t=translator(lang),
            lang=lang,
            who=who,
            csrf=self.sessions.csrf(token) if who else "",
            path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            section=name.removesuffix(".html"),
            **context,
        )
        return HTMLResponse(
            html,
            status_code=status,
            headers={
                "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
                "x-content-type-options": "nosniff",
                "referrer-policy": "same-origin",
                "cache-control": "no-store",
            },
        )

    def to_signin(self, request: Request, expired: bool) -> Response:
        target = quote(_local(request.url.path), safe="/")
        response = RedirectResponse(f"/signin?next={target}" + ("&expired=1" if expired else ""), 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def principal(self, request: Request) -> Principal | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            return self.sessions.principal(token)
        except Unauthenticated:
            return None

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A signed-in page: anyone else goes to the sign-in form."""

        async def endpoint(request: Request) -> Response:
            who = self.principal(request)
            if who is None:
                return self.to_signin(request, expired=SESSION_COOKIE in request.cookies)
            return await handler(request, who, "")

        return endpoint

    def action(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A signed-in POST with a valid CSRF token; the handler gets the form's fields."""

        async def endpoint(request: Request) -> Response:
            who = self.principal(request)
            if who is None:
                return self.to_signin(request, expired=True)
            form = await request.form()
            token = request.cookies.get(SESSION_COOKIE, "")
            if not self.sessions.csrf_ok(token, str(form.get("csrf", ""))):
                return self.render(
                    request, "message.html", who, 403, message=translator(self.lang(request))("bad_csrf")
                )
            request.state.form = {k: str(v) for k, v in form.items()}
            return await handler(request, who, "")

        return endpoint

    # -- sign-in -----------------------------------------------------------------------------------
    async def signin_form(self, request: Request) -> Response:
        return self.render(
            request,
            "signin.html",
            next=_local(request.query_params.get("next", "/")),
            expired=bool(request.query_params.get("expired")),
            failure="",
        )

    async def signin(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", "")).strip()
        target = _local(str(form.get("next", "/")))
        try:
            who = self.sessions.principal(token)
        except Unauthenticated as exc:
            log.info("console.signin_refused", reason=exc.reason)
            return self.render(
                request, "signin.html", None, 401, next=target, expired=False, failure=str(exc)
            )
        log.info("console.signed_in", actor=who.actor, jurisdiction=who.jurisdiction)
        response = RedirectResponse(target, 303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def signout(self, request: Request, who: Principal, _: str) -> Response:
        response = RedirectResponse("/signin", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def language(self, request: Request) -> Response:
        code = request.path_params["code"]
        response = RedirectResponse(_local(request.query_params.get("next", "/")), 303)
        if code in LANGUAGES:
            response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="strict", path="/")
        return response

    # -- pages -------------------------------------------------------------------------------------
    async def overview(self, request: Request, who: Principal, _: str) -> Response:
        found = await self.db.read(data.overview, self.db, who, self.now())
        t = translator(self.lang(request))
        states = _by_meaning(found.states)
        return self.render(
            request,
            "overview.html",
            who,
            o=found,
            records_hour=sum(found.per_minute),
            rpm_chart=charts.columns(found.per_minute, title=t("overview.rpm")),
            states_chart=charts.bars(
                [(f"{t('meaning.' + m)} · {state}", n) for state, m, n in states],
                title=t("overview.states"),
                meanings=[m for _, m, _ in states],
                label_w=170,
            ),
            backlog_chart=charts.bars(
                list(found.backlog.items()),
                title=t("overview.backlog"),
                meanings=[data.WAITING] * len(found.backlog),
            ),
            latency_chart=charts.grouped(
                list(found.latency.items()), ("p50", "p95", "p99"), title=t("overview.latency")
            ),
            cases_chart=charts.bars(
                list(found.open_cases.items()),
                title=t("overview.cases"),
                meanings=[data.REJECTED_MEANING] * len(found.open_cases),
            ),
        )

    async def feed(self, request: Request, who: Principal, _: str) -> Response:
        return self.render(
            request,
            "feed.html",
            who,
            agencies=sorted(self.hub.settings.agencies, key=lambda a: a.id),
            types=sorted(r.record_type for r in self.hub.settings.routes),
            agency=request.query_params.get("agency", ""),
            record_type=request.query_params.get("type", ""),
        )

    async def feed_events(self, request: Request) -> Response:
        who = self.principal(request)
        if who is None:
            return Response("sign in first", 401)
        agency = request.query_params.get("agency", "")
        record_type = request.query_params.get("type", "")
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isdigit() else await self.db.read(data.latest_seq, self.db)
        token = request.cookies.get(SESSION_COOKIE, "")
        return StreamingResponse(
            self._events(who, token, start, agency, record_type),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _events(
        self, who: Principal, token: str, start: int, agency: str, record_type: str
    ) -> AsyncIterator[str]:
        """Server-sent events: new feed-worthy audit events, polled by seq until the session ends."""
        cursor, seen = start, set[int]()
        yield "retry: 2000\n: connected\n\n"
        while not self.stopping.is_set():
            try:
                self.sessions.principal(token)
            except Unauthenticated:
                yield "event: signout\ndata: {}\n\n"
                return
            events = await self.db.read(
                data.feed_events, self.db, who, max(start, cursor - FEED_LOOKBACK), agency, record_type
            )
            for event in events:
                if event.seq in seen:
                    continue
                seen.add(event.seq)
                cursor = max(cursor, event.seq)
                payload = {**event.__dict__, "time": _time(event.time_ms)}
                yield f"id: {event.seq}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"
            if len(seen) > 10 * FEED_LOOKBACK:
                seen = {s for s in seen if s > cursor - FEED_LOOKBACK}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), FEED_POLL_S)

    async def record(self, request: Request, who: Principal, _: str) -> Response:
        record_id = request.path_params["record_id"]
        try:
            view = await self.db.read(data.record_view, self.db, who, record_id)
        except NotFound:
            t = translator(self.lang(request))
            return self.render(request, "message.html", who, 404, message=t("refused.jurisdiction"))
        cases = []
        if self.hub.cases is not None:  # the record's cases between parties (ackhub.hub.console.cases)
            cases = (await self.hub.cases.list_cases(who, CaseFilter(record_id=record_id), size=50)).cases
        return self.render(request, "record.html", who, v=view, r=view.traced.record, cases=cases)

    async def escalations(self, request: Request, who: Principal, _: str) -> Response:
        params = request.query_params
        agency = params.get("agency", "")
        level = int(params["level"]) if params.get("level", "").isdigit() else 0
        age = int(params["age"]) if params.get("age", "").isdigit() else 0
        state = params.get("state", "OPEN")
        if state not in ("OPEN", "RESOLVED", "CLOSED_BY_ACK", ""):
            state = "OPEN"
        if agency and agency not in {a.id for a in self.hub.settings.agencies}:
            agency = ""
        page = await self.db.read(
            queries.list_escalations,
            self.db,
            who,
            state=state,
            recipient=agency,
            min_level=level,
            size=200,
            token="",
        )
        now = self.now()
        cases = [c for c in page.items if now - c.opened_ms >= age * 60_000]
        return self.render(
            request,
            "escalations.html",
            who,
            cases=cases,
            now=now,
            agencies=sorted({a.id for a in self.hub.settings.agencies}),
            agency=agency,
            level=level,
            age=age,
            state=state,
            done=params.get("done", ""),
        )

    async def case_action(self, request: Request, who: Principal, _: str) -> Response:
        """Resolve, note or redeliver, after checking the case is in the operator's jurisdiction."""
        escalation_id = request.path_params["escalation_id"]
        what = request.path_params["what"]
        form: dict[str, str] = request.state.form
        t = translator(self.lang(request))
        exchange = self.hub.exchange
        assert exchange is not None
        try:
            case, _notes = await self.db.run(queries.get_escalation, self.db, escalation_id, who)
        except NotFound:
            await self.db.run(self._record_refusal, who, what, escalation_id)
            return self.render(request, "message.html", who, 403, message=t("refused.jurisdiction"))
        try:
            if what == "resolve":
                await exchange.resolve(who, case.id, form.get("reason", ""))
            elif what == "note":
                await exchange.add_note(who, case.id, form.get("text", ""))
            elif what == "redeliver":
                await exchange.redeliver(who, case.delivery_id)
            else:
                return Response("unknown action", 404)
        except AckhubError as exc:
            return self.render(request, "message.html", who, 400, message=t("error", why=str(exc)))
        log.info("console.action", action=what, actor=who.actor, escalation_id=case.id)
        done = {"resolve": "resolved", "note": "noted", "redeliver": "redelivered"}[what]
        back = _local(form.get("back", "/escalations"))
        return RedirectResponse(back + ("&" if "?" in back else "?") + f"done={done}", 303)

    def _record_refusal(self, who: Principal, what: str, escalation_id: str) -> None:
        with self.db.transaction() as session:
            audit_log.append(
                session,
                kind="console.action_refused",
                actor=who.actor,
                time_ms=self.now(),
                data={
                    "action": what,
                    "escalation_id": escalation_id[:64],
                    "jurisdiction": who.jurisdiction,
                    "reason": "not found or outside the operator's jurisdiction",
                },
            )
        log.warning("console.action_refused", actor=who.actor, action=what, escalation_id=escalation_id[:64])

    async def agencies(self, request: Request, who: Principal, _: str) -> Response:
        configured = [(a.id, a.name, a.kind, a.connector) for a in self.hub.settings.agencies]
        unwritten = self.hub.activity.unwritten()  # this process's, since its last heartbeat
        views = await self.db.read(data.agencies, self.db, who, configured, self.now(), unwritten)
        # Streams and breakers live in the processes: every live one's, as of its last heartbeat.
        peers, deployment = await self.db.read(self.hub.deployment, self.now())
        return self.render(
            request,
            "agencies.html",
            who,
            agencies=views,
            deployment=deployment,
            several=len(peers) > 1,
            now=self.now(),
        )

    async def permits(self, request: Request, who: Principal, _: str) -> Response:
        number = request.query_params.get("number", "").strip()[:64]
        results = await self.db.read(data.permits, self.db, who, number) if number else []
        return self.render(request, "permits.html", who, number=number, results=results)

    async def audit(self, request: Request, who: Principal, _: str) -> Response:
        return await self._audit_page(request, who, verdict=None)

    async def _audit_page(self, request: Request, who: Principal, verdict: Any, anchor: str = "") -> Response:
        found = await self.db.read(data.checkpoints, self.db)
        events = await self.db.read(data.audit_events, self.db, who)
        configured = [(w.name, w.url) for w in self.hub.settings.audit.witnesses]
        witnesses = await self.db.read(data.witnesses, self.db, configured)
        return self.render(
            request,
            "audit.html",
            who,
            checkpoints=found,
            events=events,
            verdict=verdict,
            witnesses=witnesses,
            anchor=anchor,
        )

    async def audit_checkpoint(self, request: Request) -> Response:
        """The latest checkpoint as a C2SP signed note with its cosignatures (public: hashes only)."""

        def signed_note() -> str | None:
            found = data.checkpoints(self.db, 1)
            if not found:
                return None
            with self.db.transaction() as session:
                lines = cosignature_lines(session, found[0].tree_size)
            return to_checkpoint(found[0]).signed_note(lines)

        note = await self.db.read(signed_note)
        if note is None:
            return Response("no checkpoint signed yet\n", status_code=404, media_type="text/plain")
        return Response(note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "max-age=5"})

    async def audit_verify(self, request: Request, who: Principal, _: str) -> Response:
        ledger = self.hub.ledger
        assert ledger is not None
        anchor, against = None, ""
        if self.hub.witnesses is not None and self.hub.witnesses.configs:
            anchor, against = await self.hub.witnesses.anchor(ledger.origin)
        verdict = await self.db.read(verify_log, self.db, ledger.public_key, anchor)
        log.info("console.audit_verified", actor=who.actor, ok=verdict.ok, anchor=against)
        return await self._audit_page(request, who, verdict, against if anchor else "")

    async def log_tile(self, request: Request) -> Response:
        """C2SP tlog-tiles under /log (ackhub.audit.tiles): hash tiles for anyone (they hold only hashes);
        entry bundles, the events themselves, for headquarters staff (session cookie or Bearer token)."""
        ledger = self.hub.ledger
        assert ledger is not None
        try:
            tile = parse_tile_path(request.path_params["path"])
        except TilePathError as error:
            return Response(f"{error}\n", status_code=404, media_type="text/plain")
        if tile.is_entries:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            who = self.principal(request)
            if who is None and bearer:
                with contextlib.suppress(Unauthenticated):
                    who = self.sessions.principal(bearer)
            if who is None or not policy.in_jurisdiction(who, ""):
                return Response(
                    "entry bundles are for headquarters staff\n", status_code=403, media_type="text/plain"
                )
        try:
            body = await self.db.run(ledger.tile, tile)
        except NotFound:
            return Response("beyond the newest checkpoint\n", status_code=404, media_type="text/plain")
        headers = {
            "Cache-Control": "public, max-age=31536000, immutable" if not tile.is_entries else "private"
        }
        return Response(body, media_type="application/octet-stream", headers=headers)

    async def metrics_endpoint(self, request: Request) -> Response:
        body = await self.db.read(self.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    def app(self) -> Starlette:
        page, action = self.page, self.action
        cases = CasesPage(self)
        return Starlette(
            routes=[
                Route("/", page(self.overview)),
                Route("/signin", self.signin_form, methods=["GET"]),
                Route("/signin", self.signin, methods=["POST"]),
                Route("/signout", action(self.signout), methods=["POST"]),
                Route("/lang/{code}", self.language),
                Route("/feed", page(self.feed)),
                Route("/feed/events", self.feed_events),
                Route("/records/{record_id}", page(self.record)),
                Route("/escalations", page(self.escalations)),
                Route("/escalations/{escalation_id}/{what}", action(self.case_action), methods=["POST"]),
                Route("/cases", page(cases.list)),
                Route("/cases/{case_id}", page(cases.detail)),
                Route("/cases/{case_id}/{what}", action(cases.act), methods=["POST"]),
                Route("/cases/{case_id}/messages/{message_id}/files/{index:int}", page(cases.attachment)),
                Route("/agencies", page(self.agencies)),
                Route("/permits", page(self.permits)),
                Route("/audit", page(self.audit)),
                Route("/audit/verify", action(self.audit_verify), methods=["POST"]),
                Route("/audit/checkpoint", self.audit_checkpoint),
                Route("/log/checkpoint", self.audit_checkpoint),
                Route("/log/tile/{path:path}", self.log_tile),
                Route("/metrics", self.metrics_endpoint),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ]
        )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the hub's process owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleServer:
    """Serves the console on `[console] listen` inside the running hub's event loop."""

    def __init__(self, hub: HubServer, session_secret: bytes) -> None:
        """`session_secret`: the deployment's, shared by every hub process (ackhub.hub.store.cluster), so a
        session cookie made by one process is good on the others behind the same address."""
        settings = hub.settings
        assert settings.console is not None and hub.exchange is not None
        self.listen = settings.console.listen

        def deployment() -> dict[str, AgencyStatus]:  # blocking, as the whole scrape is
            return hub.deployment(hub.clock.now_ms())[1]

        metrics = Metrics(hub.db, hub.clock, deployment, [a.id for a in settings.agencies], hub.registry)
        hub.exchange.ack_observers.append(metrics.observe_ack)
        hub.exchange.deprecation_observers.append(metrics.observe_deprecated)
        if hub.witnesses is not None and hub.witnesses.configs:
            metrics.registry.register(WitnessCollector(hub.witnesses))
        tokens = tokens_from_settings(settings, hub.clock)
        self.console = Console(hub, Sessions(tokens, session_secret), metrics)
        self.portal = None
        if settings.portal is not None:  # the enterprise portal, under /portal (hub/portal/)
            from ackhub.hub.portal.server import make_portal

            self.portal = make_portal(hub, session_secret, tokens)
        self.port = 0
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # several hub processes, one address
        sock.bind((host, int(port)))
        self.port = sock.getsockname()[1]
        app = self.console.app()
        if self.portal is not None:
            app.router.routes.insert(0, Mount("/portal", self.portal.app()))
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + 10
        while not self._server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                raise OSError(f"the console could not listen on {self.listen}")
            await asyncio.sleep(0.01)
        log.info("console.started", listen=self.listen, port=self.port)
        return self.port

    async def stop(self) -> None:
        self.console.stopping.set()  # ends the live feeds' streams
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
