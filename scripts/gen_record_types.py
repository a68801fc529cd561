"""Write docs/record-types.md from the record type catalogue (the adapters' schemas), the one way to produce
it; `--check` fails when the committed page differs from what the catalogue renders."""

from __future__ import annotations

import argparse
import sys

from ackhub.adapters.loader import load
from ackhub.hub.exchange.catalogue import build
from ackhub.hub.exchange.catalogue_docs import ROOT, render

PAGE = ROOT / "docs" / "record-types.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/record-types.md is out of date")
    args = parser.parse_args()
    text = render(build(load()))
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
