"""Validation of the identifiers records carry, against shared/domain/identifiers.md."""

from __future__ import annotations

import pytest

from ackhub.core.identifiers import check_declaration_number, check_hs_code, check_uscc, uscc_check_character


@pytest.mark.parametrize("code", ["91110000600037341L", "91350100M000100Y43", "91310115MA1G4L1W0D"])
def test_valid_uscc(code: str) -> None:
    """The documented valid codes pass, and their check character is recomputed."""
    assert check_uscc(code) is None
    assert uscc_check_character(code[:17]) == code[17]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("91310115MA1G4L1WXK", "should be '7'"),
        ("91330000142912133P", "should be 'K'"),
        ("9111000060003734", "18 characters"),
        ("91110000600O37341L", "'O' at position 12"),
        ("91110000600037341l", "position 18"),
    ],
)
def test_invalid_uscc(code: str, expected: str) -> None:
    """Wrong check characters, lengths and characters are each explained."""
    problem = check_uscc(code)
    assert problem is not None and expected in problem


def test_uscc_may_start_with_a_letter() -> None:
    """Positions 1-8 are not always digits: a code starting with Y validates by its check character."""
    first17 = "Y1110000MA0000001"
    assert check_uscc(first17 + uscc_check_character(first17)) is None


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("020220080525641690", None),
        ("2201202600000012345", "18 digits"),
        ("02022008052564169A", "18 digits"),
        ("020218800525641690", "year"),
        ("020220082525641690", "digit 9"),
    ],
)
def test_declaration_numbers(number: str, problem: str | None) -> None:
    """Declaration numbers are 18 digits with a plausible year and an import/export flag."""
    found = check_declaration_number(number)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize("code", ["090220", "09022090", "0902209000", "0902209000123"])
def test_valid_hs_codes(code: str) -> None:
    """6, 8, 10 and 13 digits are HS codes."""
    assert check_hs_code(code) is None


@pytest.mark.parametrize("code", ["09022", "0902209", "09022090001", "0902.20", ""])
def test_invalid_hs_codes(code: str) -> None:
    """Other lengths and non-digits are not."""
    assert check_hs_code(code) is not None
