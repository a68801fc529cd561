"""Property: generated and mutated requests, from every role, at every unary RPC over real gRPC never get
INTERNAL or UNKNOWN, never stop the server, and a refused request changes nothing in the store; raw random
and mutated request bytes at every RPC (streaming ones, health and reflection included) are
INVALID_ARGUMENT when they do not decode, and never INTERNAL or UNKNOWN."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ackhub.core.clock import ManualClock, SystemClock
from ackhub.v1 import exchange_service_pb2 as pb
from tests.harness import RunningHub, error_details, start_hub, table_counts
from tests.records import declaration
from tests.security_data import ALPHA, DECLARATION, TYPE, bearer, with_jwks
from tests.test_policy import methods, path

HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
EVERY_RPC = [
    *methods(),
    *HEALTH.methods,
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].methods_by_name["ServerReflectionInfo"],
]

UNARY = [m for m in methods() if not m.client_streaming and not m.server_streaming]
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
INTERESTING = st.sampled_from(
    [
        "",
        " ",
        "customs",
        "tax",
        ALPHA,
        DECLARATION,
        TYPE,
        str(uuid.uuid4()),
        "0202",
        "x" * 9000,
        "../../etc",
        "'; --",
    ]
)
INTS = {
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 20),
}


# In CI the examples are the same every run (a landing must not depend on luck); locally they vary, so new
# inputs keep being tried.
FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=list(HealthCheck),
)


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(TEXT, INTERESTING)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=False, width=32)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return INTS.get(field.type, st.integers(0, 2**31 - 1))


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of `descriptor`'s type: some fields set to generated values, a few levels deep."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2 or descriptor.GetOptions().map_entry:
        return st.just(cls())
    fields = [f for f in descriptor.fields if not (f.message_type and f.message_type.GetOptions().map_entry)]

    @st.composite
    def build(draw: Any) -> Message:
        message = cls()
        for field in (
            draw(st.lists(st.sampled_from(fields), max_size=len(fields), unique=True)) if fields else []
        ):
            if field.is_repeated:
                items = draw(st.lists(_value(field, depth), max_size=3))
                target = getattr(message, field.name)
                for item in items:
                    target.add().CopyFrom(
                        item
                    ) if field.type == FieldDescriptor.TYPE_MESSAGE else target.append(item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, field.name).CopyFrom(draw(_value(field, depth)))
            else:
                setattr(message, field.name, draw(_value(field, depth)))
        return message

    return build()


def valid_publish() -> pb.PublishRecordRequest:
    return pb.PublishRecordRequest(
        request_id=str(uuid.uuid4()), record_type=TYPE, subject_uscc=ALPHA, declaration_number=DECLARATION,
        content_type="application/json", payload=declaration(),
    )  # fmt: skip


@pytest.fixture(name="fuzzed", scope="module")
def fixture_fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHub, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("fuzz")
    jwks = with_jwks(folder / "jwks.json")

    def edit(config: dict[str, Any]) -> None:
        jwks(config)
        config["limits"] = {"requests_per_second": 0}

    clock = ManualClock(SystemClock().now_ms())
    running = start_hub(f"sqlite:///{folder / 'hub.db'}", clock=clock, edit=edit)
    record_id = running.exchange_stub.PublishRecord(valid_publish(), metadata=running.as_agency("customs"))
    roles = {
        "agency": running.as_agency("customs"),
        "other agency": running.as_agency("commerce"),
        "operator": running.as_operator("alice"),
        "enterprise": bearer(clock, "enterprise", ALPHA, ttl_s=3600),
        "administrator": bearer(clock, "administrator", "root", ttl_s=3600),
        "nobody": (),
        "bad token": (("authorization", "Bearer not.a.token"),),
    }
    try:
        yield running, {"roles": roles, "record_id": record_id.receipt.record_id}
    finally:
        running.stop()


def _bases(method: MethodDescriptor, record_id: str) -> list[Message]:
    """Plausible requests for `method` to mutate."""
    cls = message_factory.GetMessageClass(method.input_type)
    found = [cls()]
    if method.name == "PublishRecord":
        found.append(valid_publish())
    for name in ("record_id",):
        if name in method.input_type.fields_by_name:
            found.append(cls(**{name: record_id}))
    return found


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
def test_generated_requests_never_crash_the_hub(
    method: MethodDescriptor, fuzzed: tuple[RunningHub, dict[str, Any]]
) -> None:
    """No INTERNAL or UNKNOWN, the hub stays SERVING, and refused requests leave every table as it was."""
    hub, data = fuzzed
    response_class = message_factory.GetMessageClass(method.output_type)
    stub = hub.channel.unary_unary(
        path(method), request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )  # fmt: skip
    generated = messages(method.input_type)
    mutated = st.tuples(st.sampled_from(_bases(method, data["record_id"])), generated).map(
        lambda pair: _merged(*pair)
    )

    @FUZZ
    @given(request=st.one_of(generated, mutated), role=st.sampled_from(sorted(data["roles"])))
    def property_(request: Message, role: str) -> None:
        before = table_counts(hub)
        try:
            stub(request, metadata=data["roles"][role], timeout=10)
            return
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            details = error.details()  # type: ignore[attr-defined]
        assert code not in NEVER, f"{method.name} as {role}: {code} {details}"
        assert table_counts(hub) == before, f"{method.name} as {role} was refused but changed the store"

    property_()
    health = health_pb2_grpc.HealthStub(hub.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def _merged(base: Message, changes: Message) -> Message:
    merged = type(base)()
    merged.CopyFrom(base)
    merged.MergeFrom(changes)
    return merged


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid` cut short, with bytes flipped, or with a byte that is never UTF-8 (0xff) inside it."""
    cut = st.integers(1, max(1, len(valid) - 1)).map(lambda n: valid[:n])
    flipped = st.lists(st.integers(0, max(0, len(valid) - 1)), min_size=1, max_size=4).map(
        lambda places: bytes(b ^ 0xA5 if i in places else b for i, b in enumerate(valid))
    )
    not_utf8 = st.integers(0, len(valid)).map(lambda n: valid[:n] + b"\xff" + valid[n:])
    return st.one_of(cut, flipped, not_utf8)


