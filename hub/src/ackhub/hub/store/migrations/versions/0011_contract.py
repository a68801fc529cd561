"""contract: the responses of mutating calls made with a request_id (idempotency); each record's schema version

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-05 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotent_requests",
        sa.Column("caller", sa.String(length=160), nullable=False),
        sa.Column("rpc", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("caller", "rpc", "request_id"),
    )
    op.create_index("ix_idempotent_requests_created_ms", "idempotent_requests", ["created_ms"])
    # Every record stored so far was checked against version 1: no type had another. A plain ADD COLUMN
    # with a constant default (SQLite and PostgreSQL alike fill it in without rewriting the table), never a
    # batch operation: that would copy `records`, whose rows the deliveries' foreign keys point at.
    op.add_column(
        "records", sa.Column("schema_version", sa.SmallInteger(), nullable=False, server_default=sa.text("1"))
    )


def downgrade() -> None:
    op.drop_column("records", "schema_version")
    op.drop_index("ix_idempotent_requests_created_ms", table_name="idempotent_requests")
    op.drop_table("idempotent_requests")
