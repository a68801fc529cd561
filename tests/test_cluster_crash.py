"""Three `ackhub serve` processes on one PostgreSQL database, one of them SIGKILLed at random moments and
restarted, again and again, while publishers on all three and agencies streaming from different ones keep
going: afterwards nothing receipted is lost or stored twice, no confirmed acknowledgement is lost, no
delivery had two escalation cases, and the audit log verifies. And `ackhub serve --workers 2`: two
processes behind one address, restarted one at a time on SIGHUP, stopped cleanly on SIGTERM."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from sqlmodel import Session, select

from ackhub.client.agency import AgencyClient
from ackhub.hub.store.db import make_engine
from ackhub.hub.store.models import EscalationRow
from tests.crash_kit import (
    ANSWERS,
    PUBLISHER,
    TYPE,
    Publishers,
    Recipient,
    check_nothing_lost,
    crash_config,
    open_deliveries,
    wait_until,
)
from tests.harness import key_id, private_key
from tests.process_hub import FAST_RECONNECT, REPO, HubProcess, free_port
from tests.records import declaration

PROCESSES = 3
KILLS = int(os.environ.get("ACKHUB_TEST_KILLS", "20"))  # bench/cluster_soak.py does 100 and more


def _client(addresses: list[str], agency: str) -> AgencyClient:
    """A client whose channel tries `addresses` in order (gRPC's pick_first): it stays on the first
    process that answers, and moves to the next one when that process dies."""
    target = "ipv4:" + ",".join(addresses)
    channel = grpc.insecure_channel(target, options=FAST_RECONNECT)
    return AgencyClient(
        target, agency, key_id=key_id(agency), private_key=private_key(agency), channel=channel
    )


def _rotated(addresses: list[str], first: int) -> list[str]:
    return addresses[first:] + addresses[:first]


@pytest.fixture(name="hubs")
def fixture_hubs(postgres_url: str, tmp_path: Path) -> Iterator[list[HubProcess]]:
    hubs = []
    for index in range(PROCESSES):
        workdir = tmp_path / f"hub-{index}"
        workdir.mkdir()
        hubs.append(HubProcess(crash_config(postgres_url), workdir))
    try:
        yield hubs
    finally:
        for hub in hubs:
            hub.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_three_processes_killed_at_random_lose_nothing(
    hubs: list[HubProcess], postgres_url: str, tmp_path: Path
) -> None:
    """SIGKILL one of three processes at random moments, KILLS times, restarting it each time; publishers
    on all three, tax and fx streaming from different ones. Then: exactly once, closed as routed, every
    confirmed acknowledgement kept, at most one case per delivery, `ackhub audit verify` OK."""
    rng = random.Random(int(os.environ.get("ACKHUB_TEST_SEED", "16")))
    for hub in hubs:
        hub.start()
    addresses = [hub.target for hub in hubs]
    always_up = threading.Event()
    always_up.set()  # some process always answers: a publisher just tries again
    recipients = {
        agency: Recipient(_client(_rotated(addresses, i), agency), statuses)
        for i, (agency, statuses) in enumerate(ANSWERS.items())
    }
    publishers = [
        Publishers(_client(_rotated(addresses, i), PUBLISHER), always_up, count=1) for i in range(PROCESSES)
    ]
    engine = make_engine(postgres_url)
    kills: Counter[int] = Counter()
    try:
        for recipient in recipients.values():
            recipient.start()
        for group in publishers:
            group.start()
        wait_until(
            lambda: sum(p.receipted() for p in publishers) >= 30,
            20,
            lambda: f"no flow: {[p.errors for p in publishers]}\n{hubs[0].tail()}",
        )
        restarts = _Restarts(hubs)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.8))
            wait_until(lambda: len(restarts.serving()) >= 2, 60, restarts.describe)
            victim = rng.choice(restarts.serving())
            hubs[victim].kill()
            kills[victim] += 1
            restarts.restart(victim, after_s=rng.uniform(0.0, 0.3))
        restarts.join()
        before_end = sum(p.receipted() for p in publishers)
        wait_until(
            lambda: sum(p.receipted() for p in publishers) >= before_end + 10,
            20,
            lambda: "publishing did not resume",
        )
        for group in publishers:
            group.stop()
            assert group.errors == [], group.errors
        items = [item for group in publishers for item in group.items]
        receipts = {item.request_id: item.receipt for item in items if item.receipt is not None}
        assert len(receipts) == len(items)
        record_ids = {receipt.record_id for receipt in receipts.values()}
        wait_until(
            lambda: not open_deliveries(engine, record_ids),
            60,
            lambda: f"still open: {open_deliveries(engine, record_ids)[:10]}\n{hubs[0].tail()}",
        )
        wait_until(
            lambda: all(r.unconfirmed() == 0 for r in recipients.values()),
            20,
            lambda: f"never confirmed: { {a: r.unconfirmed() for a, r in recipients.items()} }",
        )
        for recipient in recipients.values():
            assert recipient.stop()
            assert recipient.refused == [], recipient.refused
        last_pids = [hub.pid for hub in hubs]
        for hub in hubs:
            assert hub.terminate() == 0, hub.tail()

        per_ack = check_nothing_lost(engine, receipts, recipients)
        with Session(engine) as session:
            cases = Counter(session.exec(select(EscalationRow.delivery_id)).all())
        assert [d for d, n in cases.items() if n > 1] == []
        with psycopg.connect(postgres_url) as pg:  # a clean stop leaves; a killed process's row goes stale
            left = pg.execute("SELECT count(*) FROM hub_processes WHERE pid = ANY(%s)", (last_pids,))
            assert left.fetchone() == (0,)
        with psycopg.connect(postgres_url) as pg:
            events = pg.execute("SELECT count(*) FROM audit_events").fetchone()
        assert events is not None
        config = str(hubs[0].config_path)
        key = subprocess.run(
            [sys.executable, "-m", "ackhub.hub.cli", "audit", "key", "--config", config],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        # Trusting the hub's key and every event stored: one gapless log, all of it signed.
        anchor = [f"--log-key={key}", f"--min-size={events[0]}"]
        verify = subprocess.run(
            [sys.executable, "-m", "ackhub.hub.cli", "audit", "verify", "--config", config, *anchor],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        print(
            f"\n{len(items)} records over {KILLS} kills {dict(kills)}; {len(per_ack)} acknowledgements; "
            f"{sum(cases.values())} escalation cases; {verify.stdout.strip()}"
        )
    finally:
        for group in publishers:
            group.no_more.set()
            group.abandon.set()
        for recipient in recipients.values():
            recipient.stop()
        for group in publishers:
            group.client.close()
        engine.dispose()


class _Restarts:
    """Restarts killed processes on threads of their own, so that the next kill need not wait the two
    seconds or so a process takes to serve again: up to two processes can be down at once, and one always
    serves. A process is a victim again only once it serves."""

    def __init__(self, hubs: list[HubProcess]) -> None:
        self.hubs = hubs
        self.threads: dict[int, threading.Thread] = {}
        self.failures: list[str] = []

    def serving(self) -> list[int]:
        return [i for i in range(len(self.hubs)) if i not in self.threads or not self.threads[i].is_alive()]

    def restart(self, index: int, after_s: float) -> None:
        def run() -> None:
            time.sleep(after_s)
            try:
                self.hubs[index].start(timeout=60)
            except Exception as error:
                self.failures.append(f"process {index} did not restart: {error}")

        self.threads[index] = threading.Thread(target=run, name=f"restart-{index}", daemon=True)
        self.threads[index].start()

    def join(self) -> None:
        for thread in self.threads.values():
            thread.join(90)
        assert self.failures == [], self.failures

    def describe(self) -> str:
        return f"fewer than two processes serve: {self.failures or 'restarts still under way'}"


def _serving_pids(postgres_url: str) -> set[int]:
    """The pids of the hub processes registered in the database (none before it is migrated)."""
    with psycopg.connect(postgres_url) as pg:
        try:
            return {pid for (pid,) in pg.execute("SELECT pid FROM hub_processes").fetchall()}
        except psycopg.errors.UndefinedTable:
            return set()


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_share_one_address_and_restart_one_at_a_time(postgres_url: str, tmp_path: Path) -> None:
    """`ackhub serve --workers 2`: two processes on one port; SIGHUP replaces both, one at a time, while
    an agency keeps publishing through that port without a refusal; SIGTERM stops them all."""
    config: dict[str, Any] = crash_config(postgres_url)
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    supervisor = HubProcess(config, tmp_path, ["--workers", "2"])
    supervisor.launch()
    customs = _client([config["server"]["listen"]], PUBLISHER)
    try:
        wait_until(lambda: len(_serving_pids(postgres_url)) == 2, 30, lambda: supervisor.tail())
        first = _serving_pids(postgres_url)
        published: list[str] = []
        stop = threading.Event()
        failures: list[str] = []

        retried: list[str] = []

        def publish() -> None:
            """As a partner's system would: a call cut off by a stopping process is sent again, with the
            same request id, and must then succeed."""
            while not stop.is_set():
                request_id = str(uuid.uuid4())
                while True:
                    try:
                        receipt = customs.publish(
                            TYPE,
                            declaration(note="1"),
                            subject_uscc="91110000600037341L",
                            request_id=request_id,
                        )
                        published.append(receipt.record_id)
                        break
                    except grpc.RpcError as error:
                        if error.code() != grpc.StatusCode.UNAVAILABLE or len(retried) > 50:
                            failures.append(f"{error.code()}: {error.details()}")
                            return
                        retried.append(request_id)
                        time.sleep(0.05)
                time.sleep(0.01)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        wait_until(lambda: len(published) >= 10, 10, lambda: str(failures))
        os.kill(supervisor.pid, signal.SIGHUP)
        wait_until(
            lambda: len(_serving_pids(postgres_url)) == 2 and not (_serving_pids(postgres_url) & first),
            60,
            lambda: supervisor.tail(),
        )
        count = len(published)
        wait_until(lambda: len(published) >= count + 10, 10, lambda: str(failures))
        stop.set()
        thread.join(10)
        assert failures == []
        assert len(set(published)) == len(published)  # a retried publish returned its first record
        print(f"\n{len(published)} publishes across the rolling restart, {len(retried)} retried once cut off")
        assert supervisor.terminate(60) == 0
        assert _serving_pids(postgres_url) == set()
    finally:
        customs.close()
        supervisor.close()


def _ack_count(metrics_url: str) -> tuple[str, float]:
    """One scrape on a new connection (so the kernel may hand it to either worker): the process that
    answered, and the acknowledgements its latency histogram counts."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=10).text
    answered, counted = "", 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ackhub_scraped_process":
                answered = sample.labels["process"]
            elif sample.name == "ackhub_ack_latency_seconds_count":
                counted += sample.value
    return answered, counted


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_metrics_count_every_process_through_a_rolling_restart(
    postgres_url: str, tmp_path: Path
) -> None:
    """`ackhub serve --workers 2` with a console on the shared port: whichever worker answers a scrape,
    the acknowledgement-latency histogram counts the acknowledgements stored by both, and the count does
    not go back when SIGHUP has replaced both workers."""
    config: dict[str, Any] = crash_config(postgres_url)
    config["server"]["listen"] = listen = f"127.0.0.1:{free_port()}"
    config["console"] = {"listen": f"127.0.0.1:{free_port()}"}
    metrics_url = f"http://{config['console']['listen']}/metrics"
    supervisor = HubProcess(config, tmp_path, ["--workers", "2"])
    supervisor.launch()
    recipients = [Recipient(_client([listen], agency), ANSWERS[agency]) for agency in ("tax", "fx")]
    customs = _client([listen], PUBLISHER)
    try:
        wait_until(lambda: len(_serving_pids(postgres_url)) == 2, 30, lambda: supervisor.tail())
        first = _serving_pids(postgres_url)
        for recipient in recipients:
            recipient.start()
        records = 20
        for index in range(records):
            customs.publish(TYPE, declaration(note=str(index)), subject_uscc="91110000600037341L")
        expected = records * sum(len(ANSWERS[agency]) for agency in ("tax", "fx"))

        def stored() -> int:
            for recipient in recipients:
                recipient.drain()
            return sum(len(recipient.stored) for recipient in recipients)

        wait_until(lambda: stored() == expected, 60, lambda: f"{stored()} of {expected} stored")

        def every_worker_counts_all() -> set[str]:
            """Scrape until both workers have answered; each answer must count all acknowledgements."""
            seen: dict[str, float] = {}
            for _ in range(200):
                answered, counted = _ack_count(metrics_url)
                seen[answered] = counted
                if len(seen) == 2:
                    break
            assert len(seen) == 2, f"200 scrapes were all answered by {set(seen)}"
            assert set(seen.values()) == {expected}, seen
            return set(seen)

        before = every_worker_counts_all()
        os.kill(supervisor.pid, signal.SIGHUP)
        wait_until(
            lambda: len(_serving_pids(postgres_url)) == 2 and not (_serving_pids(postgres_url) & first),
            60,
            lambda: supervisor.tail(),
        )
        after = every_worker_counts_all()  # the new workers count what the old ones observed
        assert not before & after  # two other processes answered
        assert supervisor.terminate(60) == 0
    finally:
        for recipient in recipients:
            recipient.stop()
        customs.close()
        supervisor.close()
