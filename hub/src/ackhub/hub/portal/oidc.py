"""OpenID Connect sign-in for the portal: the authorization code flow with PKCE (RFC 7636, S256), the
production path beside the enterprise-token form.

Authlib builds the protocol's messages (the authorization request, the PKCE challenge, the token
request); joserfc — Authlib's JOSE library — checks the ID token's signature against the provider's JWKS;
httpx (the hub's HTTP client) talks to the provider. Authlib's own httpx integration is not used: in
this Authlib it warns that it wants the `httpx2` package.

The ID token must come from the configured issuer, for this client (`aud`), with the `nonce` this sign-in
sent, unexpired, and carry the enterprise's USCC (`[portal] oidc_uscc_claim`, check character verified):
the portal session is scoped to that USCC."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ackhub.core.identifiers import check_uscc
from ackhub.hub.config import Portal as PortalSettings

ALGORITHMS = ["RS256", "ES256", "EdDSA", "PS256"]
METADATA_TTL_S = 3600


class OidcError(Exception):
    """Sign-in through the provider failed; the message says why, for the person signing in."""


@dataclass(frozen=True)
class Pending:
    """What the hub keeps (sealed in a cookie) between sending the browser to the provider and its return."""

    state: str
    nonce: str
    verifier: str
    next: str


@dataclass(frozen=True)
class Identity:
    uscc: str
    subject: str
    expires_s: int


class OidcClient:
    def __init__(self, settings: PortalSettings, timeout_s: float = 10.0) -> None:
        assert settings.oidc_issuer is not None
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self.uscc_claim = settings.oidc_uscc_claim
        self.scope = settings.oidc_scope
        self.timeout_s = timeout_s
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                answer = await client.get(url)
            answer.raise_for_status()
            found = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise OidcError(
                f"the identity provider is unreachable or answered badly ({url}): {error}"
            ) from None
        if not isinstance(found, dict):
            raise OidcError(f"the identity provider answered something that is not a JSON object ({url})")
        return found

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, cached for an hour; its issuer must be the configured one."""
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL_S:
            found = await self._get(f"{self.issuer}/.well-known/openid-configuration")
            if str(found.get("issuer", "")).rstrip("/") != self.issuer:
                raise OidcError(f"the provider calls itself {found.get('issuer')!r}, not {self.issuer!r}")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(key), str):
                    raise OidcError(f"the provider's discovery document lacks {key}")
            self._metadata, self._metadata_at, self._keys = found, time.monotonic(), None
        return self._metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            found = await self._get((await self.metadata())["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(found)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as error:
                raise OidcError(f"the provider's keys cannot be read: {error}") from None
        return self._keys

    async def start(self, redirect_uri: str, next_path: str) -> tuple[str, Pending]:
        """Where to send the browser, and what to keep until it returns."""
        metadata = await self.metadata()
        pending = Pending(generate_token(32), generate_token(32), generate_token(64), next_path)
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            client_id=self.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self.scope,
            state=pending.state,
            nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.verifier),
            code_challenge_method="S256",
        )
        return str(url), pending

    async def finish(self, redirect_uri: str, code: str, pending: Pending) -> Identity:
        """Exchange the code (with the PKCE verifier) for tokens and check the ID token."""
        metadata = await self.metadata()
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=pending.verifier,
            client_id=self.client_id,
            **({"client_secret": self.client_secret} if self.client_secret else {}),
        )
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                answer = await client.post(
                    metadata["token_endpoint"],
                    content=body,
                    headers={
                        "content-type": "application/x-www-form-urlencoded",
                        "accept": "application/json",
                    },
                )
            tokens = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise OidcError(f"the identity provider's token endpoint failed: {error}") from None
        if answer.status_code != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
            why = tokens.get("error_description") or tokens.get("error") if isinstance(tokens, dict) else ""
            raise OidcError(f"the identity provider refused the sign-in (HTTP {answer.status_code}): {why}")
        return await self._identity(str(tokens["id_token"]), pending)

    async def _identity(self, id_token: str, pending: Pending) -> Identity:
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(), algorithms=ALGORITHMS)
            except JoseError:  # a key the provider added since: read its keys again, once
                token = jwt.decode(id_token, await self._key_set(refresh=True), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": pending.nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as error:
            raise OidcError(f"the ID token is not valid: {error}") from None
        claims = token.claims
        uscc = claims.get(self.uscc_claim)
        problem = check_uscc(uscc) if isinstance(uscc, str) else f"no {self.uscc_claim!r} claim"
        if problem:
            raise OidcError(f"USCC: {problem}")
        return Identity(str(uscc), str(claims["sub"]), int(claims["exp"]))
