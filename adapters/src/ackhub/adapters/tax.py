"""The tax bureau (State Taxation Administration): receives released export declarations for the export
tax refund and answers with refund registration acknowledgements.

Native format: the export-refund interface's JSON, with `YYYYMMDD` dates and amounts as decimal strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from ackhub.adapters._declaration import check_export_declaration
from ackhub.adapters._schemas import bundled
from ackhub.core.adapter import Adapter, JsonRecordType, RecordType, SchemaVersion
from ackhub.core.errors import FieldViolation
from ackhub.core.identifiers import check_declaration_number


class ReleasedExportDeclaration(JsonRecordType):
    """What the refund system needs of a released export declaration."""

    name = "customs.export_declaration.released"
    direction: ClassVar[Literal["sends", "receives"]] = "receives"
    native_names: ClassVar[Mapping[str, str]] = {
        "declaration_number": "entry_id",
        "uscc": "trade_uscc",
        "export_date": "i_e_date",
        "currency": "curr",
        "items": "goods",
    }
    item_names: ClassVar[Mapping[str, str]] = {"hs_code": "code_ts", "quantity": "g_qty", "amount": "fob"}
    required: ClassVar[Sequence[str]] = ("declaration_number", "uscc", "export_date", "currency", "items")

    def check_fields(self, fields: Mapping[str, Any]) -> list[FieldViolation]:
        return super().check_fields(fields) + check_export_declaration(
            fields, self.native_names, "goods", self.item_names
        )


class RefundRegistration(JsonRecordType):
    """The tax bureau's answer: the refund is registered (with its number) or refused (with a reason)."""

    name = "tax.refund_registration.acknowledged"
    direction: ClassVar[Literal["sends", "receives"]] = "sends"
    native_names: ClassVar[Mapping[str, str]] = {
        "declaration_number": "entry_id",
        "uscc": "trade_uscc",
        "status": "reg_status",
        "registration_number": "refund_reg_no",
        "reason": "reason",
        "tax_office": "tax_org_code",
    }
    required: ClassVar[Sequence[str]] = ("declaration_number", "uscc", "status", "tax_office")

    def check_fields(self, fields: Mapping[str, Any]) -> list[FieldViolation]:
        bad = super().check_fields(fields)
        problem = check_declaration_number(str(fields["declaration_number"]))
        if problem:
            bad.append(FieldViolation("entry_id", problem))
        status = fields["status"]
        if status not in ("REGISTERED", "REFUSED"):
            bad.append(FieldViolation("reg_status", f"is REGISTERED or REFUSED, got {status!r}"))
        if status == "REGISTERED" and not re.fullmatch(
            r"[0-9A-Z]{8,24}", str(fields.get("registration_number"))
        ):
            bad.append(FieldViolation("refund_reg_no", "a registered refund has its registration number"))
        if status == "REFUSED" and not fields.get("reason"):
            bad.append(FieldViolation("reason", "a refused refund says why"))
        if not re.fullmatch(r"\d{11}", str(fields["tax_office"])):
            bad.append(FieldViolation("tax_org_code", "is the 11-digit tax office code"))
        return bad


class TaxAdapter(Adapter):
    kind = "tax"
    title = "State Taxation Administration (export tax refund)"

    def record_types(self) -> Sequence[RecordType]:
        return (ReleasedExportDeclaration(), RefundRegistration())

    def catalogue(self) -> Sequence[SchemaVersion]:
        return (bundled("tax.refund_registration.acknowledged", 1),)
