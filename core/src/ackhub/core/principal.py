"""Who acts: the caller of an RPC, a connector's agency, or the hub itself (`SYSTEM`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["agency", "operator", "system", "enterprise", "administrator"]


@dataclass(frozen=True)
class Principal:
    kind: Kind
    id: str  # for an enterprise: its USCC
    jurisdiction: str = ""  # an operator's: HQ, a 2-digit customs district or a 4-digit office code

    @property
    def actor(self) -> str:
        """How the audit log names this principal: `agency:tax`, `operator:alice`."""
        return f"{self.kind}:{self.id}"


SYSTEM = Principal("system", "hub")
