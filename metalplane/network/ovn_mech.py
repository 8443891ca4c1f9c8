"""The ``ovn`` mechanism driver: networks, subnets and ports as OVN Northbound rows.

As ML2/OVN does it (``neutron/plugins/ml2/drivers/ovn``), with the rows of
:mod:`metalplane.network.ovn`:

* a network is a Logical_Switch; a VLAN or flat network also gets a localnet port on its
  physical network (with the VLAN as ``tag``), which a chassis with an
  ``ovn-bridge-mappings`` entry for that physnet plugs into its provider bridge;
* a subnet with DHCP enabled is a DHCP_Options row: OVN's native DHCP answers for ports
  that point at it (``server_id`` the gateway, ``router``, ``dns_server``, ``mtu``,
  ``lease_time``, ``classless_static_route`` from ``host_routes``); a port with
  ``extra_dhcp_opts`` gets a row of its own, the subnet's options plus its own (PXE's
  ``bootfile_name``/``bootfile_name_alt``/``tftp_server``);
* a port is a Logical_Switch_Port with its MAC and fixed IPs as addresses and port
  security. A bound bare-metal port (``binding:vnic_type`` baremetal) is of type
  ``external``: the chassis of the HA_Chassis_Group ``default_ha_chassis_group`` (the
  configured gateway chassis, by priority) answer its DHCP and ARP and route for it, the
  node's frames reaching them through the localnet port. Unbound, it is a plain port no
  chassis claims: nothing answers the node then, and a provider-network port exists only
  while its node is inspected, cleaned or deployed.

The switch driver still sets the top-of-rack VLAN of the node's switch port: both drivers
bind the same port, one for the physical wire, one for OVN.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
from collections import defaultdict
from collections.abc import Collection
from typing import TYPE_CHECKING

from metalplane.common.config import Settings
from metalplane.db.models import (
    Network,
    NetworkPort,
    NetworkSegment,
    SecurityGroupRule,
    Subnet,
)
from metalplane.network.mech import (
    Binding,
    MechanismDriver,
    PortContext,
    RouterInterface,
    RouterState,
)
from metalplane.network.ovn import (
    HA_GROUP,
    Acl,
    ChangeSet,
    DhcpOptions,
    HAChassisGroup,
    LocalnetPort,
    LogicalRouter,
    LogicalRouterPort,
    LogicalSwitch,
    LogicalSwitchPort,
    Northbound,
    PortGroup,
    dhcp_key,
    dhcp_options_from_extra,
    ovn_option_value,
)

if TYPE_CHECKING:
    from metalplane.network.plugin import NetworkPlugin

__all__ = ["OVNMechanismDriver", "ls_name"]

LOG = logging.getLogger(__name__)
LEASE_TIME = 43200  # s, ML2/OVN's default (Neutron's dhcp_lease_duration)
ROUTER_OWNERS = ("network:router_interface", "network:router_gateway")
FLOATINGIP_OWNER = "network:floatingip"  # a floating IP's address holder: no LSP (ML2/OVN)


DROP_GROUP = "neutron_pg_drop"  # every port with security groups: default drop (ML2/OVN)
PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "icmpv6"}


def pg_name(sg_id: str) -> str:
    """The Port_Group of a security group: ``pg_<id with underscores>`` (ML2/OVN's name;
    OVN wants an identifier). northd keeps the address sets ``<name>_ip4``/``_ip6`` of its
    ports' addresses, which remote-group rules match."""
    return "pg_" + sg_id.replace("-", "_")


