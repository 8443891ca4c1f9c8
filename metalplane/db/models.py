"""SQLAlchemy 2 models: nodes, ports, portgroups and conductors, with Ironic's field names.

Only portable types are used (JSON, String, Boolean, DateTime): the same schema runs on
SQLite and PostgreSQL. Times are stored and returned as timezone-aware UTC. This module
holds no business rules; those live in the conductor and lifecycle.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Allocation",
    "Base",
    "BiosSetting",
    "Conductor",
    "FloatingIP",
    "IPAllocation",
    "InspectionRule",
    "KubeObject",
    "KubeRevision",
    "Network",
    "NetworkPort",
    "NetworkSegment",
    "Node",
    "NodeInventory",
    "Port",
    "Portgroup",
    "Router",
    "SecurityGroup",
    "SecurityGroupRule",
    "SegmentAllocation",
    "Subnet",
    "Switch",
    "SwitchPortBinding",
    "utcnow",
]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A DateTime that always comes back timezone-aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: sa.JSON,
        list[str]: sa.JSON,
        dt.datetime: UTCDateTime,
    }


class _Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None, onupdate=utcnow)


class Node(_Timestamps, Base):
    """One physical server (Ironic's node)."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    driver: Mapped[str] = mapped_column(sa.String(64))
    driver_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    driver_internal_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    instance_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    instance_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provision_state: Mapped[str] = mapped_column(sa.String(32), index=True)
    target_provision_state: Mapped[str | None] = mapped_column(sa.String(32))
    provision_updated_at: Mapped[dt.datetime | None] = mapped_column()
    power_state: Mapped[str | None] = mapped_column(sa.String(32))
    target_power_state: Mapped[str | None] = mapped_column(sa.String(32))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    maintenance: Mapped[bool] = mapped_column(default=False)
    maintenance_reason: Mapped[str | None] = mapped_column(sa.Text)
    reservation: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    reservation_purpose: Mapped[str | None] = mapped_column(sa.String(255))
    traits: Mapped[list[str]] = mapped_column(default=list)
    resource_class: Mapped[str | None] = mapped_column(sa.String(80))
    conductor_group: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    owner: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    lessee: Mapped[str | None] = mapped_column(sa.String(255))
    boot_interface: Mapped[str | None] = mapped_column(sa.String(64))
    bios_interface: Mapped[str | None] = mapped_column(sa.String(64))
    deploy_interface: Mapped[str | None] = mapped_column(sa.String(64))
    inspect_interface: Mapped[str | None] = mapped_column(sa.String(64))
    management_interface: Mapped[str | None] = mapped_column(sa.String(64))
    power_interface: Mapped[str | None] = mapped_column(sa.String(64))
    network_interface: Mapped[str | None] = mapped_column(sa.String(64))
    inspection_started_at: Mapped[dt.datetime | None] = mapped_column()
    inspection_finished_at: Mapped[dt.datetime | None] = mapped_column()
    description: Mapped[str | None] = mapped_column(sa.Text)
    automated_clean: Mapped[bool | None] = mapped_column()
    # Interfaces whose only implementation here is Ironic's no-op one (NOOP_INTERFACES).
    rescue_interface: Mapped[str | None] = mapped_column(sa.String(64))
    console_interface: Mapped[str | None] = mapped_column(sa.String(64))
    vendor_interface: Mapped[str | None] = mapped_column(sa.String(64))
    raid_interface: Mapped[str | None] = mapped_column(sa.String(64))
    storage_interface: Mapped[str | None] = mapped_column(sa.String(64))
    # The allocation holding the node (Ironic's allocation_id), and its UUID beside it so
    # the node view and ``?fields=allocation_uuid`` read a column, not a join. Both are
    # written and cleared together, with the allocation's node_id, in one transaction.
    allocation_id: Mapped[int | None] = mapped_column(index=True)
    allocation_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    # Ironic's network_data (API 1.66): the OpenStack network_data.json a virtual media
    # boot puts on the ramdisk's ISO for a DHCP-less boot; null is shown as {}
    network_data: Mapped[dict[str, Any] | None] = mapped_column(default=dict)


class NodeInventory(_Timestamps, Base):
    """What a node's last inspection reported (Ironic's ``node_inventory`` table): the
    ``inventory`` in ironic-python-agent's shape and the ``plugin_data`` processed from it
    (``all_interfaces``, ``parsed_lldp``, ...). One row per node, replaced by the next
    inspection, gone with the node."""

    __tablename__ = "node_inventory"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("nodes.id", ondelete="CASCADE"),
                                         unique=True)
    inventory_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plugin_data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class BiosSetting(_Timestamps, Base):
    """One BIOS setting of a node as last read from its BMC (Ironic's ``bios_settings``
    table): ``value`` as a string, and the fields of the BMC's attribute registry entry
    (API 1.74), null where the BMC has no registry. Gone with the node."""

    __tablename__ = "bios_settings"
    __table_args__ = (sa.UniqueConstraint("node_id", "name", name="uniq_bios_node_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("nodes.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str | None] = mapped_column(sa.Text)
    attribute_type: Mapped[str | None] = mapped_column(sa.String(255))
    allowable_values: Mapped[list[str] | None] = mapped_column(sa.JSON)
    lower_bound: Mapped[int | None] = mapped_column(sa.BigInteger)
    upper_bound: Mapped[int | None] = mapped_column(sa.BigInteger)
    min_length: Mapped[int | None] = mapped_column()
    max_length: Mapped[int | None] = mapped_column()
    read_only: Mapped[bool | None] = mapped_column()
    reset_required: Mapped[bool | None] = mapped_column()
    unique: Mapped[bool | None] = mapped_column()


class InspectionRule(_Timestamps, Base):
    """An inspection rule (Ironic's ``inspection_rules`` table): ``conditions`` and
    ``actions`` in Ironic's built-in shape (``{"op", "args", "loop"?, "multiple"?}``),
    applied in ``priority`` order (highest first) in ``phase`` ``main``."""

    __tablename__ = "inspection_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    description: Mapped[str | None] = mapped_column(sa.String(255))
    priority: Mapped[int] = mapped_column(default=0)
    phase: Mapped[str] = mapped_column(sa.String(16), default="main", index=True)
    sensitive: Mapped[bool] = mapped_column(default=False)
    conditions: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)
    actions: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)