def _valid_bytes(method: MethodDescriptor) -> bytes:
    if method.name == "PublishRecord":
        return valid_publish().SerializeToString()
    if method.name == "Subscribe":
        return pb.SubscribeRequest(open=pb.SubscribeOpen(agency_id="customs")).SerializeToString()
    if method.name == "AcknowledgeDelivery":  # a reason with a non-ASCII character, to break its UTF-8
        ack = pb.AcknowledgeDeliveryRequest()
        ack.acknowledgement.delivery_id, ack.acknowledgement.reason = str(uuid.uuid4()), "已登记"
        return ack.SerializeToString()
    return b"\x0a\x06customs"  # field 1, a string, in most request messages


def _raw_call(hub: RunningHub, method: MethodDescriptor, data: bytes) -> grpc.StatusCode:
    """Send `data` as the request bytes of `method` (alone, or as a stream's only message); the status."""
    metadata = hub.as_agency("customs")
    try:
        if method.client_streaming:
            call = hub.channel.stream_stream(path(method))
            list(call(iter([data]), metadata=metadata, timeout=10))
        elif method.server_streaming:
            call = hub.channel.unary_stream(path(method))
            responses = call(data, metadata=metadata, timeout=10)
            next(iter(responses), None)  # Health/Watch never ends by itself: the first answer is enough
            responses.cancel()
        else:
            hub.channel.unary_unary(path(method))(data, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", EVERY_RPC, ids=lambda m: m.name)
def test_undecodable_request_bytes_are_invalid_argument(
    method: MethodDescriptor, fuzzed: tuple[RunningHub, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """Random and mutated request bytes at every RPC: never INTERNAL or UNKNOWN; bytes that do not decode
    (truncated, not UTF-8) are INVALID_ARGUMENT, and gRPC logs no error for them."""
    hub, _ = fuzzed
    valid = _valid_bytes(method)
    message_class = message_factory.GetMessageClass(method.input_type)

    @FUZZ
    @given(data=st.one_of(st.binary(min_size=1, max_size=64), _mutations(valid)))
    def property_(data: bytes) -> None:
        code = _raw_call(hub, method, data)
        assert code not in NEVER, f"{method.name}: {code} for {data!r}"
        try:
            message_class.FromString(data)
        except Exception:
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{method.name}: {code} for {data!r}"

    with caplog.at_level(logging.ERROR):
        property_()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_an_undecodable_request_says_so(fuzzed: tuple[RunningHub, dict[str, Any]]) -> None:
    """A string field that is not UTF-8 is INVALID_ARGUMENT with reason UNDECODABLE_REQUEST on `request`."""
    hub, _ = fuzzed
    data = pb.GetRecordRequest(record_id="x").SerializeToString()[:-1] + b"\xff"
    with pytest.raises(grpc.RpcError) as refused:
        hub.channel.unary_unary("/ackhub.v1.ExchangeService/GetRecord")(
            data, metadata=hub.as_operator(), timeout=10
        )
    code, reason, _, fields = error_details(refused.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNDECODABLE_REQUEST")
    assert "not a valid protobuf message" in fields["request"]
