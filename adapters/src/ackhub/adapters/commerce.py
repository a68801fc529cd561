"""The commerce ministry (MOFCOM): import and export licences, automatic import licences, dual-use licences.

Rules (GAC/MOFCOM announcement No. 82 of 2018 and the licence administration measures; see
shared/domain/identifiers.md): numbers `YY-XX-NNNNNN` (year of issue, issuing office, serial); one licence,
one customs office; "one batch, one licence" unless marked not-one-batch, then at most 12 uses (automatic
import licences: 6); bulk goods may exceed the licensed quantity by at most 5 % in total; valid to the end of
the calendar year of issue (automatic import licences: 6 months).

The licensing system's native format (registry answers and usage reports) is JSON with its own field names
and `YYYYMMDD` dates; `LicenceFormat` maps it to the hub's `PermitDocument`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, ClassVar, Literal

import httpx

from ackhub.adapters._registry import fetch_permit
from ackhub.adapters._schemas import bundled
from ackhub.core.adapter import (
    Adapter,
    JsonRecordType,
    PermitKind,
    PermitRules,
    RecordType,
    RegistryAnswer,
    SchemaVersion,
)
from ackhub.core.errors import FieldViolation
from ackhub.core.identifiers import check_declaration_number, check_hs_code
from ackhub.core.permit_document import PermitDocument, PermitLine, format_quantity, parse_quantity

_NUMBER = re.compile(r"^(\d{2})-([A-Z]{2})-(\d{6})$")
# As docs/permits.md writes it (tests/test_permits.py checks that the docs and this message agree).
NUMBER_FORMAT = "YY-XX-NNNNNN"
NUMBER_EXAMPLE = "26-AA-204966"
NUMBER_HINT = (
    f"a licence number is {NUMBER_FORMAT}: 2 digits of the year of issue, 2 capital letters of the issuing "
    f"office, a 6-digit serial, such as {NUMBER_EXAMPLE}"
)
TOLERANCE_PERMILLE = 50  # 5 % for bulk goods, over the whole licence line


def end_of_year(day: date) -> date:
    return date(day.year, 12, 31)


def add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


class _Licence(PermitKind):
    supervision_code: ClassVar[str]
    multi_batch_uses: ClassVar[int] = 12

    def check_number(self, number: str) -> str | None:
        if not _NUMBER.match(number):
            return f"{NUMBER_HINT}; got {number[:40]!r}"
        return None

    def latest_valid_to(self, document: PermitDocument) -> date:
        return end_of_year(document.valid_from)

    def rules(self, document: PermitDocument) -> PermitRules:
        return PermitRules(
            max_uses=self.multi_batch_uses if document.multi_batch else 1,
            tolerance_permille=TOLERANCE_PERMILLE,
            latest_valid_to=self.latest_valid_to(document),
            requires_customs_office=True,
        )

    def validate(self, document: PermitDocument) -> list[FieldViolation]:
        bad = super().validate(document)
        match = _NUMBER.match(document.number)
        if match and int(match.group(1)) != document.issue_date.year % 100:
            bad.append(
                FieldViolation(
                    "number",
                    f"starts with the year of issue: {document.issue_date.year % 100:02d}, "
                    f"got {match.group(1)!r}",
                )
            )
        for index, line in enumerate(document.lines):
            if check_hs_code(line.hs_code) is None and len(line.hs_code) < 8:
                bad.append(
                    FieldViolation(f"lines[{index}].hs_code", "a licence names 8 or 10-digit HS codes")
                )
        return bad


class ImportLicence(_Licence):
    code = "commerce.import_licence"
    title = "import licence"
    supervision_code = "1"


class ExportLicence(_Licence):
    code = "commerce.export_licence"
    title = "export licence"
    supervision_code = "4"


class AutomaticImportLicence(_Licence):
    code = "commerce.automatic_import_licence"
    title = "automatic import licence"
    supervision_code = "7"
    multi_batch_uses = 6

    def latest_valid_to(self, document: PermitDocument) -> date:
        return add_months(document.valid_from, 6) - timedelta(days=1)


class DualUseExportLicence(_Licence):
    code = "commerce.dual_use_export_licence"
    title = "dual-use items export licence"
    supervision_code = "3"


KINDS: tuple[_Licence, ...] = (
    ImportLicence(),
    ExportLicence(),
    AutomaticImportLicence(),
    DualUseExportLicence(),
)
_BY_SUPERVISION = {kind.supervision_code: kind for kind in KINDS}


class LicenceUsage(JsonRecordType):
    """A draw-down or release reported back to the licensing system, which closes the licence out."""

    name = "customs.licence_usage.reported"
    direction: ClassVar[Literal["sends", "receives"]] = "receives"
    native_names: ClassVar[Mapping[str, str]] = {
        "action": "action",
        "number": "licence_no",
        "kind": "licence_type",
        "declaration_number": "entry_id",
        "item_number": "g_no",
        "hs_code": "code_ts",
        "quantity": "qty",
        "unit": "unit",
        "customs_office": "port_code",
        "draw_down_id": "usage_id",
        "time": "usage_time",
    }
    required: ClassVar[Sequence[str]] = ("action", "number", "declaration_number", "quantity", "draw_down_id")

    def check_fields(self, fields: Mapping[str, Any]) -> list[FieldViolation]:
        bad = super().check_fields(fields)
        if fields.get("action") not in ("DRAW", "RELEASE"):
            bad.append(FieldViolation("action", "is DRAW or RELEASE"))
        problem = check_declaration_number(str(fields.get("declaration_number", "")))
        if problem:
            bad.append(FieldViolation("entry_id", problem))
        try:
            parse_quantity(str(fields.get("quantity", "")))
        except ValueError as exc:
            bad.append(FieldViolation("qty", str(exc)))
        return bad

    def to_native(self, fields: Mapping[str, Any]) -> bytes:
        kind = next((k for k in KINDS if k.code == fields.get("kind")), None)
        mapped = dict(fields)
        if kind is not None:
            mapped["kind"] = kind.supervision_code
        return super().to_native(mapped)


def _yyyymmdd(text: str) -> date:
    if not re.fullmatch(r"\d{8}", text):
        raise ValueError(f"a date in the licensing system is YYYYMMDD, got {text!r}")
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def licence_to_native(document: PermitDocument, key_id: str, signature: bytes) -> dict[str, Any]:
    """The hub's permit → the licensing system's JSON (what its registry serves)."""
    kind = next(k for k in KINDS if k.code == document.kind)
    return {
        "licence_no": document.number,
        "licence_type": kind.supervision_code,
        "amend_no": document.version - 1,
        "holder_uscc": document.holder_uscc,
        "port_code": document.customs_office,
        "issue_date": document.issue_date.strftime("%Y%m%d"),
        "valid_from": document.valid_from.strftime("%Y%m%d"),
        "valid_until": document.valid_to.strftime("%Y%m%d"),
        "one_batch": "N" if document.multi_batch else "Y",
        "goods": [
            {
                "item": line.line_number,
                "code_ts": line.hs_code,
                "qty": format_quantity(line.quantity_milli),
                "unit": line.unit,
                "bulk": "Y" if line.bulk else "N",
                "g_name": line.description,
            }
            for line in document.lines
        ],
        "sign_key": key_id,
        "sign_value": base64.b64encode(signature).decode(),
    }


def licence_from_native(native: Mapping[str, Any], issuer: str) -> RegistryAnswer:
    """The licensing system's JSON → the hub's permit; ValueError when it is not well-formed."""
    try:
        kind = _BY_SUPERVISION[str(native["licence_type"])]
        document = PermitDocument(
            number=str(native["licence_no"]),
            kind=kind.code,
            issuer=issuer,
            version=int(native.get("amend_no", 0)) + 1,
            holder_uscc=str(native["holder_uscc"]),
            customs_office=str(native.get("port_code", "")),
            issue_date=_yyyymmdd(str(native["issue_date"])),
            valid_from=_yyyymmdd(str(native["valid_from"])),
            valid_to=_yyyymmdd(str(native["valid_until"])),
            multi_batch=native.get("one_batch") == "N",
            lines=tuple(
                PermitLine(
                    line_number=int(item["item"]),
                    hs_code=str(item["code_ts"]),
                    quantity_milli=parse_quantity(str(item["qty"])),
                    unit=str(item["unit"]),
                    bulk=item.get("bulk") == "Y",
                    description=str(item.get("g_name", "")),
                )
                for item in native["goods"]
            ),
        )
        return RegistryAnswer(document, str(native["sign_key"]), base64.b64decode(str(native["sign_value"])))
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a licence in the licensing system's format: {exc!r}") from None


class CommerceAdapter(Adapter):
    kind = "commerce"
    title = "Ministry of Commerce licensing"

    def record_types(self) -> Sequence[RecordType]:
        return (LicenceUsage(),)

    def permit_kinds(self) -> Sequence[PermitKind]:
        return KINDS

    def usage_record_type(self) -> RecordType | None:
        return LicenceUsage()

    def catalogue(self) -> Sequence[SchemaVersion]:
        return (bundled(LicenceUsage.name, 1),)

    async def lookup(
        self, client: httpx.AsyncClient, registry_url: str, issuer: str, kind: str, number: str
    ) -> RegistryAnswer | None:
        """`GET <registry>/licences/<number>`: 200 with the licence, 404 when unknown."""
        url = f"{registry_url.rstrip('/')}/licences/{number}"
        return await fetch_permit(client, url, issuer, kind, licence_from_native)
