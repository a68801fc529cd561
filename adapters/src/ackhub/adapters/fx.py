"""The foreign-exchange administration (SAFE): receives export declaration data for foreign-exchange
verification and settlement, and answers with a verification result.

Native format: JSON with the FX system's field names, `YYYYMMDD` dates, amounts as decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from ackhub.adapters._declaration import check_export_declaration
from ackhub.adapters._schemas import bundled
from ackhub.core.adapter import Adapter, JsonRecordType, RecordType, SchemaVersion
from ackhub.core.errors import FieldViolation
from ackhub.core.identifiers import check_declaration_number
from ackhub.core.permit_document import parse_quantity


class ExportDeclarationForFx(JsonRecordType):
    """What the FX system needs of a released export declaration: who, when, currency and value."""

    name = "customs.export_declaration.released"
    direction: ClassVar[Literal["sends", "receives"]] = "receives"
    native_names: ClassVar[Mapping[str, str]] = {
        "declaration_number": "bgdh",
        "uscc": "org_uscc",
        "export_date": "ckrq",
        "currency": "bz",
        "settlement_mode": "jsfs",
        "items": "spxx",
    }
    item_names: ClassVar[Mapping[str, str]] = {"hs_code": "hs", "quantity": "sl", "amount": "je"}
    required: ClassVar[Sequence[str]] = ("declaration_number", "uscc", "export_date", "currency", "items")

    def check_fields(self, fields: Mapping[str, Any]) -> list[FieldViolation]:
        bad = super().check_fields(fields) + check_export_declaration(
            fields, self.native_names, "spxx", self.item_names
        )
        mode = fields.get("settlement_mode")
        if mode is not None and mode not in ("T/T", "L/C", "D/P", "D/A", "OTHER"):
            bad.append(FieldViolation("jsfs", f"is T/T, L/C, D/P, D/A or OTHER, got {mode!r}"))
        return bad


class FxVerification(JsonRecordType):
    """The FX administration's verification of a declaration against the money received."""

    name = "fx.verification.result"
    direction: ClassVar[Literal["sends", "receives"]] = "sends"
    native_names: ClassVar[Mapping[str, str]] = {
        "declaration_number": "bgdh",
        "uscc": "org_uscc",
        "result": "hxjg",
        "currency": "bz",
        "settled_amount": "jhje",
    }
    required: ClassVar[Sequence[str]] = ("declaration_number", "uscc", "result")

    def check_fields(self, fields: Mapping[str, Any]) -> list[FieldViolation]:
        bad = super().check_fields(fields)
        problem = check_declaration_number(str(fields["declaration_number"]))
        if problem:
            bad.append(FieldViolation("bgdh", problem))
        if fields["result"] not in ("MATCHED", "UNMATCHED", "PENDING"):
            bad.append(FieldViolation("hxjg", "is MATCHED, UNMATCHED or PENDING"))
        if fields["result"] == "MATCHED":
            try:
                parse_quantity(str(fields.get("settled_amount", "")))
            except ValueError as exc:
                bad.append(FieldViolation("jhje", f"a matched verification states the amount: {exc}"))
        return bad


class FxAdapter(Adapter):
    kind = "fx"
    title = "State Administration of Foreign Exchange (verification and settlement)"

    def record_types(self) -> Sequence[RecordType]:
        return (ExportDeclarationForFx(), FxVerification())

    def catalogue(self) -> Sequence[SchemaVersion]:
        return (bundled("fx.verification.result", 1),)
