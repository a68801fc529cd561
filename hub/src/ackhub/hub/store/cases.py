"""The tables of cases between parties (hub/cases/, docs/cases.md). Times are integer milliseconds, as in
ackhub.hub.store.models, which imports this module so that every table is in one metadata."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text, text
from sqlmodel import Field, SQLModel


def _ms(nullable: bool = False, index: bool = False) -> Column[int]:
    return Column(BigInteger, nullable=nullable, index=index)


class CaseRow(SQLModel, table=True):
    """A case. `respond_by_ms` (the awaited party's deadline) and `next_step_ms` (the next rung of the
    ladder once it was missed) are indexed only while set, so the deadline sweep reads what is due."""

    __tablename__ = "cases"
    __table_args__ = (
        Index(
            "ix_cases_respond_by",
            "respond_by_ms",
            sqlite_where=text("respond_by_ms IS NOT NULL"),
            postgresql_where=text("respond_by_ms IS NOT NULL"),
        ),
        Index(
            "ix_cases_next_step",
            "next_step_ms",
            sqlite_where=text("next_step_ms IS NOT NULL"),
            postgresql_where=text("next_step_ms IS NOT NULL"),
        ),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    kind: str = Field(max_length=32)  # NOT_RECEIVED CONTENT_DISPUTE REJECTION_APPEAL OTHER
    state: str = Field(max_length=16, index=True)  # OPEN AWAITING_PARTY RESOLVED WITHDRAWN
    subject: str = Field(max_length=16)  # RECORD PERMIT_CHECK
    record_id: str | None = Field(default=None, max_length=36, index=True)
    delivery_id: str | None = Field(default=None, max_length=36)
    check_id: str | None = Field(default=None, max_length=36, index=True)
    declaration_number: str = Field(default="", max_length=18)
    subject_uscc: str = Field(default="", max_length=18)
    title: str = Field(max_length=200)
    opened_by: str = Field(max_length=128)
    opened_ms: int = Field(sa_column=_ms())
    evidence: str = Field(sa_column=Column(Text, nullable=False))  # JSON (ackhub.hub.cases.evidence)
    awaited_party: str = Field(default="", max_length=160)
    respond_by_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    level: int = 0
    next_step_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    ladder: str = Field(sa_column=Column(Text, nullable=False))  # JSON [[after_ms, [notify ...]], ...]
    close_reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    closed_by: str = Field(default="", max_length=128)
    closed_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    updated_ms: int = Field(sa_column=_ms())


class CasePartyRow(SQLModel, table=True):
    """A party to a case: `agency:<id>`, `enterprise:<USCC>`, `operator:<name>` or `customs:<jurisdiction>`."""

    __tablename__ = "case_parties"

    case_id: str = Field(primary_key=True, max_length=36)
    party: str = Field(primary_key=True, max_length=160, index=True)
    role: str = Field(max_length=16)  # OPENER ENTERPRISE PUBLISHER RECIPIENT ISSUER CUSTOMS ADDED


class CaseMessageRow(SQLModel, table=True):
    __tablename__ = "case_messages"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=36)
    case_id: str = Field(max_length=36, index=True)
    author: str = Field(max_length=128)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_ms: int = Field(sa_column=_ms())
    audit_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class CaseAttachmentRow(SQLModel, table=True):
    __tablename__ = "case_attachments"

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=36, index=True)
    case_id: str = Field(max_length=36)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=128)
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)  # lower-case hex
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CaseEventRow(SQLModel, table=True):
    """A case's history: one row per change, naming the audit event that records it."""

    __tablename__ = "case_events"

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=36, index=True)
    kind: str = Field(max_length=64)
    actor: str = Field(max_length=128)
    detail: str = Field(sa_column=Column(Text, nullable=False))
    time_ms: int = Field(sa_column=_ms())
    audit_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class CaseRequestRow(SQLModel, table=True):
    """A mutation's request id (AIP-155): the same caller and id again gets `answer` back; with another
    request body (`digest` differs) it is ALREADY_EXISTS."""

    __tablename__ = "case_requests"

    actor: str = Field(primary_key=True, max_length=128)
    request_id: str = Field(primary_key=True, max_length=64)
    method: str = Field(max_length=32)
    digest: str = Field(max_length=64)  # SHA-256 of the request's canonical form
    case_id: str = Field(max_length=36)
    answer: str = Field(sa_column=Column(Text, nullable=False))  # the first answer, as JSON
    created_ms: int = Field(sa_column=_ms())
