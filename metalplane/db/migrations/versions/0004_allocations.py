"""allocations, and the node's allocation_id / allocation_uuid

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00
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
        "allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=15), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("resource_class", sa.String(length=80), nullable=True),
        sa.Column("traits", sa.JSON(), nullable=False),
        sa.Column("candidate_nodes", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("uuid"),
    )
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allocations_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_allocations_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_allocations_state"), ["state"], unique=False)
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allocation_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("allocation_uuid", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_nodes_allocation_id"), ["allocation_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nodes_allocation_id"))
        batch_op.drop_column("allocation_uuid")
        batch_op.drop_column("allocation_id")
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocations_state"))
        batch_op.drop_index(batch_op.f("ix_allocations_owner"))
        batch_op.drop_index(batch_op.f("ix_allocations_node_id"))
    op.drop_table("allocations")
