"""acknowledgements: drop ix_acknowledgements_delivery_id, a prefix of uq_acknowledgements_delivery_status

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 04:45:00

Every lookup by delivery (=, IN, joins) is served by the unique (delivery_id, status) index, and a
delivery has at most three acknowledgements, so nothing needed the one-column index's order. It cost a
b-tree page written to the WAL in every transaction that stores an acknowledgement (13 → 12 pages for
one acknowledgement on SQLite). Dropped directly, not in a batch: a batch would rebuild the table.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_acknowledgements_delivery_id", table_name="acknowledgements")


def downgrade() -> None:
    op.create_index("ix_acknowledgements_delivery_id", "acknowledgements", ["delivery_id"], unique=False)
