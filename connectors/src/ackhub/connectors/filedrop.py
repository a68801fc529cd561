"""The file-drop connector, for batch systems: records go out as files in the agency's outbox folder and
signed acknowledgement files come back through its inbox folder.

Out, per attempt (the same names again on a retry; write-then-rename, so a reader never sees half a file):

    <outbox>/<delivery id>.payload        the record's exact bytes
    <outbox>/<delivery id>.manifest.json  the delivery and the record's metadata; written last, so its
                                          presence means the payload is complete

In: any file in `<inbox>` not starting with `.` (write it under a dot-name, then rename) holding one JSON
acknowledgement, signed over the same canonical text as on the stream (hub.signing):

    {"delivery_id", "record_id", "digest": "sha256:…", "recipient", "key_id",
     "status": "RECEIVED|ACCEPTED|REJECTED", "reason", "time": "<RFC 3339 ms>", "signature": "<base64>"}

Stored (or duplicate) → moved to `<inbox>/processed/`. Malformed or refused → moved to `<inbox>/rejected/`
with `<name>.error.json` beside it saying why. Nothing is deleted; a file the hub could not process for a
passing reason (the database is down) stays where it is for the next scan.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ackhub.audit.times import parse_rfc3339_ms, to_rfc3339_ms
from ackhub.connectors._push import PushConnector
from ackhub.connectors.config import Filedrop
from ackhub.connectors.webhook import envelope
from ackhub.core.clock import Clock
from ackhub.core.connector import AckInput, AckSink, Outbound
from ackhub.core.errors import AckhubError
from ackhub.core.principal import Principal

log = structlog.get_logger("ackhub.connectors.filedrop")
PROCESSED = "processed"
REJECTED = "rejected"
MAX_ACK_FILE_BYTES = 64 * 1024
_ACK_FIELDS = ("delivery_id", "record_id", "digest", "recipient", "key_id", "status", "time", "signature")


class MalformedAck(ValueError):
    """An acknowledgement file that cannot be read as one."""


@dataclass
class ScanResult:
    """What one pass over an inbox did, by file name."""

    stored: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # file name → why
    left: list[str] = field(default_factory=list)  # to try again on the next scan


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a dot-named temporary file beside `path`, flush it to disk, then rename it over."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_delivery(outbox: Path, outbound: Outbound, now_ms: int) -> Path:
    """Blocking. Payload first, then the manifest that announces it; returns the manifest's path."""
    if not outbox.is_dir():
        raise FileNotFoundError(f"outbox {str(outbox)!r} is not a folder")
    payload_name = f"{outbound.delivery_id}.payload"
    write_atomically(outbox / payload_name, outbound.record.payload)
    manifest = envelope(outbound)
    del manifest["record"]["payload_base64"]
    manifest["version"] = 1
    manifest["record"]["payload_file"] = payload_name
    manifest["record"]["payload_size"] = len(outbound.record.payload)
    manifest["written_time"] = to_rfc3339_ms(now_ms)
    path = outbox / f"{outbound.delivery_id}.manifest.json"
    write_atomically(path, json.dumps(manifest, ensure_ascii=False, indent=2).encode())
    return path


def parse_ack(data: bytes) -> AckInput:
    """An acknowledgement file's content; raises MalformedAck saying what is wrong."""
    if len(data) > MAX_ACK_FILE_BYTES:
        raise MalformedAck(f"larger than {MAX_ACK_FILE_BYTES} bytes")
    try:
        body: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedAck(f"not UTF-8 JSON: {error}") from None
    if not isinstance(body, dict):
        raise MalformedAck("not a JSON object")
    missing = [name for name in _ACK_FIELDS if not isinstance(body.get(name), str)]
    if missing:
        raise MalformedAck(f"missing or not text: {', '.join(missing)}")
    try:
        time_ms = parse_rfc3339_ms(body["time"])
    except ValueError as error:
        raise MalformedAck(f"time: {error}") from None
    try:
        signature = base64.b64decode(body["signature"], validate=True)
    except binascii.Error:
        raise MalformedAck("signature: not base64") from None
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise MalformedAck("reason: not text")
    return AckInput(
        delivery_id=body["delivery_id"],
        record_id=body["record_id"],
        digest=body["digest"],
        recipient=body["recipient"],
        key_id=body["key_id"],
        status=body["status"],
        reason=reason,
        time_ms=time_ms,
        signature=signature,
    )


