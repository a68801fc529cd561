"""The signed webhook connector: each attempt is an HTTPS `POST` of the delivery as JSON to the agency's
URL, signed by the hub; the agency's 2xx answer carries its signed receipt (the RECEIVED acknowledgement).

Request headers (the body is `envelope(outbound)` as compact JSON):

    Ackhub-Delivery-Id: <delivery id>
    Ackhub-Timestamp:   <Unix milliseconds when the hub signed>
    Ackhub-Key-Id:      <id of the hub's key>
    Ackhub-Signature:   ed25519=<base64 Ed25519 signature over "<delivery id>.<timestamp>.<body bytes>">

Answers the hub understands:

- 2xx with `{"status", "reason", "key_id", "time", "signature"}`: the agency's acknowledgement, signed over
  the canonical text ackhub-ack/v1 (hub.signing) of this delivery;
- 429 or 503 with `Retry-After` (seconds or an HTTP date): hold this delivery and the agency's others back;
- any status with `{"abort": "<reason>"}`: stop retrying this delivery and escalate it to people;
- anything else (an error status, garbage, a bad signature, a timeout, no connection): unanswered; retried.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit.times import parse_rfc3339_ms, to_rfc3339_ms
from ackhub.connectors._push import Answer, PushConnector
from ackhub.connectors.config import Webhook
from ackhub.core.clock import Clock
from ackhub.core.connector import AckInput, Outbound

DELIVERY_HEADER = "Ackhub-Delivery-Id"
TIMESTAMP_HEADER = "Ackhub-Timestamp"
KEY_HEADER = "Ackhub-Key-Id"
SIGNATURE_HEADER = "Ackhub-Signature"
MAX_RETRY_AFTER_MS = 24 * 3_600_000


def envelope(outbound: Outbound) -> dict[str, Any]:
    """The JSON body of one attempt."""
    record = outbound.record
    return {
        "delivery_id": outbound.delivery_id,
        "attempt": outbound.attempt,
        "required_level": outbound.required_level,
        "record": {
            "record_id": record.id,
            "record_type": record.record_type,
            "publisher": record.publisher,
            "subject_uscc": record.subject_uscc or "",
            "declaration_number": record.declaration_number or "",
            "content_type": record.content_type,
            "digest": f"sha256:{record.digest}",
            "accept_time": to_rfc3339_ms(record.accepted_ms),
            "schema_version": record.schema_version,
            "payload_base64": base64.b64encode(record.payload).decode(),
        },
    }


def signed_text(delivery_id: str, timestamp: str, body: bytes) -> bytes:
    """What the hub's signature covers: `<delivery id>.<timestamp>.<body>`."""
    return f"{delivery_id}.{timestamp}.".encode() + body


def retry_after_ms(value: str | None, now_ms: int) -> int:
    """`Retry-After` as milliseconds from now (0 when absent or unreadable), capped at a day."""
    if not value:
        return 0
    value = value.strip()
    if value.isdigit():
        wait = int(value) * 1000
    else:
        try:
            wait = int(parsedate_to_datetime(value).timestamp() * 1000) - now_ms
        except (TypeError, ValueError):
            return 0
    return max(0, min(wait, MAX_RETRY_AFTER_MS))


def read_answer(agency: str, outbound: Outbound, response: httpx.Response, now_ms: int) -> Answer:
    """Turn the agency's HTTP answer into an `Answer` (never raises)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("abort"), str):
        return Answer(abort_reason=body["abort"][:2000])
    if response.status_code in (429, 503):
        wait = retry_after_ms(response.headers.get("retry-after"), now_ms)
        if wait:
            return Answer(retry_after_ms=wait)
    if not 200 <= response.status_code < 300:
        return Answer(failure=f"HTTP {response.status_code}")
    if not isinstance(body, dict):
        return Answer(failure=f"HTTP {response.status_code} without a JSON receipt")
    try:
        return Answer(
            ack=AckInput(
                delivery_id=outbound.delivery_id,
                record_id=outbound.record.id,
                digest=f"sha256:{outbound.record.digest}",
                recipient=agency,
                key_id=str(body["key_id"]),
                status=str(body["status"]),
                reason=str(body.get("reason", "")),
                time_ms=parse_rfc3339_ms(str(body["time"])),
                signature=base64.b64decode(str(body["signature"]), validate=True),
            )
        )
    except (KeyError, ValueError) as error:
        return Answer(failure=f"malformed receipt: {error!r}")


class WebhookConnector(PushConnector):
    name = "webhook"

    def __init__(
        self, webhooks: Mapping[str, Webhook], hub_key: Ed25519PrivateKey, hub_key_id: str, clock: Clock
    ) -> None:
        super().__init__({agency: hook.concurrency for agency, hook in webhooks.items()})
        self.webhooks = dict(webhooks)
        self.hub_key = hub_key
        self.hub_key_id = hub_key_id
        self.clock = clock
        self._clients = {agency: self._client(hook) for agency, hook in webhooks.items()}

    @staticmethod
    def _client(hook: Webhook) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if hook.ca_file:
            verify = ssl.create_default_context(cafile=hook.ca_file)
        return httpx.AsyncClient(verify=verify, timeout=hook.timeout / 1000, follow_redirects=False)

    def sign(self, delivery_id: str, body: bytes) -> dict[str, str]:
        """The headers of one attempt: delivery id, timestamp, key id and the hub's signature."""
        timestamp = str(self.clock.now_ms())
        signature = self.hub_key.sign(signed_text(delivery_id, timestamp, body))
        return {
            "Content-Type": "application/json",
            DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: timestamp,
            KEY_HEADER: self.hub_key_id,
            SIGNATURE_HEADER: "ed25519=" + base64.b64encode(signature).decode(),
        }

    async def deliver(self, agency: str, outbound: Outbound) -> None:
        body = json.dumps(envelope(outbound), separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await self._clients[agency].post(
                self.webhooks[agency].url, content=body, headers=self.sign(outbound.delivery_id, body)
            )
        except httpx.HTTPError as error:
            answer = Answer(failure=f"{type(error).__name__}: {error}")
        else:
            answer = read_answer(agency, outbound, response, self.clock.now_ms())
        await self.settle(agency, outbound, answer)

    async def aclose(self) -> None:
        await super().aclose()
        for client in self._clients.values():
            await client.aclose()
