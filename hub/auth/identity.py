"""Principals and how the hub learns them.

Only the development authenticator exists so far: callers name themselves in gRPC metadata
(`x-ackhub-agency: tax` or `x-ackhub-operator: alice`). It authenticates nothing and is for loopback
development and tests; mutual TLS and JWT replace it behind the same `Authenticator` seam.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from hub.errors import Unauthenticated

AGENCY_HEADER = "x-ackhub-agency"
OPERATOR_HEADER = "x-ackhub-operator"


@dataclass(frozen=True)
class Principal:
    kind: Literal["agency", "operator", "system"]
    id: str

    @property
    def actor(self) -> str:
        """How the audit log names this principal: `agency:tax`, `operator:alice`."""
        return f"{self.kind}:{self.id}"


SYSTEM = Principal("system", "hub")


class Authenticator(Protocol):
    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal: ...


class DevelopmentAuthenticator:
    """Trusts the caller's own word; refuses names that are not configured agencies."""

    def __init__(self, agency_ids: Iterable[str]) -> None:
        self._agencies = frozenset(agency_ids)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal:
        values = {key: value for key, value in metadata if isinstance(value, str)}
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
