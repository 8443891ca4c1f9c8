"""bios_settings: each node's BIOS settings as last read from its BMC, with the BMC's
attribute registry fields (Ironic's table of the same name, API 1.40 and 1.74)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bios_settings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("node_id", sa.Integer(), sa.ForeignKey("nodes.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("attribute_type", sa.String(255), nullable=True),
        sa.Column("allowable_values", sa.JSON(), nullable=True),
        sa.Column("lower_bound", sa.BigInteger(), nullable=True),
        sa.Column("upper_bound", sa.BigInteger(), nullable=True),
        sa.Column("min_length", sa.Integer(), nullable=True),
        sa.Column("max_length", sa.Integer(), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=True),
        sa.Column("reset_required", sa.Boolean(), nullable=True),
        sa.Column("unique", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("node_id", "name", name="uniq_bios_node_name"),
    )
    op.create_index("ix_bios_settings_node_id", "bios_settings", ["node_id"])


def downgrade() -> None:
    op.drop_index("ix_bios_settings_node_id", "bios_settings")
    op.drop_table("bios_settings")
