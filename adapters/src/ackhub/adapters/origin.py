"""Certificates of origin, from domestic issuers (customs, CCPIT) and from foreign issuing bodies (Form E,
RCEP, ChAFTA ...).

Rules (RCEP Art. 3.16-3.17 and the FTAs' operational procedures; shared/domain/identifiers.md): a unique
number per certificate, issuer-specific (e.g. `E09470ZC11220001`); one shipment; valid one year from
issue; up to 20 goods items, each with a 6-digit HS code, an origin criterion (WO, WP, PE, CC, CTH, CTSH,
RVCnn, PSR), quantity and unit; exporter, importer and invoice number; the issuer's signature checked
against its registered keys (its electronic specimen), where a key revoked after a date still vouches for
certificates issued up to that date.
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
from ackhub.core.identifiers import check_declaration_number
from ackhub.core.permit_document import PermitDocument, PermitLine, parse_quantity
from ackhub.v1 import permit_service_pb2

MAX_ITEMS = 20
CRITERION = re.compile(r"^(WO|WP|PE|CC|CTH|CTSH|RVC\d{2}|PSR)$")


def one_year(issue: date) -> date:
    """The last day of validity: one year from issue (29 February → 28 February)."""
    try:
        return issue.replace(year=issue.year + 1) - timedelta(days=1)
    except ValueError:
        return date(issue.year + 1, 2, 28)


class _Certificate(PermitKind):
    max_lines = MAX_ITEMS
    number_pattern: ClassVar[re.Pattern[str]]
    number_hint: ClassVar[str]

    def check_number(self, number: str) -> str | None:
        if not self.number_pattern.match(number):
            return f"{self.number_hint}, got {number[:40]!r}"
        return None

    def rules(self, document: PermitDocument) -> PermitRules:
        return PermitRules(
            max_uses=1,  # one shipment
            tolerance_permille=0,
            latest_valid_to=one_year(document.issue_date),
            requires_customs_office=False,
        )

    def validate(self, document: PermitDocument) -> list[FieldViolation]:
        bad = super().validate(document)
        if document.multi_batch:
            bad.append(FieldViolation("multi_batch", "a certificate of origin covers one shipment"))
        for name in ("exporter", "importer", "invoice_number"):
            if not getattr(document, name):
                bad.append(FieldViolation(name, "is required on a certificate of origin"))
        for index, line in enumerate(document.lines):
            if len(line.hs_code) != 6 or not line.hs_code.isdigit():
                bad.append(FieldViolation(f"lines[{index}].hs_code", "a certificate names 6-digit HS codes"))
            if not CRITERION.match(line.origin_criterion):
                bad.append(
                    FieldViolation(
                        f"lines[{index}].origin_criterion",
                        f"is one of WO, WP, PE, CC, CTH, CTSH, RVCnn, PSR; got {line.origin_criterion!r}",
                    )
                )
        return bad


class DomesticCertificate(_Certificate):
    code = "origin.domestic_certificate"
    title = "certificate of origin (domestic issuer)"
    number_pattern = re.compile(r"^[A-Z0-9]{10,20}$")
    number_hint = "a domestic certificate number is 10 to 20 capital letters and digits"


class ForeignCertificate(_Certificate):
    code = "origin.foreign_certificate"
    title = "certificate of origin (foreign issuing body)"
    number_pattern = re.compile(r"^[A-Z0-9][A-Z0-9/-]{5,29}$")
    number_hint = "a foreign certificate number is 6 to 30 capital letters, digits, '/' or '-'"


KINDS: tuple[_Certificate, ...] = (DomesticCertificate(), ForeignCertificate())


class CertificateUsage(JsonRecordType):
    """A certificate used (or given back) by a declaration, reported to its issuer."""

    name = "customs.origin_certificate_usage.reported"
    direction: ClassVar[Literal["sends", "receives"]] = "receives"
    native_names: ClassVar[Mapping[str, str]] = {
        "action": "action",
        "number": "certificate_no",
        "kind": "certificate_kind",
        "declaration_number": "declaration_no",
        "item_number": "item_no",
        "hs_code": "hs_code",
        "quantity": "quantity",
        "unit": "unit",
        "customs_office": "customs_office",
        "draw_down_id": "usage_id",
        "time": "time",
    }
    required: ClassVar[Sequence[str]] = ("action", "number", "declaration_number", "draw_down_id")

    def check_fields(self, fields: Mapping[str, Any]) -> list[FieldViolation]:
        bad = super().check_fields(fields)
        if fields.get("action") not in ("DRAW", "RELEASE"):
            bad.append(FieldViolation("action", "is DRAW or RELEASE"))
        problem = check_declaration_number(str(fields.get("declaration_number", "")))
        if problem:
            bad.append(FieldViolation("declaration_no", problem))
        return bad


def certificate_from_native(native: Mapping[str, Any], issuer: str) -> RegistryAnswer:
    try:
        document = PermitDocument(
            number=str(native["certificate_no"]),
            kind=str(native["certificate_kind"]),
            issuer=issuer,
            version=int(native.get("revision", 1)),
            holder_uscc=str(native["consignee_uscc"]),
            customs_office="",
            issue_date=date.fromisoformat(str(native["issued"])),
            valid_from=date.fromisoformat(str(native["valid_from"])),
            valid_to=date.fromisoformat(str(native["valid_to"])),
            multi_batch=False,
            exporter=str(native["exporter"]),
            importer=str(native["importer"]),
            invoice_number=str(native["invoice_no"]),
            lines=tuple(
                PermitLine(
                    line_number=int(item["item_no"]),
                    hs_code=str(item["hs6"]),
                    quantity_milli=parse_quantity(str(item["quantity"])),
                    unit=str(item["unit"]),
                    origin_criterion=str(item["criterion"]),
                    description=str(item.get("description", "")),
                )
                for item in native["items"]
            ),
        )
        seal = native["seal"]
        return RegistryAnswer(document, str(seal["key"]), base64.b64decode(str(seal["signature"])))
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a certificate in the issuer's format: {exc!r}") from None


class OriginAdapter(Adapter):
    kind = "origin"
    title = "Certificates of origin"

    def record_types(self) -> Sequence[RecordType]:
        return (CertificateUsage(),)

    def permit_kinds(self) -> Sequence[PermitKind]:
        return KINDS

    def usage_record_type(self) -> RecordType | None:
        return CertificateUsage()

    def catalogue(self) -> Sequence[SchemaVersion]:
        return (
            bundled(CertificateUsage.name, 1),
            bundled("origin.certificate.issued", 1, permit_service_pb2.SignedPermit),
        )

    async def lookup(
        self, client: httpx.AsyncClient, registry_url: str, issuer: str, kind: str, number: str
    ) -> RegistryAnswer | None:
        """`GET <registry>/certificates/<number>`: 200 with the certificate, 404 when unknown."""
        url = f"{registry_url.rstrip('/')}/certificates/{number}"
        return await fetch_permit(client, url, issuer, kind, certificate_from_native)
