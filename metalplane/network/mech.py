"""Mechanism drivers: realise a port binding on a datapath (Neutron ML2's shape).

:meth:`MechanismDriver.bind_port` decides whether and how a port can be bound and returns
a :class:`Binding` (the switch changes it needs) without touching the switch; the plugin
applies it after the database commit (postcommit) and undoes it on failure. The ``ovs``
driver binds ``binding:vnic_type=baremetal`` ports whose ``binding:profile`` carries
``local_link_information`` to the registered Open vSwitch switches named there: the access
VLAN of each switch port, or for a portgroup (``local_group_information``) what its bond
mode needs on the switch: an OVS bond (LAG) for 802.3ad, balance-rr, balance-xor and
broadcast, independent access ports for active-backup, balance-tlb and balance-alb (the
Linux bonding HOWTO, Documentation/networking/bonding.rst, "Switch Configuration").
"""

from __future__ import annotations

import abc
import dataclasses
from collections import defaultdict
from typing import Any

from metalplane.common.exceptions import Invalid
from metalplane.db.models import Network, NetworkPort, NetworkSegment, Subnet, Switch
from metalplane.network.ovs import PortConfig, needs_lag
from metalplane.network.switches import SwitchManager

__all__ = ["Binding", "MechanismDriver", "OVSSwitchDriver", "PortContext", "RouterState"]


@dataclasses.dataclass
class PortContext:
    """A port being bound: its binding fields, network and segment."""

    port_id: str
    vnic_type: str
    host_id: str
    profile: dict[str, Any]
    network: Network
    segment: NetworkSegment | None


@dataclasses.dataclass
class Binding:
    """What binding a port takes: ``vif_type`` and, per switch, the configs to apply."""

    vif_type: str
    driver: str
    changes: dict[str, tuple[Switch, list[PortConfig]]] = dataclasses.field(
        default_factory=dict)
    vif_details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RouterInterface:
    """One port of a router on a subnet: ``cidr`` is the subnet's, ``ip_address`` the
    router's address on it (the subnet's gateway for an internal interface)."""

    port_id: str
    mac_address: str
    network_id: str
    subnet_id: str
    cidr: str
    ip_address: str


@dataclasses.dataclass
class FloatingIP:
    """A floating IP associated with a port: DNAT ``floating_ip_address`` to
    ``fixed_ip_address`` of ``port_id`` (whose MAC is ``port_mac``)."""

    id: str
    floating_ip_address: str
    fixed_ip_address: str
    port_id: str
    port_mac: str


@dataclasses.dataclass
class RouterState:
    """Everything a datapath needs to realise one Neutron router: its internal interfaces,
    its gateway port on an external network (with ``enable_snat``), its static routes
    (``{"destination": CIDR, "nexthop": IP}``) and the floating IPs associated through it."""

    id: str
    name: str
    admin_state_up: bool
    interfaces: list[RouterInterface] = dataclasses.field(default_factory=list)
    gateway: RouterInterface | None = None
    gateway_next_hop: str | None = None  # the external subnet's gateway_ip
    enable_snat: bool = True
    routes: list[dict[str, str]] = dataclasses.field(default_factory=list)
    floating_ips: list[FloatingIP] = dataclasses.field(default_factory=list)


