"""scale: the audit tree's interior hashes in the store; indexes for an enterprise's records by (USCC, seq)
and for deliveries in the rare states (PENDING, SENT, REJECTED)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 22:00:00

`audit_tree_nodes` is filled by the audit ledger (ackhub.hub.ledger.tree) as leaves are sequenced; for a log that
already holds events, by its first sync after this upgrade (one pass over the stored leaf hashes).
The indexes are created and dropped directly, not in a batch: a batch could rebuild the records table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "position"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_records_subject_uscc_seq", "records", ["subject_uscc", "seq"], unique=False)
    op.drop_index("ix_records_subject_uscc", table_name="records")
    rare = sa.text("state IN ('PENDING', 'SENT', 'REJECTED')")
    op.create_index(
        "ix_deliveries_rare_state",
        "deliveries",
        ["state", "record_id"],
        unique=False,
        sqlite_where=rare,
        postgresql_where=rare,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_rare_state", table_name="deliveries")
    op.create_index("ix_records_subject_uscc", "records", ["subject_uscc"], unique=False)
    op.drop_index("ix_records_subject_uscc_seq", table_name="records")
    op.drop_table("audit_tree_nodes")