def _move_aside(path: Path, folder: str) -> Path:
    """Move `path` into its sibling `folder`, never over an existing file."""
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    while target.exists():
        target = target_dir / f"{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}"
    os.replace(path, target)
    return target


def _reject(path: Path, why: dict[str, str]) -> None:
    target = _move_aside(path, REJECTED)
    write_atomically(
        target.with_name(target.name + ".error.json"), json.dumps(why, ensure_ascii=False, indent=2).encode()
    )


def _waiting(inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_file() and not p.name.startswith("."))


class FiledropConnector(PushConnector):
    name = "filedrop"

    def __init__(self, folders: Mapping[str, Filedrop], clock: Clock) -> None:
        super().__init__({agency: drop.concurrency for agency, drop in folders.items()})
        self.folders = dict(folders)
        self.clock = clock
        self._pollers: list[asyncio.Task[None]] = []
        self._scanning = asyncio.Lock()

    async def deliver(self, agency: str, outbound: Outbound) -> None:
        outbox = Path(self.folders[agency].outbox)
        try:
            path = await asyncio.to_thread(write_delivery, outbox, outbound, self.clock.now_ms())
        except OSError as error:
            log.warning(
                "filedrop.write_failed", agency=agency, delivery_id=outbound.delivery_id, why=str(error)
            )
            self.released(agency, outbound.delivery_id)  # retried at its next attempt time
            return
        log.debug("filedrop.written", agency=agency, delivery_id=outbound.delivery_id, path=str(path))

    async def start(self, sink: AckSink) -> None:
        await super().start(sink)
        for agency in self.folders:
            self._pollers.append(asyncio.create_task(self._poll(agency)))

    async def aclose(self) -> None:
        for poller in self._pollers:
            poller.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        await super().aclose()

    async def _poll(self, agency: str) -> None:
        interval = self.folders[agency].poll_interval / 1000
        while True:
            try:
                await self.scan(agency)
            except Exception:
                log.exception("filedrop.scan_failed", agency=agency)
            await asyncio.sleep(interval)

    async def scan(self, agency: str) -> ScanResult:
        """One pass over the agency's inbox: every acknowledgement file is stored or moved aside."""
        assert self._sink is not None
        inbox = Path(self.folders[agency].inbox)
        result = ScanResult()
        async with self._scanning:
            for path in await asyncio.to_thread(_waiting, inbox):
                try:
                    ack = parse_ack(await asyncio.to_thread(path.read_bytes))
                    await self._sink.acknowledge(Principal("agency", agency), ack, via=self.name)
                except MalformedAck as error:
                    why = {"reason": "MALFORMED", "message": str(error)}
                except AckhubError as error:
                    why = {"reason": error.reason, "message": error.message, **error.metadata}
                except OSError as error:
                    log.warning("filedrop.read_failed", agency=agency, file=path.name, why=str(error))
                    result.left.append(path.name)
                    continue
                except Exception:
                    log.exception("filedrop.ack_failed", agency=agency, file=path.name)
                    result.left.append(path.name)
                    continue
                else:
                    await asyncio.to_thread(_move_aside, path, PROCESSED)
                    result.stored.append(path.name)
                    continue
                await asyncio.to_thread(_reject, path, why)
                result.rejected[path.name] = why["reason"]
                log.warning("filedrop.ack_rejected", agency=agency, file=path.name, **why)
        return result
