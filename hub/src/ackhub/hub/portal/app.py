"""The enterprise portal: a Starlette app mounted at /portal in the console's server (same process, same
event loop, same database and ledger). An enterprise signs in (its JWT, or OpenID Connect), then sees only
records whose subject is its USCC — every read goes through ackhub.hub.exchange.trace with an enterprise
`Principal`, the policy TraceService applies — their timelines in plain words, and their delivery proofs.
The verification page is public: anyone checks a proof with ackhub.hub.ledger.verify, the verifier of
`ackhub proof verify`, against the hub's own key and witness policy."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import segno
import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ackhub.audit.note import parse_vkey
from ackhub.audit.proofs import ProofVerdict, WitnessPolicy, verify_delivery_proof
from ackhub.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unauthenticated
from ackhub.core.principal import Principal
from ackhub.hub.auth.jwt import Tokens
from ackhub.hub.config import Portal as PortalSettings
from ackhub.hub.console import data
from ackhub.hub.console.i18n import LANGUAGES, choose
from ackhub.hub.exchange import trace
from ackhub.hub.exchange.states import DELIVERY_STATES
from ackhub.hub.ledger import proof
from ackhub.hub.notifications import subscriptions
from ackhub.hub.notifications.outbox import EVENTS
from ackhub.hub.notifications.subscriptions import NewSubscription
from ackhub.hub.portal import verdicts
from ackhub.hub.portal.cases import PortalCases
from ackhub.hub.portal.i18n import translator
from ackhub.hub.portal.ratelimit import RateLimiter
from ackhub.hub.portal.session import COOKIE_PATH, LANG_COOKIE, SESSION_COOKIE, PortalSession, Sealer
from ackhub.hub.store.portal_models import SubscriptionRow

if TYPE_CHECKING:
    from ackhub.hub.portal.oidc import OidcClient
    from ackhub.hub.server import HubServer

log = structlog.get_logger("ackhub.portal")
HERE = Path(__file__).parent
PREFIX = "/portal"
PAGE_SIZE = 20
OIDC_COOKIE = "ackhub_portal_oidc"
OIDC_PENDING_MS = 600_000  # a sign-in at the identity provider must come back within ten minutes
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)
Handler = Callable[[Request, PortalSession], Awaitable[Response]]


def _time(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _local(path: str) -> str:
    """A portal path to return to after sign-in or a language switch; the records page for anything else."""
    ok = path.startswith(PREFIX + "/") and not path.startswith("//") and "\\" not in path
    return path if ok else PREFIX + "/records"


def _day_ms(value: str, field: str, bad: list[tuple[str, str]], next_day: bool = False) -> int | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        bad.append((field, "is not a date (YYYY-MM-DD)"))
        return None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) + (
        timedelta(days=1) if next_day else timedelta()
    )
    return int(start.timestamp() * 1000)


@dataclass(frozen=True)
class Step:
    """One line of a recipient's timeline, in the reader's language."""

    time_ms: int
    kind: str
    sentence: str
    actor: str


def client_address(request: Request) -> str:
    """The address rate limits count by: the connection's peer (a proxy in front sets it right with
    uvicorn's --forwarded-allow-ips; the header alone is never trusted)."""
    return request.client.host if request.client else "unknown"


