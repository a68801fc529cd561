"""The record type catalogue: what the adapters bring, payloads checked at publish over real gRPC (SQLite and
PostgreSQL) with field paths into the payload, and a catalogue or route that cannot work refused at start."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from ackhub.adapters.commerce import LicenceUsage
from ackhub.adapters.loader import Adapters, Loaded, load
from ackhub.adapters.origin import CertificateUsage
from ackhub.core.adapter import Adapter, RecordType, SchemaVersion
from ackhub.core.errors import ConfigError
from ackhub.core.permit_document import format_quantity
from ackhub.hub.exchange.catalogue import MAX_VIOLATIONS, Catalogue, build, line_of
from ackhub.hub.exchange.catalogue_docs import render
from ackhub.v1 import catalogue_service_pb2 as catalogue_pb
from ackhub.v1 import catalogue_service_pb2_grpc
from ackhub.v1 import exchange_service_pb2 as pb
from tests.harness import RunningHub, error_details, start_hub, table_counts
from tests.records import ALPHA, DECLARATION, declaration, declaration_document

TYPE = "customs.export_declaration.released"
CERTIFICATE = "origin.certificate.issued"


@pytest.fixture(name="catalogue", scope="module")
def fixture_catalogue() -> Catalogue:
    return build(load())


def _publish(hub: RunningHub, payload: bytes, record_type: str = TYPE, **fields: Any) -> pb.Receipt:
    request = pb.PublishRecordRequest(
        record_type=record_type, subject_uscc=ALPHA, content_type="application/json", payload=payload
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return hub.exchange_stub.PublishRecord(request, metadata=hub.as_agency("customs")).receipt


def _refused(hub: RunningHub, payload: bytes, **fields: Any) -> tuple[str, dict[str, str]]:
    """Publish a payload that must be refused: (reason, {field: description}); checks nothing was stored."""
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        _publish(hub, payload, **fields)
    code, reason, _, violations = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert table_counts(hub) == before, "a refused publish stores nothing"
    return reason, violations


def test_each_adapter_brings_its_types_and_every_example_is_valid(catalogue: Catalogue) -> None:
    """customs, tax, fx, commerce and origin each bring their record types, with a title, a description
    and examples that match their own schema; one binary type decodes as its protobuf message."""
    brought = {t: catalogue.current(t).adapter for t in catalogue.record_types()}  # type: ignore[union-attr]
    assert brought == {
        TYPE: "customs",
        "tax.refund_registration.acknowledged": "tax",
        "fx.verification.result": "fx",
        "customs.licence_usage.reported": "commerce",
        "customs.origin_certificate_usage.reported": "origin",
        CERTIFICATE: "origin",
    }
    for record_type in catalogue.record_types():
        version = catalogue.current(record_type)
        assert version is not None and version.version == 1 and version.title and version.description
        assert all(version.violations(p) == [] for p in version.example_payloads())
    binary = catalogue.current(CERTIFICATE)
    assert binary is not None and binary.content_type == "application/x-protobuf"
    assert binary.message_type == "ackhub.v1.SignedPermit"


def test_the_usage_reports_the_hub_makes_match_their_schemas(catalogue: Catalogue) -> None:
    """The draw-down reports the commerce and origin adapters write for the hub are valid records."""
    fields = {
        "action": "DRAW",
        "kind": "commerce.import_licence",
        "declaration_number": DECLARATION,
        "item_number": 2,
        "hs_code": "8703231990",
        "quantity": format_quantity(30_500),
        "unit": "辆",
        "customs_office": "0202",
        "draw_down_id": "0193a1c2-7b4e-7c1d-9a51-3f0e6f2b8c11",
        "time": "2026-11-24T08:15:00.000Z",
    }
    licence = LicenceUsage().to_native({**fields, "number": "26-AA-204966"})
    certificate = CertificateUsage().to_native(
        {**fields, "number": "E09470ZC11220001", "kind": "origin.foreign_certificate", "customs_office": ""}
    )
    assert catalogue.check_payload(LicenceUsage.name, "application/json", licence) == "application/json"
    assert catalogue.check_payload(CertificateUsage.name, "", certificate) == "application/json"


def test_a_payload_that_is_not_json_is_refused_before_anything_is_stored(hub: RunningHub) -> None:
    """The issue's own case: `this is not json` as a released export declaration is INVALID_ARGUMENT
    PAYLOAD_INVALID on `payload`, not delivered days later to tax and fx."""
    reason, violations = _refused(hub, b"this is not json")
    assert reason == "PAYLOAD_INVALID"
    assert list(violations) == ["payload"] and violations["payload"].startswith(
        "is not JSON: Expecting value"
    )
    _, not_utf8 = _refused(hub, b'{"declaration_number": "\xff"}')
    assert not_utf8 == {"payload": "is not UTF-8: byte 24 cannot start a character"}


def test_violations_name_paths_into_the_payload(hub: RunningHub) -> None:
    """A bad HS code in the first goods item, a wrong USCC check character, a missing and an unknown field:
    one violation each, named by its path into the payload."""
    document = declaration_document()
    document["goods"][0]["hs_code"] = "09022"
    document["exporter"]["uscc"] = "91110000600037341X"
    del document["incoterm"]
    document["fob"] = 1
    _, violations = _refused(hub, json.dumps(document).encode())
    assert violations == {
        "payload.goods[0].hs_code": "an HS code is 6, 8, 10 or 13 digits, got '09022'",
        "payload.exporter.uscc": "check character is 'X' but should be 'L'",
        "payload.incoterm": "is required",
        "payload.fob": "is not a field of this record type",
    }


def test_only_the_first_violations_are_named(hub: RunningHub) -> None:
    """Fifty bad goods items: the refusal names the first MAX_VIOLATIONS of them, in order."""
    document = declaration_document()
    document["goods"] = [{**document["goods"][0], "line": n, "hs_code": "x"} for n in range(1, 51)]
    _, violations = _refused(hub, json.dumps(document).encode())
    assert list(violations) == [f"payload.goods[{n}].hs_code" for n in range(MAX_VIOLATIONS)]


def test_the_content_type_must_be_the_types(hub: RunningHub) -> None:
    """A declaration sent as text/plain is refused on `content_type`; with none given, it is stored as the
    type's own (application/json); with parameters (charset) it is accepted as sent."""
    reason, violations = _refused(hub, declaration(), content_type="text/plain")
    assert reason == "PAYLOAD_INVALID" and list(violations) == ["content_type"]
    assert "application/json" in violations["content_type"]
    plain = _publish(hub, declaration(), content_type="")
    with_charset = _publish(hub, declaration(note="2"), content_type="application/json; charset=utf-8")
    stored = [
        hub.exchange_stub.GetRecord(
            pb.GetRecordRequest(record_id=r.record_id), metadata=hub.as_operator()
        ).record.content_type
        for r in (plain, with_charset)
    ]
    assert stored == ["application/json", "application/json; charset=utf-8"]


