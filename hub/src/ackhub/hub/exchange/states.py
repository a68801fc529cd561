"""Names of delivery and escalation states as stored, which delivery states are final, and when a delivery
is closed.

A delivery is **closed** once the recipient sent the acknowledgement its route requires: RECEIVED on a
route whose level is RECEIVED, ACCEPTED or REJECTED on any route (a business answer also closes a
RECEIVED-level delivery that skipped RECEIVED). The closing acknowledgement's status and the hub's time of
it are stored with the delivery (`closed_by`, `closed_ms`) and never change afterwards: a later business
answer on a RECEIVED-level route moves the state on, but the delivery was closed by its RECEIVED. Every
view (the contract, the console, the CLI, the demo, the metrics) reads these two columns, so none has to
know the route's level to tell "done" from "waiting". An operator resolving a case by hand stops the
retries but does not close the delivery: the recipient never acknowledged it."""

from __future__ import annotations

PENDING = "PENDING"
SENT = "SENT"
RECEIVED = "RECEIVED"
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
DELIVERY_STATES = (PENDING, SENT, RECEIVED, ACCEPTED, REJECTED)
FINAL = frozenset({ACCEPTED, REJECTED})
OPEN = "OPEN"
CLOSED = "CLOSED"
# States a delivery cannot be in while open, and while closed: a filter asking for either is a mistake.
NEVER_OPEN = FINAL
NEVER_CLOSED = frozenset({PENDING, SENT})

LEVEL_RECEIVED = "RECEIVED"

CASE_OPEN = "OPEN"
CASE_RESOLVED = "RESOLVED"
CASE_CLOSED_BY_ACK = "CLOSED_BY_ACK"

DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
# A witness refused a checkpoint: a top-level case tied to no delivery (ackhub.hub.witnesses).
WITNESS_REFUSED = "WITNESS_REFUSED"
WITNESS_CASE_TYPE = "audit.checkpoint"  # the `record_type` of such a case
ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
REJECTED_BY_RECIPIENT = "REJECTED"
ABORTED_BY_RECIPIENT = "ABORTED_BY_RECIPIENT"


def closes(required_level: str, status: str) -> bool:
    """Whether an acknowledgement with `status` closes a delivery at `required_level`."""
    return status in FINAL or (status == RECEIVED and required_level == LEVEL_RECEIVED)


def check_closure_filter(state: str, closure: str, *, same_delivery: bool = True) -> str | None:
    """Why a filter on `state` and on `closure` (OPEN, CLOSED or "") cannot match, or None when it can.
    `same_delivery`: both filter one delivery (ListDeliveries); otherwise a record, where an OPEN record may
    hold an ACCEPTED delivery beside its open one, but a CLOSED one no PENDING or SENT delivery."""
    if closure not in ("", OPEN, CLOSED):
        return f"unknown closure {closure!r}: OPEN or CLOSED"
    if (closure == OPEN and same_delivery and state in NEVER_OPEN) or (
        closure == CLOSED and state in NEVER_CLOSED
    ):
        return f"a {state} delivery is never {closure.lower()}: the filter contradicts `state`"
    return None


# Open deliveries are few (those in flight and the backlog) however many are stored: a partial index holds
# them (models.DeliveryRow), so counting them per agency never reads the whole table.
OPEN_CLAUSE = "closed_ms IS NULL"
