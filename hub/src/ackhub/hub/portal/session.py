"""Portal sessions: after a sign-in (an enterprise JWT, or OpenID Connect) the portal keeps its own small
session value in an HttpOnly, SameSite=Lax cookie scoped to /portal — the enterprise's USCC, who signed in,
how, and until when — sealed with an HMAC under the deployment's shared secret, so every hub process behind
one address accepts it and nobody can change the USCC in it. Every page reads the USCC from here and nowhere
else: an enterprise is its USCC for the whole session.

Lax rather than Strict: the OpenID Connect provider sends the browser back with a top-level GET, which must
find the sign-in state cookie; every form that changes something carries a CSRF token derived from the
session value (as in the console), so Lax weakens nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass

SESSION_COOKIE = "ackhub_portal"
LANG_COOKIE = "ackhub_lang"  # the console's: one language choice for both
COOKIE_PATH = "/portal"


@dataclass(frozen=True)
class PortalSession:
    uscc: str  # the enterprise every page is scoped to
    subject: str  # who signed in: the token's or the ID token's subject
    via: str  # "token" or "oidc"
    expires_ms: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals and opens session values (and the OIDC sign-in state) under keys derived from one secret."""

    def __init__(self, secret: bytes) -> None:
        self._session_key = hmac.new(secret, b"ackhub-portal-session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"ackhub-portal-csrf", hashlib.sha256).digest()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._session_key, body.encode(), hashlib.sha256).digest())

    def seal_data(self, data: dict[str, object]) -> str:
        body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._mac(body)}"

    def open_data(self, value: str) -> dict[str, object] | None:
        body, _, mac = value.partition(".")
        if not body or not hmac.compare_digest(self._mac(body), mac):
            return None
        try:
            data = json.loads(_unb64(body))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def seal(self, session: PortalSession) -> str:
        return self.seal_data({"kind": "session", **asdict(session)})

    def open(self, value: str, now_ms: int) -> PortalSession | None:
        """The session the cookie holds, if it is genuine and not expired; None otherwise."""
        data = self.open_data(value)
        if data is None or data.get("kind") != "session":
            return None
        try:
            session = PortalSession(
                str(data["uscc"]), str(data["subject"]), str(data["via"]), int(str(data["expires_ms"]))
            )
        except (KeyError, ValueError):
            return None
        return session if session.expires_ms > now_ms else None

    def csrf(self, value: str) -> str:
        """The CSRF token of a session: an HMAC of its cookie value."""
        return hmac.new(self._csrf_key, value.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, value: str, submitted: str) -> bool:
        return bool(value) and bool(submitted) and hmac.compare_digest(self.csrf(value), submitted)
