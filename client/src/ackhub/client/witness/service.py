"""The witness's side of C2SP tlog-witness `add-checkpoint`: parse the request, check the log's signature
and the consistency proof against the last checkpoint cosigned for that log, persist, then cosign.

| answer | when |
|---|---|
| 200, cosignature line(s) | consistent with the stored checkpoint (or the first for this log) |
| 400 | malformed request, old size above the checkpoint's size, or a proof with old size 0 |
| 403 | no signature by a key the witness trusts for that origin |
| 404 | unknown origin |
| 409, `text/x.tlog.size` | old size is not the size the witness holds (body: that size), or the same size
|     | with a different root hash (an alarm: the log signed two trees of one size) |
| 422 | the consistency proof does not verify (an alarm: the log's history changed) |

Alarms are raised only on a checkpoint the log really signed: a fork at one size, a failed consistency
proof, or a signed tree smaller than one the witness cosigned presented as the log's newest (old size =
the witness's size, above the checkpoint's). Each is written to the alarm file, logged as `witness.alarm`
and counted in `ackhub_witness_alarms_total`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ackhub.audit.merkle import verify_consistency
from ackhub.audit.note import (
    COSIGNATURE_V1,
    Note,
    NoteError,
    SignedCheckpoint,
    Signer,
    Verifier,
    parse_checkpoint,
)
from ackhub.client.witness.state import StateError, Storage

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD = re.compile(r"old (0|[1-9][0-9]{0,18})")
log = logging.getLogger("ackhub.witness")


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class BadRequest(Exception):
    pass


def parse_request(body: bytes) -> tuple[int, list[bytes], SignedCheckpoint]:
    """`old <size>`, up to 63 base64 hashes, an empty line, a signed checkpoint; BadRequest if not."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request is not UTF-8") from None
    head, blank, rest = text.partition("\n\n")
    if not blank:
        raise BadRequest("no empty line between the old size and proof lines and the checkpoint")
    lines = head.split("\n")
    match = _OLD.fullmatch(lines[0])
    if match is None:
        raise BadRequest("the first line must be 'old <size>' (decimal, no leading zeroes)")
    proof = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            node = base64.b64decode(line, validate=True)
        except binascii.Error:
            node = b""
        if len(node) != 32:
            raise BadRequest(f"line {number}: a consistency proof line is one base64 SHA-256 hash")
        proof.append(node)
    if len(proof) > MAX_PROOF_LINES:
        raise BadRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    try:
        checkpoint = parse_checkpoint(rest)
    except NoteError as error:
        raise BadRequest(f"the checkpoint is malformed: {error}") from None
    return int(match.group(1)), proof, checkpoint


