"""Validation of the identifiers records carry (see shared/domain/identifiers.md).

Each `check_*` returns None when the value is valid, or one sentence saying precisely what is wrong.
"""

from __future__ import annotations

import re

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
_DECLARATION = re.compile(r"\d{18}")
_HS_CODE = re.compile(r"\d{6}(\d{2}(\d{2}(\d{3})?)?)?")


def uscc_check_character(first17: str) -> str:
    """The 18th character of a Unified Social Credit Code (GB 32100-2015) for its first 17."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def check_uscc(value: str) -> str | None:
    if len(value) != 18:
        return f"a USCC has 18 characters, got {len(value)}"
    for position, char in enumerate(value, start=1):
        if char not in USCC_CHARSET:
            return f"character {char!r} at position {position} is not allowed (no I, O, S, V, Z; upper case)"
    expected = uscc_check_character(value[:17])
    if value[17] != expected:
        return f"check character is {value[17]!r} but should be {expected!r}"
    return None


def check_declaration_number(value: str) -> str | None:
    """18 digits: customs office (4), year (4), import 1 / export 0, sequence (9)."""
    if not _DECLARATION.fullmatch(value):
        return f"a declaration number is 18 digits, got {value!r}"
    year = int(value[4:8])
    if not 1990 <= year <= 2099:
        return f"digits 5-8 are the year, {year} is out of range"
    if value[8] not in "01":
        return f"digit 9 is 1 for import or 0 for export, got {value[8]!r}"
    return None


def check_hs_code(value: str) -> str | None:
    """6 (international), 8 (tariff), 10 (declared) or 13 digits (with inspection-quarantine digits)."""
    if not _HS_CODE.fullmatch(value):
        return f"an HS code is 6, 8, 10 or 13 digits, got {value!r}"
    return None
