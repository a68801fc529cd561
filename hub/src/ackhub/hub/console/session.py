"""Signing in to the console: an operator's JWT kept in an HttpOnly, SameSite=Strict cookie, checked on
every request against the hub's clock, and a CSRF token derived from it for every form that acts."""

from __future__ import annotations

import hashlib
import hmac

from ackhub.audit.acks import load_public_key
from ackhub.core.clock import Clock
from ackhub.core.errors import Unauthenticated
from ackhub.core.principal import Principal
from ackhub.hub.auth.identity import HEADQUARTERS
from ackhub.hub.auth.jwt import Tokens
from ackhub.hub.config import Settings

SESSION_COOKIE = "ackhub_console"
LANG_COOKIE = "ackhub_lang"
STAFF = frozenset({"operator", "administrator"})


def tokens_from_settings(settings: Settings, clock: Clock) -> Tokens | None:
    """The verifier the gRPC guard uses, built the same way; None when the hub accepts no tokens."""
    auth = settings.auth
    if not (auth.jwks_file or auth.enterprise_jwt_public_key):
        return None
    default = auth.enterprise_jwt_public_key
    return Tokens(
        clock,
        issuer=auth.enterprise_jwt_issuer,
        audience=auth.enterprise_jwt_audience,
        jwks_file=auth.jwks_file,
        default_key=load_public_key(default) if default else None,
        max_lifetime_ms=auth.max_token_lifetime,
    )


class Sessions:
    """Turns the session cookie into an operator or administrator `Principal`."""

    def __init__(self, tokens: Tokens | None, secret: bytes) -> None:
        self.tokens = tokens
        self._secret = secret

    def principal(self, token: str) -> Principal:
        """The staff principal the token vouches for; Unauthenticated otherwise (expired, forged, wrong role)."""
        if self.tokens is None:
            raise Unauthenticated("this hub accepts no tokens", reason="TOKENS_NOT_CONFIGURED")
        claims = self.tokens.verify(token.strip())
        if claims.role not in STAFF:
            raise Unauthenticated(
                f"a {claims.role} token cannot sign in to the console", reason="NOT_AN_OPERATOR"
            )
        jurisdiction = claims.jurisdiction if claims.role == "operator" else HEADQUARTERS
        return Principal(
            "operator" if claims.role == "operator" else "administrator", claims.subject, jurisdiction
        )

    def csrf(self, token: str) -> str:
        """The CSRF token of a session: an HMAC of its cookie under this process's secret."""
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, token: str, submitted: str) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf(token), submitted)
