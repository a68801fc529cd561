"""Names of delivery and escalation states as stored, and which delivery states are final."""

from __future__ import annotations

PENDING = "PENDING"
SENT = "SENT"
RECEIVED = "RECEIVED"
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
DELIVERY_STATES = (PENDING, SENT, RECEIVED, ACCEPTED, REJECTED)
FINAL = frozenset({ACCEPTED, REJECTED})

LEVEL_RECEIVED = "RECEIVED"
LEVEL_BUSINESS = "BUSINESS"

CASE_OPEN = "OPEN"
CASE_RESOLVED = "RESOLVED"
CASE_CLOSED_BY_ACK = "CLOSED_BY_ACK"

DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
REJECTED_BY_RECIPIENT = "REJECTED"
ABORTED_BY_RECIPIENT = "ABORTED_BY_RECIPIENT"


def closes(required_level: str, status: str) -> bool:
    """Whether an acknowledgement with `status` is the one that closes a delivery at `required_level`."""
    return status in FINAL or (status == RECEIVED and required_level == LEVEL_RECEIVED)
