"""What the case book takes and answers: plain, frozen data, the same for the gRPC service, the console
and (later) the enterprise portal. `CaseView.to_json` / `from_json` keep a first answer for a replayed
request id (ackhub.hub.cases.book)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("NOT_RECEIVED", "CONTENT_DISPUTE", "REJECTION_APPEAL", "OTHER")
OPEN = "OPEN"
AWAITING_PARTY = "AWAITING_PARTY"
RESOLVED = "RESOLVED"
WITHDRAWN = "WITHDRAWN"
STATES = (OPEN, AWAITING_PARTY, RESOLVED, WITHDRAWN)
CLOSED_STATES = (RESOLVED, WITHDRAWN)
SUBJECT_RECORD = "RECORD"
SUBJECT_PERMIT_CHECK = "PERMIT_CHECK"


@dataclass(frozen=True)
class RecordSubject:
    """A record, optionally one of its deliveries (by id, or by its recipient)."""

    record_id: str
    delivery_id: str = ""
    recipient: str = ""


@dataclass(frozen=True)
class PermitCheckSubject:
    """A permit decision: one verified goods line, by the `check_id` verification answered."""

    check_id: str


Subject = RecordSubject | PermitCheckSubject


@dataclass(frozen=True)
class NewAttachment:
    """A file sent with a message."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Attachment:
    """A stored file: what it is, its size and its SHA-256 (lower-case hex); the bytes stay in the store."""

    filename: str
    content_type: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Message:
    id: str
    author: str
    text: str
    attachments: tuple[Attachment, ...]
    created_ms: int
    audit_seq: int


@dataclass(frozen=True)
class Party:
    party: str  # agency:<id>, enterprise:<USCC>, operator:<name>, customs:<jurisdiction>
    role: str  # OPENER ENTERPRISE PUBLISHER RECIPIENT ISSUER CUSTOMS ADDED


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    actor: str
    detail: str
    time_ms: int
    audit_seq: int


@dataclass(frozen=True)
class CaseView:
    """A case as a party sees it. `evidence` is the JSON the hub attached at opening (ackhub.hub.cases.evidence
    documents its shape); lists (`messages`, `history`) are empty in list answers."""

    id: str
    kind: str
    state: str
    subject: str  # RECORD or PERMIT_CHECK
    record_id: str
    delivery_id: str
    check_id: str
    title: str
    opened_by: str
    opened_ms: int
    awaited_party: str
    respond_by_ms: int | None
    level: int
    declaration_number: str
    subject_uscc: str
    close_reason: str
    closed_by: str
    closed_ms: int | None
    reopen_until_ms: int | None
    parties: tuple[Party, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    updated_ms: int = 0  # the last change of any kind (a message, a turn, a closing): "last activity"

    @property
    def closed(self) -> bool:
        return self.state in CLOSED_STATES

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> CaseView:
        data = json.loads(text)
        data["parties"] = tuple(Party(**p) for p in data["parties"])
        data["messages"] = tuple(
            Message(**{**m, "attachments": tuple(Attachment(**a) for a in m["attachments"])})
            for m in data["messages"]
        )
        data["history"] = tuple(HistoryEntry(**h) for h in data["history"])
        return CaseView(**data)


@dataclass(frozen=True)
class Answer:
    """A mutation's answer: the case after it, the new message's id (AddCaseMessage), and whether this
    repeats the first answer to the same request id."""

    case: CaseView
    replayed: bool = False
    message_id: str = ""


@dataclass(frozen=True)
class CaseFilter:
    kind: str = ""
    state: str = ""
    party: str = ""
    record_id: str = ""
