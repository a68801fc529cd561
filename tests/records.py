"""Payloads the tests publish: valid against their record type's schema in the catalogue
(adapters/schemas/), made from the domain's real shapes (shared/domain/identifiers.md)."""

from __future__ import annotations

import json
from typing import Any

ALPHA = "91110000600037341L"  # USCC, check character verified
DECLARATION = "020220260525641690"  # office 0202, 2026, export (digit 9 is 0)


def declaration_document(
    number: str = DECLARATION, uscc: str = ALPHA, note: str = "其他绿茶 green tea, other"
) -> dict[str, Any]:
    """A released export declaration (customs.export_declaration.released v1); `note` is the first goods
    item's description, to make payloads differ."""
    return {
        "declaration_number": number,
        "customs_office": number[:4],
        "release_time": "2026-11-24T08:15:00.000Z",
        "trade_mode": "0110",
        "exporter": {"uscc": uscc, "name": "北京华联进出口有限公司 Beijing Hualian Import & Export"},
        "destination_country": "DEU",
        "incoterm": "FOB",
        "fob_value_usd": "7200.00",
        "goods": [
            {
                "line": 1,
                "hs_code": "0902209000",
                "description": note,
                "quantity": 600,
                "unit": "kg",
                "fob_value_usd": "7200.00",
            }
        ],
    }


def declaration(
    number: str = DECLARATION, uscc: str = ALPHA, note: str = "其他绿茶 green tea, other"
) -> bytes:
    """`declaration_document` as the JSON bytes customs publishes."""
    return json.dumps(declaration_document(number, uscc, note), ensure_ascii=False).encode("utf-8")


def refund_registration(number: str = DECLARATION, uscc: str = ALPHA) -> bytes:
    """The tax bureau's answer (tax.refund_registration.acknowledged v1): registered."""
    document = {
        "entry_id": number,
        "trade_uscc": uscc,
        "reg_status": "REGISTERED",
        "refund_reg_no": "TS2026110012345",
        "tax_org_code": "11101050000",
    }
    return json.dumps(document).encode("utf-8")