def test_one_invalid_record_in_a_batch_refuses_only_itself(hub: RunningHub) -> None:
    """PublishRecords with an invalid payload in the middle: that one answers PAYLOAD_INVALID with its paths,
    the others are stored."""
    request = pb.PublishRecordsRequest(
        records=[
            pb.PublishRecordRequest(record_type=TYPE, content_type="application/json", payload=payload)
            for payload in (declaration(note="a"), b"{}", declaration(note="b"))
        ]
    )
    results = hub.exchange_stub.PublishRecords(request, metadata=hub.as_agency("customs")).results
    assert [r.WhichOneof("outcome") for r in results] == ["receipt", "error", "receipt"]
    assert results[1].error.reason == "PAYLOAD_INVALID"
    assert "payload.declaration_number" in results[1].error.metadata["fields"].split(",")


def test_a_binary_record_must_decode_as_its_message(database_url: str, catalogue: Catalogue) -> None:
    """origin.certificate.issued carries an ackhub.v1.SignedPermit: its example is accepted; truncated bytes,
    JSON, or a message missing required content are refused with paths into the message."""

    def edit(config: dict[str, Any]) -> None:
        config["routes"].append(
            {
                "record_type": CERTIFICATE,
                "publishers": ["customs"],
                "recipients": [{"agency": "commerce", "ack_level": "RECEIVED"}],
            }
        )

    hub = start_hub(database_url, edit=edit)
    try:
        version = catalogue.current(CERTIFICATE)
        assert version is not None
        (example,) = version.example_payloads()
        kind = {"record_type": CERTIFICATE, "content_type": "application/x-protobuf"}
        assert _publish(hub, example, **kind).record_id
        _, truncated = _refused(hub, example[:-5], **kind)
        assert (
            list(truncated) == ["payload"]
            and "is not an encoded ackhub.v1.SignedPermit" in truncated["payload"]
        )
        _, as_json = _refused(hub, example, record_type=CERTIFICATE, content_type="application/json")
        assert list(as_json) == ["content_type"]
        document = json.loads(json.dumps(version.examples[0]))
        document["content"]["lines"][0]["hs_code"] = "6109100021"
        del document["content"]["holder_uscc"]
        assert version.message is not None
        from google.protobuf import json_format

        bad = json_format.ParseDict(document, version.message()).SerializeToString()
        _, violations = _refused(hub, bad, **kind)
        assert set(violations) == {"payload.content.lines[0].hs_code", "payload.content.holder_uscc"}
    finally:
        hub.stop()


