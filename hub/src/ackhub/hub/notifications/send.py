"""Sending the notifications the outbox made (ackhub.hub.notifications.outbox), by webhook or e-mail.

One pass (`run_once`): announce what the audit log holds beyond the cursor, then claim the notifications
that are due — a lease (their `next_attempt_ms` pushed past the send timeout) so that another hub process
does not send the same one meanwhile — send them, and record each attempt in the delivery log.

- Webhooks follow Standard Webhooks, signed with the `standardwebhooks` reference implementation:
  `webhook-id` (the notification's id, the same on every attempt), `webhook-timestamp`, and
  `webhook-signature` (`v1,` HMAC-SHA256 under the subscription's `whsec_` secret). A 2xx answer delivers;
  anything else, or no answer, is retried with exponential backoff. The host is resolved and checked at
  send time (ackhub.hub.notifications.targets) and the request goes to the address that was checked.
- E-mail goes out over SMTP (`[notifications] smtp_*`), in English and Chinese, with the notification's id
  as its Message-ID.
- An endpoint that has failed without a single success for `disable_after` is disabled (and audited); its
  notifications wait until the enterprise re-enables it.

At-least-once: a process that stops between sending and recording sends again after the lease, with the
same `webhook-id`, which is what Standard Webhooks receivers deduplicate on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import structlog
from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook

from ackhub.audit.times import to_rfc3339_ms
from ackhub.core.clock import Clock
from ackhub.hub.config import Notifications as NotificationSettings
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.notifications import outbox
from ackhub.hub.notifications.outbox import ACTIVE, DELIVERED, DISABLED, PENDING
from ackhub.hub.notifications.subscriptions import EMAIL, WEBHOOK
from ackhub.hub.notifications.targets import Resolved, TargetRefused, resolve_webhook
from ackhub.hub.store.db import Database
from ackhub.hub.store.portal_models import NotificationAttemptRow, NotificationRow, SubscriptionRow

log = structlog.get_logger("ackhub.notifications")
BATCH = 50  # notifications claimed per pass
PARALLEL = 16  # sent at once (webhook endpoints answer in tens to hundreds of ms)
FAILED, REFUSED = "FAILED", "REFUSED"
Resolver = Callable[[str, bool], Resolved]


@dataclass(frozen=True)
class Due:
    """A claimed notification and where it goes (a snapshot: sending happens outside any transaction)."""

    id: str
    attempt: int
    event: str
    record_id: str
    payload: str
    subscription_id: str
    channel: str
    target: str
    secret: str


@dataclass(frozen=True)
class Outcome:
    due: Due
    outcome: str  # DELIVERED, FAILED, REFUSED
    status_code: int | None
    detail: str
    duration_ms: int


@dataclass(frozen=True)
class Pass:
    announced: int
    sent: list[Outcome]


class NotificationService:
    def __init__(
        self,
        settings: NotificationSettings,
        db: Database,
        clock: Clock,
        agency_names: dict[str, str],
        secure: bool,
        resolver: Resolver = resolve_webhook,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.agency_names = agency_names
        self.secure = secure
        self.resolver = resolver  # replaceable in tests: which addresses a name resolves to
        self.lease_ms = settings.timeout + 30_000
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = (
            None  # made on first send (loading the CA bundle costs ~40 ms)
        )

    # -- the loop ----------------------------------------------------------------------------------
    def start(self, interval_ms: int) -> None:
        self._task = asyncio.create_task(self._run(interval_ms))

    async def _run(self, interval_ms: int) -> None:
        while not self._stopping.is_set():
            try:
                if len((await self.run_once()).sent) == BATCH:
                    continue  # more may be due: no pause while there is a backlog
            except Exception:
                log.exception("notifications.pass_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval_ms / 1000)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._client is not None:
            await self._client.aclose()

    async def run_once(self) -> Pass:
        """Announce what is new in the audit log, then send what is due."""
        announced = 0
        while True:
            made = await self.db.run(outbox.fan_out, self.db, self.clock.now_ms(), self.agency_names)
            announced += made
            if not made and not await self.db.run(outbox.pending_leaves, self.db):
                break
        due = await self.db.run(self._claim, self.clock.now_ms())
        limit = asyncio.Semaphore(PARALLEL)

        async def one(item: Due) -> Outcome:
            async with limit:
                return await self._send(item)

        outcomes = list(await asyncio.gather(*(one(d) for d in due)))
        if outcomes:
            await self.db.run(self._record, outcomes, self.clock.now_ms())
        return Pass(announced, outcomes)

    # -- claiming ----------------------------------------------------------------------------------
    def _claim(self, now_ms: int) -> list[Due]:
        with self.db.transaction() as session:
            query = (
                select(NotificationRow, SubscriptionRow)
                .join(SubscriptionRow, col(SubscriptionRow.id) == col(NotificationRow.subscription_id))
                .where(
                    NotificationRow.state == PENDING,
                    col(NotificationRow.next_attempt_ms) <= now_ms,
                    SubscriptionRow.state == ACTIVE,
                )
                .order_by(col(NotificationRow.next_attempt_ms))
                .limit(BATCH)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(of=NotificationRow, skip_locked=True)
            claimed = []
            for note, subscription in session.exec(query):
                note.attempts += 1
                note.next_attempt_ms = now_ms + self.lease_ms
                session.add(note)
                claimed.append(
                    Due(
                        note.id,
                        note.attempts,
                        note.event,
                        note.record_id,
                        note.payload,
                        subscription.id,
                        subscription.channel,
                        subscription.target,
                        subscription.secret,
                    )
                )
        return claimed

    # -- sending -----------------------------------------------------------------------------------
    async def _send(self, due: Due) -> Outcome:
        started = time.monotonic()

        def done(outcome: str, status: int | None, detail: str) -> Outcome:
            return Outcome(due, outcome, status, detail[:500], int((time.monotonic() - started) * 1000))

        try:
            if due.channel == WEBHOOK:
                status = await self._webhook(due)
                if 200 <= status < 300:
                    return done(DELIVERED, status, f"HTTP {status}")
                return done(FAILED, status, f"the endpoint answered HTTP {status}")
            if due.channel == EMAIL:
                answer = await asyncio.to_thread(self._mail, due)
                return done(DELIVERED, None, answer)
            return done(REFUSED, None, f"unknown channel {due.channel!r}")
        except TargetRefused as refused:
            return done(REFUSED, None, str(refused))
        except (httpx.HTTPError, OSError, smtplib.SMTPException) as error:
            return done(FAILED, None, f"{type(error).__name__}: {error}")

    async def _webhook(self, due: Due) -> int:
        resolved = await asyncio.to_thread(self.resolver, due.target, self.secure)
        now = datetime.fromtimestamp(self.clock.now_ms() // 1000, UTC)
        body = due.payload.encode()
        headers = {
            "webhook-id": due.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(due.secret).sign(due.id, now, body),
            "content-type": "application/json",
            "user-agent": "ackhub-notifications/1",
        }
        url, extensions = _pinned(due.target, resolved)
        if url != due.target:
            headers["host"] = httpx.URL(due.target).netloc.decode()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.timeout / 1000, follow_redirects=False)
        response = await self._client.post(url, content=body, headers=headers, extensions=extensions)
        return response.status_code

    def _mail(self, due: Due) -> str:
        settings = self.settings
        data = json.loads(due.payload)
        message = EmailMessage()
        message["From"] = settings.mail_from
        message["To"] = due.target
        message["Subject"] = _subject(data)
        message["Message-ID"] = f"<{due.id}@ackhub>"
        message.set_content(_mail_text(data, due.id))
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout / 1000) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password)
            refused = smtp.send_message(message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
        return f"accepted by {settings.smtp_host}:{settings.smtp_port}"

    # -- recording ---------------------------------------------------------------------------------
    def _record(self, outcomes: list[Outcome], now_ms: int) -> None:
        settings = self.settings
        with self.db.transaction() as session:
            for result in outcomes:
                due = result.due
                session.add(
                    NotificationAttemptRow(
                        notification_id=due.id,
                        subscription_id=due.subscription_id,
                        attempt=due.attempt,
                        time_ms=now_ms,
                        outcome=result.outcome,
                        status_code=result.status_code,
                        detail=result.detail,
                        duration_ms=result.duration_ms,
                    )
                )
                note = session.get(NotificationRow, due.id)
                subscription = session.get(SubscriptionRow, due.subscription_id)
                if note is None or subscription is None:
                    continue  # the subscription was deleted meanwhile
                if result.outcome == DELIVERED:
                    note.state, note.delivered_ms, note.next_attempt_ms = DELIVERED, now_ms, None
                    note.last_error = ""
                    subscription.failing_since_ms = None
                else:
                    wait = min(
                        settings.retry_max_interval,
                        int(settings.retry_first_interval * settings.retry_multiplier ** (due.attempt - 1)),
                    )
                    note.next_attempt_ms = now_ms + wait
                    note.last_error = result.detail
                    if subscription.failing_since_ms is None:
                        subscription.failing_since_ms = now_ms
                    elif (
                        subscription.state == ACTIVE
                        and now_ms - subscription.failing_since_ms >= settings.disable_after
                    ):
                        self._disable(session, subscription, result, now_ms)
                session.add(note)
                session.add(subscription)
                log.info(
                    "notification.attempt",
                    notification_id=due.id,
                    subscription_id=due.subscription_id,
                    record_id=due.record_id,
                    attempt=due.attempt,
                    outcome=result.outcome,
                    detail=result.detail,
                )

    def _disable(self, session: Any, subscription: SubscriptionRow, result: Outcome, now_ms: int) -> None:
        assert subscription.failing_since_ms is not None
        subscription.state = DISABLED
        subscription.updated_ms = now_ms
        subscription.disabled_reason = (
            f"failing since {to_rfc3339_ms(subscription.failing_since_ms)} without a success; "
            f"last: {result.detail}"
        )[:1000]
        audit_log.append(
            session,
            kind="subscription.disabled",
            actor="system:hub",
            time_ms=now_ms,
            data={
                "subscription_id": subscription.id,
                "uscc": subscription.uscc,
                "reason": subscription.disabled_reason,
            },
        )
        log.warning("subscription.disabled", subscription_id=subscription.id, uscc=subscription.uscc)


def _pinned(url: str, resolved: Resolved) -> tuple[str, dict[str, Any]]:
    """The URL to send to: its host replaced by the address that was checked (so a second lookup cannot
    lead elsewhere), with TLS still checking the certificate against the host name (SNI)."""
    parsed = httpx.URL(url)
    if parsed.host == resolved.address or not resolved.address:
        return url, {}
    literal = f"[{resolved.address}]" if ":" in resolved.address else resolved.address
    pinned = str(parsed.copy_with(host=literal.strip("[]")))
    return pinned, ({"sni_hostname": resolved.host} if resolved.scheme == "https" else {})


_EVENT_WORDS = {
    "RECEIVED": ("received by {agency}", "{agency} 已签收"),
    "ACCEPTED": ("accepted by {agency}", "{agency} 已受理"),
    "REJECTED": ("rejected by {agency}", "{agency} 已退回"),
    "ESCALATED": ("escalated to the hub's staff", "已转交中心工作人员"),
}


_CASE_WORDS = {
    "opened": ("case {case} opened by {author}", "{author} 开立案件 {case}"),
    "message": ("case {case}: a message from {author}", "案件 {case}：{author} 的新消息"),
    "resolved": ("case {case} resolved by {author}", "案件 {case} 已由 {author} 结案"),
    "withdrawn": ("case {case} withdrawn by {author}", "案件 {case} 已由 {author} 撤回"),
    "reopened": ("case {case} reopened by {author}", "案件 {case} 已由 {author} 重新开启"),
}


def _case_words(facts: dict[str, Any]) -> tuple[str, str]:
    en, zh = _CASE_WORDS.get(facts.get("change", ""), ("case {case} changed", "案件 {case} 有变更"))
    values = {"case": facts.get("case_id", ""), "author": facts.get("author", "")}
    return en.format(**values), zh.format(**values)


def _subject(data: dict[str, Any]) -> str:
    facts = data["data"]
    if facts["event"] == "CASE_MESSAGE":
        en, zh = _case_words(facts)
        return f"[ackhub] {facts.get('declaration_number') or facts['record_id']}: {en} / {zh}"
    en, zh = _EVENT_WORDS.get(facts["event"], ("changed", "有变更"))
    agency = facts.get("agency_name") or facts.get("agency") or ""
    number = facts.get("declaration_number") or facts["record_id"]
    return f"[ackhub] {number}: {en.format(agency=agency)} / {zh.format(agency=agency)}"


def _mail_text(data: dict[str, Any], notification_id: str) -> str:
    facts = data["data"]
    en, zh = _EVENT_WORDS.get(facts["event"], ("changed", "有变更"))
    agency = facts.get("agency_name") or facts.get("agency") or ""
    en, zh = en.format(agency=agency), zh.format(agency=agency)
    if facts["event"] == "CASE_MESSAGE":
        en, zh = _case_words(facts)
    reason = facts.get("reason") or ""
    lines = [
        f"Record {facts['record_id']} ({facts['record_type']}), declaration {facts['declaration_number'] or '-'}:",
        f"  {en} at {data['timestamp']}" + (f": {reason}" if reason else ""),
        "",
        f"记录 {facts['record_id']}（{facts['record_type']}），报关单号 {facts['declaration_number'] or '-'}：",
        f"  {data['timestamp']} {zh}" + (f"：{reason}" if reason else ""),
        "",
        f"notification {notification_id}, audit event {facts['audit_index']}",
    ]
    return "\n".join(lines) + "\n"