def acl_match(rule: SecurityGroupRule) -> str:
    """The OVN match of a security group rule on its group's ports (ovn-sb(5) "Logical_Flow
    match" syntax; Neutron's rule semantics): ingress rules match traffic to the port
    (``outport``, the remote as source), egress rules traffic from it."""
    ingress = rule.direction == "ingress"
    ip = "ip4" if rule.ethertype == "IPv4" else "ip6"
    parts = [f"{'outport' if ingress else 'inport'} == @{pg_name(rule.security_group_id)}",
             ip]
    remote = f"{ip}.{'src' if ingress else 'dst'}"
    if rule.remote_ip_prefix:
        parts.append(f"{remote} == {rule.remote_ip_prefix}")
    elif rule.remote_group_id:
        parts.append(f"{remote} == ${pg_name(rule.remote_group_id)}_{ip}")
    proto = PROTOCOL_NAMES.get(str(rule.protocol), rule.protocol)
    lo, hi = rule.port_range_min, rule.port_range_max
    if proto in ("icmp", "icmpv6"):
        icmp = "icmp4" if ip == "ip4" else "icmp6"
        parts.append(icmp)
        if lo is not None:
            parts.append(f"{icmp}.type == {lo}")
        if hi is not None:
            parts.append(f"{icmp}.code == {hi}")
    elif proto in ("tcp", "udp", "sctp"):
        parts.append(proto)
        if lo is not None and hi is not None:
            parts.append(f"{proto}.dst == {lo}" if lo == hi
                         else f"{proto}.dst >= {lo} && {proto}.dst <= {hi}")
    elif proto is not None:
        parts.append(f"ip.proto == {proto}" if ip == "ip4" else f"ip6.nxt == {proto}")
    return " && ".join(parts)


def lr_name(router_id: str) -> str:
    """The Logical_Router of a router: ``neutron-<router id>`` (ML2/OVN's name)."""
    return f"neutron-{router_id}"


def lrp_name(port_id: str) -> str:
    """The Logical_Router_Port of a router's network port: ``lrp-<port id>``."""
    return f"lrp-{port_id}"


def ls_name(network_id: str) -> str:
    """The Logical_Switch of a network: ``neutron-<network id>`` (ML2/OVN's name)."""
    return f"neutron-{network_id}"


def _server_mac(subnet_id: str) -> str:
    """A stable locally administered MAC for a subnet's DHCP server (fa:16:3e: prefix, as
    Neutron's base_mac)."""
    h = hashlib.sha256(subnet_id.encode()).digest()
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in h[:3])


class _Batch:
    """Networks, segments and subnets read once for a batch of ports."""

    def __init__(self, plugin: NetworkPlugin) -> None:
        self.plugin = plugin
        self.nets: dict[str, tuple[Network, NetworkSegment | None]] = {}
        self.subnets: dict[str, list[Subnet]] = {}

    def network(self, net_id: str) -> tuple[Network, NetworkSegment | None]:
        if net_id not in self.nets:
            self.nets[net_id] = (self.plugin.get_network(net_id), self.plugin.segment(net_id))
        return self.nets[net_id]

    def subnets_of(self, net_id: str) -> list[Subnet]:
        if net_id not in self.subnets:
            self.subnets[net_id] = self.plugin.list_subnets({"network_id": net_id})
        return self.subnets[net_id]


