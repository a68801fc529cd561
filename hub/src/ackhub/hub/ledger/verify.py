"""Verification of the stored log against its signed checkpoints (`verify_log`); a delivery proof is checked
with no server at all by `ackhub.audit.proofs`.

`verify_log` recomputes every leaf from the stored event, the tree from the leaves and each checkpoint's
root from the tree, and checks each checkpoint's signature. It names the first bad event:
- a leaf index missing from the sequence: the event there was deleted;
- an event whose content no longer hashes to its stored leaf hash: altered — unless the stored hash is that
  of the same content at a nearby index, which means it was moved: events were inserted, deleted or
  reordered, and the first bad position is the lower of where it is and where it was;
- when every event matches its stored hash but a checkpoint's root does not, the stored hashes were
  rewritten too: the first bad event lies after the last checkpoint that still verifies, and that is named.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlmodel import col, func, select

from ackhub.audit.checkpoint import Checkpoint
from ackhub.audit.merkle import Frontier, leaf_hash
from ackhub.audit.note import SignedCheckpoint, Verifier, cosigners, parse_note
from ackhub.audit.proofs import WitnessPolicy
from ackhub.hub.ledger import log
from ackhub.hub.ledger.ledger import to_checkpoint
from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AuditCheckpointRow, AuditCosignatureRow, AuditEventRow

MOVE_WINDOW = 16  # how far from its position a moved event is looked for


@dataclass(frozen=True)
class LogVerdict:
    ok: bool
    events: int  # sequenced events checked
    checkpoints: int
    pending: int  # committed events not yet sequenced (not yet covered by the tree)
    first_bad_leaf: int | None = None
    first_bad_seq: int | None = None
    problem: str = ""

    def summary(self) -> str:
        if self.ok:
            return f"OK: {self.events} events recomputed, {self.checkpoints} signed checkpoints verified" + (
                f"; {self.pending} newer events are not yet in the tree" if self.pending else ""
            )
        where = "" if self.first_bad_leaf is None else f"first bad event: leaf {self.first_bad_leaf}"
        if self.first_bad_seq is not None:
            where += f" (seq {self.first_bad_seq})"
        return f"FAILED: {where}: {self.problem}" if where else f"FAILED: {self.problem}"


def _hash_at(event: AuditEventRow, index: int) -> bytes:
    try:
        return leaf_hash(log.leaf_data(event, index))
    except ValueError:
        return leaf_hash(event.data.encode())


def _moved_from(event: AuditEventRow, position: int) -> int | None:
    for index in range(max(0, position - MOVE_WINDOW), position + MOVE_WINDOW + 1):
        if index != position and _hash_at(event, index) == event.leaf_hash:
            return index
    return None


@dataclass(frozen=True)
class TrustAnchor:
    """What a verifier trusts from outside the store: a checkpoint (from a file or a witness), optionally
    required to carry `quorum` cosignatures of `witnesses`; or the hub's key with a minimum tree size."""

    checkpoint: SignedCheckpoint | None = None
    log_key: Verifier | None = None
    min_size: int = 0
    policy: WitnessPolicy = WitnessPolicy()  # noqa: RUF009 - frozen, so one shared default is safe

    @property
    def size(self) -> int:
        return self.checkpoint.body.tree_size if self.checkpoint is not None else self.min_size

    def problem(self) -> str | None:
        """Why the anchor itself cannot be trusted, or None."""
        if self.checkpoint is None:
            return None if self.log_key is not None else "no trust anchor"
        note = self.checkpoint.note
        if self.log_key is not None and note.verified_by(self.log_key) is None:
            return f"the trusted checkpoint is not signed by the log key {self.log_key.name}"
        why = self.policy.shortfall(cosigners(note, list(self.policy.witnesses)))
        return None if why is None else f"the trusted checkpoint is {why}"


def _witnessed_sizes(session: Any, signed: list[Checkpoint], witnesses: tuple[Verifier, ...]) -> set[int]:
    """Sizes of stored checkpoints that a trusted witness cosigned (a stored cosignature that verifies)."""
    if not witnesses:
        return set()
    lines: dict[int, list[str]] = {}
    for row in session.exec(select(AuditCosignatureRow)):
        lines.setdefault(row.tree_size, []).append(row.line)
    found = set()
    for cp in signed:
        if cp.tree_size in lines:
            try:
                if cosigners(parse_note(cp.signed_note(lines[cp.tree_size])), list(witnesses)):
                    found.add(cp.tree_size)
            except ValueError:
                continue
    return found


