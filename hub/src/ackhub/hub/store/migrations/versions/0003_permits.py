"""permits

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:31:34.621822
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "permit_checks",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("permit_id", sa.String(length=36), nullable=True),
        sa.Column("permit_version", sa.Integer(), nullable=True),
        sa.Column("declarant_uscc", sa.String(length=18), nullable=False),
        sa.Column("customs_office", sa.String(length=4), nullable=False),
        sa.Column("declaration_number", sa.String(length=18), nullable=False),
        sa.Column("item_number", sa.Integer(), nullable=False),
        sa.Column("hs_code", sa.String(length=13), nullable=False),
        sa.Column("quantity_milli", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("check_date", sa.String(length=10), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("permit_checks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_permit_checks_number"), ["number"], unique=False)
        batch_op.create_index(batch_op.f("ix_permit_checks_time_ms"), ["time_ms"], unique=False)

    op.create_table(
        "permit_draw_downs",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("permit_id", sa.String(length=36), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("declaration_number", sa.String(length=18), nullable=False),
        sa.Column("item_number", sa.Integer(), nullable=False),
        sa.Column("hs_code", sa.String(length=13), nullable=False),
        sa.Column("quantity_milli", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("counted_use", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("released_ms", sa.BigInteger(), nullable=True),
        sa.Column("release_reason", sa.String(), nullable=False),
        sa.Column("released_by", sa.String(length=128), nullable=False),
        sa.Column("usage_record_id", sa.String(length=36), nullable=False),
        sa.Column("release_record_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("requested_by", "request_id", name="uq_permit_draw_downs_request"),
    )
    with op.batch_alter_table("permit_draw_downs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_permit_draw_downs_declaration_number"), ["declaration_number"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_permit_draw_downs_permit_id"), ["permit_id"], unique=False)

    op.create_table(
        "permit_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("permit_id", sa.String(length=36), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("hs_code", sa.String(length=13), nullable=False),
        sa.Column("quantity_milli", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("bulk", sa.Boolean(), nullable=False),
        sa.Column("drawn_milli", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("permit_id", "line_number", name="uq_permit_lines_permit_line"),
    )
    with op.batch_alter_table("permit_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_permit_lines_permit_id"), ["permit_id"], unique=False)

    op.create_table(
        "permit_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("permit_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("permit_id", "version", name="uq_permit_versions_permit_version"),
    )
    with op.batch_alter_table("permit_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_permit_versions_permit_id"), ["permit_id"], unique=False)

    op.create_table(
        "permits",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("holder_uscc", sa.String(length=18), nullable=False),
        sa.Column("customs_office", sa.String(length=4), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("issue_date", sa.String(length=10), nullable=False),
        sa.Column("valid_from", sa.String(length=10), nullable=False),
        sa.Column("valid_to", sa.String(length=10), nullable=False),
        sa.Column("multi_batch", sa.Boolean(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("tolerance_permille", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.Column("revoke_reason", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("kind", "number", name="uq_permits_kind_number"),
    )
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_permits_holder_uscc"), ["holder_uscc"], unique=False)
        batch_op.create_index(batch_op.f("ix_permits_issuer"), ["issuer"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permits_issuer"))
        batch_op.drop_index(batch_op.f("ix_permits_holder_uscc"))

    op.drop_table("permits")
    with op.batch_alter_table("permit_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permit_versions_permit_id"))

    op.drop_table("permit_versions")
    with op.batch_alter_table("permit_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permit_lines_permit_id"))

    op.drop_table("permit_lines")
    with op.batch_alter_table("permit_draw_downs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permit_draw_downs_permit_id"))
        batch_op.drop_index(batch_op.f("ix_permit_draw_downs_declaration_number"))

    op.drop_table("permit_draw_downs")
    with op.batch_alter_table("permit_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permit_checks_time_ms"))
        batch_op.drop_index(batch_op.f("ix_permit_checks_number"))

    op.drop_table("permit_checks")
