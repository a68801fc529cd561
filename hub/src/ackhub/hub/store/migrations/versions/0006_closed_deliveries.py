"""deliveries: closed_ms and closed_by (when and by which acknowledgement a delivery closed), filled in for
stored deliveries; a partial index over the open ones

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:30:00

A delivery is closed by the acknowledgement its route requires (ackhub.hub.exchange.states): RECEIVED on a
route at level RECEIVED, ACCEPTED or REJECTED on any. Stored deliveries are filled in from what they hold:
on a RECEIVED route, a delivery whose stored RECEIVED acknowledgement came before any business answer
closed when the hub received that acknowledgement; otherwise one in ACCEPTED or REJECTED closed at
`final_ms`, by that status. Acknowledgements are never deleted, so this is exactly what the live path
(ackhub.hub.exchange.acknowledge) would have stored. The columns are added and the index created
directly, not in a batch: a batch would rebuild the deliveries table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPEN = sa.text("closed_ms IS NULL")


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("closed_ms", sa.BigInteger(), nullable=True))
    op.add_column("deliveries", sa.Column("closed_by", sa.String(length=16), nullable=True))
    # On a RECEIVED route: closed by its RECEIVED, if that came before any business answer.
    op.execute(
        """
        UPDATE deliveries SET closed_by = 'RECEIVED', closed_ms = (
            SELECT r.received_ms FROM acknowledgements r
            WHERE r.delivery_id = deliveries.id AND r.status = 'RECEIVED')
        WHERE required_level = 'RECEIVED' AND EXISTS (
            SELECT 1 FROM acknowledgements r
            WHERE r.delivery_id = deliveries.id AND r.status = 'RECEIVED' AND NOT EXISTS (
                SELECT 1 FROM acknowledgements f
                WHERE f.delivery_id = r.delivery_id AND f.status IN ('ACCEPTED', 'REJECTED')
                  AND f.id < r.id))
        """
    )
    # Everywhere else: closed by its business answer.
    op.execute(
        """
        UPDATE deliveries SET closed_ms = final_ms, closed_by = state
        WHERE closed_ms IS NULL AND state IN ('ACCEPTED', 'REJECTED')
        """
    )
    op.create_index(
        "ix_deliveries_open",
        "deliveries",
        ["recipient", "created_ms", "deadline_ms"],
        unique=False,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_open", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("closed_by")
        batch.drop_column("closed_ms")