class Portal:
    def __init__(
        self, hub: HubServer, secret: bytes, tokens: Tokens | None, oidc: OidcClient | None = None
    ) -> None:
        settings = hub.settings.portal
        assert settings is not None
        self.hub = hub
        self.settings: PortalSettings = settings
        self.sealer = Sealer(secret)
        self.tokens = tokens
        self.oidc = oidc  # OpenID Connect sign-in, when [portal] oidc_issuer is set
        self.limiter = RateLimiter(hub.db, hub.clock, settings.rate_per_minute, settings.rate_burst)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,
        )
        self.env.filters["time"] = _time
        self.cases = PortalCases(self)
        self.env.globals["meaning"] = data.meaning
        self.env.globals["say"] = verdicts.say  # the verifier's English sentences in the reader's language
        self.agency_names = {a.id: a.name or a.id for a in hub.settings.agencies}
        witnesses = tuple(parse_vkey(w.key) for w in hub.settings.audit.witnesses)
        self.witness_policy = WitnessPolicy(witnesses, min(settings.witness_quorum, len(witnesses)))

    @property
    def db(self) -> Any:
        return self.hub.db

    def now(self) -> int:
        return self.hub.clock.now_ms()

    # -- plumbing ----------------------------------------------------------------------------------
    def lang(self, request: Request) -> str:
        return choose(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language", ""))

    def session(self, request: Request) -> PortalSession | None:
        value = request.cookies.get(SESSION_COOKIE)
        return self.sealer.open(value, self.now()) if value else None

    def render(
        self,
        request: Request,
        name: str,
        who: PortalSession | None = None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        lang = self.lang(request)
        value = request.cookies.get(SESSION_COOKIE, "")
        html = self.env.get_template(name).render(
            t=translator(lang),
            lang=lang,
            who=who,
            csrf=self.sealer.csrf(value) if who else "",
            path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            section=name.removesuffix(".html"),
            oidc=self.oidc is not None,
            token_signin=self.settings.token_signin,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=self.headers())

    @staticmethod
    def headers() -> dict[str, str]:
        return {
            "content-security-policy": CSP,
            "x-content-type-options": "nosniff",
            "referrer-policy": "same-origin",
            "cache-control": "no-store",
        }

    def message(self, request: Request, who: PortalSession | None, status: int, text: str) -> HTMLResponse:
        return self.render(request, "message.html", who, status, message=text)

    def to_signin(self, request: Request, expired: bool) -> Response:
        target = quote(_local(request.url.path), safe="/")
        response = RedirectResponse(f"{PREFIX}/signin?next={target}" + ("&expired=1" if expired else ""), 303)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A signed-in page: anyone else goes to the sign-in form."""

        async def endpoint(request: Request) -> Response:
            who = self.session(request)
            if who is None:
                return self.to_signin(request, expired=SESSION_COOKIE in request.cookies)
            return await handler(request, who)

        return endpoint

    def action(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A signed-in POST with a valid CSRF token; the handler finds the form's fields in request.state."""

        async def endpoint(request: Request) -> Response:
            who = self.session(request)
            if who is None:
                return self.to_signin(request, expired=True)
            # A form carries at most a case message's files: one that says it is longer is refused before
            # it is read (Starlette would spool files of any size to disk). Browsers say how long a form is;
            # a proxy that streams it chunked gets it read, and each file is cut at its limit (`uploads`).
            limit = self.max_form_bytes()
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                t = translator(self.lang(request))
                return self.message(request, who, 413, t("form.too_big", n=limit // 1024))
            form = await request.form()
            value = request.cookies.get(SESSION_COOKIE, "")
            if not self.sealer.csrf_ok(value, str(form.get("csrf", ""))):
                return self.message(request, who, 403, translator(self.lang(request))("bad_csrf"))
            request.state.form = {k: str(v) for k, v in form.multi_items() if isinstance(v, str)}
            request.state.lists = {k: [str(v) for v in form.getlist(k)] for k in form}
            request.state.files = [
                v for _, v in form.multi_items() if isinstance(v, UploadFile) and v.filename
            ]
            return await handler(request, who)

        return endpoint

    def max_form_bytes(self) -> int:
        """The largest form a signed-in page takes: a case message's files at their limits, and the rest."""
        limits = self.hub.settings.cases
        return limits.max_attachments * limits.max_attachment_bytes + 256 * 1024

    def start_session(self, request: Request, session: PortalSession, target: str) -> Response:
        log.info("portal.signed_in", uscc=session.uscc, subject=session.subject, via=session.via)
        response = RedirectResponse(target, 303)
        response.set_cookie(
            SESSION_COOKIE,
            self.sealer.seal(session),
            max_age=max(1, (session.expires_ms - self.now()) // 1000),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=COOKIE_PATH,
        )
        return response

    def base_url(self, request: Request) -> str:
        """Where people reach the portal: `[portal] public_url`, else this request's address."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/") + PREFIX

    # -- sign-in -----------------------------------------------------------------------------------
    async def signin_form(self, request: Request) -> Response:
        return self.render(
            request,
            "signin.html",
            next=_local(request.query_params.get("next", "")),
            expired=bool(request.query_params.get("expired")),
            failure="",
        )

    async def signin(self, request: Request) -> Response:
        """An enterprise JWT pasted into the form (development and tests; `[portal] token_signin`)."""
        t = translator(self.lang(request))
        form = await request.form()
        target = _local(str(form.get("next", "")))

        def refuse(status: int, why: str) -> Response:
            return self.render(request, "signin.html", None, status, next=target, expired=False, failure=why)

        if not await self.limiter.allow(f"signin:{client_address(request)}"):
            log.warning("portal.signin_limited", client=client_address(request))
            return refuse(429, t("signin.limited"))
        if not self.settings.token_signin or self.tokens is None:
            return refuse(403, t("signin.token_off"))
        token = str(form.get("token", "")).strip()
        try:
            claims = self.tokens.verify(token)
            if claims.role != "enterprise":
                raise Unauthenticated(
                    f"a {claims.role} token cannot sign in to the portal", reason="NOT_AN_ENTERPRISE"
                )
        except Unauthenticated as exc:
            log.info("portal.signin_refused", reason=exc.reason)
            return refuse(401, t("signin.failed", why=exc))
        expires_ms = self.now() + self.settings.session_lifetime
        with_exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))  # verified above
        expires_ms = min(expires_ms, int(with_exp["exp"]) * 1000)
        session = PortalSession(claims.subject, claims.subject, "token", expires_ms)
        return self.start_session(request, session, target)

    async def oidc_start(self, request: Request) -> Response:
        """Send the browser to the identity provider, keeping state, nonce and PKCE verifier in a sealed,
        short-lived cookie that only the callback reads. A link, not a form: the CSP's form-action 'self'
        rightly stops a form from being redirected to another site."""
        from ackhub.hub.portal.oidc import OidcError

        t = translator(self.lang(request))
        target = _local(request.query_params.get("next", ""))
        if self.oidc is None:
            return Response("OpenID Connect is not configured", 404)
        if not await self.limiter.allow(f"signin:{client_address(request)}"):
            return self.render(
                request, "signin.html", None, 429, next=target, expired=False, failure=t("signin.limited")
            )
        try:
            url, pending = await self.oidc.start(self.base_url(request) + "/oidc/callback", target)
        except OidcError as error:
            return self.render(
                request,
                "signin.html",
                None,
                502,
                next=target,
                expired=False,
                failure=t("signin.oidc_failed", why=error),
            )
        response = RedirectResponse(url, 303)
        sealed = self.sealer.seal_data(
            {"kind": "oidc", "state": pending.state, "nonce": pending.nonce, "verifier": pending.verifier,
             "next": pending.next, "until": self.now() + OIDC_PENDING_MS}
        )  # fmt: skip
        response.set_cookie(
            OIDC_COOKIE,
            sealed,
            max_age=OIDC_PENDING_MS // 1000,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=COOKIE_PATH + "/oidc",
        )
        return response

    async def oidc_callback(self, request: Request) -> Response:
        from ackhub.hub.portal.oidc import OidcError, Pending

        t = translator(self.lang(request))
        if self.oidc is None:
            return Response("OpenID Connect is not configured", 404)

        def refuse(status: int, why: str) -> Response:
            log.info("portal.oidc_refused", why=why)
            response = self.render(
                request,
                "signin.html",
                None,
                status,
                next=_local(""),
                expired=False,
                failure=t("signin.oidc_failed", why=why),
            )
            response.delete_cookie(OIDC_COOKIE, path=COOKIE_PATH + "/oidc")
            return response

        if not await self.limiter.allow(f"signin:{client_address(request)}"):
            return refuse(429, t("signin.limited"))
        kept = self.sealer.open_data(request.cookies.get(OIDC_COOKIE, ""))
        params = request.query_params
        if kept is None or kept.get("kind") != "oidc" or int(str(kept.get("until", 0))) <= self.now():
            return refuse(400, "this sign-in was not started here, or took too long; start again")
        if not params.get("state") or params.get("state") != kept.get("state"):
            return refuse(400, "the provider's answer does not belong to this sign-in (state)")
        if params.get("error"):
            return refuse(401, f"{params.get('error')}: {params.get('error_description', '')[:200]}")
        pending = Pending(
            str(kept["state"]), str(kept["nonce"]), str(kept["verifier"]), _local(str(kept["next"]))
        )
        try:
            found = await self.oidc.finish(
                self.base_url(request) + "/oidc/callback", params.get("code", ""), pending
            )
        except OidcError as error:
            return refuse(401, str(error))
        expires_ms = min(
            self.now() + self.settings.session_lifetime,
            found.expires_s * 1000 + self.settings.session_lifetime,
        )
        response = self.start_session(
            request, PortalSession(found.uscc, found.subject, "oidc", expires_ms), pending.next
        )
        response.delete_cookie(OIDC_COOKIE, path=COOKIE_PATH + "/oidc")
        return response

    async def signout(self, request: Request, who: PortalSession) -> Response:
        response = RedirectResponse(f"{PREFIX}/signin", 303)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    async def language(self, request: Request) -> Response:
        code = request.path_params["code"]
        response = RedirectResponse(_local(request.query_params.get("next", "")), 303)
        if code in LANGUAGES:
            response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax", path="/")
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/records", 303)

    # -- my records --------------------------------------------------------------------------------
    async def records(self, request: Request, who: PortalSession) -> Response:
        params = request.query_params
        t = translator(self.lang(request))
        declaration = params.get("declaration", "").strip()[:32]
        record_type = params.get("type", "").strip()[:128]
        state = params.get("state", "").strip()
        start, end = params.get("from", "").strip(), params.get("to", "").strip()
        bad: list[tuple[str, str]] = []
        start_ms = _day_ms(start, "from", bad)
        end_ms = _day_ms(end, "to", bad, next_day=True)
        if state and state not in DELIVERY_STATES:
            bad.append(("state", "unknown state"))
        filters = {"declaration": declaration, "type": record_type, "state": state, "from": start, "to": end}
        context: dict[str, Any] = {
            "filters": filters,
            "types": sorted(r.record_type for r in self.hub.settings.routes),
            "states": DELIVERY_STATES,
            "rows": [],
            "next_url": "",
            "first_url": "",
            "failure": "",
        }
        if bad:
            context["failure"] = t("records.bad", why="; ".join(f"{f}: {w}" for f, w in bad))
            return self.render(request, "records.html", who, 400, **context)
        token = params.get("page", "")[:512]
        try:
            page = await self.db.read(
                trace.list_records,
                self.db,
                Principal("enterprise", who.uscc),
                declaration_number=declaration,
                record_type=record_type,
                start_ms=start_ms,
                end_ms=end_ms,
                state=state,
                size=PAGE_SIZE,
                token=token,
            )
        except InvalidArgument as exc:
            why = "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
            context["failure"] = t("records.bad", why=why)
            return self.render(request, "records.html", who, 400, **context)
        kept = {k: v for k, v in filters.items() if v}
        context["rows"] = page.items
        if page.next_token:
            context["next_url"] = f"{PREFIX}/records?" + urlencode({**kept, "page": page.next_token})
        if token:
            context["first_url"] = f"{PREFIX}/records?" + urlencode(kept)
        return self.render(request, "records.html", who, **context, names=self.agency_names)

    # -- one record --------------------------------------------------------------------------------
    def steps(self, traced: trace.Traced, lang: str, who: PortalSession) -> dict[str, list[Step]]:
        """Each recipient's timeline (TraceRecord's facts) as sentences; a case's events name who acted."""
        t = translator(lang)
        publisher = self.agency_names.get(traced.record.publisher, traced.record.publisher)
        found: dict[str, list[Step]] = {}
        for delivery in traced.deliveries:
            agency = self.agency_names.get(delivery.recipient, delivery.recipient)
            found[delivery.id] = [
                Step(
                    e.time_ms,
                    e.kind,
                    t(
                        f"tl.{e.kind}",
                        agency=agency,
                        publisher=publisher,
                        reason=e.reason or "—",
                        actor=self.cases.party_name(e.actor, who, t),
                    ),
                    e.actor,
                )
                for e in traced.timelines[delivery.id]
            ]
        return found

    async def record(self, request: Request, who: PortalSession) -> Response:
        return await self.record_page(request, who)

    async def record_page(
        self,
        request: Request,
        who: PortalSession,
        status: int = 200,
        case_failure: str = "",
        case_form: dict[str, str] | None = None,
    ) -> Response:
        """The record's timeline, its proof links and its cases with the form to open one (shown again
        with `case_failure` and the words sent when opening one was refused)."""
        record_id = request.path_params["record_id"][:64]
        lang = self.lang(request)
        t = translator(lang)
        try:
            traced = await self.db.read(
                trace.trace_record, self.db, Principal("enterprise", who.uscc), record_id
            )
        except (NotFound, InvalidArgument):
            return self.message(request, who, 404, t("record.not_found"))
        cases = await self.cases.for_record(who, traced.record.id) if self.hub.cases is not None else []
        return self.render(
            request,
            "record.html",
            who,
            status,
            r=traced.record,
            deliveries=traced.deliveries,
            steps=self.steps(traced, lang, who),
            names=self.agency_names,
            cases=cases,
            can_open=self.hub.cases is not None,
            case_form=self.cases.open_form(traced, case_form),
            case_failure=case_failure,
            who_name=lambda party: self.cases.party_name(party, who, t),
        )

    async def _proof(self, request: Request, who: PortalSession) -> dict[str, Any] | Response:
        record_id = request.path_params["record_id"][:64]
        ledger = self.hub.ledger
        assert ledger is not None
        try:
            return await self.db.run(proof.build, ledger, Principal("enterprise", who.uscc), record_id)  # type: ignore[no-any-return]
        except (NotFound, InvalidArgument):
            return self.message(request, who, 404, translator(self.lang(request))("record.not_found"))

    async def proof_json(self, request: Request, who: PortalSession) -> Response:
        document = await self._proof(request, who)
        if isinstance(document, Response):
            return document
        name = f"proof-{document['record']['record_id']}.json"
        log.info("portal.proof_downloaded", uscc=who.uscc, record_id=document["record"]["record_id"])
        return Response(
            proof.dumps(document),
            media_type="application/json",
            headers={**self.headers(), "content-disposition": f'attachment; filename="{name}"'},
        )

    async def proof_summary(self, request: Request, who: PortalSession) -> Response:
        """One printable page: what the proof says, a link to exactly this proof file, and a QR code that
        opens the verification page for its record."""
        document = await self._proof(request, who)
        if isinstance(document, Response):
            return document
        body = proof.dumps(document)
        record = document["record"]
        verify_url = f"{self.base_url(request)}/verify?" + urlencode(
            {"record": record["record_id"], "digest": record["digest"]}
        )
        qr = segno.make(verify_url, error="m")
        return self.render(
            request,
            "proof.html",
            who,
            d=document,
            record=record,
            verify_url=verify_url,
            qr=qr.svg_data_uri(scale=4, border=2),
            file_sha256=hashlib.sha256(body).hexdigest(),
            file_href="data:application/json;base64," + base64.b64encode(body).decode(),
            file_name=f"proof-{record['record_id']}.json",
        )

    # -- public verification -----------------------------------------------------------------------
    def _verify_context(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        return {
            "expect_record": params.get("record", "")[:64],
            "expect_digest": params.get("digest", "")[:80],
            "quorum": self.witness_policy.quorum,
            "witness_count": len(self.witness_policy.witnesses),
        }

    async def verify_form(self, request: Request) -> Response:
        return self.render(
            request,
            "verify.html",
            self.session(request),
            verdict=None,
            problem="",
            **self._verify_context(request),
        )

    async def verify(self, request: Request) -> Response:
        """Public, without an account: no session is needed and nothing is stored, so there is nothing for
        a cross-site request to abuse; the rate limit keeps it from being a free CPU for anyone."""
        t = translator(self.lang(request))
        who = self.session(request)
        context = self._verify_context(request)

        def answer(
            status: int, problem: str = "", verdict: ProofVerdict | None = None, **more: Any
        ) -> Response:
            return self.render(
                request, "verify.html", who, status, verdict=verdict, problem=problem, **{**context, **more}
            )

        if not await self.limiter.allow(f"verify:{client_address(request)}"):
            log.warning("portal.verify_limited", client=client_address(request))
            return answer(429, t("verify.limited"))
        limit = self.settings.max_proof_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + 64 * 1024:
            return answer(413, t("verify.too_big", n=limit))
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=limit)
        except Exception as exc:  # starlette's MultiPartException and friends: a malformed upload
            return answer(400, t("verify.unreadable", why=str(exc)[:200]))
        raw = b""
        upload = form.get("proof")
        if isinstance(upload, UploadFile):
            raw = await upload.read(limit + 1)
        if not raw.strip():
            raw = str(form.get("text", "")).encode()
        if not raw.strip():
            return answer(400, t("verify.empty"))
        if len(raw) > limit:
            return answer(413, t("verify.too_big", n=limit))
        try:
            document = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            return answer(400, t("verify.not_json", why=str(exc)[:200]))
        if not isinstance(document, dict):
            return answer(400, t("verify.not_object"))
        ledger = self.hub.ledger
        assert ledger is not None
        verdict = verify_delivery_proof(document, ledger.public_key, self.witness_policy)
        record = document.get("record") if isinstance(document.get("record"), dict) else {}
        mismatch = ""
        expected = context["expect_record"]
        if expected and isinstance(record, dict) and record.get("record_id") != expected:
            mismatch = t("verify.mismatch", record=expected)
        log.info("portal.proof_checked", ok=verdict.ok and not mismatch, failures=len(verdict.failures))
        return answer(
            200 if verdict.ok and not mismatch else 422, "", verdict, mismatch=mismatch, shown=record
        )

    # -- notifications -----------------------------------------------------------------------------
    async def subscriptions(self, request: Request, who: PortalSession) -> Response:
        return await self._subscriptions_page(request, who)

    async def _subscriptions_page(
        self,
        request: Request,
        who: PortalSession,
        status: int = 200,
        failure: str = "",
        made: SubscriptionRow | None = None,
        form: dict[str, Any] | None = None,
    ) -> Response:
        caller = Principal("enterprise", who.uscc)
        rows, _ = await self.db.read(
            subscriptions.list_own, self.db, caller, subscriptions.MAX_PER_ENTERPRISE, ""
        )
        logs = {}
        for row in rows:
            logs[row.id], _ = await self.db.read(subscriptions.attempts, self.db, caller, row.id, 10, "")
        return self.render(
            request,
            "subscriptions.html",
            who,
            status,
            rows=rows,
            logs=logs,
            made=made,
            failure=failure,
            form=form or {},
            events=EVENTS,
            types=sorted(r.record_type for r in self.hub.settings.routes),
            done=request.query_params.get("done", ""),
        )

    async def subscribe(self, request: Request, who: PortalSession) -> Response:
        """Make a subscription; a refusal names the field and stores nothing."""
        form: dict[str, str] = request.state.form
        lists: dict[str, list[str]] = request.state.lists
        t = translator(self.lang(request))
        new = NewSubscription(
            channel=form.get("channel", ""),
            target=form.get("target", "")[:4096],
            record_type=form.get("record_type", "")[:128],
            declaration_number=form.get("declaration_number", "").strip()[:32],
            events=tuple(e[:32] for e in lists.get("events", [])),
        )
        assert self.hub.notifications is not None
        try:
            row = await self.db.run(
                subscriptions.create,
                self.db,
                Principal("enterprise", who.uscc),
                new,
                self.hub.subscription_rules(),
                self.now(),
            )
        except InvalidArgument as exc:
            why = "; ".join(f"{t('field.' + v.field)}: {v.description}" for v in exc.violations)
            return await self._subscriptions_page(request, who, 400, t("subs.refused", why=why), form=form)
        except FailedPrecondition as exc:
            return await self._subscriptions_page(
                request, who, 400, t("subs.refused", why=str(exc)), form=form
            )
        log.info("portal.subscribed", uscc=who.uscc, subscription_id=row.id, channel=row.channel)
        return await self._subscriptions_page(request, who, made=row)

    async def subscription_action(self, request: Request, who: PortalSession) -> Response:
        subscription_id = request.path_params["subscription_id"][:40]
        what = request.path_params["what"]
        caller = Principal("enterprise", who.uscc)
        try:
            if what == "enable":
                await self.db.run(subscriptions.enable, self.db, caller, subscription_id, self.now())
            elif what == "delete":
                await self.db.run(subscriptions.remove, self.db, caller, subscription_id, self.now())
            else:
                return Response("unknown action", 404)
        except (NotFound, InvalidArgument):
            return self.message(request, who, 404, translator(self.lang(request))("subs.not_found"))
        return RedirectResponse(f"{PREFIX}/subscriptions?done={what}", 303)

    def routes(self) -> list[Route | Mount]:
        page, action = self.page, self.action
        routes: list[Route | Mount] = [
            Route("/", self.home),
            Route("/signin", self.signin_form, methods=["GET"]),
            Route("/signin", self.signin, methods=["POST"]),
            Route("/signout", action(self.signout), methods=["POST"]),
            Route("/oidc/start", self.oidc_start, methods=["GET"]),
            Route("/oidc/callback", self.oidc_callback, methods=["GET"]),
            Route("/lang/{code}", self.language),
            Route("/records", page(self.records)),
            Route("/records/{record_id}", page(self.record)),
            Route("/records/{record_id}/proof.json", page(self.proof_json)),
            Route("/records/{record_id}/proof", page(self.proof_summary)),
            Route("/records/{record_id}/cases", action(self.cases.open), methods=["POST"]),
            Route("/cases", page(self.cases.list), methods=["GET"]),
            Route("/cases/{case_id}", page(self.cases.detail), methods=["GET"]),
            Route("/cases/{case_id}/{what}", action(self.cases.act), methods=["POST"]),
            Route(
                "/cases/{case_id}/messages/{message_id}/files/{index:int}",
                page(self.cases.attachment),
                methods=["GET"],
            ),
            Route("/subscriptions", page(self.subscriptions), methods=["GET"]),
            Route("/subscriptions", action(self.subscribe), methods=["POST"]),
            Route(
                "/subscriptions/{subscription_id}/{what}", action(self.subscription_action), methods=["POST"]
            ),
            Route("/verify", self.verify_form, methods=["GET"]),
            Route("/verify", self.verify, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="portal-static"),
        ]
        return routes

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())
