"""The record type schemas' `buf breaking`: every schema file under adapters/schemas/ against the same file
at a git ref (default: the main branch). Within a version a change must be backward compatible (every
payload the old file accepted, the new one accepts: ackhub.hub.exchange.schema_compat); a published version is
never deleted (deprecate it instead). Prints each problem as file:line: why; exit 1 if any."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ackhub.hub.exchange.catalogue import line_of
from ackhub.hub.exchange.schema_compat import incompatibilities

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = "adapters/src/ackhub/adapters/schemas"


def _at(ref: str, path: str) -> str | None:
    done = subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", default="main", help="the git ref to compare with (default: main)")
    args = parser.parse_args()
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{args.against}:{SCHEMAS}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        print(f"{args.against} has no {SCHEMAS}: nothing published to compare with")
        return 0
    problems: list[str] = []
    for name in listed.stdout.split():
        if not name.endswith(".json"):
            continue
        path = f"{SCHEMAS}/{name}"
        current = ROOT / path
        if not current.exists():
            problems.append(
                f"{path}: published at {args.against} and deleted here; deprecate a version instead"
            )
            continue
        before, text = _at(args.against, path), current.read_text(encoding="utf-8")
        if before is None:
            continue
        for where, why in incompatibilities(json.loads(before), json.loads(text)):
            problems.append(
                f"{path}:{line_of(text, where)}: {why} (compared with {args.against}; make a new version)"
            )
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
