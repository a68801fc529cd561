"""Verification: of the stored log against its signed checkpoints (`verify_log`), and of a delivery proof
document with no server at all (`verify_delivery_proof`, in audit/proof.py's format).

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

import base64
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlmodel import col, func, select

from audit import log
from audit.checkpoint import Checkpoint
from audit.ledger import to_checkpoint
from audit.merkle import Frontier, leaf_hash, verify_inclusion
from audit.note import SignedCheckpoint, Verifier, cosigners, parse_note
from hub.clock import parse_rfc3339_ms, to_rfc3339_ms
from hub.signing import AckFields, load_public_key, verify_ack
from hub.store.db import Database
from hub.store.models import AuditCheckpointRow, AuditCosignatureRow, AuditEventRow

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
class WitnessPolicy:
    """Trust a checkpoint only when at least `quorum` of `witnesses` (cosignature keys) cosigned it."""

    witnesses: tuple[Verifier, ...] = ()
    quorum: int = 0

    def shortfall(self, found: dict[str, int]) -> str | None:
        """Why the cosigners `found` (name → time) do not meet the policy, or None."""
        if len(found) >= self.quorum:
            return None
        missing = sorted(w.name for w in self.witnesses if w.name not in found)
        return (
            f"cosigned by {len(found)} trusted witness(es) but the policy requires {self.quorum}; "
            f"no valid cosignature by: {', '.join(missing)}"
        )


@dataclass(frozen=True)
class TrustAnchor:
    """What a verifier trusts from outside the store: a checkpoint (from a file or a witness), optionally
    required to carry `quorum` cosignatures of `witnesses`; or the hub's key with a minimum tree size."""

    checkpoint: SignedCheckpoint | None = None
    log_key: Verifier | None = None
    min_size: int = 0
    policy: WitnessPolicy = WitnessPolicy()

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


# -- delivery proofs, offline ------------------------------------------------------------------------

_SAYS = {
    "RECEIVED": "acknowledged receipt of",
    "ACCEPTED": "accepted",
    "REJECTED": "rejected",
}


@dataclass
class ProofVerdict:
    ok: bool
    statements: list[str]  # what the document proves, in plain words
    failures: list[str]  # exactly what does not verify


def verify_delivery_proof(
    document: Any, trusted: Ed25519PublicKey | None = None, policy: WitnessPolicy | None = None
) -> ProofVerdict:
    """Check every signature and proof in a delivery proof document (audit/proof.py), with no server."""
    said: list[str] = []
    failed: list[str] = []
    try:
        return _check_proof(document, trusted, policy or WitnessPolicy(), said, failed)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        failed.append(f"the document is malformed: {type(exc).__name__}: {exc}")
        return ProofVerdict(False, said, failed)


def _check_cosignatures(
    cp: Checkpoint, signed_note: str | None, policy: WitnessPolicy, said: list[str]
) -> str | None:
    """Which trusted witnesses cosigned the checkpoint (said), or why the policy is not met."""
    found: dict[str, int] = {}
    if signed_note:
        note = parse_note(signed_note)
        if note.text != cp.note():
            return "the checkpoint's signed note is not of this checkpoint"
        found = cosigners(note, list(policy.witnesses))
    if found:
        names = ", ".join(f"{name} (at {to_rfc3339_ms(when * 1000)})" for name, when in sorted(found.items()))
        said.append(
            f"Trusted witnesses cosigned that checkpoint, each having checked it extends every earlier one it "
            f"saw: {names}."
        )
    why = policy.shortfall(found)
    return None if why is None else f"the checkpoint is {why}"