class MechanismDriver(abc.ABC):
    name = ""
    # whether this driver realises routers and floating IPs (Neutron's L3): the router
    # API is served only when one does, as Neutron serves it only with an L3 plugin
    supports_l3 = False

    def router_postcommit(self, router: RouterState) -> None:
        """After a router, its interfaces, gateway, routes or floating IPs changed: make the
        datapath match ``router`` as a whole. Raises :class:`MetalplaneError` (503) when
        the datapath cannot be reached."""

    def delete_router_postcommit(self, router_id: str) -> None:
        """After a router was deleted: remove what realised it."""

    def create_network_precommit(self, network: Network) -> None:
        """Inside the database transaction; raise to refuse the network."""

    def create_network_postcommit(self, network: Network) -> None:
        """After the commit. Raising undoes the network."""

    def delete_network_postcommit(self, network: Network, subnet_ids: list[str]) -> None:
        """After ``network`` and its subnets ``subnet_ids`` were deleted."""

    def subnet_postcommit(self, subnet: Subnet) -> None:
        """After a subnet was created or changed."""

    def delete_subnet_postcommit(self, subnet: Subnet) -> None:
        """After a subnet was deleted."""

    def port_postcommit(self, port: NetworkPort) -> None:
        """After a port was created or changed (its fields; binding has its own hooks).
        Raising at creation undoes the port."""

    def delete_port_postcommit(self, port: NetworkPort) -> None:
        """After a port was deleted."""

    def security_groups_postcommit(self, sg_ids: set[str]) -> None:
        """After security groups ``sg_ids`` were created, deleted, got or lost rules or
        member ports."""

    def bind_ports(self, ports: list[NetworkPort]) -> None:
        """After the switch changes of binding ``ports`` were applied, before the binding
        is recorded; raising fails the binding (the switch changes are undone)."""

    def unbind_ports(self, ports: list[NetworkPort]) -> None:
        """After the switch changes of unbinding ``ports`` were applied."""

    def sync(self, repair: bool) -> list[str]:
        """Compare the datapath with the database: one line per difference, each repaired
        if ``repair``."""
        return []

    def close(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    def bind_port(self, ctx: PortContext) -> Binding | None:
        """The binding of ``ctx``, or None if this driver does not handle such ports.
        Raises :class:`Invalid` when it should handle the port but its input is wrong."""

    @abc.abstractmethod
    def unbind_port(self, ctx: PortContext) -> Binding:
        """The changes that release what :meth:`bind_port` took (switch ports parked)."""


def local_links(profile: dict[str, Any]) -> list[dict[str, Any]]:
    links = profile.get("local_link_information") or []
    if not isinstance(links, list) or not all(isinstance(x, dict) for x in links):
        raise Invalid("binding:profile/local_link_information must be a list of objects")
    return links


class OVSSwitchDriver(MechanismDriver):
    """Top-of-rack Open vSwitch switches, configured through OVSDB."""

    name = "ovs"

    def __init__(self, switches: SwitchManager) -> None:
        self.switches = switches

    def _by_switch(self, links: list[dict[str, Any]]) -> dict[str, tuple[Switch, list[str]]]:
        out: dict[str, tuple[Switch, list[str]]] = {}
        for link in links:
            sid, pid = link.get("switch_id"), link.get("port_id")
            if not sid or not pid:
                raise Invalid("every local_link_information entry needs switch_id and "
                              "port_id")
            sw = self.switches.by_switch_id(str(sid))
            if sw is None:
                known = ", ".join(f"{s.name} ({s.switch_id})"
                                  for s in self.switches.list_switches())
                raise Invalid(f"unknown switch {sid} in local_link_connection (switch port "
                              f"{pid}); registered switches: {known or 'none'}")
            out.setdefault(sw.id, (sw, []))[1].append(str(pid))
        return out

    @staticmethod
    def _bond_name(profile: dict[str, Any]) -> tuple[str, str | None]:
        group = profile.get("local_group_information") or {}
        name = group.get("name") or f"bond{str(group.get('id') or 'x')[:8]}"
        return str(name)[:15], group.get("bond_mode")

    def _our_bond(self, sw: Switch, bond: str, ports: list[str]) -> str | None:
        """``bond`` if metalplane last set it on ``sw`` as a bond of some of ``ports``
        (the bond a portgroup's earlier binding made), else None."""
        row = self.switches.wanted(sw, bond)
        members = set(row.bond_members or []) if row is not None else set()
        return bond if members and members <= set(ports) else None

    def _configs(self, ctx: PortContext, vlan: int, park: bool) -> Binding:
        """The switch configs of binding ``ctx`` on access VLAN ``vlan`` (``park``: on the
        parking VLAN). A plain port: its switch port on the VLAN. A portgroup
        (``local_group_information``) of several switch ports on one switch takes the shape
        its ``bond_mode`` needs (:func:`~metalplane.network.ovs.needs_lag`, from the Linux
        bonding HOWTO, Documentation/networking/bonding.rst "Switch Configuration"): an OVS
        bond of them (LACP for 802.3ad, static for balance-rr/balance-xor/broadcast), or,
        for active-backup, balance-tlb, balance-alb and no mode, each member an access
        port of its own, ``unbond`` naming the bond an earlier mode left (only a bond
        metalplane recorded on that switch with members among these ports: another OVS port
        of that name is left alone). Parking always dissolves the bond. Raises
        :class:`Invalid` for an unknown switch."""
        links = local_links(ctx.profile)
        grouped = self._by_switch(links)
        bond, mode = self._bond_name(ctx.profile)
        is_group = bool(ctx.profile.get("local_group_information")) and len(links) > 1
        lag = is_group and needs_lag(mode) and not park
        changes: dict[str, tuple[Switch, list[PortConfig]]] = {}
        for sw_id, (sw, ports) in grouped.items():
            if is_group and len(ports) > 1:
                if lag:
                    cfgs = [PortConfig(bond, vlan, tuple(sorted(ports)), mode)]
                else:  # the switch's record is read only when a bond may be dissolved
                    ours = self._our_bond(sw, bond, ports)
                    cfgs = [PortConfig(p, vlan, unbond=ours) for p in ports]
            else:
                cfgs = [PortConfig(p, vlan) for p in ports]
            changes[sw_id] = (sw, cfgs)
        return Binding(vif_type="other", driver=self.name, changes=changes)

    def bind_port(self, ctx: PortContext) -> Binding | None:
        if ctx.vnic_type != "baremetal":
            return None
        if not local_links(ctx.profile):
            raise Invalid(f"port {ctx.port_id} has binding:vnic_type baremetal but no "
                          "binding:profile/local_link_information to find its switch port")
        seg = ctx.segment
        if seg is None or seg.network_type != "vlan" or seg.segmentation_id is None:
            raise Invalid(f"network {ctx.network.name or ctx.network.id} has a "
                          f"{seg.network_type if seg else 'missing'} segment; the ovs switch "
                          "driver puts switch ports on vlan networks only (use the flat "
                          "network interface for a flat network)")
        binding = self._configs(ctx, seg.segmentation_id, park=False)
        binding.vif_details = {"vlan": seg.segmentation_id}
        return binding

    def unbind_port(self, ctx: PortContext) -> Binding:
        if ctx.vnic_type != "baremetal" or not local_links(ctx.profile):
            return Binding(vif_type="unbound", driver=self.name)
        return self._configs(ctx, self.switches.parking_vlan, park=True)


def group_changes(bindings: list[Binding]) -> dict[str, tuple[Switch, list[PortConfig]]]:
    """Merge the changes of several bindings per switch (one transaction each)."""
    merged: dict[str, tuple[Switch, list[PortConfig]]] = {}
    acc: dict[str, list[PortConfig]] = defaultdict(list)
    for b in bindings:
        for sw_id, (sw, cfgs) in b.changes.items():
            merged.setdefault(sw_id, (sw, []))
            acc[sw_id].extend(cfgs)
    return {k: (merged[k][0], acc[k]) for k in merged}