class Witness:
    """One witness key over a set of logs (origin → the log keys it trusts); thread-safe."""

    def __init__(
        self,
        name: str,
        signer: Signer,
        logs: dict[str, list[Verifier]],
        storage: Storage,
        now_s: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        if signer.kind != COSIGNATURE_V1:
            raise ValueError("a witness signs cosignature/v1 (type 0x04)")
        self.name = name
        self.signer = signer
        self.logs = logs
        self.storage = storage
        self.now_s = now_s
        self.answers: Counter[int] = Counter()
        self.alarm_count = len(storage.alarms())  # raised before a restart still count
        self._lock = threading.Lock()

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            answer = self._add_checkpoint(body)
        except StateError as error:  # a damaged state file: cosign nothing until someone looks
            log.error("witness.state_damaged %s", error)
            answer = Answer(500, "the witness's state is damaged; it cosigns nothing until repaired\n")
        self.answers[answer.status] += 1
        return answer

    def _add_checkpoint(self, body: bytes) -> Answer:
        try:
            old, proof, checkpoint = parse_request(body)
        except BadRequest as error:
            return Answer(400, f"{error}\n")
        origin, size, root = checkpoint.body.origin, checkpoint.body.tree_size, checkpoint.body.root_hash
        keys = self.logs.get(origin)
        if keys is None:
            return Answer(404, f"this witness does not witness log {origin!r}\n")
        if not any(checkpoint.note.verified_by(key) is not None for key in keys):
            return Answer(403, f"no signature by a key this witness trusts for {origin!r}\n")
        with self._lock:  # checking against the stored size and storing the new one are one step
            stored = self.storage.load(origin)
            known = stored.tree_size if stored is not None else 0
            if old > size:
                if old == known and stored is not None:
                    self._alarm(
                        "rollback",
                        origin,
                        checkpoint,
                        f"the log presented a signed checkpoint of {size} leaves as its newest, but this "
                        f"witness cosigned {known} leaves: leaves from {size} on are gone",
                    )
                return Answer(400, f"old size {old} is above the checkpoint's size {size}\n")
            if old != known:
                return Answer(409, f"{known}\n", SIZE_CONTENT_TYPE)
            if old == 0 and proof:
                return Answer(400, "a request with old size 0 carries no consistency proof\n")
            if old == size and proof:
                return Answer(400, "a request with old size equal to the checkpoint's carries no proof\n")
            if stored is not None and old == size:
                if root != stored.root_hash:
                    self._alarm(
                        "fork",
                        origin,
                        checkpoint,
                        f"the log signed two different trees of {size} leaves: this witness cosigned root "
                        f"{base64.b64encode(stored.root_hash).decode()}, now it shows "
                        f"{base64.b64encode(root).decode()}",
                    )
                    return Answer(409, f"{known}\n", SIZE_CONTENT_TYPE)
            elif stored is not None and not verify_consistency(old, size, stored.root_hash, root, proof):
                self._alarm(
                    "inconsistent",
                    origin,
                    checkpoint,
                    f"the consistency proof from the {old} leaves this witness cosigned to {size} does not "
                    "verify: the log's first leaves are not the ones it had",
                )
                return Answer(422, f"the consistency proof from {old} to {size} does not verify\n")
            line = self.signer.sign(checkpoint.note.text, self.now_s())
            kept = [s.line for s in checkpoint.note.signatures if any(s.by(k) for k in keys)]
            cosigned = SignedCheckpoint(
                Note(checkpoint.note.text).with_signatures([*kept, line]), checkpoint.body
            )
            self.storage.save(origin, cosigned)  # persisted before answering
        log.info("witness.cosigned origin=%s tree_size=%d", origin, size)
        return Answer(200, line)

    def latest(self, origin: str) -> str | None:
        """The last checkpoint cosigned for `origin`, as a signed note with the cosignature."""
        with self._lock:
            stored = self.storage.load(origin)
        return stored.checkpoint.render() if stored is not None else None

    def _alarm(self, kind: str, origin: str, checkpoint: SignedCheckpoint, what: str) -> None:
        self.alarm_count += 1
        self.storage.raise_alarm(
            {
                "kind": kind,
                "origin": origin,
                "time": self.now_s(),
                "what": what,
                "checkpoint": checkpoint.render(),  # the log's signed statement: the evidence
            }
        )
        log.error("witness.alarm kind=%s origin=%s: %s", kind, origin, what)

    def metrics(self) -> str:
        """Prometheus text exposition."""
        lines = [
            "# HELP ackhub_witness_requests_total add-checkpoint requests by HTTP status",
            "# TYPE ackhub_witness_requests_total counter",
            *(f'ackhub_witness_requests_total{{code="{c}"}} {n}' for c, n in sorted(self.answers.items())),
            "# HELP ackhub_witness_alarms_total checkpoints that showed the log forked, rolled back or rewritten",
            "# TYPE ackhub_witness_alarms_total counter",
            f"ackhub_witness_alarms_total {self.alarm_count}",
            "# HELP ackhub_witness_tree_size the size of the last checkpoint cosigned, per log",
            "# TYPE ackhub_witness_tree_size gauge",
        ]
        for origin in sorted(self.logs):
            try:
                stored = self.storage.load(origin)
            except StateError:
                stored = None
            escaped = origin.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(
                f'ackhub_witness_tree_size{{origin="{escaped}"}} {stored.tree_size if stored else 0}'
            )
        return "\n".join(lines) + "\n"
