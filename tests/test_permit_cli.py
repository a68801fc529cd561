"""`ackhub permit verify`, `ackhub permit show` and `ackhub adapters list` against a real hub on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ackhub.core.clock import ManualClock
from ackhub.hub.cli import main
from ackhub.v1 import permit_service_pb2_grpc as pb_grpc
from tests.harness import RunningHub, start_hub
from tests.permit_data import NOW_MS, create_request, licence, permit_config

VERIFY = ["permit", "verify", "26-AA-204966", "--kind", "commerce.import_licence", "--uscc", "91110000600037341L",
          "--office", "0202", "--hs", "8703234210", "--unit", "辆", "--date", "2026-06-15"]  # fmt: skip


@pytest.fixture(name="permit_hub")
def fixture_permit_hub(tmp_path: Path) -> Iterator[RunningHub]:
    running = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=ManualClock(NOW_MS), edit=permit_config)
    pb_grpc.PermitServiceStub(running.channel).CreatePermit(
        create_request(licence()), metadata=(("x-ackhub-agency", "commerce"),)
    )
    try:
        yield running
    finally:
        running.stop()


def test_permit_verify_prints_a_readable_verdict(
    permit_hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """VALID exits 0 with the remaining quantity; an overdraw exits 1 naming the reason and what is left."""
    assert main([*VERIFY, "--quantity", "10", "--target", permit_hub.target]) == 0
    out = capsys.readouterr().out
    assert (
        "commerce.import_licence 26-AA-204966 (version 1): VALID" in out and "100 left; 12 use(s) left" in out
    )
    assert main([*VERIFY, "--quantity", "101", "--target", permit_hub.target]) == 1
    out = capsys.readouterr().out
    assert "NOT VALID" in out and "✗ QUANTITY_EXCEEDED: 101 辆 asked, 100 left on permit line 1" in out


def test_permit_verify_shows_field_violations(
    permit_hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed request exits 2 and prints each bad field with why."""
    assert main([*VERIFY, "--quantity", "-3", "--target", permit_hub.target]) == 2
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "line.quantity: must be more than 0" in err


def test_permit_show_finds_the_kind_by_itself(
    permit_hub: RunningHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """`permit show NUMBER` prints the licence, its balances and its versions."""
    assert main(["permit", "show", "26-AA-204966", "--target", permit_hub.target]) == 0
    out = capsys.readouterr().out
    assert "commerce.import_licence 26-AA-204966  version 1  ACTIVE  (pushed)" in out
    assert "line 2: HS 26011100 500 吨 bulk; drawn 0, remaining 525" in out
    assert "version 1 by agency:commerce" in out


def test_adapters_list(capsys: pytest.CaptureFixture[str]) -> None:
    """`adapters list` names the four built-in adapters, where each came from, and what each handles."""
    assert main(["adapters", "list"]) == 0
    out = capsys.readouterr().out
    for line in (
        "commerce   Ministry of Commerce",
        "from ackhub.adapters.origin:OriginAdapter",
        "issues commerce.import_licence",
        "sends tax.refund_registration.acknowledged",
    ):
        assert line in out