# -- refused at start ------------------------------------------------------------------------------


class _Tiny(Adapter):
    title = "a test adapter"

    def __init__(self, kind: str, brings: Sequence[SchemaVersion]) -> None:
        self.kind = kind  # type: ignore[misc]  # a test adapter names its kind per instance
        self.brings = brings

    def record_types(self) -> Sequence[RecordType]:
        return ()

    def catalogue(self) -> Sequence[SchemaVersion]:
        return self.brings


def _adapters(*adapters: _Tiny) -> Adapters:
    return Adapters(loaded={a.kind: Loaded(a, f"tests.fake:{a.kind}") for a in adapters})


SCHEMA = """{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "t",
  "type": "object",
  "properties": {
    "a": {"type": "string"},
    "b": %s
  },
  "examples": [{"a": "x", "b": "y"}]
}
"""


def test_a_schema_that_does_not_compile_is_refused_naming_its_file_and_line(tmp_path: Path) -> None:
    """A wrong type name, a keyword the hub cannot compile, an unknown format, an example that does not
    match, a file that is not JSON: each refused at start with `file:line` of the problem."""
    cases = {
        '{"type": "strnig"}': (7, "not a valid schema"),
        '{"$ref": "#/properties/a"}': (7, "keyword '$ref'"),
        '{"type": "string", "format": "email"}': (7, "format 'email' is unknown"),
        '{"type": "integer"}': (
            9,
            "example 0 does not match the schema: payload.b must be an integer",
        ),
        '{"type": "string",}': (7, "is not JSON"),
    }
    for index, (b, (line, why)) in enumerate(cases.items()):
        path = tmp_path / f"test.thing.v{index + 1}.json"
        path.write_text(SCHEMA % b, encoding="utf-8")
        adapters = _adapters(_Tiny("tax", [SchemaVersion("test.thing", index + 1, path)]))
        with pytest.raises(ConfigError) as refused:
            build(adapters)
        ((where, problem),) = refused.value.problems
        assert (where, why in problem) == (f"{path}:{line}", True), (b, problem)


def test_two_adapters_bringing_one_type_are_refused_naming_both(tmp_path: Path) -> None:
    """tax and fx both bringing `test.thing`: refused at start, the message naming both adapters."""
    path = tmp_path / "test.thing.v1.json"
    path.write_text(SCHEMA % '{"type": "string"}', encoding="utf-8")
    one = SchemaVersion("test.thing", 1, path)
    with pytest.raises(ConfigError) as refused:
        build(_adapters(_Tiny("fx", [one]), _Tiny("tax", [one])))
    ((where, problem),) = refused.value.problems
    assert where == "test.thing" and "'fx' (tests.fake:fx)" in problem and "'tax' (tests.fake:tax)" in problem


def test_a_route_for_a_type_without_a_schema_is_refused_at_start(database_url: str) -> None:
    """A route for a record type no adapter brings: the hub does not start, naming the route; nothing is
    created in the database."""

    def edit(config: dict[str, Any]) -> None:
        config["routes"].append(
            {
                "record_type": "tax.refund.registered",
                "recipients": [{"agency": "customs", "ack_level": "RECEIVED"}],
            }
        )

    with pytest.raises(ConfigError) as refused:
        start_hub(database_url, edit=edit)
    ((where, problem),) = refused.value.problems
    assert (
        where == "routes[1].record_type"
        and "'tax.refund.registered' is not in the record type catalogue" in problem
    )


def test_line_of_follows_a_path_through_nested_objects_and_arrays() -> None:
    """The line where the value at a JSON path starts, for keys after siblings and items after others."""
    text = '{\n  "a": [\n    1,\n    {"x": 2,\n     "y": [3,\n           4]}\n  ],\n  "b": "c"\n}'
    assert [line_of(text, p) for p in ([], ["a"], ["a", 1], ["a", 1, "y", 1], ["b"], ["zz"])] == [
        1,
        2,
        4,
        6,
        8,
        1,
    ]


