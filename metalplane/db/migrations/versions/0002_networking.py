"""networks, subnets, network ports, switches; node network_interface

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 20:48:46.886145
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "networks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mtu", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_networks_project_id"), ["project_id"], unique=False)

    op.create_table(
        "security_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("stateful", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "switches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("switch_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("bridge", sa.String(length=64), nullable=False),
        sa.Column("physical_networks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("switch_id"),
    )
    op.create_table(
        "network_ports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("mac_address", sa.String(length=18), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("device_owner", sa.String(length=255), nullable=False),
        sa.Column("binding_host_id", sa.String(length=255), nullable=False),
        sa.Column("binding_vnic_type", sa.String(length=64), nullable=False),
        sa.Column("binding_profile", sa.JSON(), nullable=False),
        sa.Column("binding_vif_type", sa.String(length=64), nullable=False),
        sa.Column("binding_vif_details", sa.JSON(), nullable=False),
        sa.Column("extra_dhcp_opts", sa.JSON(), nullable=False),
        sa.Column("security_groups", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("network_id", "mac_address", name="uniq_port_mac"),
    )
    with op.batch_alter_table("network_ports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_network_ports_network_id"), ["network_id"], unique=False
        )

    op.create_table(
        "network_segments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("network_type", sa.String(length=32), nullable=False),
        sa.Column("physical_network", sa.String(length=64), nullable=True),
        sa.Column("segmentation_id", sa.Integer(), nullable=True),
        sa.Column("segment_index", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("network_segments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_network_segments_network_id"), ["network_id"], unique=False
        )

    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("security_group_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("ethertype", sa.String(length=8), nullable=False),
        sa.Column("protocol", sa.String(length=40), nullable=True),
        sa.Column("port_range_min", sa.Integer(), nullable=True),
        sa.Column("port_range_max", sa.Integer(), nullable=True),
        sa.Column("remote_ip_prefix", sa.String(length=64), nullable=True),
        sa.Column("remote_group_id", sa.String(length=36), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["security_group_id"], ["security_groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("security_group_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_security_group_rules_security_group_id"),
            ["security_group_id"],
            unique=False,
        )

    op.create_table(
        "segment_allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_type", sa.String(length=32), nullable=False),
        sa.Column("physical_network", sa.String(length=64), nullable=False),
        sa.Column("segmentation_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "network_type", "physical_network", "segmentation_id", name="uniq_segment_alloc"
        ),
    )
    with op.batch_alter_table("segment_allocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_segment_allocations_network_id"), ["network_id"], unique=False
        )

    op.create_table(
        "subnets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("gateway_ip", sa.String(length=64), nullable=True),
        sa.Column("allocation_pools", sa.JSON(), nullable=False),
        sa.Column("dns_nameservers", sa.JSON(), nullable=False),
        sa.Column("host_routes", sa.JSON(), nullable=False),
        sa.Column("enable_dhcp", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subnets_network_id"), ["network_id"], unique=False)

    op.create_table(
        "switch_port_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("switch_uuid", sa.String(length=36), nullable=False),
        sa.Column("port_name", sa.String(length=64), nullable=False),
        sa.Column("vlan", sa.Integer(), nullable=True),
        sa.Column("bond_members", sa.JSON(), nullable=False),
        sa.Column("bond_mode", sa.String(length=32), nullable=True),
        sa.Column("network_port_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["switch_uuid"],
            ["switches.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("switch_uuid", "port_name", name="uniq_switch_port"),
    )
    with op.batch_alter_table("switch_port_bindings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_switch_port_bindings_switch_uuid"), ["switch_uuid"], unique=False
        )

    op.create_table(
        "ip_allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("port_id", sa.String(length=36), nullable=False),
        sa.Column("subnet_id", sa.String(length=36), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["port_id"], ["network_ports.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["subnets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subnet_id", "ip_address", name="uniq_ip_alloc"),
    )
    with op.batch_alter_table("ip_allocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ip_allocations_port_id"), ["port_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ip_allocations_subnet_id"), ["subnet_id"], unique=False
        )

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_interface", sa.String(length=64), nullable=True))

    with op.batch_alter_table("portgroups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("internal_info", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )

    with op.batch_alter_table("ports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("internal_info", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:

    with op.batch_alter_table("ports", schema=None) as batch_op:
        batch_op.drop_column("internal_info")

    with op.batch_alter_table("portgroups", schema=None) as batch_op:
        batch_op.drop_column("internal_info")

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("network_interface")

    with op.batch_alter_table("ip_allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ip_allocations_subnet_id"))
        batch_op.drop_index(batch_op.f("ix_ip_allocations_port_id"))

    op.drop_table("ip_allocations")
    with op.batch_alter_table("switch_port_bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_switch_port_bindings_switch_uuid"))

    op.drop_table("switch_port_bindings")
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subnets_network_id"))

    op.drop_table("subnets")
    with op.batch_alter_table("segment_allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_segment_allocations_network_id"))

    op.drop_table("segment_allocations")
    with op.batch_alter_table("security_group_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_security_group_rules_security_group_id"))

    op.drop_table("security_group_rules")
    with op.batch_alter_table("network_segments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_network_segments_network_id"))

    op.drop_table("network_segments")
    with op.batch_alter_table("network_ports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_network_ports_network_id"))

    op.drop_table("network_ports")
    op.drop_table("switches")
    op.drop_table("security_groups")
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_networks_project_id"))

    op.drop_table("networks")
