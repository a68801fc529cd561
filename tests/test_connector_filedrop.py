"""The file-drop connector against real folders: records out as files, signed acknowledgement files in,
malformed files moved aside and explained, an outbox that disappears and comes back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ackhub.connectors.filedrop import FiledropConnector, write_atomically
from ackhub.core.clock import ManualClock
from ackhub.v1 import types_pb2
from tests.connector_kit import (
    connector_of,
    delivery_to,
    hub_with,
    publish,
    signed_ack,
    state,
    step,
    stored_acks,
)
from tests.harness import RunningHub
from tests.records import declaration


@pytest.fixture(name="folders")
def fixture_folders(tmp_path: Path) -> tuple[Path, Path]:
    outbox, inbox = tmp_path / "tax" / "out", tmp_path / "tax" / "in"
    outbox.mkdir(parents=True)
    inbox.mkdir(parents=True)
    return outbox, inbox


@pytest.fixture(name="drop_hub")
def fixture_drop_hub(tmp_path: Path, clock: ManualClock, folders: tuple[Path, Path]) -> Iterator[RunningHub]:
    outbox, inbox = folders
    # The poller scans once at start and then only after an hour: the tests scan by hand.
    table = {"outbox": str(outbox), "inbox": str(inbox), "poll_interval": "1h"}
    running = hub_with(tmp_path, clock, "tax", "filedrop", table)
    try:
        yield running
    finally:
        running.stop()


def _scan(hub: RunningHub) -> tuple[list[str], dict[str, str]]:
    connector = connector_of(hub, "filedrop")
    assert isinstance(connector, FiledropConnector)
    result = hub.run(connector.scan("tax"))
    return result.stored, result.rejected


def _drop(inbox: Path, name: str, content: bytes) -> None:
    write_atomically(inbox / name, content)


def test_record_goes_out_as_files_and_signed_ack_files_close_it(
    drop_hub: RunningHub, clock: ManualClock, folders: tuple[Path, Path]
) -> None:
    """The payload and its manifest land in the outbox; RECEIVED and ACCEPTED files from the inbox close it."""
    outbox, inbox = folders
    payload = declaration(note="申报 出口")
    receipt = publish(drop_hub, payload)
    delivery_id = delivery_to(receipt, "tax")
    step(drop_hub, clock, "filedrop")

    assert (outbox / f"{delivery_id}.payload").read_bytes() == payload
    manifest = json.loads((outbox / f"{delivery_id}.manifest.json").read_text(encoding="utf-8"))
    assert manifest["delivery_id"] == delivery_id and manifest["attempt"] == 1
    assert manifest["record"]["digest"] == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert manifest["record"]["payload_file"] == f"{delivery_id}.payload"
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")], "no temporary file is left behind"
    assert state(drop_hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_SENT

    now = clock.now_ms()
    for status, reason in (("RECEIVED", ""), ("ACCEPTED", "退税登记 registered")):
        ack = signed_ack("tax", delivery_id, receipt.record_id, receipt.digest, status, now, reason)
        _drop(inbox, f"{delivery_id}.{status}.json", json.dumps(ack, ensure_ascii=False).encode())
    stored, rejected = _scan(drop_hub)

    assert len(stored) == 2 and not rejected
    delivery = state(drop_hub, receipt.record_id, "tax")
    assert delivery.state == types_pb2.DELIVERY_STATE_ACCEPTED and delivery.reason == "退税登记 registered"
    assert stored_acks(drop_hub, delivery_id) == [("ACCEPTED", "filedrop"), ("RECEIVED", "filedrop")]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(stored)
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []


def test_malformed_and_refused_files_are_moved_aside_with_the_reason(
    drop_hub: RunningHub, clock: ManualClock, folders: tuple[Path, Path]
) -> None:
    """Garbage, a bad signature and an unknown delivery go to rejected/ with an error file; nothing is lost."""
    _, inbox = folders
    receipt = publish(drop_hub)
    delivery_id = delivery_to(receipt, "tax")
    step(drop_hub, clock, "filedrop")
    now = clock.now_ms()
    good = signed_ack("tax", delivery_id, receipt.record_id, receipt.digest, "RECEIVED", now)
    forged = {
        **signed_ack("tax", delivery_id, receipt.record_id, receipt.digest, "ACCEPTED", now),
        "reason": "x",
    }
    stranger = signed_ack("tax", "no-such-delivery", receipt.record_id, receipt.digest, "RECEIVED", now)
    _drop(inbox, "a-garbage.json", b"\x00\xffnot json at all")
    _drop(inbox, "b-half.json", b'{"delivery_id": "' + delivery_id.encode())
    _drop(inbox, "c-forged.json", json.dumps(forged).encode())
    _drop(inbox, "d-stranger.json", json.dumps(stranger).encode())
    _drop(inbox, "e-good.json", json.dumps(good).encode())
    _drop(inbox, ".f-still-being-written.json", b"{")

    stored, rejected = _scan(drop_hub)

    assert stored == ["e-good.json"]
    assert rejected == {
        "a-garbage.json": "MALFORMED",
        "b-half.json": "MALFORMED",
        "c-forged.json": "SIGNATURE_INVALID",
        "d-stranger.json": "DELIVERY_NOT_FOUND",
    }
    aside = inbox / "rejected"
    for name in rejected:
        assert (aside / name).exists(), f"{name} is kept"
        why = json.loads((aside / f"{name}.error.json").read_text())
        assert why["reason"] == rejected[name] and why["message"]
    assert (aside / "a-garbage.json").read_bytes() == b"\x00\xffnot json at all", "kept byte for byte"
    assert (inbox / ".f-still-being-written.json").exists(), "dot-files are left for their writer"
    assert state(drop_hub, receipt.record_id, "tax").state == types_pb2.DELIVERY_STATE_RECEIVED

    assert _scan(drop_hub) == ([], {}), "a second scan finds nothing new"


def test_missing_outbox_is_retried_until_it_comes_back(
    drop_hub: RunningHub, clock: ManualClock, folders: tuple[Path, Path]
) -> None:
    """With the outbox gone (an unmounted share) the attempt fails; once it is back the retry writes the files."""
    outbox, _ = folders
    outbox.rmdir()
    receipt = publish(drop_hub)
    delivery_id = delivery_to(receipt, "tax")
    step(drop_hub, clock, "filedrop")
    assert not outbox.exists()
    assert connector_of(drop_hub, "filedrop").in_flight("tax") == 0, "a failed write frees its slot"
    assert state(drop_hub, receipt.record_id, "tax").attempt_count == 1

    outbox.mkdir()
    step(drop_hub, clock, "filedrop")
    assert not (outbox / f"{delivery_id}.manifest.json").exists(), "not before the retry is due"
    step(drop_hub, clock, "filedrop", advance_ms=1_000)  # the route's first_interval
    manifest = json.loads((outbox / f"{delivery_id}.manifest.json").read_text())
    assert manifest["attempt"] == 2
    assert state(drop_hub, receipt.record_id, "tax").attempt_count == 2
