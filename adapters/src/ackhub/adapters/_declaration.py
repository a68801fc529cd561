"""Checks shared by the adapters that receive released export declarations (tax, FX)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ackhub.core.errors import FieldViolation
from ackhub.core.identifiers import check_declaration_number, check_hs_code
from ackhub.core.permit_document import parse_quantity

_YYYYMMDD = re.compile(r"^\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def check_export_declaration(
    fields: Mapping[str, Any], names: Mapping[str, str], items_key: str, item_names: Mapping[str, str]
) -> list[FieldViolation]:
    """Declaration number (an export one), date, currency, amount and goods items; native field names."""
    bad: list[FieldViolation] = []
    number = str(fields.get("declaration_number", ""))
    problem = check_declaration_number(number)
    if problem:
        bad.append(FieldViolation(names["declaration_number"], problem))
    elif number[8] != "0":
        bad.append(FieldViolation(names["declaration_number"], "is an import declaration (digit 9 is 1)"))
    if not _YYYYMMDD.match(str(fields.get("export_date", ""))):
        bad.append(FieldViolation(names["export_date"], "is a date written YYYYMMDD"))
    if "currency" in fields and not _CURRENCY.match(str(fields["currency"])):
        bad.append(FieldViolation(names["currency"], "is an ISO 4217 code such as 'USD'"))
    items = fields.get("items")
    if not isinstance(items, list) or not items:
        bad.append(FieldViolation(items_key, "lists at least one goods item"))
        return bad
    for index, item in enumerate(items):
        where = f"{items_key}[{index}]"
        if not isinstance(item, dict):
            bad.append(FieldViolation(where, "is an object"))
            continue
        problem = check_hs_code(str(item.get(item_names["hs_code"], "")))
        if problem:
            bad.append(FieldViolation(f"{where}.{item_names['hs_code']}", problem))
        for name in ("quantity", "amount"):
            try:
                if parse_quantity(str(item.get(item_names[name], ""))) <= 0:
                    raise ValueError("must be more than 0")
            except ValueError as exc:
                bad.append(FieldViolation(f"{where}.{item_names[name]}", str(exc)))
    return bad
