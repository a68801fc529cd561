"""Collecting every bad field of a request before refusing it, so the caller fixes all at once."""

from __future__ import annotations

import re
import uuid

from ackhub.core.errors import FieldViolation, InvalidArgument
from ackhub.core.identifiers import check_declaration_number, check_uscc

_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*(\s*;.*)?$", re.IGNORECASE)


class Violations:
    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def required(self, field: str, value: str) -> bool:
        if not value:
            self.add(field, "is required")
            return False
        return True

    def max_length(self, field: str, value: str, limit: int) -> bool:
        if len(value) > limit:
            self.add(field, f"is {len(value)} characters; at most {limit} are allowed")
            return False
        return True

    def uuid(self, field: str, value: str) -> None:
        try:
            uuid.UUID(value)
        except ValueError:
            self.add(field, f"must be a UUID, got {value[:64]!r}")

    def uscc(self, field: str, value: str) -> None:
        problem = check_uscc(value)
        if problem:
            self.add(field, problem)

    def declaration_number(self, field: str, value: str) -> None:
        problem = check_declaration_number(value)
        if problem:
            self.add(field, problem)

    def content_type(self, field: str, value: str) -> None:
        if len(value) > 128 or not _CONTENT_TYPE.match(value):
            self.add(field, f"must be a media type such as 'application/json', got {value[:64]!r}")

    def raise_if_any(self, reason: str | None = None) -> None:
        if self.items:
            raise InvalidArgument(self.items, reason=reason)
