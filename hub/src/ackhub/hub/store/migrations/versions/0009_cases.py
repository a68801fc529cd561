"""cases between parties: cases, their parties, messages, attachments, history and request ids

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("record_id", sa.String(length=36), nullable=True),
        sa.Column("delivery_id", sa.String(length=36), nullable=True),
        sa.Column("check_id", sa.String(length=36), nullable=True),
        sa.Column("declaration_number", sa.String(length=18), nullable=False),
        sa.Column("subject_uscc", sa.String(length=18), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("opened_by", sa.String(length=128), nullable=False),
        sa.Column("opened_ms", sa.BigInteger(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("awaited_party", sa.String(length=160), nullable=False),
        sa.Column("respond_by_ms", sa.BigInteger(), nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("next_step_ms", sa.BigInteger(), nullable=True),
        sa.Column("ladder", sa.Text(), nullable=False),
        sa.Column("close_reason", sa.Text(), nullable=False),
        sa.Column("closed_by", sa.String(length=128), nullable=False),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_cases_state", "cases", ["state"])
    op.create_index("ix_cases_record_id", "cases", ["record_id"])
    op.create_index("ix_cases_check_id", "cases", ["check_id"])
    op.create_index(
        "ix_cases_respond_by",
        "cases",
        ["respond_by_ms"],
        sqlite_where=sa.text("respond_by_ms IS NOT NULL"),
        postgresql_where=sa.text("respond_by_ms IS NOT NULL"),
    )
    op.create_index(
        "ix_cases_next_step",
        "cases",
        ["next_step_ms"],
        sqlite_where=sa.text("next_step_ms IS NOT NULL"),
        postgresql_where=sa.text("next_step_ms IS NOT NULL"),
    )
    op.create_table(
        "case_parties",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("party", sa.String(length=160), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "party"),
    )
    op.create_index("ix_case_parties_party", "case_parties", ["party"])
    op.create_table(
        "case_messages",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_case_messages_case_id", "case_messages", ["case_id"])
    op.create_table(
        "case_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_attachments_message_id", "case_attachments", ["message_id"])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_events_case_id", "case_events", ["case_id"])
    op.create_table(
        "case_requests",
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("actor", "request_id"),
    )


def downgrade() -> None:
    for table in ("case_requests", "case_events", "case_attachments", "case_messages", "case_parties"):
        op.drop_table(table)
    op.drop_index("ix_cases_next_step", table_name="cases")
    op.drop_index("ix_cases_respond_by", table_name="cases")
    op.drop_table("cases")