def verify_log(
    db: Database, trusted: Ed25519PublicKey | None = None, anchor: TrustAnchor | None = None
) -> LogVerdict:
    """Blocking. With `trusted`, every checkpoint must be signed by that key. With `anchor`, the log must
    also reach the anchor's size with the anchor's root, and hold the anchor's checkpoint."""
    with db.transaction() as session:
        rows = list(session.exec(select(AuditCheckpointRow).order_by(col(AuditCheckpointRow.tree_size))))
        pending = int(session.exec(select(func.count()).where(col(AuditEventRow.leaf_index).is_(None))).one())
        signed = [to_checkpoint(r) for r in rows]
        if anchor is not None:
            why = anchor.problem()
            if why is not None:
                return LogVerdict(False, 0, len(signed), pending, problem=why)
            if anchor.log_key is not None:
                trusted = anchor.log_key.public_key
            elif anchor.checkpoint is not None and trusted is None:
                # The anchor names the hub's key by name and hash only; the store's checkpoint of the same
                # size holds the key itself, which must be the one that signed the anchor.
                same = next((cp for cp in signed if cp.tree_size == anchor.size), None)
                if same is not None:
                    if anchor.checkpoint.note.verified_by(same.verifier()) is None:
                        return LogVerdict(
                            False,
                            0,
                            len(signed),
                            pending,
                            problem=f"the store's checkpoint of {anchor.size} leaves is signed by key "
                            f"{same.key_id}, which did not sign the trusted checkpoint",
                        )
                    trusted = same.verifier().public_key
        witnessed = _witnessed_sizes(session, signed, anchor.policy.witnesses if anchor else ())
        witnessed_good = 0  # the largest witnessed checkpoint the recomputed tree matches
        anchor_root = anchor.checkpoint.body.root_hash if anchor and anchor.checkpoint else None
        anchor_size = anchor.size if anchor else 0
        for cp in signed:
            why = cp.verify(trusted)
            if why is not None:
                return LogVerdict(False, 0, len(signed), pending, problem=f"checkpoint {cp.tree_size}: {why}")
        by_size = {cp.tree_size: cp for cp in signed}
        tree = Frontier()  # O(log n) hashes: the root at each size is all a checkpoint needs
        recent: deque[AuditEventRow] = deque(maxlen=MOVE_WINDOW + 1)
        good_size = 0  # the largest checkpoint verified so far
        events = session.exec(
            select(AuditEventRow)
            .where(col(AuditEventRow.leaf_index).is_not(None))
            .order_by(col(AuditEventRow.leaf_index))
            .execution_options(yield_per=2000)
        )
        for event in events:
            position = tree.size
            if event.leaf_index != position:
                return LogVerdict(
                    False,
                    position,
                    len(signed),
                    pending,
                    position,
                    None,
                    f"leaf {position} is missing: the event sequenced there was deleted "
                    f"(the next stored event is leaf {event.leaf_index}, seq {event.seq})",
                )
            recomputed = _hash_at(event, position)
            if recomputed != event.leaf_hash:
                moved = _moved_from(event, position)
                if moved is None:
                    return LogVerdict(
                        False,
                        position,
                        len(signed),
                        pending,
                        position,
                        event.seq,
                        f"event seq {event.seq} ({event.kind}) was altered: "
                        "its content no longer matches the leaf hash stored when it was sequenced",
                    )
                if moved < position:
                    earlier = recent[moved - position]
                    return LogVerdict(
                        False,
                        moved,
                        len(signed),
                        pending,
                        moved,
                        earlier.seq,
                        f"event seq {earlier.seq} ({earlier.kind}) is not the event sequenced at leaf {moved}: "
                        f"that one (seq {event.seq}) now sits at leaf {position}; "
                        "events were inserted or reordered",
                    )
                return LogVerdict(
                    False,
                    position,
                    len(signed),
                    pending,
                    position,
                    event.seq,
                    f"the event sequenced at leaf {position} is gone: leaf {position} now holds seq "
                    f"{event.seq}, which was sequenced at leaf {moved}; events were deleted or reordered",
                )
            tree.append(recomputed)
            recent.append(event)
            reached = by_size.get(tree.size)
            if reached is not None:
                if tree.root() != reached.root_hash:
                    return LogVerdict(
                        False,
                        tree.size,
                        len(signed),
                        pending,
                        good_size,
                        None,
                        f"the events after leaf {good_size - 1} no longer produce checkpoint {reached.tree_size}'s "
                        "root although each matches its stored hash: the stored hashes were rewritten; the "
                        f"first bad event is at or after leaf {good_size}",
                    )
                good_size = reached.tree_size
                if reached.tree_size in witnessed:
                    witnessed_good = reached.tree_size
            if anchor_root is not None and tree.size == anchor_size and tree.root() != anchor_root:
                return LogVerdict(
                    False,
                    tree.size,
                    len(signed),
                    pending,
                    witnessed_good,
                    None,
                    f"the log's first {anchor_size} leaves do not produce the trusted checkpoint's root: "
                    f"history was rewritten; the first differing leaf is between leaf {witnessed_good} "
                    f"and leaf {anchor_size - 1}"
                    + (
                        f" (leaves before {witnessed_good} match a checkpoint a trusted witness cosigned)"
                        if witnessed_good
                        else ""
                    ),
                )
    if anchor is not None:
        failed = _check_anchor(anchor, tree.size, signed)
        if failed is not None:
            return LogVerdict(False, tree.size, len(signed), pending, failed[0], None, failed[1])
    beyond = [cp.tree_size for cp in signed if cp.tree_size > tree.size]
    if beyond:
        return LogVerdict(
            False,
            tree.size,
            len(signed),
            pending,
            tree.size,
            None,
            f"checkpoint {beyond[0]} covers {beyond[0]} events but the log holds only {tree.size}: "
            f"events from leaf {tree.size} on were deleted",
        )
    return LogVerdict(True, tree.size, len(signed), pending)


def _check_anchor(anchor: TrustAnchor, size: int, signed: list[Checkpoint]) -> tuple[int | None, str] | None:
    """After the walk: (first bad leaf, or None when no leaf is bad, why) when the log falls short."""
    if size < anchor.size:
        return size, (
            f"the log holds {size} leaves but the trusted size is {anchor.size}: leaf {size} is the "
            "first missing one; leaves (and the checkpoints over them) were deleted"
        )
    if anchor.checkpoint is not None:
        stored = next((cp for cp in signed if cp.tree_size == anchor.size), None)
        if stored is None or stored.root_hash != anchor.checkpoint.body.root_hash:
            return None, (
                f"the store holds no checkpoint of {anchor.size} leaves although the trusted one has that "
                "size: checkpoints were deleted"
            )
        return None
    newest = max((cp.tree_size for cp in signed), default=0)
    if newest < anchor.min_size:
        return None, (
            f"the newest checkpoint signed by the trusted key has {newest} leaves, below the trusted minimum "
            f"{anchor.min_size}: checkpoints were deleted"
        )
    return None
