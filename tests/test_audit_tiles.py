"""The audit log as C2SP tlog-tiles under the console's /log: a mirror written from the specification
alone (not with the hub's code) fetches the checkpoint, the hash tiles and the entry bundles, and rebuilds
and checks the root; entries need headquarters staff; paths beyond the checkpoint or not canonical are 404."""

from __future__ import annotations

import base64
import hashlib
import struct
import uuid
from pathlib import Path

import httpx
import pytest

from ackhub.audit.note import parse_checkpoint
from ackhub.audit.tiles import Tile, TilePathError, parse_tile_path
from ackhub.core.clock import ManualClock
from tests.console_kit import console_url, operator_token, start_console_hub
from tests.records import declaration


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH over leaf hashes, written out here independently of ackhub.audit.merkle."""
    if len(hashes) == 1:
        return hashes[0]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(hashes[:split]) + _mth(hashes[split:])).digest()


def _index_path(index: int) -> str:
    digits = f"{index:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    parts = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{p}" for p in parts[:-1]), parts[-1]])


def _tile(level: int | str, index: int, width: int) -> str:
    return f"/log/tile/{level}/{_index_path(index)}" + (f".p/{width}" if width < 256 else "")


def test_tile_paths_follow_the_specification() -> None:
    """Index 1234067 is x001/x234/067; partial widths are 1..255; any other spelling is refused."""
    assert parse_tile_path("0/x001/x234/067") == Tile(0, 1234067, 256)
    assert parse_tile_path("entries/001.p/5") == Tile(-1, 1, 5)
    assert Tile(2, 1234067, 17).path() == "tile/2/x001/x234/067.p/17"
    for bad in (
        "00/000",
        "0/1",
        "0/x000/001",
        "0/000.p/256",
        "0/000.p/0",
        "64/000",
        "0/000.p/07",
        "0/x01/000",
    ):
        with pytest.raises(TilePathError):
            parse_tile_path(bad)


def test_a_mirror_rebuilds_the_log_from_tiles(tmp_path: Path, clock: ManualClock) -> None:
    """Over 256 leaves: full and partial level-0 tiles, a partial level-1 tile, entry bundles that hash to
    the level-0 tiles, and a root that equals the checkpoint's."""
    hub = start_console_hub(tmp_path, clock)
    try:
        customs = hub.agency("customs")
        size = 0
        while size <= 300:
            for _ in range(40):
                customs.publish(
                    "customs.export_declaration.released", declaration(), request_id=str(uuid.uuid4())
                )
            hub.run(hub.server.checkpoint())
            assert hub.server.ledger is not None
            size = hub.run(hub.server.db.run(hub.server.ledger.get_checkpoint)).tree_size
        token = operator_token(clock)
        with httpx.Client(base_url=console_url(hub), timeout=10) as client:
            checkpoint = parse_checkpoint(client.get("/log/checkpoint").text)
            size = checkpoint.body.tree_size
            full, rest = divmod(size, 256)
            leaves: list[bytes] = []
            for index in range(full + 1):
                width = 256 if index < full else rest
                if width == 0:
                    continue
                hashes = client.get(_tile(0, index, width)).content
                assert len(hashes) == 32 * width
                tile_leaves = [hashes[i : i + 32] for i in range(0, len(hashes), 32)]
                bundle = client.get(
                    _tile("entries", index, width), headers={"authorization": f"Bearer {token}"}
                )
                assert bundle.status_code == 200
                entries, at = [], 0
                while at < len(bundle.content):
                    (length,) = struct.unpack(">H", bundle.content[at : at + 2])
                    entries.append(bundle.content[at + 2 : at + 2 + length])
                    at += 2 + length
                assert [hashlib.sha256(b"\x00" + e).digest() for e in entries] == tile_leaves
                leaves += tile_leaves
            level1 = client.get(_tile(1, 0, full)).content  # one hash per full level-0 tile
            assert [level1[i : i + 32] for i in range(0, len(level1), 32)] == [
                _mth(leaves[i * 256 : (i + 1) * 256]) for i in range(full)
            ]
            assert _mth(leaves) == checkpoint.body.root_hash
            assert base64.b64encode(checkpoint.body.root_hash).decode() in client.get("/log/checkpoint").text
            assert client.get(_tile("entries", 0, 256)).status_code == 403  # events are for staff
            assert client.get(_tile(0, full + 1, 256)).status_code == 404  # beyond the checkpoint
            assert client.get("/log/tile/0/x000/000").status_code == 404  # not the canonical encoding
    finally:
        hub.stop()
