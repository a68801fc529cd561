"""Several hub processes on one database (ackhub.hub.store.cluster, ackhub.hub.workers, docs/deploy.md): a publish
on one process reaches an agency streaming from another at once; processes that disagree, a database at an
older schema or out of reach are refused at start with what to do; and the database going away under a
running hub is UNAVAILABLE to callers, then healed without a restart."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from alembic import command

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.errors import StartupError
from ackhub.hub.config import parse_settings
from ackhub.hub.server import HubServer
from ackhub.hub.store.db import HEAD_REVISION, Database, alembic_config, stored_revision
from tests.harness import base_config, start_hub, wait_for
from tests.process_hub import REPO, to_toml
from tests.records import declaration

TYPE = "customs.export_declaration.released"
USCC = "91110000600037341L"
BEFORE, DURING = "3f2a1c4e-0000-4000-8000-000000000001", "3f2a1c4e-0000-4000-8000-000000000002"


def _quiet(config: dict[str, Any]) -> None:
    """No pass of the dispatcher but those that something wakes: its idle pass comes once in 10 minutes."""
    config["server"]["sweep_interval"] = "10m"


def _start_refused(config: dict[str, Any]) -> StartupError:
    """Start a hub with `config`, expecting StartupError; the hub is stopped again either way."""

    async def attempt() -> StartupError | None:
        hub = HubServer(parse_settings(config, "test"), scheduled_sweeps=False)
        try:
            await hub.start()
        except StartupError as error:
            return error
        finally:
            await hub.stop(0)
        return None

    refusal = asyncio.run(attempt())
    assert refusal is not None, "the hub started"
    return refusal


@pytest.mark.postgres
def test_a_publish_on_one_process_reaches_an_agency_streaming_from_another(postgres_url: str) -> None:
    """fx streams from hub B; customs publishes on hub A. Neither dispatcher looks by itself for 10
    minutes: B hears of the new delivery from the database (LISTEN/NOTIFY) and sends it at once."""
    hub_a = start_hub(postgres_url, edit=_quiet)
    hub_b = start_hub(postgres_url, edit=_quiet)
    try:
        fx = hub_b.agency("fx")
        start_subscription(fx, lambda delivery: Verdict.received())
        customs = hub_a.agency("customs")
        receipt = customs.publish(TYPE, declaration(note="1"), subject_uscc=USCC)
        fx_delivery = next(d.delivery_id for d in receipt.deliveries if d.recipient == "fx")
        got = fx.results.get(timeout=10)  # the hub's answer to fx's signed RECEIVED
        assert (got.delivery_id, got.ok) == (fx_delivery, True)
        assert hub_b.server.wakeups is not None and hub_b.server.wakeups.received >= 1
        # Hub A's own notifications do not wake hub A: it claims in its own transaction already.
        assert hub_a.server.wakeups is not None and hub_a.server.wakeups.received == 0
        live = hub_a.run(asyncio.to_thread(hub_a.server.registry.live, hub_a.server.clock.now_ms()))
        assert {p.id for p in live} == {hub_a.server.process_id, hub_b.server.process_id}
    finally:
        hub_b.stop()
        hub_a.stop()


@pytest.mark.postgres
def test_a_process_with_other_routes_is_refused_naming_the_difference(postgres_url: str) -> None:
    """A second process whose fx route asks for the business level, beside one running RECEIVED: refused
    at start, the differing setting named; after the first one stops, it may start (a new deployment).
    Heartbeats every 10 minutes: the first process counts as live however slow the machine is."""
    first = start_hub(postgres_url, edit=_quiet)
    other = base_config(postgres_url)
    _quiet(other)
    other["routes"][0]["recipients"][1]["ack_level"] = "BUSINESS"
    try:
        refusal = str(_start_refused(other))
        assert "routes[customs.export_declaration.released].recipients[fx].ack_level" in refusal
        assert "'BUSINESS' ≠ 'RECEIVED'" in refusal
        assert "docs/deploy.md" in refusal
    finally:
        first.stop()
    second = start_hub(postgres_url, edit=lambda c: c.update(routes=other["routes"]))
    second.stop()


def test_a_store_at_an_older_schema_is_refused_until_upgraded(database_url: str, tmp_path: Path) -> None:
    """A hub refuses a store one migration behind, naming the command; `ackhub db upgrade` brings it to
    this hub's revision, after which the hub starts."""
    db = Database(database_url)
    try:
        db.migrate()
        command.downgrade(alembic_config(db.engine), "-1")
        older = stored_revision(db.engine)
    finally:
        db.close()
    assert older is not None and older != HEAD_REVISION
    refusal = str(_start_refused(base_config(database_url)))
    assert f"schema revision {older}" in refusal and "ackhub db upgrade --config" in refusal

    config_file = tmp_path / "hub.toml"
    config_file.write_text(to_toml(base_config(database_url)), encoding="utf-8")
    status = _ackhub("db", "status", "--config", str(config_file))
    assert status.returncode == 1 and f"schema {older}" in status.stdout
    upgrade = _ackhub("db", "upgrade", "--config", str(config_file))
    assert upgrade.returncode == 0 and f"schema {older} → {HEAD_REVISION}" in upgrade.stdout
    start_hub(database_url).stop()