class Portgroup(_Timestamps, Base):
    """A bond/LAG of a node's ports (Ironic's portgroup)."""

    __tablename__ = "portgroups"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    address: Mapped[str | None] = mapped_column(sa.String(18), unique=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("nodes.id"), index=True)
    mode: Mapped[str | None] = mapped_column(sa.String(255))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    standalone_ports_supported: Mapped[bool] = mapped_column(default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    internal_info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Port(_Timestamps, Base):
    """One physical NIC of a node (Ironic's bare-metal port)."""

    __tablename__ = "ports"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    address: Mapped[str] = mapped_column(sa.String(18), unique=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("nodes.id"), index=True)
    portgroup_id: Mapped[int | None] = mapped_column(sa.ForeignKey("portgroups.id"))
    local_link_connection: Mapped[dict[str, Any]] = mapped_column(default=dict)
    physical_network: Mapped[str | None] = mapped_column(sa.String(64))
    pxe_enabled: Mapped[bool] = mapped_column(default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    internal_info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Allocation(_Timestamps, Base):
    """A request for a node of a resource class with some traits (Ironic's allocation)."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    node_id: Mapped[int | None] = mapped_column(sa.ForeignKey("nodes.id"), index=True)
    state: Mapped[str] = mapped_column(sa.String(15), default="allocating", index=True)
    owner: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    resource_class: Mapped[str | None] = mapped_column(sa.String(80))
    traits: Mapped[list[str]] = mapped_column(default=list)
    candidate_nodes: Mapped[list[str]] = mapped_column(default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Conductor(_Timestamps, Base):
    """A running conductor; ``updated_at`` is its heartbeat."""

    __tablename__ = "conductors"

    id: Mapped[int] = mapped_column(primary_key=True)
    hostname: Mapped[str] = mapped_column(sa.String(255), unique=True)
    conductor_group: Mapped[str] = mapped_column(sa.String(255), default="")
    online: Mapped[bool] = mapped_column(default=True)
    drivers: Mapped[list[str]] = mapped_column(default=list)


# ---------------------------------------------------------------------------------------
# The network side, in Neutron's shapes (ML2). Network ports live in ``network_ports`` so
# they do not clash with the bare-metal ``ports`` above.
# ---------------------------------------------------------------------------------------

class Network(_Timestamps, Base):
    """A Neutron network; its provider attributes are its first segment."""

    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    project_id: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    shared: Mapped[bool] = mapped_column(default=False)
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="ACTIVE")
    mtu: Mapped[int] = mapped_column(default=1500)
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    router_external: Mapped[bool] = mapped_column(default=False)  # router:external


class NetworkSegment(Base):
    __tablename__ = "network_segments"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id", ondelete="CASCADE"),
                                            index=True)
    network_type: Mapped[str] = mapped_column(sa.String(32))
    physical_network: Mapped[str | None] = mapped_column(sa.String(64))
    segmentation_id: Mapped[int | None] = mapped_column()
    segment_index: Mapped[int] = mapped_column(default=0)


class SegmentAllocation(Base):
    """One allocated segment: the unique key makes VLAN/VNI allocation collision-free."""

    __tablename__ = "segment_allocations"
    __table_args__ = (sa.UniqueConstraint("network_type", "physical_network",
                                          "segmentation_id", name="uniq_segment_alloc"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    network_type: Mapped[str] = mapped_column(sa.String(32))
    physical_network: Mapped[str] = mapped_column(sa.String(64), default="")
    segmentation_id: Mapped[int] = mapped_column(default=0)
    network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id", ondelete="CASCADE"),
                                            index=True)


class Subnet(_Timestamps, Base):
    __tablename__ = "subnets"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id", ondelete="CASCADE"),
                                            index=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), default="")
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    cidr: Mapped[str] = mapped_column(sa.String(64))
    ip_version: Mapped[int] = mapped_column(default=4)
    gateway_ip: Mapped[str | None] = mapped_column(sa.String(64))
    allocation_pools: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(default=list)
    host_routes: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)
    enable_dhcp: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str] = mapped_column(sa.String(255), default="")


class NetworkPort(_Timestamps, Base):
    """A Neutron port: a VIF to attach to a node, or a port on a provider network."""

    __tablename__ = "network_ports"
    __table_args__ = (sa.UniqueConstraint("network_id", "mac_address", name="uniq_port_mac"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id"), index=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), default="")
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    mac_address: Mapped[str] = mapped_column(sa.String(18))
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(sa.String(255), default="")
    device_owner: Mapped[str] = mapped_column(sa.String(255), default="")
    binding_host_id: Mapped[str] = mapped_column(sa.String(255), default="")
    binding_vnic_type: Mapped[str] = mapped_column(sa.String(64), default="normal")
    binding_profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    binding_vif_type: Mapped[str] = mapped_column(sa.String(64), default="unbound")
    binding_vif_details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    extra_dhcp_opts: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)
    security_groups: Mapped[list[str]] = mapped_column(default=list)
    description: Mapped[str] = mapped_column(sa.String(255), default="")


class IPAllocation(Base):
    """An address given to a port; unique per subnet, so no address is handed out twice."""

    __tablename__ = "ip_allocations"
    __table_args__ = (sa.UniqueConstraint("subnet_id", "ip_address", name="uniq_ip_alloc"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[str] = mapped_column(sa.ForeignKey("network_ports.id", ondelete="CASCADE"),
                                         index=True)
    subnet_id: Mapped[str] = mapped_column(sa.ForeignKey("subnets.id"), index=True)
    ip_address: Mapped[str] = mapped_column(sa.String(64))


class Router(_Timestamps, Base):
    """A Neutron router. Its interfaces and its gateway are network ports whose
    ``device_id`` is the router's id (``device_owner`` ``network:router_interface`` or
    ``network:router_gateway``); ``gw_network_id`` is the gateway's external network."""

    __tablename__ = "routers"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    project_id: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="ACTIVE")
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    gw_network_id: Mapped[str | None] = mapped_column(sa.ForeignKey("networks.id"))
    enable_snat: Mapped[bool] = mapped_column(default=True)
    routes: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)  # {destination, nexthop}


