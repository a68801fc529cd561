"""Principals and how the hub learns them.

Agencies and operators, for now, name themselves in gRPC metadata (`x-ackhub-agency: tax` or
`x-ackhub-operator: alice`): the development authenticator authenticates nothing and is for loopback
development and tests; mutual TLS and JWT replace it behind the same `Authenticator` seam. Enterprises
present `authorization: Bearer <JWT>` carrying their USCC (hub/auth/jwt.py); their principal's id is it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from hub.errors import Unauthenticated

if TYPE_CHECKING:
    from hub.auth.jwt import EnterpriseTokens

AGENCY_HEADER = "x-ackhub-agency"
OPERATOR_HEADER = "x-ackhub-operator"
AUTHORIZATION_HEADER = "authorization"


@dataclass(frozen=True)
class Principal:
    kind: Literal["agency", "operator", "system", "enterprise"]
    id: str  # for an enterprise: its USCC

    @property
    def actor(self) -> str:
        """How the audit log names this principal: `agency:tax`, `operator:alice`."""
        return f"{self.kind}:{self.id}"


SYSTEM = Principal("system", "hub")


class Authenticator(Protocol):
    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal: ...


class DevelopmentAuthenticator:
    """Trusts the caller's own word; refuses names that are not configured agencies."""

    def __init__(self, agency_ids: Iterable[str], enterprise_tokens: EnterpriseTokens | None = None) -> None:
        self._agencies = frozenset(agency_ids)
        self._tokens = enterprise_tokens

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal:
        values = {key: value for key, value in metadata if isinstance(value, str)}
        authorization = values.get(AUTHORIZATION_HEADER)
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization must be 'Bearer <token>'", reason="TOKEN_INVALID")
            if self._tokens is None:
                raise Unauthenticated(
                    "this hub accepts no enterprise tokens ([auth] enterprise_jwt_public_key is not set)",
                    reason="TOKENS_NOT_CONFIGURED",
                )
            return Principal("enterprise", self._tokens.verify(token.strip()))
        agency = values.get(AGENCY_HEADER)
        if agency is not None:
            if agency not in self._agencies:
                raise Unauthenticated(
                    f"agency {agency!r} is not registered",
                    reason="UNKNOWN_AGENCY",
                    metadata={"agency": agency},
                )
            return Principal("agency", agency)
        operator = values.get(OPERATOR_HEADER)
        if operator:
            return Principal("operator", operator)
        raise Unauthenticated(
            f"no identity: send metadata {AGENCY_HEADER!r} or {OPERATOR_HEADER!r}", reason="NO_IDENTITY"
        )
