"""Nothing lost: `ackhub serve` is SIGKILLed in the middle of a stream of publishes and acknowledgements,
restarted on the same store, and every record whose publish returned is then delivered and acknowledged,
every acknowledgement the hub confirmed is still stored, and nothing is stored twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ackhub.hub.store.db import make_engine
from tests.crash_kit import (
    ANSWERS,
    PUBLISHER,
    TYPE,
    Publishers,
    Recipient,
    check_nothing_lost,
    crash_config,
    open_deliveries,
    reconnecting_client,
    wait_until,
)
from tests.process_hub import HubProcess


@pytest.fixture(name="hub_process")
def fixture_hub_process(database_url: str, tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(crash_config(database_url), tmp_path)
    try:
        yield hub
    finally:
        hub.close()


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_and_stores_nothing_twice(
    hub_process: HubProcess, database_url: str
) -> None:
    """After a SIGKILL amid publishes and acks and a restart, every receipted record is delivered and
    acknowledged once, every confirmed ack is stored once, and a repeated publish returns its record."""
    hub_process.start()
    hub_up = threading.Event()
    hub_up.set()
    customs = reconnecting_client(hub_process.target, PUBLISHER)
    recipients = {
        agency: Recipient(reconnecting_client(hub_process.target, agency), s) for agency, s in ANSWERS.items()
    }
    publishers = Publishers(customs, hub_up)
    engine = make_engine(database_url)
    try:
        for recipient in recipients.values():
            recipient.start()
        publishers.start()

        def flowing() -> bool:
            return publishers.receipted() >= 50 and all(
                r.confirmed_count() >= 20 for r in recipients.values()
            )

        wait_until(
            flowing,
            15,
            lambda: (
                f"{publishers.receipted()} receipts, "
                f"{ {a: r.confirmed_count() for a, r in recipients.items()} } confirmed acks; "
                f"errors {publishers.errors}\n{hub_process.tail()}"
            ),
        )

        # The crash: publishes and acknowledgements are in flight on every side.
        hub_up.clear()
        hub_process.kill()
        receipted_before = publishers.receipted()
        confirmed_before = {a: r.confirmed_count() for a, r in recipients.items()}
        unconfirmed_at_kill = {a: r.unconfirmed() for a, r in recipients.items()}

        restarting = time.monotonic()
        hub_process.start()  # same configuration, same store
        restart_s = time.monotonic() - restarting
        hub_up.set()
        wait_until(
            lambda: publishers.receipted() >= receipted_before + 20 or bool(publishers.errors),
            15,
            lambda: f"publishing did not resume: {publishers.receipted()} receipts",
        )
        assert publishers.errors == [], hub_process.tail()
        publishers.stop()
        assert publishers.errors == [], hub_process.tail()
        items = publishers.items
        assert all(item.receipt is not None for item in items)
        receipts = {item.request_id: item.receipt for item in items if item.receipt is not None}
        record_ids = {receipt.record_id for receipt in receipts.values()}

        wait_until(
            lambda: not open_deliveries(engine, record_ids),
            45,  # a few seconds unless the machine is very busy
            lambda: (
                f"deliveries still open: {open_deliveries(engine, record_ids)[:10]}\n{hub_process.tail()}"
            ),
        )
        wait_until(
            lambda: all(r.unconfirmed() == 0 for r in recipients.values()),
            10,
            lambda: (
                f"acknowledgements never confirmed: { {a: r.unconfirmed() for a, r in recipients.items()} }"
            ),
        )

        # The same request id again: the same record back, marked as a replay, for every publish.
        for item in items:
            assert item.receipt is not None
            again = customs.publish(
                TYPE, item.payload, subject_uscc="91110000600037341L", request_id=item.request_id, timeout=5
            )
            assert (again.record_id, again.replayed) == (item.receipt.record_id, True)
            assert list(again.deliveries) == list(item.receipt.deliveries)

        for recipient in recipients.values():
            assert recipient.stop(), f"the {recipient.client.agency_id} subscription did not stop"
            assert recipient.refused == [], recipient.refused
            assert set(recipient.stream_errors) <= {grpc.StatusCode.UNAVAILABLE}, recipient.stream_errors
            assert recipient.opened >= 2, "the subscription never came back after the restart"
        customs.close()
        assert hub_process.terminate() == 0, hub_process.tail()

        per_ack = check_nothing_lost(engine, receipts, recipients)

        retried = [item for item in items if item.failures]
        print(
            f"\n{len(items)} records ({receipted_before} receipted before the kill); "
            f"{len(retried)} publishes retried after the kill, "
            f"{sum(1 for i in retried if i.receipt is not None and i.receipt.replayed)} of them had been "
            f"stored before it; confirmed acks before the kill {confirmed_before} "
            f"(unconfirmed then {unconfirmed_at_kill}), in all "
            f"{ {a: len(r.confirmed) for a, r in recipients.items()} }; "
            f"{len(per_ack)} acknowledgements stored; the restart took {restart_s:.1f}s"
        )
    finally:
        publishers.no_more.set()
        publishers.abandon.set()
        hub_up.set()
        for recipient in recipients.values():
            recipient.stop()
        hub_process.close()
        customs.close()
        engine.dispose()
