"""nodes.network_data: the node's static network configuration (Ironic's node field of
API 1.66), which a virtual media boot hands the ramdisk for a DHCP-less boot

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 20:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_data", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("network_data")
