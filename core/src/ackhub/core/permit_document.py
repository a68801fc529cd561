"""A permit version as its issuer signs it, exact decimal quantities, and the canonical text (v1).

Quantities are integer thousandths of their unit ("12.5" is 12500): exact on SQLite and PostgreSQL alike,
never floats. Dates are calendar dates (`datetime.date`), written `YYYY-MM-DD`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date

_QUANTITY = re.compile(r"^(\d{1,15})(?:\.(\d{1,3}))?$")
_FORBIDDEN = ("\n", "\r", ";", "=")


def parse_quantity(text: str) -> int:
    """`"12.5"` → 12500 thousandths. Raises ValueError for anything but a non-negative decimal."""
    match = _QUANTITY.match(text.strip()) if text else None
    if match is None:
        raise ValueError(f"a quantity is a decimal number with at most 3 decimals, got {text[:32]!r}")
    whole, fraction = match.groups()
    return int(whole) * 1000 + int((fraction or "").ljust(3, "0"))


def format_quantity(milli: int) -> str:
    """12500 → `"12.5"`; 12000 → `"12"`."""
    sign = "-" if milli < 0 else ""
    whole, fraction = divmod(abs(milli), 1000)
    return f"{sign}{whole}" + (f".{fraction:03d}".rstrip("0") if fraction else "")


def parse_date(text: str) -> date:
    """`YYYY-MM-DD` only."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"a date is written YYYY-MM-DD, got {text[:32]!r}")
    return date.fromisoformat(text)


def covers(permit_hs: str, declared_hs: str) -> bool:
    """A permit's HS code covers every declared code that starts with it (6 or 8 digits cover longer codes)."""
    return declared_hs.startswith(permit_hs)


@dataclass(frozen=True)
class PermitLine:
    line_number: int
    hs_code: str
    quantity_milli: int
    unit: str
    bulk: bool = False
    origin_criterion: str = ""
    description: str = ""


@dataclass(frozen=True)
class PermitDocument:
    """One version of a permit: exactly what the issuer signs (`canonical_text`)."""

    number: str
    kind: str
    issuer: str
    version: int
    holder_uscc: str
    customs_office: str
    issue_date: date
    valid_from: date
    valid_to: date
    multi_batch: bool
    lines: tuple[PermitLine, ...]
    exporter: str = ""
    importer: str = ""
    invoice_number: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())  # adapter-specific fields, signed too

    def canonical_text(self, key_id: str) -> bytes:
        """`ackhub-permit/v1`: one `name=value` per line, joined by `\\n`, no trailing newline, UTF-8.

        Goods lines follow in order, one per line as `line=<n>;hs=..;quantity=..;unit=..;bulk=0|1;
        criterion=..;description=..`. Free text must not contain line breaks, `;` or `=`.
        """
        head = [
            "ackhub-permit/v1",
            f"number={self.number}",
            f"kind={self.kind}",
            f"issuer={self.issuer}",
            f"key={key_id}",
            f"version={self.version}",
            f"holder={self.holder_uscc}",
            f"customs_office={self.customs_office}",
            f"issue_date={self.issue_date.isoformat()}",
            f"valid_from={self.valid_from.isoformat()}",
            f"valid_to={self.valid_to.isoformat()}",
            f"multi_batch={int(self.multi_batch)}",
            f"exporter={self.exporter}",
            f"importer={self.importer}",
            f"invoice={self.invoice_number}",
            *(f"extra.{name}={value}" for name, value in sorted(self.extra)),
        ]
        lines = [
            f"line={line.line_number};hs={line.hs_code};quantity={format_quantity(line.quantity_milli)};"
            f"unit={line.unit};bulk={int(line.bulk)};criterion={line.origin_criterion};"
            f"description={line.description}"
            for line in self.lines
        ]
        return "\n".join(head + lines).encode("utf-8")

    def text_problems(self) -> list[tuple[str, str]]:
        """Free-text fields that would make the canonical text ambiguous."""
        found: list[tuple[str, str]] = []
        named = {
            "number": self.number,
            "holder_uscc": self.holder_uscc,
            "customs_office": self.customs_office,
            "exporter": self.exporter,
            "importer": self.importer,
            "invoice_number": self.invoice_number,
        }
        for index, line in enumerate(self.lines):
            named[f"lines[{index}].unit"] = line.unit
            named[f"lines[{index}].origin_criterion"] = line.origin_criterion
            named[f"lines[{index}].description"] = line.description
        for name, value in named.items():
            if any(char in value for char in _FORBIDDEN):
                found.append((name, "cannot contain line breaks, ';' or '='"))
        return found


def to_json(document: PermitDocument) -> str:
    """The stored form of a version (the canonical text is rebuilt from it to check the signature)."""
    data = {
        "number": document.number,
        "kind": document.kind,
        "issuer": document.issuer,
        "version": document.version,
        "holder_uscc": document.holder_uscc,
        "customs_office": document.customs_office,
        "issue_date": document.issue_date.isoformat(),
        "valid_from": document.valid_from.isoformat(),
        "valid_to": document.valid_to.isoformat(),
        "multi_batch": document.multi_batch,
        "exporter": document.exporter,
        "importer": document.importer,
        "invoice_number": document.invoice_number,
        "extra": [list(pair) for pair in document.extra],
        "lines": [
            {
                "line_number": line.line_number,
                "hs_code": line.hs_code,
                "quantity_milli": line.quantity_milli,
                "unit": line.unit,
                "bulk": line.bulk,
                "origin_criterion": line.origin_criterion,
                "description": line.description,
            }
            for line in document.lines
        ],
    }
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def from_json(text: str) -> PermitDocument:
    data = json.loads(text)
    return PermitDocument(
        number=data["number"],
        kind=data["kind"],
        issuer=data["issuer"],
        version=data["version"],
        holder_uscc=data["holder_uscc"],
        customs_office=data["customs_office"],
        issue_date=date.fromisoformat(data["issue_date"]),
        valid_from=date.fromisoformat(data["valid_from"]),
        valid_to=date.fromisoformat(data["valid_to"]),
        multi_batch=data["multi_batch"],
        exporter=data["exporter"],
        importer=data["importer"],
        invoice_number=data["invoice_number"],
        extra=tuple((name, value) for name, value in data["extra"]),
        lines=tuple(PermitLine(**line) for line in data["lines"]),
    )