def _ackhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ackhub.hub.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_an_unreachable_database_is_one_clear_line_without_the_password(tmp_path: Path) -> None:
    """`ackhub serve` against a PostgreSQL that does not answer: exit 2, the URL without its password and
    what to check; no traceback."""
    config_file = tmp_path / "hub.toml"
    config_file.write_text(to_toml(base_config("sqlite:///unused.db")), encoding="utf-8")
    url = "postgresql://bob:s3cret@127.0.0.1:1/ackhub"
    run = _ackhub("serve", "--config", str(config_file), "--database-url", url)
    assert run.returncode == 2
    assert "cannot reach the database at postgresql://bob:***@127.0.0.1:1/ackhub" in run.stderr
    assert "Check that the server is running" in run.stderr
    assert "s3cret" not in run.stderr + run.stdout and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: None, "--workers 2 needs PostgreSQL"),
        (
            lambda c: c["server"].update(database_url="postgresql://postgres@127.0.0.1:5432/test"),
            "--workers 2 needs a fixed port in [server].listen",
        ),
    ],
    ids=["sqlite", "port-0"],
)
def test_workers_refuse_what_processes_cannot_share(tmp_path: Path, edit: Any, expected: str) -> None:
    """Several workers need one database they can share and a fixed address; said before anything starts."""
    config = base_config(f"sqlite:///{tmp_path / 'hub.db'}")
    edit(config)
    config_file = tmp_path / "hub.toml"
    config_file.write_text(to_toml(config), encoding="utf-8")
    run = _ackhub("serve", "--config", str(config_file), "--workers", "2")
    assert run.returncode == 2 and expected in run.stderr, run.stderr
    assert not (tmp_path / "hub.db").exists()


def _block_connections(url: str, allow: bool) -> None:
    """Close the database to new connections and end the open ones (as a restart or failover does to a
    hub), or open it again."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/test", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )


@pytest.mark.postgres
def test_the_database_going_away_is_unavailable_then_healed(postgres_url: str) -> None:
    """While the database refuses connections a publish is UNAVAILABLE (STORE_UNAVAILABLE, retry info)
    and the hub keeps running; once it is back, the hub reconnects by itself, the same request id is
    accepted, and an agency's stream carries on."""
    hub = start_hub(postgres_url)
    try:
        customs = hub.agency("customs")
        first = customs.publish(TYPE, declaration(note="1"), subject_uscc=USCC, request_id=BEFORE)
        _block_connections(postgres_url, allow=False)
        try:
            with pytest.raises(grpc.RpcError) as refused:
                customs.publish(TYPE, declaration(note="2"), subject_uscc=USCC, request_id=DURING, timeout=20)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "database is unavailable" in (refused.value.details() or "")
        finally:
            _block_connections(postgres_url, allow=True)
        deadline = time.monotonic() + 20
        again = None
        while again is None:  # the first calls after may still meet a connection ended while blocked
            try:
                again = customs.publish(
                    TYPE, declaration(note="2"), subject_uscc=USCC, request_id=DURING, timeout=5
                )
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert again.record_id != first.record_id and not again.replayed
        fx = hub.agency("fx")
        start_subscription(fx, lambda delivery: Verdict.received())
        closed = {fx.results.get(timeout=10).delivery_id for _ in range(2)}
        assert closed == {d.delivery_id for r in (first, again) for d in r.deliveries if d.recipient == "fx"}
    finally:
        hub.stop()


@pytest.mark.postgres
def test_the_console_of_any_process_shows_the_deployment(postgres_url: str, tmp_path: Path) -> None:
    """Two processes with consoles: a session made by one is good on the other (their session key is the
    deployment's), and either one's /metrics counts both processes and the deliveries of both."""
    from ackhub.core.clock import ManualClock, SystemClock
    from tests.console_kit import console_url, operator_token
    from tests.security_data import with_jwks

    clock = ManualClock(SystemClock().now_ms())
    jwks = with_jwks(tmp_path / "jwks.json")

    def edit(config: dict[str, Any]) -> None:
        jwks(config)
        config["console"] = {"listen": "127.0.0.1:0"}

    hub_a = start_hub(postgres_url, clock=clock, edit=edit)
    hub_b = start_hub(postgres_url, clock=clock, edit=edit)
    try:
        hub_a.agency("customs").publish(TYPE, declaration(note="1"), subject_uscc=USCC)
        with httpx.Client(base_url=console_url(hub_a), follow_redirects=False, timeout=10) as a:
            signed_in = a.post("/signin", data={"token": operator_token(clock), "next": "/"})
            assert signed_in.status_code == 303
            cookies = dict(a.cookies)
        with httpx.Client(base_url=console_url(hub_b), cookies=cookies, timeout=10) as b:
            assert b.get("/").status_code == 200  # not sent back to sign in
            text = b.get("/metrics").text
        assert "ackhub_hub_processes 2.0" in text
        for hub in (hub_a, hub_b):
            assert f'process="{hub.server.process_id}"' in text
        assert 'ackhub_open_deliveries{agency="tax"} 1.0' in text  # published through hub A
        assert 'ackhub_open_deliveries{agency="fx"} 1.0' in text

        # fx streams from hub A: after A's heartbeat, hub B's console says so, and where
        start_subscription(hub_a.agency("fx"), lambda delivery: Verdict.received())
        wait_for(lambda: hub_a.server.streams.connected().get("fx") == 1, what="fx's stream on hub A")
        with httpx.Client(base_url=console_url(hub_b), cookies=cookies, timeout=10) as b:

            def fx_row() -> str:
                return b.get("/agencies").text.split('id="agency-fx"')[1].split("</tr>")[0]

            assert "(1)" not in fx_row()  # A has not said so yet
            hub_a.run(hub_a.server.heartbeat())
            row = fx_row()
        assert "(1)" in row
        assert f"on {os.getpid()}@{socket.gethostname()}" in row  # two processes: it says where
        assert hub_b.server.streams.connected() == {}  # none of it is B's own
    finally:
        hub_b.stop()
        hub_a.stop()


