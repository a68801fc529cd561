"""Cases between parties (docs/cases.md): `CaseBook` is the one entry point — the gRPC `CaseService`
(ackhub.hub.api.cases), the console's Cases page and the enterprise portal call it with the caller's
`Principal` and get the frozen views of `hub.cases.views` back."""

from ackhub.hub.cases.book import CaseBook, Page
from ackhub.hub.cases.views import (
    KINDS,
    STATES,
    Answer,
    Attachment,
    CaseFilter,
    CaseView,
    HistoryEntry,
    Message,
    NewAttachment,
    Party,
    PermitCheckSubject,
    RecordSubject,
)

__all__ = [
    "KINDS",
    "STATES",
    "Answer",
    "Attachment",
    "CaseBook",
    "CaseFilter",
    "CaseView",
    "HistoryEntry",
    "Message",
    "NewAttachment",
    "Page",
    "Party",
    "PermitCheckSubject",
    "RecordSubject",
]
