"""Principals and how the hub learns them (`[server] auth`).

- A connection with a verified client certificate (mutual TLS) is the agency the certificate names
  (ackhub.hub.auth.pki); nothing the caller sends in metadata changes that.
- `authorization: Bearer <JWT>` is whoever the token vouches for (ackhub.hub.auth.jwt): an agency, an
  enterprise (its USCC), an operator (with a jurisdiction) or an administrator.
- Only with `auth = "development"` (loopback only): callers name themselves in metadata
  (`x-ackhub-agency: tax`, `x-ackhub-operator: alice`, optionally `x-ackhub-jurisdiction: 0202`). This
  authenticates nothing and exists for local development and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ackhub.client.headers import AGENCY_HEADER, AUTHORIZATION_HEADER, JURISDICTION_HEADER, OPERATOR_HEADER
from ackhub.core.errors import Unauthenticated
from ackhub.core.principal import Principal
from ackhub.hub.auth.jwt import JURISDICTION, Tokens

HEADQUARTERS = "HQ"
Mode = Literal["development", "secure"]


class Authenticator:
    """Who is calling: from the client certificate, a bearer token, or (development only) metadata."""

    def __init__(self, mode: Mode, agency_ids: Iterable[str], tokens: Tokens | None = None) -> None:
        self.mode = mode
        self._agencies = frozenset(agency_ids)
        self._tokens = tokens

    def _agency(self, agency: str, how: str) -> Principal:
        if agency not in self._agencies:
            raise Unauthenticated(
                f"agency {agency[:64]!r} is not registered",
                reason="UNKNOWN_AGENCY",
                metadata={"agency": agency[:64], "via": how},
            )
        return Principal("agency", agency)

    def authenticate(
        self, metadata: Iterable[tuple[str, str | bytes]], certificate_agency: str | None = None
    ) -> Principal:
        if certificate_agency is not None:
            return self._agency(certificate_agency, "certificate")
        values = {key: value for key, value in metadata if isinstance(value, str)}
        authorization = values.get(AUTHORIZATION_HEADER)
        if authorization is not None:
            return self._bearer(authorization)
        if self.mode != "development":
            raise Unauthenticated(
                "no identity: present a client certificate or 'authorization: Bearer <token>'",
                reason="NO_IDENTITY",
            )
        agency = values.get(AGENCY_HEADER)
        if agency is not None:
            return self._agency(agency, "metadata")
        operator = values.get(OPERATOR_HEADER)
        if operator:
            jurisdiction = values.get(JURISDICTION_HEADER, HEADQUARTERS)
            if not JURISDICTION.match(jurisdiction):
                raise Unauthenticated(
                    f"{JURISDICTION_HEADER} is HQ, 2 or 4 digits", reason="BAD_JURISDICTION"
                )
            return Principal("operator", operator[:128], jurisdiction)
        raise Unauthenticated(
            f"no identity: send metadata {AGENCY_HEADER!r} or {OPERATOR_HEADER!r}", reason="NO_IDENTITY"
        )

    def _bearer(self, authorization: str) -> Principal:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'", reason="TOKEN_INVALID")
        if self._tokens is None:
            raise Unauthenticated(
                "this hub accepts no tokens ([auth] jwks_file or enterprise_jwt_public_key is not set)",
                reason="TOKENS_NOT_CONFIGURED",
            )
        claims = self._tokens.verify(token.strip())
        if claims.role == "agency":
            return self._agency(claims.subject, "token")
        if claims.role == "enterprise":
            return Principal("enterprise", claims.subject)
        if claims.role == "operator":
            return Principal("operator", claims.subject, claims.jurisdiction)
        return Principal("administrator", claims.subject, HEADQUARTERS)
