"""hub_processes, hub_secrets, PostgreSQL's wake-up of other hub processes, partial queue indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:30:00

Several hub processes share one PostgreSQL database (docs/deploy.md). `hub_processes` lists the live ones
(heartbeats; each one's configuration digest, so that two processes with different routes are caught);
`hub_secrets` holds what they share (the console's session key).

On PostgreSQL, a statement-level trigger on `deliveries` tells every other process which agencies have
new deliveries (`NOTIFY ackhub_due`, payload "<sender's application_name> <agency>"), delivered at commit
and only if the transaction commits: the process that holds the agency's stream claims them at once
instead of at its next sweep. One notification per agency per statement, from the transition table, so a
batch of records costs one per recipient; no extra round trip for the publisher.

The indexes the dispatcher and the sweeps walk (`ix_deliveries_due`, `ix_deliveries_deadline_check`,
`ix_escalations_next_step`) become partial, over the rows whose timestamp is set: a closed delivery or case
leaves them instead of piling up at their NULL end. They stay the size of the open work however many
records are stored, and a run of 20,000 records on PostgreSQL without autovacuum no longer slows as it goes
(docs/performance.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION ackhub_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    agency text;
BEGIN
    FOR agency IN SELECT DISTINCT recipient FROM new_deliveries LOOP
        PERFORM pg_notify('ackhub_due', current_setting('application_name') || ' ' || agency);
    END LOOP;
    RETURN NULL;
END
$$
"""
_TRIGGER = """
CREATE TRIGGER ackhub_deliveries_due AFTER INSERT ON deliveries
REFERENCING NEW TABLE AS new_deliveries FOR EACH STATEMENT EXECUTE FUNCTION ackhub_notify_due()
"""


_PARTIAL = (
    ("ix_deliveries_due", "deliveries", ["recipient", "next_attempt_ms", "seq"], "next_attempt_ms"),
    ("ix_deliveries_deadline_check", "deliveries", ["deadline_check_ms"], "deadline_check_ms"),
    ("ix_escalations_next_step", "escalations", ["next_step_ms"], "next_step_ms"),
)


def upgrade() -> None:
    for name, table, columns, column in _PARTIAL:
        op.drop_index(name, table_name=table)
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, table, columns, sqlite_where=where, postgresql_where=where)
    op.create_table(
        "hub_processes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("listen", sa.String(length=255), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.Column("config_digest", sa.String(length=64), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "hub_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)
        op.execute(_TRIGGER)


def downgrade() -> None:
    for name, table, columns, _column in _PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ackhub_deliveries_due ON deliveries")
        op.execute("DROP FUNCTION IF EXISTS ackhub_notify_due()")
    op.drop_table("hub_secrets")
    op.drop_table("hub_processes")
