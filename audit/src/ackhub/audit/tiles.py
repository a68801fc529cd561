"""C2SP tlog-tiles: the log as static resources under a prefix, for anyone to mirror and audit with
standard tools (c2sp.org/tlog-tiles):

    <prefix>/checkpoint                       the newest checkpoint, a signed note with its cosignatures
    <prefix>/tile/<L>/<N>[.p/<W>]             hashes: MTH of leaves [(N*256+i)*256^L, (N*256+i+1)*256^L)
    <prefix>/tile/entries/<N>[.p/<W>]         leaf data, each as a big-endian uint16 length and the bytes

<N> is written in zero-padded 3-digit path elements, all but the last prefixed with `x` (1234067 is
`x001/x234/067`); `.p/<W>` marks a partial tile of W (1-255) hashes or entries. Standard library only.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

WIDTH = 256
MAX_LEVEL = 63
_ELEMENT = re.compile(r"x[0-9]{3}")
_LAST = re.compile(r"[0-9]{3}")
_W = re.compile(r"[1-9][0-9]{0,2}")


class TilePathError(ValueError):
    pass


@dataclass(frozen=True)
class Tile:
    level: int  # -1 for an entry bundle
    index: int
    width: int  # 256 for a full tile

    @property
    def is_entries(self) -> bool:
        return self.level < 0

    def leaves(self) -> tuple[int, int]:
        """The leaves [start, end) this tile's `width` hashes (or entries) cover."""
        span = WIDTH ** max(self.level, 0)
        start = self.index * WIDTH * span
        return start, start + self.width * span

    def path(self) -> str:
        digits = f"{self.index:03d}"
        digits = "0" * (-len(digits) % 3) + digits
        parts = [digits[i : i + 3] for i in range(0, len(digits), 3)]
        encoded = "/".join([*(f"x{p}" for p in parts[:-1]), parts[-1]])
        level = "entries" if self.is_entries else str(self.level)
        return f"tile/{level}/{encoded}" + (f".p/{self.width}" if self.width < WIDTH else "")


def parse_tile_path(path: str) -> Tile:
    """`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]` (what follows `<prefix>/tile/`)."""
    parts = path.split("/")
    if len(parts) < 2:
        raise TilePathError("a tile path is <L>/<N>[.p/<W>]")
    head, rest = parts[0], parts[1:]
    if head == "entries":
        level = -1
    elif re.fullmatch(r"0|[1-9][0-9]?", head) and int(head) <= MAX_LEVEL:
        level = int(head)
    else:
        raise TilePathError(f"tile level {head[:10]!r} is not entries or 0..63 without leading zeroes")
    width = WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _W.fullmatch(rest[-1]) or int(rest[-1]) >= WIDTH:
            raise TilePathError("a partial tile's width is 1..255 without leading zeroes")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2].removesuffix(".p")]
    if not rest or not _LAST.fullmatch(rest[-1]) or not all(_ELEMENT.fullmatch(p) for p in rest[:-1]):
        raise TilePathError("a tile index is zero-padded 3-digit elements, all but the last starting with x")
    index = int("".join(p.removeprefix("x") for p in rest))
    tile = Tile(level, index, width)
    if tile.path() != f"tile/{path}":  # e.g. x000/001: not the one encoding of its index
        raise TilePathError("the tile index is not in its canonical encoding")
    return tile


def entry_bundle(entries: list[bytes]) -> bytes:
    out = bytearray()
    for entry in entries:
        if len(entry) > 0xFFFF:
            raise ValueError(f"an entry of {len(entry)} bytes does not fit an entry bundle")
        out += struct.pack(">H", len(entry)) + entry
    return bytes(out)
