"""Schema versions at publish (docs/schema-evolution.md), over real gRPC with the hand-moved clock: a
deprecated version keeps working until its last day (China Standard Time) and the receipt says so; from the
next day it is refused; a route names the versions each recipient takes, and a record of a version some
recipient does not take is refused; the version is stored with the record and shown to its recipients."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ackhub.adapters.loader import Adapters, Loaded, load
from ackhub.core.adapter import Adapter, RecordType, SchemaVersion
from ackhub.core.clock import ManualClock
from ackhub.core.errors import ConfigError
from ackhub.hub.config import parse_settings
from ackhub.hub.exchange.catalogue import build
from ackhub.hub.exchange.routing import Router
from ackhub.v1 import catalogue_service_pb2 as cat_pb
from ackhub.v1 import catalogue_service_pb2_grpc as cat_grpc
from ackhub.v1 import exchange_service_pb2 as pb
from tests.harness import RunningHub, base_config, error_details, start_hub, table_counts

TYPE = "sample.notice.sent"
SCHEMAS = Path(__file__).parent / "data" / "schemas"
LAST_DAY = date(2027, 3, 31)
# 23:59:59.999 on the last day in China Standard Time (UTC+8): 15:59:59.999 UTC.
LAST_MOMENT_MS = int(datetime(2027, 3, 31, 15, 59, 59, 999_000, tzinfo=UTC).timestamp() * 1000)
V1 = json.dumps({"notice": "office closed on Monday"}).encode()
V2 = json.dumps({"text": "周一闭馆", "lang": "zh"}, ensure_ascii=False).encode()


class _Sample(Adapter):
    """An adapter as a partner would write one, bringing a type with two versions, the first deprecated."""

    kind = "sample"
    title = "a test adapter with a versioned record type"

    def __init__(self, deprecated_until: date | None = LAST_DAY, newest_deprecated: bool = False) -> None:
        self.deprecated_until = deprecated_until
        self.newest_deprecated = newest_deprecated

    def record_types(self) -> Sequence[RecordType]:
        return ()

    def catalogue(self) -> Sequence[SchemaVersion]:
        return (
            SchemaVersion(TYPE, 1, SCHEMAS / f"{TYPE}.v1.json", deprecated_until=self.deprecated_until),
            SchemaVersion(
                TYPE,
                2,
                SCHEMAS / f"{TYPE}.v2.json",
                deprecated_until=LAST_DAY if self.newest_deprecated else None,
            ),
        )


def _adapters(sample: _Sample | None = None) -> Adapters:
    adapters = load()
    adapters.loaded["sample"] = Loaded(sample or _Sample(), "tests.test_schema_versions:_Sample")
    return adapters


def _route(tax_takes: list[int]) -> dict[str, Any]:
    return {
        "record_type": TYPE,
        "publishers": ["customs"],
        "recipients": [
            {"agency": "tax", "ack_level": "RECEIVED", "schema_versions": tax_takes},
            {"agency": "fx", "ack_level": "RECEIVED"},  # every version
        ],
    }


def _hub(database_url: str, clock: ManualClock, tax_takes: list[int]) -> RunningHub:
    def edit(config: dict[str, Any]) -> None:
        config["routes"].append(_route(tax_takes))
        config["console"] = {"listen": "127.0.0.1:0"}

    return start_hub(database_url, clock=clock, edit=edit, adapters=_adapters())


@pytest.fixture(name="versioned")
def fixture_versioned(database_url: str) -> Iterator[tuple[RunningHub, ManualClock]]:
    """tax takes versions 1 and 2, fx every version; the clock at the last moment of v1's last day."""
    clock = ManualClock(LAST_MOMENT_MS)
    hub = _hub(database_url, clock, [1, 2])
    try:
        yield hub, clock
    finally:
        hub.stop()


def _publish(hub: RunningHub, payload: bytes, version: int, request_id: str = "") -> pb.Receipt:
    request = pb.PublishRecordRequest(
        request_id=request_id or str(uuid.uuid4()), record_type=TYPE, payload=payload, schema_version=version
    )
    receipt: pb.Receipt = hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs")).receipt
    return receipt


def _refused(hub: RunningHub, payload: bytes, version: int) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    counts = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        _publish(hub, payload, version)
    code, reason, _, fields = error_details(refused.value)
    assert table_counts(hub) == counts, "nothing is stored on a refusal"
    return code, reason, fields


def test_a_deprecated_version_works_until_its_last_day_and_the_receipt_says_so(
    versioned: tuple[RunningHub, ManualClock],
) -> None:
    """On v1's last day (at 23:59:59.999 China Standard Time) a v1 record is stored, with the deprecation
    in its receipt; one millisecond later, the next day, v1 is INVALID_ARGUMENT SCHEMA_VERSION_RETIRED
    naming schema_version, and v2 is taken without a deprecation."""
    hub, clock = versioned
    request_id = str(uuid.uuid4())
    receipt = _publish(hub, V1, 1, request_id)
    assert receipt.schema_version == 1 and receipt.HasField("deprecation")
    assert (
        receipt.deprecation.version,
        receipt.deprecation.end_date,
        receipt.deprecation.replacement_version,
    ) == (
        1,
        "2027-03-31",
        2,
    )
    assert "taken until 2027-03-31" in receipt.deprecation.message
    clock.advance(1)
    code, reason, fields = _refused(hub, V1, 1)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SCHEMA_VERSION_RETIRED")
    assert (
        "taken until 2027-03-31" in fields["schema_version"]
        and "publish version 2" in fields["schema_version"]
    )
    assert _publish(hub, V1, 1, request_id) == pb.Receipt(**{**_fields(receipt), "replayed": True}), (
        "a retry of a record accepted in time still gets its receipt"
    )
    current = _publish(hub, V2, 2)
    assert current.schema_version == 2 and not current.HasField("deprecation")


