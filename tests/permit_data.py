"""Test data for permits: issuers with deterministic keys, a configuration that routes usage records back to
them, and realistic licences and certificates signed like their issuers sign them."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from ackhub.audit.acks import public_key_base64
from ackhub.core.permit_document import PermitDocument, PermitLine
from ackhub.hub.api.permits import signed_message
from ackhub.v1 import permit_service_pb2 as pb
from tests.harness import key_id, private_key

# 2026-06-15 10:00 in Beijing: a fixed "today" for every permit test.
NOW_MS = int(datetime(2026, 6, 15, 2, 0, tzinfo=UTC).timestamp() * 1000)
TODAY = date(2026, 6, 15)
HOLDER = "91110000600037341L"
OTHER_HOLDER = "91350100M000100Y43"
OFFICE = "0202"
DECLARATION = "020220261525641690"  # an import declaration of office 0202
FOREIGN_OLD_KEY = "vn-moit-2025"
FOREIGN_NEW_KEY = "vn-moit-2026"
REVOKED_AFTER = date(2026, 3, 31)


def permit_config(config: dict[str, Any], registry_url: str | None = None) -> None:
    """Adds a domestic origin issuer (CCPIT), a foreign issuing body whose certificates customs registers
    (one key revoked after 2026-03-31), the commerce ministry as licence issuer, and usage routes."""
    config["agencies"].append(
        {
            "id": "ccpit",
            "name": "CCPIT",
            "kind": "origin",
            "keys": [
                {"id": key_id("ccpit"), "public_key": public_key_base64(private_key("ccpit").public_key())}
            ],
        }
    )
    commerce: dict[str, Any] = {"id": "commerce", "adapter": "commerce"}
    if registry_url:
        commerce["registry_url"] = registry_url
        commerce["registry_timeout"] = "1s"
    config["permits"] = {
        "registry_cache": "1m",
        "issuers": [
            commerce,
            {"id": "ccpit", "adapter": "origin"},
            {
                "id": "vn-moit",
                "name": "Ministry of Industry and Trade of Viet Nam",
                "adapter": "origin",
                "agency": "customs",
                "keys": [
                    {
                        "id": FOREIGN_OLD_KEY,
                        "public_key": public_key_base64(private_key(FOREIGN_OLD_KEY).public_key()),
                        "revoked_after": REVOKED_AFTER.isoformat(),
                    },
                    {
                        "id": FOREIGN_NEW_KEY,
                        "public_key": public_key_base64(private_key(FOREIGN_NEW_KEY).public_key()),
                    },
                ],
            },
        ],
    }
    for record_type, agency in (
        ("customs.licence_usage.reported", "commerce"),
        ("customs.origin_certificate_usage.reported", "ccpit"),
    ):
        config["routes"].append(
            {
                "record_type": record_type,
                "publishers": ["customs"],
                "recipients": [{"agency": agency, "ack_level": "BUSINESS", "deadline": "1h"}],
            }
        )


def licence(**changes: Any) -> PermitDocument:
    """Import licence 26-AA-204966 for office 0202: 100 cars (HS 8703.23) and 500 t of bulk iron ore."""
    document = PermitDocument(
        number="26-AA-204966",
        kind="commerce.import_licence",
        issuer="commerce",
        version=1,
        holder_uscc=HOLDER,
        customs_office=OFFICE,
        issue_date=date(2026, 1, 5),
        valid_from=date(2026, 1, 5),
        valid_to=date(2026, 12, 31),
        multi_batch=True,
        lines=(
            PermitLine(1, "87032342", 100_000, "辆", description="passenger cars, 1.5-2.0 l"),
            PermitLine(2, "26011100", 500_000, "吨", bulk=True, description="iron ore, non-agglomerated"),
        ),
    )
    return replace(document, **changes)


def certificate(**changes: Any) -> PermitDocument:
    """Form E certificate from CCPIT-like domestic issuer: two goods items, one shipment."""
    document = PermitDocument(
        number="E26470ZC11220001",
        kind="origin.domestic_certificate",
        issuer="ccpit",
        version=1,
        holder_uscc=HOLDER,
        customs_office="",
        issue_date=date(2026, 6, 1),
        valid_from=date(2026, 6, 1),
        valid_to=date(2027, 5, 31),
        multi_batch=False,
        exporter="Hanoi Textiles JSC",
        importer="Beijing Import Co.",
        invoice_number="INV-2026-0042",
        lines=(
            PermitLine(1, "610910", 2_000_000, "件", origin_criterion="CTH", description="cotton T-shirts"),
            PermitLine(2, "090240", 1_500_000, "千克", origin_criterion="WO", description="black tea"),
        ),
    )
    return replace(document, **changes)


def signed(document: PermitDocument, signer: str | None = None, key: str | None = None) -> pb.SignedPermit:
    """`document` signed by `signer`'s deterministic key (default: its issuer's agency key)."""
    signer = signer or document.issuer
    key = key or key_id(signer)
    signature = private_key(signer).sign(document.canonical_text(key))
    return signed_message(document, key, signature)


def create_request(document: PermitDocument, **kwargs: Any) -> pb.CreatePermitRequest:
    return pb.CreatePermitRequest(request_id=str(uuid.uuid4()), permit=signed(document, **kwargs))


def goods(
    number: str = "26-AA-204966",
    kind: str = "commerce.import_licence",
    hs: str = "8703234210",
    quantity: str = "10",
    unit: str = "辆",
    item: int = 1,
) -> pb.GoodsLine:
    return pb.GoodsLine(
        item_number=item, permit_number=number, permit_kind=kind, hs_code=hs, quantity=quantity, unit=unit
    )


def verify_request(line: pb.GoodsLine | None = None, **changes: Any) -> pb.VerifyPermitRequest:
    fields: dict[str, Any] = {
        "declarant_uscc": HOLDER,
        "customs_office": OFFICE,
        "date": TODAY.isoformat(),
        "line": line or goods(),
    }
    fields.update(changes)
    return pb.VerifyPermitRequest(**fields)


def draw_request(line: pb.GoodsLine | None = None, **changes: Any) -> pb.DrawDownPermitRequest:
    fields: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "declarant_uscc": HOLDER,
        "customs_office": OFFICE,
        "declaration_number": DECLARATION,
        "line": line or goods(),
    }
    fields.update(changes)
    return pb.DrawDownPermitRequest(**fields)


def reasons(result: pb.LineResult) -> list[str]:
    return [pb.VerificationReason.Name(r).removeprefix("VERIFICATION_REASON_") for r in result.reasons]
