"""Race-free draw-down on SQLite and PostgreSQL: many customs officers racing for the last quantity, and
retries racing with themselves."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from sqlmodel import select

from ackhub.core.clock import ManualClock
from ackhub.hub.store.models import DrawDownRow, PermitLineRow, RecordRow
from ackhub.v1 import permit_service_pb2 as pb
from ackhub.v1 import permit_service_pb2_grpc as pb_grpc
from tests.harness import RunningHub, error_details, start_hub
from tests.permit_data import NOW_MS, create_request, draw_request, goods, licence, permit_config

CUSTOMS = (("x-ackhub-agency", "customs"),)


@pytest.fixture(name="permit_hub")
def fixture_permit_hub(database_url: str) -> Iterator[RunningHub]:
    running = start_hub(database_url, clock=ManualClock(NOW_MS), edit=permit_config)
    try:
        yield running
    finally:
        running.stop()


def _outcome(stub: pb_grpc.PermitServiceStub, request: pb.DrawDownPermitRequest) -> str:
    try:
        answer = stub.DrawDownPermit(request, metadata=CUSTOMS, timeout=30)
    except grpc.RpcError as error:
        return error_details(error)[1]
    return "REPLAYED" if answer.replayed else "DRAWN"


def test_fifty_racing_draw_downs_for_the_last_ten_units(permit_hub: RunningHub) -> None:
    """50 concurrent draw-downs of 1 car race for the last 10: exactly 10 win, 40 get QUANTITY_EXCEEDED;
    all 50 retried at once draw nothing more; 10 usage records exist."""
    stub = pb_grpc.PermitServiceStub(permit_hub.channel)
    stub.CreatePermit(create_request(licence()), metadata=(("x-ackhub-agency", "commerce"),))
    stub.DrawDownPermit(draw_request(goods(quantity="90", item=99)), metadata=CUSTOMS)
    requests = [draw_request(goods(quantity="1", item=i)) for i in range(1, 51)]
    channels = [grpc.insecure_channel(permit_hub.target) for _ in range(5)]
    stubs = [pb_grpc.PermitServiceStub(c) for c in channels]
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            first = list(pool.map(lambda i: _outcome(stubs[i % 5], requests[i]), range(50)))
            retried = list(pool.map(lambda i: _outcome(stubs[i % 5], requests[i]), range(50)))
    finally:
        for channel in channels:
            channel.close()
    assert sorted(set(first)) == ["DRAWN", "QUANTITY_EXCEEDED"]
    assert first.count("DRAWN") == 10 and first.count("QUANTITY_EXCEEDED") == 40
    assert [r == "REPLAYED" for r in retried] == [f == "DRAWN" for f in first]
    with permit_hub.server.db.transaction() as session:
        line = session.exec(select(PermitLineRow).where(PermitLineRow.line_number == 1)).one()
        draws = session.exec(select(DrawDownRow)).all()
        usage = session.exec(
            select(RecordRow).where(RecordRow.record_type == "customs.licence_usage.reported")
        ).all()
    assert line.drawn_milli == 100_000 and len(draws) == 11 and len(usage) == 11


def test_retries_of_one_request_racing_draw_once(permit_hub: RunningHub) -> None:
    """The same draw-down sent 20 times at once draws once: one DRAWN, nineteen REPLAYED of it."""
    stub = pb_grpc.PermitServiceStub(permit_hub.channel)
    stub.CreatePermit(create_request(licence()), metadata=(("x-ackhub-agency", "commerce"),))
    request = draw_request(goods(quantity="7"))
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda _: _outcome(stub, request), range(20)))
    assert sorted(outcomes) == ["DRAWN"] + ["REPLAYED"] * 19
    with permit_hub.server.db.transaction() as session:
        line = session.exec(select(PermitLineRow).where(PermitLineRow.line_number == 1)).one()
    assert line.drawn_milli == 7_000