def test_the_metrics_of_any_process_show_the_deployments_streams_and_breakers(
    postgres_url: str, tmp_path: Path
) -> None:
    """fx streams from hub A and answers nothing: A's circuit to fx opens. Hub B, which holds no stream and
    no open circuit of its own, says both on /metrics once A has beaten: one fx stream, fx's circuit OPEN."""
    from ackhub.core.clock import ManualClock, SystemClock
    from tests.console_kit import console_url
    from tests.harness import Inbox

    clock = ManualClock(SystemClock().now_ms())

    def edit(config: dict[str, Any]) -> None:
        config["console"] = {"listen": "127.0.0.1:0"}

    hub_a = start_hub(postgres_url, clock=clock, edit=edit)
    hub_b = start_hub(postgres_url, clock=clock, edit=edit)
    try:
        inbox = Inbox()  # answers nothing
        start_subscription(hub_a.agency("fx", clock=clock), inbox)
        for note in "1234":
            hub_a.agency("customs").publish(TYPE, declaration(note=note), subject_uscc=USCC)
        wait_for(lambda: len(inbox.deliveries) == 4, what="the first attempts")
        clock.advance(1000)  # four retries go out unanswered: four failures open the circuit
        hub_a.sweep()
        hub_a.dispatch()
        breakers = hub_a.server.exchange.dispatcher.breakers  # type: ignore[union-attr]
        wait_for(lambda: breakers.states().get("fx") == "OPEN", what="fx's circuit on hub A to open")

        def metrics(hub: Any) -> str:
            return httpx.get(console_url(hub) + "/metrics", timeout=10).text

        before = metrics(hub_b)
        assert 'ackhub_agency_streams{agency="fx"} 0.0' in before  # A has not said so yet
        assert 'ackhub_circuit_breaker_state{agency="fx",state="CLOSED"} 1.0' in before
        hub_a.run(hub_a.server.heartbeat())
        after = metrics(hub_b)
        assert 'ackhub_agency_streams{agency="fx"} 1.0' in after
        assert 'ackhub_circuit_breaker_state{agency="fx",state="OPEN"} 1.0' in after
        assert 'ackhub_circuit_breaker_state{agency="fx",state="CLOSED"} 0.0' in after
        assert 'ackhub_circuit_breaker_state{agency="tax",state="CLOSED"} 1.0' in after
        assert hub_b.server.exchange.dispatcher.breakers.states().get("fx", "CLOSED") == "CLOSED"  # type: ignore[union-attr]
    finally:
        hub_b.stop()
        hub_a.stop()


def test_an_agencys_streams_and_breakers_are_summed_over_the_processes() -> None:
    """The console's view of the deployment (`deployment_status`): streams add up, the worst breaker wins
    and names its processes, and this process counts as it is now rather than as of its last heartbeat."""
    from ackhub.hub.store.cluster import Peer, ProcessStatus, deployment_status

    def peer(pid: int, status: ProcessStatus) -> Peer:
        return Peer(f"p{pid}", "host", pid, "127.0.0.1:7443", 0, 0, "digest", status)

    a = peer(1, ProcessStatus({"tax": 1}, {"tax": "OPEN", "fx": "CLOSED"}))
    b = peer(2, ProcessStatus({"fx": 2}, {"tax": "HALF_OPEN"}))  # its last heartbeat
    now_b = ProcessStatus({"fx": 1}, {"tax": "HALF_OPEN"})
    merged = deployment_status([a, b], "p2", now_b)
    assert (merged["tax"].streams, merged["tax"].on) == (1, ["1@host"])
    assert (merged["tax"].breaker, merged["tax"].breaker_on) == ("OPEN", ["1@host"])
    assert (merged["fx"].streams, merged["fx"].on) == (1, ["2@host"])
    assert (merged["fx"].breaker, merged["fx"].breaker_on) == ("CLOSED", [])
    alone = deployment_status([], "p9", ProcessStatus({"tax": 1}, {}))  # not registered (yet)
    assert alone["tax"].streams == 1 and len(alone["tax"].on) == 1
