"""docs/errors.md against the code: every reason the hub can answer has a row, with the right status code,
and every row names a reason the hub can answer."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from ackhub.core import errors
from ackhub.hub.permits.verify import REASONS as VERIFICATION_REASONS

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "errors.md"
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]*$")
# The exception classes of ackhub.core.errors → the status code each answers.
CODES = {
    name: getattr(cls, "code", "")
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.AckhubError)
}


def _sources() -> Iterator[Path]:
    for folder in ("hub", "core", "adapters", "connectors"):
        yield from (ROOT / folder / "src").rglob("*.py")


def _constants(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def reasons_in_code() -> dict[str, set[str]]:
    """Each reason the code can raise → the status codes it is raised with ("" when the code is not known
    from the call, e.g. a policy rule's reason, which is PERMISSION_DENIED)."""
    found: dict[str, set[str]] = {}

    def add(reason: str, code: str) -> None:
        if UPPER_SNAKE.match(reason):
            found.setdefault(reason, set()).add(code)

    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                code = CODES.get(node.func.id, "")
                for keyword in node.keywords:
                    if keyword.arg == "reason":
                        for reason in _constants(keyword.value):
                            add(reason, code)
                if node.func.id == "NotFound" and node.args and isinstance(node.args[0], ast.Constant):
                    add(f"{node.args[0].value.upper()}_NOT_FOUND", "NOT_FOUND")
                if node.func.id == "Rule" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    add(node.args[1].value, "PERMISSION_DENIED")
            elif isinstance(node, ast.ClassDef):  # `reason = "..."` on an exception class
                for statement in node.body:
                    if (
                        isinstance(statement, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "reason" for t in statement.targets)
                        and isinstance(statement.value, ast.Constant)
                    ):
                        add(statement.value.value, CODES.get(node.name, ""))
    return found


def rows() -> dict[str, set[str]]:
    """Each reason named in the table's reason column → the codes of its rows."""
    table: dict[str, set[str]] = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        code = cells[0].strip("`")
        for reason in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[1]):
            table.setdefault(reason, set()).add(code)
    return table


def test_every_reason_the_hub_answers_has_a_row_with_its_code() -> None:
    """A reason raised anywhere in hub/, adapters/ or connectors/ (and every permit verification reason,
    which a refused draw-down carries) has a row in docs/errors.md under the code it is raised with."""
    table = rows()
    in_code = reasons_in_code()
    for reason in VERIFICATION_REASONS:
        in_code.setdefault(reason, set()).add("FAILED_PRECONDITION")
    missing = sorted(set(in_code) - set(table))
    assert not missing, f"reasons without a row in docs/errors.md: {missing}"
    wrong = {r: (codes, table[r]) for r, codes in in_code.items() if not (codes - {""}) <= table[r]}
    assert not wrong, f"rows under another code than the code raises: {wrong}"


def test_every_row_names_a_reason_the_hub_answers() -> None:
    """No row in docs/errors.md for a reason the code cannot raise (a renamed or removed reason)."""
    in_code = set(reasons_in_code()) | set(VERIFICATION_REASONS)
    stale = sorted(set(rows()) - in_code)
    assert not stale, f"docs/errors.md rows for reasons the hub never answers: {stale}"
