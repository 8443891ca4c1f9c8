"""routers and floating IPs (Neutron's L3); router:external on networks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("router_external", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_table(
        "routers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("gw_network_id", sa.String(length=36), nullable=True),
        sa.Column("enable_snat", sa.Boolean(), nullable=False),
        sa.Column("routes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["gw_network_id"], ["networks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("routers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routers_project_id"), ["project_id"], unique=False)
    op.create_table(
        "floatingips",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("floating_network_id", sa.String(length=36), nullable=False),
        sa.Column("floating_ip_address", sa.String(length=64), nullable=False),
        sa.Column("floating_port_id", sa.String(length=36), nullable=False),
        sa.Column("port_id", sa.String(length=36), nullable=True),
        sa.Column("fixed_ip_address", sa.String(length=64), nullable=True),
        sa.Column("router_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["floating_network_id"], ["networks.id"]),
        sa.ForeignKeyConstraint(["floating_port_id"], ["network_ports.id"]),
        sa.ForeignKeyConstraint(["port_id"], ["network_ports.id"]),
        sa.ForeignKeyConstraint(["router_id"], ["routers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("floating_network_id", "port_id", "fixed_ip_address",
                            name="uniq_floatingip_fixed_ip"),
    )
    with op.batch_alter_table("floatingips", schema=None) as batch_op:
        for column in ("project_id", "floating_network_id", "port_id", "router_id"):
            batch_op.create_index(batch_op.f(f"ix_floatingips_{column}"), [column],
                                  unique=False)


def downgrade() -> None:
    with op.batch_alter_table("floatingips", schema=None) as batch_op:
        for column in ("router_id", "port_id", "floating_network_id", "project_id"):
            batch_op.drop_index(batch_op.f(f"ix_floatingips_{column}"))
    op.drop_table("floatingips")
    with op.batch_alter_table("routers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_routers_project_id"))
    op.drop_table("routers")
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.drop_column("router_external")
