"""The witness's storage: one file per log holding the last checkpoint it cosigned (the log's signed note
with the witness's cosignature line), replaced atomically; and an append-only alarm file.

One process per state directory: `open` takes an exclusive lock on `<dir>/.lock` and refuses when another
process holds it, so that two witnesses can never cosign from the same state.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ackhub.audit.note import NoteError, SignedCheckpoint, parse_checkpoint

ALARMS = "alarms.jsonl"


class StateError(Exception):
    """The state directory cannot be used (locked by another process, or a state file is damaged)."""


@dataclass(frozen=True)
class LogState:
    checkpoint: SignedCheckpoint

    @property
    def tree_size(self) -> int:
        return self.checkpoint.body.tree_size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.body.root_hash


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Storage:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._lock: IO[str] | None = None

    def open(self) -> Storage:
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = (self.dir / ".lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateError(
                f"another witness process holds {self.dir}; one process per state directory"
            ) from None
        self._lock = lock
        return self

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def path(self, origin: str) -> Path:
        # The origin is any text; the file name is its hash, and the file itself says which log it is.
        return self.dir / f"log-{hashlib.sha256(origin.encode()).hexdigest()[:32]}.checkpoint"

    def load(self, origin: str) -> LogState | None:
        path = self.path(origin)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            checkpoint = parse_checkpoint(data)
        except NoteError as error:
            raise StateError(f"{path} is damaged: {error}") from None
        if checkpoint.body.origin != origin:
            raise StateError(f"{path} holds log {checkpoint.body.origin!r}, not {origin!r}")
        return LogState(checkpoint)

    def save(self, origin: str, checkpoint: SignedCheckpoint) -> None:
        """Write to a temporary file, flush it to disk, rename it over the old one, flush the directory:
        after a crash the file is the old checkpoint or the new one, never a mix."""
        path = self.path(origin)
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            out.write(checkpoint.render())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        _fsync_dir(self.dir)

    def raise_alarm(self, alarm: dict[str, Any]) -> None:
        with (self.dir / ALARMS).open("a", encoding="utf-8") as out:
            out.write(json.dumps(alarm, ensure_ascii=False, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def alarms(self) -> list[dict[str, Any]]:
        path = self.dir / ALARMS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
