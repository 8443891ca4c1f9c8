"""kube_objects.status and kube_objects.deleted_at: the status metalplane writes (apart from
the spec a user writes) and the deletion a finalizer holds back

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kube_objects") as batch:
        batch.add_column(sa.Column("status", sa.JSON(), nullable=False,
                                   server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kube_objects") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("status")
