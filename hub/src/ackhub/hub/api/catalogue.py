"""`ackhub.v1.CatalogueService`: the record type catalogue (ackhub.hub.exchange.catalogue) as the contract
serves it."""

from __future__ import annotations

from typing import Any

from ackhub.core.errors import FieldViolation, InvalidArgument, NotFound
from ackhub.hub.auth import policy
from ackhub.hub.exchange.catalogue import Catalogue
from ackhub.hub.pagination import decode_token, encode_token, page_size
from ackhub.v1 import catalogue_service_pb2 as pb
from ackhub.v1 import catalogue_service_pb2_grpc as pb_grpc

_FILTERS: dict[str, object] = {"list": "record_types"}


def record_type(catalogue: Catalogue, name: str, routed: bool) -> pb.RecordType:
    versions = catalogue.versions(name)
    return pb.RecordType(
        name=name,
        adapter=versions[-1].adapter,
        current_version=versions[-1].version,
        routed=routed,
        versions=[
            pb.RecordTypeVersion(
                version=v.version,
                title=v.title,
                description=v.description,
                content_type=v.content_type,
                message_type=v.message_type,
                json_schema=v.schema_text,
                examples=v.example_payloads(),
                deprecation_end_date=v.deprecated_until.isoformat() if v.deprecated_until else "",
            )
            for v in versions
        ],
    )


class CatalogueServicer(pb_grpc.CatalogueServiceServicer):
    def __init__(self, catalogue: Catalogue, routed: set[str]) -> None:
        self.catalogue = catalogue
        self.routed = routed
        # The catalogue does not change while the hub runs: each type's message is built once.
        self._types = {
            name: record_type(catalogue, name, name in routed) for name in catalogue.record_types()
        }

    async def ListRecordTypes(
        self, request: pb.ListRecordTypesRequest, context: Any
    ) -> pb.ListRecordTypesResponse:
        policy.caller()
        size = page_size(request.page_size)
        start = decode_token(request.page_token, _FILTERS) or 0
        names = list(self._types)
        page = names[start : start + size]
        more = start + size < len(names)
        return pb.ListRecordTypesResponse(
            record_types=[self._types[name] for name in page],
            next_page_token=encode_token(start + size, _FILTERS) if more else "",
        )

    async def GetRecordType(self, request: pb.GetRecordTypeRequest, context: Any) -> pb.GetRecordTypeResponse:
        policy.caller()
        if not request.name:
            raise InvalidArgument([FieldViolation("name", "is required")])
        found = self._types.get(request.name)
        if found is None:
            raise NotFound("record_type", request.name)
        return pb.GetRecordTypeResponse(record_type=found)