class OVNMechanismDriver(MechanismDriver):
    """OVN's Northbound database as the network's control plane (see the module's note).

    Every hook turns its objects into one :class:`~metalplane.network.ovn.ChangeSet`
    applied in one NB transaction; a failure raises :class:`OVNError` (503)."""

    name = "ovn"
    supports_l3 = True

    def __init__(self, settings: Settings, plugin: NetworkPlugin) -> None:
        self.settings = settings
        self.plugin = plugin
        self._nb: Northbound | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- the connection
    @property
    def nb(self) -> Northbound:
        """The (lazily opened) NB connection. Raises :class:`OVNError`."""
        with self._lock:
            if self._nb is None:
                self._nb = Northbound(self.settings.ovn_nb_connection,
                                      self.settings.ovn_nb_timeout)
            return self._nb

    def apply(self, change: ChangeSet) -> None:
        """Apply ``change`` in one NB transaction. Raises :class:`OVNError`."""
        self.nb.apply(change)

    def close(self) -> None:
        with self._lock:
            nb, self._nb = self._nb, None
        if nb is not None:
            nb.close()

    # ---------------------------------------------------------------- rows
    def ha_group(self) -> HAChassisGroup:
        chassis = self.settings.gateway_chassis
        return HAChassisGroup(HA_GROUP, [(c, 32767 - i) for i, c in enumerate(chassis)])

    def switch_row(self, net: Network, seg: NetworkSegment | None) -> LogicalSwitch:
        localnet = None
        if seg is not None and seg.network_type in ("vlan", "flat") and seg.physical_network:
            localnet = LocalnetPort(f"provnet-{seg.id}", seg.physical_network,
                                    seg.segmentation_id if seg.network_type == "vlan" else None)
        return LogicalSwitch(
            ls_name(net.id),
            {"neutron:network_name": net.name, "neutron:mtu": str(net.mtu),
             "neutron:project_id": net.project_id},
            localnet, {"mcast_snoop": "false"})

    def subnet_options(self, sub: Subnet, net: Network) -> dict[str, str]:
        """A subnet's DHCP options in OVN's form (ovn-nb(5) "DHCP Options")."""
        cidr = ipaddress.ip_network(sub.cidr)
        server = sub.gateway_ip or str(cidr.broadcast_address - 1)
        opts = {"server_id": server, "server_mac": _server_mac(sub.id),
                "lease_time": str(LEASE_TIME), "mtu": str(net.mtu)}
        if sub.gateway_ip:
            opts["router"] = sub.gateway_ip
        if sub.dns_nameservers:
            opts["dns_server"] = ovn_option_value("dns_server", ",".join(sub.dns_nameservers))
        routes = [f"{r['destination']},{r['nexthop']}" for r in sub.host_routes or []]
        if routes:
            if sub.gateway_ip:
                routes.append(f"0.0.0.0/0,{sub.gateway_ip}")
            opts["classless_static_route"] = "{" + ", ".join(routes) + "}"
        return opts

    def dhcp_row(self, sub: Subnet, net: Network) -> DhcpOptions | None:
        if not sub.enable_dhcp or sub.ip_version != 4:
            return None
        return DhcpOptions(sub.id, "", sub.cidr, self.subnet_options(sub, net))

    def port_rows(self, port: NetworkPort, bound: bool, batch: _Batch,
                  ips: list[dict[str, str]]) -> tuple[LogicalSwitchPort, DhcpOptions | None]:
        """The Logical_Switch_Port of ``port`` (``bound``: as its binding now is) and, if it
        has ``extra_dhcp_opts``, its own DHCP_Options row."""
        net, _seg = batch.network(port.network_id)
        if port.device_owner in ROUTER_OWNERS:
            return self.router_lsp(port.id, port.network_id), None
        subnets = {s.id: s for s in batch.subnets_of(port.network_id)}
        addrs = " ".join([port.mac_address, *(a["ip_address"] for a in ips)])
        # bound, or hosted by a node whose wiring is not known yet (inspection)
        external = port.binding_vnic_type == "baremetal" and (bound or bool(
            port.binding_host_id and port.binding_vif_type == "unbound"))
        lsp = LogicalSwitchPort(
            name=port.id, switch=ls_name(port.network_id),
            type="external" if external else "",
            addresses=[addrs], port_security=[addrs],
            options={"requested-chassis": port.binding_host_id}
            if bound and not external and port.binding_host_id else {},
            ha_chassis_group=HA_GROUP if external else None,
            external_ids={"neutron:port_name": port.name, "neutron:device_id": port.device_id,
                          "neutron:device_owner": port.device_owner,
                          "neutron:project_id": port.project_id,
                          "neutron:cidrs": " ".join(
                              f"{a['ip_address']}/{ipaddress.ip_network(subnets[a['subnet_id']].cidr).prefixlen}"
                              for a in ips if a["subnet_id"] in subnets),
                          "neutron:security_group_ids": " ".join(port.security_groups or [])},
            enabled=bool(port.admin_state_up))
        own: DhcpOptions | None = None
        v4 = next((a for a in ips if a["subnet_id"] in subnets
                   and subnets[a["subnet_id"]].ip_version == 4), None)
        sub = subnets[v4["subnet_id"]] if v4 else None
        if sub is not None and sub.enable_dhcp:
            lsp.dhcpv4 = (sub.id, "")
            extra, skipped = dhcp_options_from_extra(port.extra_dhcp_opts or [])
            if skipped:
                LOG.info("port %s: OVN has no DHCP option for %s (ignored, as ML2/OVN does)",
                         port.id, ", ".join(skipped))
            if extra:
                own = DhcpOptions(sub.id, port.id, sub.cidr,
                                  {**self.subnet_options(sub, net), **extra})
                lsp.dhcpv4 = own.key
        return lsp, own

    def ports_change(self, ports: list[NetworkPort], bound: dict[str, bool],
                     batch: _Batch | None = None) -> ChangeSet:
        """The change that brings the LSPs (and own DHCP rows) of ``ports`` to their state;
        ``bound`` says per port id whether it is bound (default: as recorded)."""
        batch = batch or _Batch(self.plugin)
        change = ChangeSet()
        ips_of: dict[str, list[dict[str, str]]] = defaultdict(list)
        for a in self.plugin.fixed_ips_of([p.id for p in ports]):
            ips_of[a["port_id"]].append(a)
        ports = [p for p in ports if p.device_owner != FLOATINGIP_OWNER]
        if any(p.binding_vnic_type == "baremetal" for p in ports):
            change.groups.append(self.ha_group())
        for p in ports:
            is_bound = bound.get(p.id, p.binding_vif_type not in ("unbound", "binding_failed"))
            lsp, own = self.port_rows(p, is_bound, batch, ips_of[p.id])
            change.ports.append(lsp)
            if own is not None:
                change.dhcp.append(own)
            elif lsp.dhcpv4 is not None:
                change.del_dhcp.append((lsp.dhcpv4[0], p.id))  # options no longer its own
        return change

    # ---------------------------------------------------------------- ML2 hooks
    def create_network_postcommit(self, network: Network) -> None:
        change = ChangeSet(groups=[self.ha_group()],
                           switches=[self.switch_row(network, self.plugin.segment(network.id))])
        self.apply(change)

    def delete_network_postcommit(self, network: Network, subnet_ids: list[str]) -> None:
        self.apply(ChangeSet(del_switches=[ls_name(network.id)],
                             del_dhcp=self._dhcp_keys(set(subnet_ids))))

    def _dhcp_keys(self, subnet_ids: Collection[str] = (), port_id: str = ""
                   ) -> list[tuple[str, str]]:
        """The keys of our DHCP_Options rows of ``subnet_ids``, or of port ``port_id``."""
        keys = (dhcp_key(r) for r in self.nb.rows("DHCP_Options"))
        return [k for k in keys if k is not None
                and (k[0] in subnet_ids or (port_id and k[1] == port_id))]

    def subnet_postcommit(self, subnet: Subnet) -> None:
        """A subnet was created or changed: its DHCP options, and the ports of its network
        (their addresses and own DHCP rows derive from it)."""
        batch = _Batch(self.plugin)
        net, _ = batch.network(subnet.network_id)
        row = self.dhcp_row(subnet, net)
        ports = self.plugin.list_ports({"network_id": net.id})
        change = self.ports_change(ports, {}, batch)
        if row is not None:
            change.dhcp.insert(0, row)
        else:
            change.del_dhcp.extend(self._dhcp_keys({subnet.id}))
            for lsp in change.ports:
                if lsp.dhcpv4 and lsp.dhcpv4[0] == subnet.id:
                    lsp.dhcpv4 = None
        self.apply(change)

    def delete_subnet_postcommit(self, subnet: Subnet) -> None:
        ports = self.plugin.list_ports({"network_id": subnet.network_id})
        change = self.ports_change(ports, {})
        change.del_dhcp.extend(self._dhcp_keys({subnet.id}))
        self.apply(change)

    def port_postcommit(self, port: NetworkPort) -> None:
        """A port was created or changed (not its binding: see :meth:`bind_ports`)."""
        self.apply(self.ports_change([port], {}))

    def delete_port_postcommit(self, port: NetworkPort) -> None:
        self.apply(ChangeSet(del_ports=[(ls_name(port.network_id), port.id)],
                             del_dhcp=self._dhcp_keys(port_id=port.id)))

    def bind_port(self, ctx: PortContext) -> Binding | None:
        """Ports that are not bare metal are bound by OVN itself: ovn-controller claims the
        LSP on the chassis whose OVS interface has ``external_ids:iface-id`` = the port."""
        if ctx.vnic_type == "baremetal":
            return None  # the switch driver binds the wire; bind_ports does the OVN side
        return Binding(vif_type="ovs", driver=self.name,
                       vif_details={"port_filter": True, "connectivity": "l2"})

    def unbind_port(self, ctx: PortContext) -> Binding:
        return Binding(vif_type="unbound", driver=self.name)

    def bind_ports(self, ports: list[NetworkPort]) -> None:
        """After the switches took the bindings of ``ports``: their LSPs as bound (bare
        metal: ``external`` on the gateway chassis' group), one NB transaction."""
        self.apply(self.ports_change(ports, {p.id: True for p in ports}))

    # ---------------------------------------------------------------- security groups
    def group_rows(self, sg_ids: set[str] | None) -> tuple[list[PortGroup], list[str]]:
        """The Port_Groups of security groups ``sg_ids`` (None: all) with their members and
        ACLs, plus the drop group; second, the Port_Groups of groups that no longer exist."""
        groups = {sg.id: sg for sg in self.plugin.list_security_groups()}
        members: dict[str, list[str]] = defaultdict(list)
        guarded = []
        for p in self.plugin.list_ports({}):
            if p.device_owner in (*ROUTER_OWNERS, FLOATINGIP_OWNER) or not p.security_groups:
                continue
            guarded.append(p.id)
            for sg in p.security_groups:
                members[sg].append(p.id)
        wanted = set(groups) if sg_ids is None else sg_ids & set(groups)
        rules: dict[str, list[SecurityGroupRule]] = defaultdict(list)
        for rule in self.plugin.sg_rules():
            rules[rule.security_group_id].append(rule)
        out = [PortGroup(pg_name(i), sorted(members[i]), [
            Acl("to-lport" if r.direction == "ingress" else "from-lport", 1002, acl_match(r),
                "allow-related" if groups[i].stateful else "allow-stateless")
            for r in rules[i]], {"neutron:security_group_id": i}) for i in sorted(wanted)]
        out.append(PortGroup(DROP_GROUP, sorted(guarded), [
            Acl("from-lport", 1001, f"inport == @{DROP_GROUP} && ip", "drop"),
            Acl("to-lport", 1001, f"outport == @{DROP_GROUP} && ip", "drop"),
            # a port's DHCP request reaches OVN's responder whatever its rules (as on the ToR)
            Acl("from-lport", 1002, f"inport == @{DROP_GROUP} && ip4 && udp.src == 68 && "
                "udp.dst == 67", "allow")]))
        gone = [pg_name(i) for i in sorted((sg_ids or set()) - set(groups))]
        return out, gone

    def security_groups_postcommit(self, sg_ids: set[str]) -> None:
        groups, gone = self.group_rows(set(sg_ids))
        self.apply(ChangeSet(port_groups=groups, del_port_groups=gone))

    # ---------------------------------------------------------------- L3
    @staticmethod
    def router_lsp(port_id: str, network_id: str) -> LogicalSwitchPort:
        """The switch side of a router port: type ``router``, ``router-port`` its LRP."""
        return LogicalSwitchPort(name=port_id, switch=ls_name(network_id), type="router",
                                 addresses=["router"],
                                 options={"router-port": lrp_name(port_id)})

    def router_rows(self, router: RouterState, batch: _Batch) -> tuple[LogicalRouter,
                                                                        list[LogicalSwitchPort]]:
        """The Logical_Router of ``router`` and the switch ports of its router ports.

        Interfaces on a VLAN or flat network (a localnet port: bare metal reaches the router
        through the gateway chassis) get ``reside-on-redirect-chassis``, so their traffic is
        routed where the gateway port lives, as ML2/OVN does for VLAN tenant networks. The
        gateway port is bound to the gateway chassis by priority; SNAT covers each IPv4
        interface subnet when ``enable_snat``; each floating IP is a ``dnat_and_snat``."""
        def lrp(iface: RouterInterface) -> LogicalRouterPort:
            prefix = ipaddress.ip_network(iface.cidr).prefixlen
            return LogicalRouterPort(lrp_name(iface.port_id), iface.mac_address,
                                     [f"{iface.ip_address}/{prefix}"])

        lr = LogicalRouter(lr_name(router.id), router.admin_state_up,
                           {"neutron:router_name": router.name})
        lsps = []
        for iface in router.interfaces:
            port = lrp(iface)
            _net, seg = batch.network(iface.network_id)
            if seg is not None and seg.network_type in ("vlan", "flat"):
                port.options["reside-on-redirect-chassis"] = "true"
            lr.ports.append(port)
            lsps.append(self.router_lsp(iface.port_id, iface.network_id))
        gw = router.gateway
        if gw is not None:
            port = lrp(gw)
            port.gateway_chassis = self.ha_group().chassis
            lr.ports.append(port)
            lsps.append(self.router_lsp(gw.port_id, gw.network_id))
            if router.gateway_next_hop:
                lr.routes.append(("0.0.0.0/0", router.gateway_next_hop))
            if router.enable_snat:
                lr.nat += [("snat", gw.ip_address, i.cidr) for i in router.interfaces
                           if ipaddress.ip_network(i.cidr).version == 4]
            lr.nat += [("dnat_and_snat", f.floating_ip_address, f.fixed_ip_address)
                       for f in router.floating_ips]
        lr.routes += [(r["destination"], r["nexthop"]) for r in router.routes]
        return lr, lsps

    def router_postcommit(self, router: RouterState) -> None:
        lr, lsps = self.router_rows(router, _Batch(self.plugin))
        self.apply(ChangeSet(ports=lsps, routers=[lr]))

    def delete_router_postcommit(self, router_id: str) -> None:
        self.apply(ChangeSet(del_routers=[lr_name(router_id)]))

    # ---------------------------------------------------------------- drift
    def wanted(self) -> ChangeSet:
        """Everything the NB database should hold for the database's networks, subnets and
        ports (as :meth:`sync` compares it)."""
        batch = _Batch(self.plugin)
        change = ChangeSet(groups=[self.ha_group()])
        for net in self.plugin.list_networks({}):
            _, seg = batch.network(net.id)
            change.switches.append(self.switch_row(net, seg))
            for sub in batch.subnets_of(net.id):
                row = self.dhcp_row(sub, net)
                if row is not None:
                    change.dhcp.append(row)
        ports = self.ports_change(self.plugin.list_ports({}), {}, batch)
        ports.del_dhcp.clear()
        change.extend(ports)
        change.port_groups, _gone = self.group_rows(None)
        for router in self.plugin.l3.list_routers({}):
            lr, _lsps = self.router_rows(self.plugin.l3.router_state(router.id), batch)
            change.routers.append(lr)
        return change

    def sync(self, repair: bool) -> list[str]:
        """Compare the NB database with metalplane's (as neutron-ovn-db-sync-util does):
        missing or different logical switches, localnet ports, logical switch ports and
        DHCP options, and stale ones of networks, ports or subnets that no longer exist.
        One line per difference; with ``repair`` all are fixed in one transaction.
        Raises :class:`OVNError`."""
        want = self.wanted()
        nb = self.nb
        lines: list[str] = []
        switches = {r.name: r for r in nb.rows("Logical_Switch")
                    if str(r.name).startswith("neutron-")}
        lsps = {r.name: r for ls in switches.values() for r in ls.ports}
        dhcp = {k: r for r in nb.rows("DHCP_Options") if (k := dhcp_key(r)) is not None}
        stale = ChangeSet()
        wanted_lsps = {p.name for p in want.ports} | {
            ls.localnet.name for ls in want.switches if ls.localnet}
        for ls in want.switches:
            row = switches.get(ls.name)
            if row is None:
                lines.append(f"OVN: logical switch {ls.name} missing")
                continue
            if ls.localnet is not None:
                ln = lsps.get(ls.localnet.name)
                tag = [ls.localnet.tag] if ls.localnet.tag is not None else []
                if ln is None or ln.type != "localnet" or list(ln.tag) != tag or \
                        ln.options.get("network_name") != ls.localnet.physnet:
                    lines.append(f"OVN: localnet port {ls.localnet.name} of {ls.name} "
                                 f"{'missing' if ln is None else 'differs'}")
        for d in want.dhcp:
            row = dhcp.get(d.key)
            if row is None or dict(row.options) != d.options or row.cidr != d.cidr:
                what = f"subnet {d.subnet_id}" + (f" port {d.port_id}" if d.port_id else "")
                lines.append(f"OVN: DHCP options of {what} "
                             f"{'missing' if row is None else 'differ'}")
        for p in want.ports:
            row = lsps.get(p.name)
            if row is None:
                lines.append(f"OVN: logical switch port {p.name} missing")
                continue
            have_dhcp = dhcp_key(row.dhcpv4_options[0]) if row.dhcpv4_options else None
            have_group = row.ha_chassis_group[0].name if row.ha_chassis_group else None
            diffs = [f"{col} {have!r}, wanted {wanted!r}" for col, have, wanted in (
                ("type", row.type, p.type), ("addresses", list(row.addresses), p.addresses),
                ("DHCP options", have_dhcp, p.dhcpv4),
                ("HA chassis group", have_group, p.ha_chassis_group)) if have != wanted]
            if diffs:
                lines.append(f"OVN: logical switch port {p.name}: {'; '.join(diffs)}")
        wanted_ls = {ls.name for ls in want.switches}
        for name, row in switches.items():
            if name not in wanted_ls:
                lines.append(f"OVN: stale logical switch {name} (no such network)")
                stale.del_switches.append(name)
                continue
            for lsp in row.ports:
                if lsp.name not in wanted_lsps:
                    lines.append(f"OVN: stale logical switch port {lsp.name} on {name}")
                    stale.del_ports.append((name, lsp.name))
        routers = {r.name: r for r in nb.rows("Logical_Router")
                   if str(r.name).startswith("neutron-")}
        for lr in want.routers:
            row = routers.get(lr.name)
            if row is None:
                lines.append(f"OVN: logical router {lr.name} missing")
                continue
            have_ports = sorted((p.name, tuple(p.networks)) for p in row.ports)
            if have_ports != sorted((p.name, tuple(p.networks)) for p in lr.ports):
                lines.append(f"OVN: logical router {lr.name}: ports differ")
            if sorted((n.type, n.external_ip, n.logical_ip) for n in row.nat) != sorted(lr.nat):
                lines.append(f"OVN: logical router {lr.name}: NAT rules differ")
            if sorted((r.ip_prefix, r.nexthop) for r in row.static_routes) != sorted(lr.routes):
                lines.append(f"OVN: logical router {lr.name}: static routes differ")
        pgs = {r.name: r for r in nb.rows("Port_Group")
               if str(r.name).startswith("pg_") or r.name == DROP_GROUP}
        for pg in want.port_groups:
            row = pgs.get(pg.name)
            if row is None:
                lines.append(f"OVN: port group {pg.name} missing")
                continue
            if sorted(p.name for p in row.ports) != sorted(
                    n for n in pg.ports if n in lsps):
                lines.append(f"OVN: port group {pg.name}: ports differ")
            if sorted((a.direction, a.priority, a.match, a.action) for a in row.acls) != sorted(
                    (a.direction, a.priority, a.match, a.action) for a in pg.acls):
                lines.append(f"OVN: port group {pg.name}: ACLs differ")
        for name in sorted(set(pgs) - {pg.name for pg in want.port_groups}):
            lines.append(f"OVN: stale port group {name} (no such security group)")
            stale.del_port_groups.append(name)
        for name in sorted(set(routers) - {lr.name for lr in want.routers}):
            lines.append(f"OVN: stale logical router {name} (no such router)")
            stale.del_routers.append(name)
        wanted_dhcp = {d.key for d in want.dhcp}
        for key in dhcp:
            if key not in wanted_dhcp:
                lines.append(f"OVN: stale DHCP options of subnet {key[0]}"
                             + (f" port {key[1]}" if key[1] else ""))
                stale.del_dhcp.append(key)
        if lines:
            for line in lines:
                (LOG.warning if repair else LOG.info)(
                    "%s%s", "drift repaired: " if repair else "drift found: ", line)
            if repair:
                stale.extend(want)
                self.apply(stale)
        return lines

    def unbind_ports(self, ports: list[NetworkPort]) -> None:
        """Their LSPs as unbound (no chassis answers for them), one NB transaction."""
        self.apply(self.ports_change(ports, {p.id: False for p in ports}))

