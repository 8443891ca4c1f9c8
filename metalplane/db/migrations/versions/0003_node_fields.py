"""node description, automated_clean and the no-op interface fields

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INTERFACES = ("rescue", "console", "vendor", "raid", "storage")


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("automated_clean", sa.Boolean(), nullable=True))
        for kind in _INTERFACES:
            batch_op.add_column(sa.Column(f"{kind}_interface", sa.String(length=64),
                                          nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        for kind in reversed(_INTERFACES):
            batch_op.drop_column(f"{kind}_interface")
        batch_op.drop_column("automated_clean")
        batch_op.drop_column("description")
