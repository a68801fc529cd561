"""A hub with its console on loopback for the console tests: tokens signed by the security tests' keys,
a record in customs office 0202 and, when asked, an open escalation case for it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ackhub.core.clock import ManualClock
from ackhub.hub.exchange import queries
from ackhub.hub.store.models import EscalationRow
from tests.harness import RunningHub, start_hub
from tests.records import declaration as declaration_payload
from tests.security_data import ALPHA, DECLARATION, TYPE, bearer, with_jwks


def start_console_hub(tmp_path: Path, clock: ManualClock) -> RunningHub:
    """A SQLite hub accepting the test JWKS, with `[console] listen` on a free loopback port."""
    jwks = with_jwks(tmp_path / "jwks.json")

    def edit(config: dict[str, Any]) -> None:
        jwks(config)
        config["console"] = {"listen": "127.0.0.1:0"}

    return start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock, edit=edit)


def console_url(hub: RunningHub) -> str:
    assert hub.server.console is not None
    return f"http://127.0.0.1:{hub.server.console.port}"


def operator_token(
    clock: ManualClock, jurisdiction: str = "HQ", name: str = "alice", ttl_s: int = 600
) -> str:
    header = bearer(clock, "operator", name, jurisdiction=jurisdiction, ttl_s=ttl_s)
    return header[0][1].removeprefix("Bearer ")


def publish(hub: RunningHub, declaration: str = DECLARATION) -> str:
    """Customs publishes a released declaration; returns the record id."""
    receipt = hub.agency("customs").publish(
        TYPE,
        declaration_payload(declaration, ALPHA),
        subject_uscc=ALPHA,
        declaration_number=declaration,
        request_id=str(uuid.uuid4()),
    )
    return str(receipt.record_id)


def escalate(hub: RunningHub, clock: ManualClock, record_id: str) -> EscalationRow:
    """Let tax's deadline pass unanswered and sweep: a case opens for the record."""
    clock.advance(31_000)
    hub.sweep()
    cases = queries.list_escalations(
        hub.server.db, _hq(), state="OPEN", recipient="tax", min_level=0, size=100, token=""
    ).items
    return next(c for c in cases if c.record_id == record_id)


def _hq() -> Any:
    from ackhub.core.principal import SYSTEM

    return SYSTEM
