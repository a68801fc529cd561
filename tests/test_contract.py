"""The contract itself (proto/ackhub/v1): every element is commented, every field says its behaviour
(google.api.field_behavior), every mutating RPC takes a request_id, the language options let Go and Java
partners generate without edits, and the generated Python takes field_behavior from
googleapis-common-protos rather than from a generated copy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc_tools
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
# Methods that change nothing (reads) or that are idempotent by nature and say so in their comment.
READS = ("Get", "List", "Verify", "Trace")
NATURALLY_IDEMPOTENT = {
    "AcknowledgeDelivery",  # an identical acknowledgement is a no-op (`duplicate`)
    "Subscribe",  # a stream; its acknowledgements are as above
    "PublishRecords",  # each record carries its own request_id
    "ReceiveDelivery",  # hosted by agencies, called by the hub with a stable delivery_id
}


def _descriptors(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "contract.binpb"
    sources = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO}", f"-I{THIRD_PARTY}", f"-I{include}", "--include_source_info"]
    assert protoc.main([*args, f"--descriptor_set_out={out}", *sources]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _commented(file: descriptor_pb2.FileDescriptorProto) -> set[tuple[int, ...]]:
    return {
        tuple(location.path)
        for location in file.source_code_info.location
        if location.leading_comments.strip() or location.trailing_comments.strip()
    }


def _elements(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source path, name) of every service, method, message, field, oneof, enum and enum value."""

    def enums(
        prefix: tuple[int, ...], items: Iterable[descriptor_pb2.EnumDescriptorProto], scope: str
    ) -> Iterator[tuple[tuple[int, ...], str]]:
        for i, enum in enumerate(items):
            yield (*prefix, i), f"{scope}{enum.name}"
            for j, value in enumerate(enum.value):
                yield (*prefix, i, 2, j), f"{scope}{enum.name}.{value.name}"

    def messages(
        prefix: tuple[int, ...], items: Iterable[descriptor_pb2.DescriptorProto], scope: str
    ) -> Iterator[tuple[tuple[int, ...], str]]:
        for i, message in enumerate(items):
            path, name = (*prefix, i), f"{scope}{message.name}"
            if message.options.map_entry:
                continue
            yield path, name
            for j, field in enumerate(message.field):
                yield (*path, 2, j), f"{name}.{field.name}"
            synthetic = {f.oneof_index for f in message.field if f.proto3_optional}
            for j, oneof in enumerate(message.oneof_decl):
                if j not in synthetic:  # `optional` makes a oneof of its own, with no source
                    yield (*path, 8, j), f"{name}.{oneof.name}"
            yield from messages((*path, 3), message.nested_type, f"{name}.")
            yield from enums((*path, 4), message.enum_type, f"{name}.")

    yield from messages((4,), file.message_type, "")
    yield from enums((5,), file.enum_type, "")
    for i, service in enumerate(file.service):
        yield (6, i), service.name
        for j, method in enumerate(service.method):
            yield (6, i, 2, j), f"{service.name}.{method.name}"


def test_every_element_is_commented(tmp_path: Path) -> None:
    """Every service, method, message, field, enum and enum value of ackhub.v1 has a comment."""
    missing = [
        f"{file.name}: {name}"
        for file in _descriptors(tmp_path).file
        for path, name in _elements(file)
        if path not in _commented(file)
    ]
    assert not missing, "elements without a comment:\n" + "\n".join(missing)


def test_every_field_says_its_behaviour() -> None:
    """Every field of every ackhub.v1 message (oneof members and map entries aside) is annotated with
    google.api.field_behavior, taken from googleapis-common-protos."""
    from ackhub.v1 import (
        audit_service_pb2,
        case_service_pb2,
        catalogue_service_pb2,
        exchange_service_pb2,
        operations_service_pb2,
        permit_service_pb2,
        subscription_service_pb2,
        trace_service_pb2,
        types_pb2,
    )

    assert not list((ROOT / "proto" / "src").rglob("field_behavior_pb2.py")), "no generated copy"
    assert field_behavior_pb2.DESCRIPTOR in types_pb2.DESCRIPTOR.dependencies, "googleapis-common-protos'"
    missing = []
    modules = (
        audit_service_pb2,
        case_service_pb2,
        catalogue_service_pb2,
        exchange_service_pb2,
        operations_service_pb2,
        permit_service_pb2,
        subscription_service_pb2,
        trace_service_pb2,
        types_pb2,
    )
    for module in modules:
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for field in message.fields:
                if field.containing_oneof is not None:
                    continue
                if not field.GetOptions().Extensions[field_behavior_pb2.field_behavior]:
                    missing.append(f"{message.full_name}.{field.name}")
    assert not missing, "fields without google.api.field_behavior:\n" + "\n".join(missing)


def test_every_mutating_rpc_takes_a_request_id(tmp_path: Path) -> None:
    """Every method that changes state (not Get/List/Verify/Trace, not idempotent by nature) has an
    optional-or-required string request_id in its request."""
    without = []
    for file in _descriptors(tmp_path).file:
        requests = {m.name: m for m in file.message_type}
        for service in file.service:
            for method in service.method:
                if method.name.startswith(READS) or method.name in NATURALLY_IDEMPOTENT:
                    continue
                request = requests[method.input_type.rsplit(".", 1)[-1]]
                if not any(f.name == "request_id" and f.type == f.TYPE_STRING for f in request.field):
                    without.append(f"{service.name}.{method.name}")
    assert not without, f"mutating methods without request_id: {without}"


def test_go_and_java_generate_without_edits(tmp_path: Path) -> None:
    """Every ackhub.v1 file sets the same go_package, java_package and java_multiple_files, and its own
    java_outer_classname."""
    files = [f for f in _descriptors(tmp_path).file if f.package == "ackhub.v1"]
    assert len(files) == len(list(PROTO.rglob("*.proto")))
    assert {f.options.go_package for f in files} == {"github.com/ackhub/ackhub/gen/go/ackhub/v1;ackhubv1"}
    assert {f.options.java_package for f in files} == {"org.ackhub.v1"}
    assert all(f.options.java_multiple_files for f in files)
    outer = [f.options.java_outer_classname for f in files]
    assert all(outer) and len(set(outer)) == len(outer)
