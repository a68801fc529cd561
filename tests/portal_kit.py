"""A hub with its console and the enterprise portal on loopback for the portal tests: tokens signed by the
security tests' keys, records of two enterprises, tax and fx answering as told."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ackhub.core.clock import ManualClock
from tests.harness import RunningHub, start_hub
from tests.records import declaration as declaration_payload
from tests.security_data import ALPHA, DECLARATION, TYPE, bearer, with_jwks

__all__ = ["ALPHA", "DECLARATION", "TYPE"]


def start_portal_hub(tmp_path: Path, clock: ManualClock, database_url: str = "", **portal: Any) -> RunningHub:
    """A hub accepting the test JWKS, with `[console]` on a free loopback port and `[portal]`."""
    jwks = with_jwks(tmp_path / "jwks.json")

    def edit(config: dict[str, Any]) -> None:
        jwks(config)
        config["console"] = {"listen": "127.0.0.1:0"}
        config["portal"] = {"rate_per_minute": 600, "rate_burst": 100, **portal}
        config["agencies"][1]["name"] = "State Taxation Administration"
        config["agencies"][2]["name"] = "State Administration of Foreign Exchange"

    return start_hub(database_url or f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)


def portal_url(hub: RunningHub) -> str:
    assert hub.server.console is not None
    return f"http://127.0.0.1:{hub.server.console.port}/portal"


def enterprise_token(clock: ManualClock, uscc: str = ALPHA, ttl_s: int = 600) -> str:
    return bearer(clock, "enterprise", uscc, ttl_s=ttl_s)[0][1].removeprefix("Bearer ")


def publish(
    hub: RunningHub, uscc: str = ALPHA, declaration: str = DECLARATION, record_type: str = TYPE
) -> str:
    """Customs publishes a released declaration of `uscc`; returns the record id."""
    receipt = hub.agency("customs").publish(
        record_type,
        declaration_payload(declaration, uscc),
        subject_uscc=uscc,
        declaration_number=declaration,
        request_id=str(uuid.uuid4()),
    )
    return str(receipt.record_id)
