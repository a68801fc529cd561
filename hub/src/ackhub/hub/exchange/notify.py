"""Telling people about escalations: every notice becomes a structured log event, and goes to the
notifiers its ladder rung names (`log`, or a configured webhook). A failing notifier is logged and never
blocks the exchange."""

from __future__ import annotations

from typing import Protocol

import httpx
import structlog

from ackhub.hub.config import Notifier as NotifierSettings
from ackhub.hub.exchange.escalation import Notice

log = structlog.get_logger("ackhub.notify")


class Notifier(Protocol):
    async def notify(self, notice: Notice) -> None: ...


class WebhookNotifier:
    """POSTs the notice as JSON: `{"event": ..., "case": {...}}`."""

    def __init__(self, url: str, timeout_ms: int) -> None:
        self.url = url
        self.timeout = timeout_ms / 1000

    async def notify(self, notice: Notice) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.post(self.url, json={"event": notice.event, "case": notice.case})
            response.raise_for_status()


class Notifications:
    def __init__(self, configured: list[NotifierSettings]) -> None:
        self.notifiers: dict[str, Notifier] = {}
        for item in configured:
            self.notifiers[item.name] = WebhookNotifier(item.url, item.timeout)

    async def dispatch(self, notices: list[Notice]) -> None:
        for notice in notices:
            # Every notice is logged; a rung that names "log" makes it a warning people should see.
            emit = log.warning if "log" in notice.targets else log.info
            emit(
                notice.event,
                escalation_id=notice.case["escalation_id"],
                delivery_id=notice.case["delivery_id"],
                record_id=notice.case["record_id"],
                agency=notice.case["recipient"],
                level=notice.case["level"],
                targets=notice.targets,
            )
            for target in notice.targets:
                if target == "log":
                    continue  # that is the log line above
                try:
                    await self.notifiers[target].notify(notice)
                except Exception as exc:  # a notifier must never stop the exchange
                    log.error(
                        "notifier.failed",
                        notifier=target,
                        error=str(exc),
                        escalation_id=notice.case["escalation_id"],
                    )