def _check_proof(
    document: Any,
    trusted: Ed25519PublicKey | None,
    policy: WitnessPolicy,
    said: list[str],
    failed: list[str],
) -> ProofVerdict:
    from audit import proof as proof_format

    if document.get("format") != proof_format.FORMAT:
        failed.append(f"not a {proof_format.FORMAT} document (format {document.get('format')!r})")
        return ProofVerdict(False, said, failed)
    cp = Checkpoint.from_json(document["checkpoint"])
    why = cp.verify(trusted)
    if why is not None:
        failed.append(f"the hub's checkpoint does not verify: {why}")
        return ProofVerdict(False, said, failed)
    pinned = "" if trusted else " (not compared with a pinned hub key: pass --hub-key to do so)"
    said.append(
        f"The hub's audit log {cp.origin!r} held {cp.tree_size} events at {to_rfc3339_ms(cp.time_ms)}, "
        f"signed by the hub's key {cp.key_id}{pinned}."
    )
    why = _check_cosignatures(cp, document["checkpoint"].get("signed_note"), policy, said)
    if why is not None:
        failed.append(why)
    leaves: dict[int, dict[str, Any]] = {}
    for index_text, entry in document["events"].items():
        index = int(index_text)
        data = entry["leaf_data"].encode()
        audit_path = [base64.b64decode(h, validate=True) for h in entry["audit_path"]]
        if not verify_inclusion(index, cp.tree_size, leaf_hash(data), audit_path, cp.root_hash):
            failed.append(f"audit event {index}: its inclusion proof does not lead to the checkpoint's root")
            continue
        fields = json.loads(data)
        if fields.get("index") != index:
            failed.append(f"audit event {index}: its data names leaf {fields.get('index')}")
            continue
        leaves[index] = fields

    def event(index: Any, what: str, kind: str, **expect: Any) -> dict[str, Any] | None:
        if index is None or int(index) not in leaves:
            failed.append(f"{what}: no verified audit event records it")
            return None
        fields = leaves[int(index)]
        data = fields["data"]
        wrong = [k for k, v in expect.items() if (fields.get(k) if k in fields else data.get(k)) != v]
        if fields["kind"] not in kind.split("|") or wrong:
            failed.append(
                f"{what}: audit event {index} is a {fields['kind']!r} event that does not match "
                f"({', '.join(wrong) or 'kind'})"
            )
            return None
        return fields

    record = document["record"]
    digest = record["digest"]
    published = event(
        record["published_event"],
        f"publication of record {record['record_id']}",
        "record.published",
        record_id=record["record_id"],
        digest=digest,
    )
    if published is not None:
        # What the summary below states must be what the hub logged, not just what the document says.
        logged = published.get("data") or {}
        claimed = {
            "record_type": record["record_type"],
            "subject_uscc": record["subject_uscc"],
            "declaration_number": record["declaration_number"],
        }
        differ = [k for k, v in claimed.items() if (logged.get(k) or "") != (v or "")]
        if published.get("actor") != f"agency:{record['publisher']}":
            differ.append("publisher")
        logged_deliveries = logged.get("deliveries") or {}
        for recipient in document["recipients"]:
            if logged_deliveries.get(recipient["agency"]) != recipient["delivery_id"]:
                differ.append(f"delivery to {recipient['agency']}")
        if differ:
            failed.append(
                f"publication of record {record['record_id']}: the document does not match what the hub "
                f"logged in audit event {published['index']} ({', '.join(differ)})"
            )
            published = None
    if published is not None:
        said.append(
            f"{record['publisher']} published record {record['record_id']} ({record['record_type']}"
            + (f", declaration {record['declaration_number']}" if record["declaration_number"] else "")
            + f") with digest {digest} at {to_rfc3339_ms(published['time_ms'])}; the hub logged it as audit "
            f"event {published['index']}."
        )
    for recipient in document["recipients"]:
        agency, name = recipient["agency"], recipient["name"]
        registered = event(
            recipient["registered_event"],
            f"registration of agency {agency}",
            "agency.registered|agency.updated",
            agency=agency,
            name=name,
        )
        who = f"the {name}" if registered is not None else f"agency {agency!r}"
        if not recipient["acknowledgements"]:
            said.append(f"No acknowledgement from {who} ({agency}) is in this proof.")
        for ack in recipient["acknowledgements"]:
            status = ack["status"]
            what = f"{agency}'s {status} acknowledgement"
            try:
                public_key = load_public_key(ack["public_key"])
            except ValueError:
                failed.append(f"{what}: the agency key is not an Ed25519 public key")
                continue
            fields = AckFields(
                recipient["delivery_id"],
                record["record_id"],
                digest.removeprefix("sha256:"),
                agency,
                ack["key_id"],
                status,
                ack["reason"],
                parse_rfc3339_ms(ack["time"]),
            )
            signature = base64.b64decode(ack["signature"], validate=True)
            if not verify_ack(public_key, fields, signature):
                failed.append(f"{what}: the signature does not verify with key {ack['key_id']!r}")
                continue
            key_event = event(
                ack["key_event"],
                f"{what}: registration of key {ack['key_id']!r}",
                "agency.key_added",
                agency=agency,
                key=ack["key_id"],
                public_key=ack["public_key"],
            )
            logged = event(
                ack["event"],
                what,
                f"delivery.{status.lower()}",
                delivery_id=recipient["delivery_id"],
                signature=signature.hex(),
                status=status,
                reason=ack["reason"],
            )
            if key_event is None or logged is None:
                continue
            because = f", giving the reason {ack['reason']!r}" if ack["reason"] else ""
            said.append(
                f"{who[0].upper()}{who[1:]}'s system ({agency}) {_SAYS[status]} record {record['record_id']} "
                f"with digest {digest} at {ack['time']}{because}: its signature verifies with key "
                f"{ack['key_id']!r}, registered with the hub at {to_rfc3339_ms(key_event['time_ms'])} "
                f"(audit event {key_event['index']}); the hub logged the acknowledgement as audit event "
                f"{logged['index']}."
            )
    return ProofVerdict(not failed, said, failed)
