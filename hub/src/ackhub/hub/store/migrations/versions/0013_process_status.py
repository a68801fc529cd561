"""hub_processes.status: what each process's heartbeat says of its agencies' streams and circuit breakers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hub_processes", sa.Column("status", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("hub_processes", "status")