# -- ListRecordTypes / GetRecordType -----------------------------------------------------------------


def test_list_and_get_record_types_serve_the_catalogue(hub: RunningHub, catalogue: Catalogue) -> None:
    """Any party lists every type (paginated, by name) and gets one with its schema as published, its
    examples as publishable bytes, and whether this hub routes it; the examples publish as they are."""
    stub = catalogue_service_pb2_grpc.CatalogueServiceStub(hub.channel)
    names: list[str] = []
    token = ""
    while True:
        page = stub.ListRecordTypes(
            catalogue_pb.ListRecordTypesRequest(page_size=4, page_token=token), metadata=hub.as_agency("fx")
        )
        names += [t.name for t in page.record_types]
        token = page.next_page_token
        if not token:
            break
    assert names == catalogue.record_types()
    got = stub.GetRecordType(
        catalogue_pb.GetRecordTypeRequest(name=TYPE), metadata=hub.as_operator()
    ).record_type
    (version,) = got.versions
    published = catalogue.current(TYPE)
    assert published is not None
    assert (got.adapter, got.current_version, got.routed) == ("customs", 1, True)
    assert (version.content_type, version.title) == ("application/json", published.title)
    assert (
        json.loads(version.json_schema) == published.schema
        and version.json_schema == published.source.read_text()
    )
    for example in version.examples:
        assert _publish(hub, example).record_id
    other = stub.GetRecordType(
        catalogue_pb.GetRecordTypeRequest(name=CERTIFICATE), metadata=hub.as_agency("customs")
    ).record_type
    assert not other.routed and other.versions[0].message_type == "ackhub.v1.SignedPermit"


def test_an_unknown_record_type_is_not_found_and_bad_requests_are_invalid(hub: RunningHub) -> None:
    """GetRecordType of a type the catalogue lacks is NOT_FOUND naming it; no name, a negative page size
    or a forged page token is INVALID_ARGUMENT naming the field."""
    stub = catalogue_service_pb2_grpc.CatalogueServiceStub(hub.channel)
    agency = hub.as_agency("tax")
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetRecordType(catalogue_pb.GetRecordTypeRequest(name="tax.refund.registered"), metadata=agency)
    code, reason, metadata, _ = error_details(missing.value)
    assert (code, reason, metadata) == (
        grpc.StatusCode.NOT_FOUND,
        "RECORD_TYPE_NOT_FOUND",
        {"record_type": "tax.refund.registered"},
    )
    for request, field in (
        (catalogue_pb.GetRecordTypeRequest(), "name"),
        (catalogue_pb.ListRecordTypesRequest(page_size=-1), "page_size"),
        (catalogue_pb.ListRecordTypesRequest(page_token="forged"), "page_token"),
    ):
        call = (
            stub.GetRecordType
            if isinstance(request, catalogue_pb.GetRecordTypeRequest)
            else stub.ListRecordTypes
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(request, metadata=agency)
        assert error_details(refused.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert field in error_details(refused.value)[3]


def test_the_record_types_page_is_rendered_from_the_catalogue(catalogue: Catalogue) -> None:
    """docs/record-types.md is exactly what the catalogue renders (regenerate with `make docs`), and names
    every type, every field of each schema, and each example."""
    page = Path(__file__).parent.parent / "docs" / "record-types.md"
    text = render(catalogue)
    assert page.read_text(encoding="utf-8") == text, "docs/record-types.md is out of date: run `make docs`"
    for name in catalogue.record_types():
        version = catalogue.current(name)
        assert version is not None and f"## `{name}`" in text
        for field in version.schema.get("properties", {}):
            assert f"| `{field}` |" in text
        for example in version.examples:
            assert json.dumps(example, ensure_ascii=False, indent=2) in text


def test_config_check_refuses_a_route_without_a_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ackhub config check` on the demo configuration with its route renamed to a type no adapter brings:
    exit 1, naming the route and the catalogue's types."""
    from ackhub.hub.cli import main

    demo = (Path(__file__).parent.parent / "examples" / "demo.toml").read_text(encoding="utf-8")
    config = tmp_path / "hub.toml"
    config.write_text(demo.replace(f'record_type = "{TYPE}"', 'record_type = "customs.export_declaration.x"'))
    assert main(["config", "check", str(config)]) == 1
    error = capsys.readouterr().err
    assert (
        "routes[0].record_type: 'customs.export_declaration.x' is not in the record type catalogue" in error
    )
    assert TYPE in error