class FloatingIP(_Timestamps, Base):
    """A Neutron floating IP: the address of its own port (``network:floatingip``) on
    ``floating_network_id``, associated (or not) with ``fixed_ip_address`` of ``port_id``
    through ``router_id``. One per fixed IP of a port and external network."""

    __tablename__ = "floatingips"
    __table_args__ = (sa.UniqueConstraint("floating_network_id", "port_id", "fixed_ip_address",
                                          name="uniq_floatingip_fixed_ip"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    floating_network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id"), index=True)
    floating_ip_address: Mapped[str] = mapped_column(sa.String(64))
    floating_port_id: Mapped[str] = mapped_column(sa.ForeignKey("network_ports.id"))
    port_id: Mapped[str | None] = mapped_column(sa.ForeignKey("network_ports.id"), index=True)
    fixed_ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    router_id: Mapped[str | None] = mapped_column(sa.ForeignKey("routers.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="DOWN")
    description: Mapped[str] = mapped_column(sa.String(255), default="")


class SecurityGroup(_Timestamps, Base):
    __tablename__ = "security_groups"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    project_id: Mapped[str] = mapped_column(sa.String(255), default="")
    stateful: Mapped[bool] = mapped_column(default=True)


class SecurityGroupRule(_Timestamps, Base):
    __tablename__ = "security_group_rules"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(
        sa.ForeignKey("security_groups.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), default="")
    direction: Mapped[str] = mapped_column(sa.String(8))
    ethertype: Mapped[str] = mapped_column(sa.String(8), default="IPv4")
    protocol: Mapped[str | None] = mapped_column(sa.String(40))
    port_range_min: Mapped[int | None] = mapped_column()
    port_range_max: Mapped[int | None] = mapped_column()
    remote_ip_prefix: Mapped[str | None] = mapped_column(sa.String(64))
    remote_group_id: Mapped[str | None] = mapped_column(sa.String(36))
    description: Mapped[str] = mapped_column(sa.String(255), default="")


class Switch(_Timestamps, Base):
    """A top-of-rack switch metalplane configures, found by a port's local_link_connection."""

    __tablename__ = "switches"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    switch_id: Mapped[str] = mapped_column(sa.String(64), unique=True)  # MAC or datapath id
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)  # switch_info
    driver: Mapped[str] = mapped_column(sa.String(32), default="ovs")
    address: Mapped[str] = mapped_column(sa.String(255))  # e.g. unix:/run/ovs/db.sock
    bridge: Mapped[str] = mapped_column(sa.String(64), default="")
    physical_networks: Mapped[list[str]] = mapped_column(default=list)


class SwitchPortBinding(_Timestamps, Base):
    """What metalplane set on one switch port: the desired state drift repair restores."""

    __tablename__ = "switch_port_bindings"
    __table_args__ = (sa.UniqueConstraint("switch_uuid", "port_name", name="uniq_switch_port"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    switch_uuid: Mapped[str] = mapped_column(sa.ForeignKey("switches.id"), index=True)
    port_name: Mapped[str] = mapped_column(sa.String(64))
    vlan: Mapped[int | None] = mapped_column()
    bond_members: Mapped[list[str]] = mapped_column(default=list)
    bond_mode: Mapped[str | None] = mapped_column(sa.String(32))
    network_port_id: Mapped[str | None] = mapped_column(sa.String(36))


class KubeObject(Base):
    """One object of the Kubernetes-style API (a Namespace, Secret, BareMetalHost, ...): its
    metadata, the part a user writes (``body``: a host's ``spec``, a Secret's ``type``
    and its ``data`` sealed as one secret) and the part metalplane writes (``status``, the
    status subresource; a host's is computed from its node, ``node_uuid``).
    ``deleted_at`` is Kubernetes' ``metadata.deletionTimestamp``: set while finalizers hold
    a deletion back."""

    __tablename__ = "kube_objects"
    __table_args__ = (sa.UniqueConstraint("kind", "namespace", "name", name="uniq_kube_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    namespace: Mapped[str] = mapped_column(sa.String(253))  # "" for cluster-scoped kinds
    name: Mapped[str] = mapped_column(sa.String(253))
    uid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    resource_version: Mapped[int] = mapped_column()
    generation: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    finalizers: Mapped[list[str]] = mapped_column(default=list)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[dict[str, Any]] = mapped_column(default=dict,
                                                   server_default=sa.text("'{}'"))
    deleted_at: Mapped[dt.datetime | None] = mapped_column()
    node_uuid: Mapped[str | None] = mapped_column(sa.String(36))


class KubeRevision(Base):
    """The one counter ``resourceVersion`` values come from (one row, ``id`` 1)."""

    __tablename__ = "kube_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(default=0)
