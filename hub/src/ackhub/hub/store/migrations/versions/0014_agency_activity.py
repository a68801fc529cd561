"""agency_activity: when each agency was last seen, filled once from the stored acknowledgements and records

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agency_activity",
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("last_ack_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_publish_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("agency"),
    )
    # One pass over both tables, here, instead of on every load of the console's Agencies page.
    op.execute(
        "INSERT INTO agency_activity (agency, last_ack_ms, last_publish_ms) "
        "SELECT agency, max(ack_ms), max(publish_ms) FROM ("
        " SELECT recipient AS agency, max(received_ms) AS ack_ms, CAST(NULL AS BIGINT) AS publish_ms"
        " FROM acknowledgements GROUP BY recipient"
        " UNION ALL"
        " SELECT publisher, CAST(NULL AS BIGINT), max(accepted_ms) FROM records GROUP BY publisher"
        ") AS seen GROUP BY agency"
    )


def downgrade() -> None:
    op.drop_table("agency_activity")
