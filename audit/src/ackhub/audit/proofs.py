"""A delivery proof checked with no server at all: every signature and inclusion proof in the document the
hub builds (`ackhub.hub.ledger.proof`), against a pinned hub key and a witness policy."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ackhub.audit.acks import AckFields, load_public_key, verify_ack
from ackhub.audit.checkpoint import Checkpoint
from ackhub.audit.merkle import leaf_hash, verify_inclusion
from ackhub.audit.note import Verifier, cosigners, parse_note
from ackhub.audit.times import parse_rfc3339_ms, to_rfc3339_ms

FORMAT = "ackhub-delivery-proof/v1"


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
    """Check every signature and proof in a delivery proof document (ackhub.hub.ledger.proof), with no server."""
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


_CASE_EVENTS = (
    "case.opened|case.message_added|case.resolved|case.withdrawn|case.reopened|case.deadline_missed|"
    "case.stepped|case.party_added"
)


def _check_proof(
    document: Any,
    trusted: Ed25519PublicKey | None,
    policy: WitnessPolicy,
    said: list[str],
    failed: list[str],
) -> ProofVerdict:
    if document.get("format") != FORMAT:
        failed.append(f"not a {FORMAT} document (format {document.get('format')!r})")
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
    for case in document.get("cases", []):  # cases between parties about the record (docs/cases.md)
        logged_events = [
            event(index, f"case {case['case_id']}", _CASE_EVENTS, case_id=case["case_id"])
            for index in case["events"]
        ]
        steps = [e for e in logged_events if e is not None]
        if len(steps) != len(logged_events) or not steps:
            continue
        last = steps[-1]["data"]
        said.append(
            f"Case {case['case_id']} ({case['kind']}) about this record was opened by {steps[0]['actor']} at "
            f"{to_rfc3339_ms(steps[0]['time_ms'])}; {len(steps)} audited change(s) (audit events "
            f"{', '.join(str(e['index']) for e in steps)}), the last: {last.get('detail', '')} — "
            f"state {last.get('state', '')}."
        )
    return ProofVerdict(not failed, said, failed)