def _fields(receipt: pb.Receipt) -> dict[str, Any]:
    return {field.name: value for field, value in receipt.ListFields()}


def test_the_version_is_stored_with_the_record_and_shown_to_recipients(
    versioned: tuple[RunningHub, ManualClock],
) -> None:
    """Each record keeps its version; unset is the first version (what a publisher that never named one
    has always sent), told of its deprecation; GetRecord (as a recipient) shows the version, and each
    payload is checked against its own version's schema."""
    hub, _ = versioned
    old, new, default = _publish(hub, V1, 1), _publish(hub, V2, 2), _publish(hub, V1, 0)
    assert default.schema_version == 1 and default.deprecation.end_date == "2027-03-31"
    for receipt, version in ((old, 1), (new, 2), (default, 1)):
        record = hub.exchange_stub.GetRecord(
            pb.GetRecordRequest(record_id=receipt.record_id), metadata=hub.as_agency("tax")
        ).record
        assert record.schema_version == version
    code, reason, fields = _refused(hub, V2, 1)  # a v2 payload is not a valid v1 one
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAYLOAD_INVALID")
    assert set(fields) == {"payload.notice", "payload.text", "payload.lang"}
    code, reason, fields = _refused(hub, V2, 3)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SCHEMA_VERSION_UNKNOWN")
    assert fields == {"schema_version": f"{TYPE} has versions 1, 2; got 3"}


def test_the_catalogue_and_metrics_show_the_deprecation(versioned: tuple[RunningHub, ManualClock]) -> None:
    """GetRecordType gives v1's end date (none for v2); /metrics counts v1 publishes by publisher."""
    hub, _ = versioned
    answer = cat_grpc.CatalogueServiceStub(hub.channel).GetRecordType(
        cat_pb.GetRecordTypeRequest(name=TYPE), metadata=hub.as_agency("customs")
    )
    assert [(v.version, v.deprecation_end_date) for v in answer.record_type.versions] == [
        (1, "2027-03-31"),
        (2, ""),
    ]
    _publish(hub, V1, 1)
    _publish(hub, V1, 1)
    _publish(hub, V2, 2)
    assert hub.server.console is not None
    text = httpx.get(f"http://127.0.0.1:{hub.server.console.port}/metrics", timeout=10).text
    samples = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ackhub_deprecated_schema_publishes_total"
    }
    labels = (("end_date", "2027-03-31"), ("publisher", "customs"), ("record_type", TYPE), ("version", "1"))
    assert samples == {labels: 2.0}


def test_a_version_a_recipient_does_not_take_is_refused(database_url: str) -> None:
    """tax takes only v2: a v1 record (still within its dates) is INVALID_ARGUMENT SCHEMA_VERSION_NOT_ROUTED
    naming schema_version and tax; nothing is stored; a v2 record goes to both recipients."""
    hub = _hub(database_url, ManualClock(LAST_MOMENT_MS), [2])
    try:
        code, reason, fields = _refused(hub, V1, 1)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SCHEMA_VERSION_NOT_ROUTED")
        assert "tax takes version 2" in fields["schema_version"]
        receipt = _publish(hub, V2, 2)
        assert sorted(d.recipient for d in receipt.deliveries) == ["fx", "tax"]
    finally:
        hub.stop()


def test_an_unknown_version_in_a_route_is_refused_at_start() -> None:
    """A recipient taking a version the catalogue does not have: refused at start, naming the route's
    recipient and the versions there are."""
    config = base_config("sqlite:///unused.db")
    config["routes"].append(_route([1, 3]))
    settings = parse_settings(config, "test", {})
    with pytest.raises(ConfigError) as refused:
        Router(settings, build(_adapters()))
    text = str(refused.value)
    assert "routes[1].recipients[0].schema_versions" in text and "has no version 3" in text


def test_the_newest_version_cannot_be_deprecated() -> None:
    """A type whose newest version is deprecated leaves publishers nowhere to go: refused at start, naming
    the schema file."""
    with pytest.raises(ConfigError) as refused:
        build(_adapters(_Sample(newest_deprecated=True)))
    assert f"{TYPE}.v2.json" in str(refused.value) and "cannot be deprecated" in str(refused.value)


def test_the_record_types_page_shows_the_deprecation() -> None:
    """The rendered catalogue page marks v1 deprecated with its last day, and v2 not."""
    from ackhub.hub.exchange.catalogue_docs import render

    page = render(build(_adapters()))
    section = page[page.index(f"## `{TYPE}`") :]
    v1, v2 = section.split("### Version 2")
    assert "**Deprecated**: taken until 2027-03-31" in v1 and "Deprecated" not in v2
