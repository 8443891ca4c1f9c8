"""The network service: networks, segments, subnets, ports and security groups with
Neutron's field names, and port binding through ordered mechanism drivers (ML2).

Every create/update runs its checks and ``*_precommit`` work inside one database
transaction; switch changes (``*_postcommit``) follow the commit. A binding whose switch
change fails is recorded as ``binding:vif_type = binding_failed`` and every switch it had
already changed is put back, so no switch is left half configured.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import re
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metalplane.common.config import Settings
from metalplane.common.exceptions import Conflict, Invalid, MetalplaneError, NotFound
from metalplane.db import api as db_api
from metalplane.db import network as db_net
from metalplane.db.engine import Database
from metalplane.db.models import (
    IPAllocation,
    Network,
    NetworkPort,
    NetworkSegment,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Switch,
)
from metalplane.network import ipam
from metalplane.network.mech import (
    Binding,
    MechanismDriver,
    OVSSwitchDriver,
    PortContext,
    group_changes,
)
from metalplane.network.ovn_mech import OVNMechanismDriver
from metalplane.network.ovs import PortConfig, SwitchError
from metalplane.network.switches import SwitchManager
from metalplane.network.tor_acl import TorAcl
from metalplane.network.types import TypeManager

if TYPE_CHECKING:
    from metalplane.network.l3 import L3Plugin

__all__ = ["BindingFailed", "NetworkPlugin"]

LOG = logging.getLogger(__name__)
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
VNIC_TYPES = ("normal", "baremetal", "direct", "macvtap")

NETWORK_FIELDS = {"name", "project_id", "tenant_id", "shared", "admin_state_up", "mtu",
                  "description", "provider:network_type", "provider:physical_network",
                  "provider:segmentation_id", "segments", "router:external"}
SUBNET_FIELDS = {"name", "network_id", "project_id", "tenant_id", "cidr", "ip_version",
                 "gateway_ip", "allocation_pools", "dns_nameservers", "host_routes",
                 "enable_dhcp", "description"}
PORT_FIELDS = {"name", "network_id", "project_id", "tenant_id", "mac_address", "fixed_ips",
               "admin_state_up", "device_id", "device_owner", "binding:host_id",
               "binding:vnic_type", "binding:profile", "extra_dhcp_opts", "security_groups",
               "description"}
SG_FIELDS = {"name", "description", "project_id", "tenant_id", "stateful"}
SG_RULE_FIELDS = {"security_group_id", "direction", "ethertype", "protocol", "port_range_min",
                  "port_range_max", "remote_ip_prefix", "remote_group_id", "project_id",
                  "tenant_id", "description"}
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}


class BindingFailed(MetalplaneError):
    """A port could not be bound; its binding:vif_type is now binding_failed. The code is
    400 when the input is at fault (unknown switch, no local link), 503 when the switch
    could not be reached."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _project(body: dict[str, Any]) -> str:
    return str(body.get("project_id") or body.get("tenant_id") or "")


def _unknown(body: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise Invalid(f"Unrecognized attribute(s) for {what}: {', '.join(extra)}")


class NetworkPlugin:
    """The network API's engine. ``mechanism_drivers`` run in order for binding; ``l3``
    serves routers and floating IPs (:mod:`metalplane.network.l3`)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        from metalplane.network.l3 import L3Plugin  # it builds on this module

        self.settings = settings
        self.db = db
        self.types = TypeManager(settings)
        self.switches = SwitchManager(db, settings.parking_vlan)
        self.mechanism_drivers: list[MechanismDriver] = [OVSSwitchDriver(self.switches)]
        if settings.network_backend == "ovn":
            self.mechanism_drivers.append(OVNMechanismDriver(settings, self))
        # security groups as OpenFlow rules on the top-of-rack switch ports
        self.acl = TorAcl(db, self.switches, enabled=settings.tor_acl)
        self.l3: L3Plugin = L3Plugin(self)

    @property
    def l3_enabled(self) -> bool:
        """Whether routers and floating IPs are served: a mechanism driver realises them
        (``supports_l3``), as Neutron serves its L3 API only with an L3 plugin loaded."""
        return any(drv.supports_l3 for drv in self.mechanism_drivers)

    def close(self) -> None:
        self.switches.close()
        for drv in self.mechanism_drivers:
            drv.close()

    def _postcommit(self, hook: str, *args: Any) -> None:
        """Run mechanism driver hook ``hook``; a datapath that fails raises
        :class:`MetalplaneError` (503)."""
        for drv in self.mechanism_drivers:
            getattr(drv, hook)(*args)

    def _groups_changed(self, port_ids: list[str], sg_ids: Any) -> None:
        """Security groups ``sg_ids`` changed (rules, members ``port_ids``): the ToR ACL and
        the mechanism drivers follow."""
        self.acl.ports_changed(port_ids, sg_ids)
        self._postcommit("security_groups_postcommit", set(sg_ids))

    def sync(self, repair: bool = True) -> list[str]:
        """Drift between the database and the datapaths (top-of-rack switches, and OVN's
        Northbound database with that backend): one line per difference, repaired if
        ``repair``. Raises :class:`MetalplaneError` when OVN cannot be reached."""
        lines = self.switches.sync(repair)
        for drv in self.mechanism_drivers:
            lines += drv.sync(repair)
        return lines

    def _rows_by_id_or_name(self, model: Any, ident: str) -> list[Any]:
        """The row whose id is ``ident``, else those so named (detached)."""
        return (db_api.rows_where(self.db, model, id=ident)
                or db_api.rows_where(self.db, model, name=ident))

    def _by_id(self, model: Any, ident: str, missing: str) -> Any:
        """The row whose id is ``ident`` (detached). Raises :class:`NotFound` (``missing``)."""
        rows = db_api.rows_where(self.db, model, id=ident)
        if not rows:
            raise NotFound(missing)
        return rows[0]

    def _by_id_or_name(self, model: Any, ident: str, what: str) -> Any:
        """The row whose id, else name, is ``ident`` (detached). Raises :class:`NotFound`."""
        rows = self._rows_by_id_or_name(model, ident)
        if not rows:
            raise NotFound(f"{what} {ident} could not be found.")
        return rows[0]

    # ================================================================ networks
    def create_network(self, body: dict[str, Any]) -> Network:
        """Create a network and its segment. Raises :class:`Invalid` (a segment outside the
        configured range, a bad attribute) or :class:`Conflict` (segment in use)."""
        _unknown(body, NETWORK_FIELDS, "network")
        if body.get("segments"):
            segs = body["segments"]
            if not isinstance(segs, list) or len(segs) != 1:
                raise Invalid("segments: exactly one segment is supported")
            body = {**body, **segs[0]}
        wanted = self.types.provider_segment(body)
        if wanted is not None:
            self.types.check_in_range(wanted)
        net_id = str(uuidlib.uuid4())
        values = {"id": net_id, "name": str(body.get("name") or ""),
                  "project_id": _project(body), "shared": bool(body.get("shared")),
                  "admin_state_up": bool(body.get("admin_state_up", True)),
                  "mtu": int(body.get("mtu") or 1500),
                  "description": str(body.get("description") or ""),
                  "router_external": bool(body.get("router:external"))}

        def precommit(net: Network) -> None:
            for drv in self.mechanism_drivers:
                drv.create_network_precommit(net)

        for _ in range(5):  # a racing allocation of the same ID retries once more
            try:
                net, seg = db_net.create_network(
                    self.db, values, lambda taken: self.types.candidates(wanted, taken),
                    precommit)
            except db_net.SegmentTaken:
                if wanted is not None and wanted.segmentation_id is not None:
                    raise
                continue
            try:
                self._postcommit("create_network_postcommit", net)
            except MetalplaneError:
                db_net.delete_network(self.db, net.id)  # ML2: a failed postcommit undoes it
                raise
            LOG.info("network %s (%s) created on %s %s %s", net.name, net_id,
                     seg.network_type, seg.physical_network or "", seg.segmentation_id or "")
            return net
        raise Conflict("could not allocate a segment; try again")

    def get_network(self, ident: str) -> Network:
        """By UUID or (unique) name. Raises :class:`NotFound`."""
        found = self._rows_by_id_or_name(Network, ident)
        if len(found) > 1:
            raise Conflict(f"several networks are named {ident}; use the UUID")
        if not found:
            raise NotFound(f"Network {ident} could not be found.")
        net: Network = found[0]
        return net

    def segment(self, network_id: str) -> NetworkSegment | None:
        rows = db_api.rows_where(self.db, NetworkSegment, order_by=("segment_index",),
                                 network_id=network_id)
        return rows[0] if rows else None

    def list_networks(self, filters: dict[str, Any]) -> list[Network]:
        """Networks whose ``name``, ``project_id``, ``shared``, ``admin_state_up``, ``id``
        or ``router:external`` equal ``filters``' (other keys are ignored)."""
        columns = {"name": "name", "project_id": "project_id", "shared": "shared",
                   "admin_state_up": "admin_state_up", "id": "id",
                   "router:external": "router_external"}
        return db_net.list_networks(self.db, {col: filters[key] for key, col in columns.items()
                                              if key in filters})

    def update_network(self, ident: str, body: dict[str, Any]) -> Network:
        """Change name, description, shared, admin_state_up, mtu or ``router:external``.
        Raises :class:`Invalid`, :class:`NotFound`, :class:`Conflict` (making a network
        with routers' gateways or floating IPs non-external)."""
        allowed = {"name", "description", "shared", "admin_state_up", "mtu", "router:external"}
        _unknown(body, allowed, "network update")
        net = self.get_network(ident)
        values = {("router_external" if k == "router:external" else k): v
                  for k, v in body.items()}
        if net.router_external and values.get("router_external") is False:
            self.l3.check_external_unset(net.id)
        db_net.update_network(self.db, net.id, values)
        return self.get_network(net.id)

    def delete_network(self, ident: str) -> None:
        """Raises :class:`Conflict` while ports use the network."""
        net = self.get_network(ident)
        subnet_ids = [s.id for s in self.list_subnets({"network_id": net.id})]
        db_net.delete_network(self.db, net.id)
        self._postcommit("delete_network_postcommit", net, subnet_ids)

    # ================================================================ subnets
    def create_subnet(self, body: dict[str, Any]) -> Subnet:
        """Raises :class:`Invalid` for an overlap with another subnet of the network, a
        gateway or pool outside the CIDR, and similar."""
        _unknown(body, SUBNET_FIELDS, "subnet")
        if not body.get("network_id"):
            raise Invalid("network_id is required")
        if not body.get("cidr"):
            raise Invalid("cidr is required")
        net = self.get_network(str(body["network_id"]))

        def make(others: list[str]) -> dict[str, Any]:
            return {"id": str(uuidlib.uuid4()), "network_id": net.id,
                    "project_id": _project(body) or net.project_id,
                    "name": str(body.get("name") or ""),
                    "enable_dhcp": bool(body.get("enable_dhcp", True)),
                    "description": str(body.get("description") or ""),
                    **ipam.validate_subnet(body, others)}

        sub = db_net.create_subnet(self.db, net.id, make)
        try:
            self._postcommit("subnet_postcommit", sub)
        except MetalplaneError:
            db_net.delete_subnet(self.db, sub.id)
            raise
        return sub

    def get_subnet(self, ident: str) -> Subnet:
        sub: Subnet = self._by_id_or_name(Subnet, ident, "Subnet")
        return sub

    def list_subnets(self, filters: dict[str, Any]) -> list[Subnet]:
        return db_api.rows_where(self.db, Subnet, order_by=("created_at", "id"),
                                 **{k: filters[k] for k in
                                    ("network_id", "name", "project_id", "cidr",
                                     "enable_dhcp")
                                    if k in filters})

    def update_subnet(self, ident: str, body: dict[str, Any]) -> Subnet:
        """Change name, description, gateway_ip, allocation_pools, dns_nameservers,
        host_routes or enable_dhcp, checked as at creation against the subnet's CIDR (the
        pools kept are checked against a new gateway). Raises :class:`Invalid` (another
        attribute, a value outside the CIDR), :class:`Conflict` (a gateway a port holds)."""
        allowed = {"name", "description", "gateway_ip", "allocation_pools",
                   "dns_nameservers", "host_routes", "enable_dhcp"}
        _unknown(body, allowed, "subnet update")
        sub = self.get_subnet(ident)

        def change(row: Subnet, in_use: Callable[[str], bool]) -> dict[str, Any]:
            values: dict[str, Any] = {k: body[k] for k in ("name", "description", "enable_dhcp")
                                      if k in body}
            if {"gateway_ip", "allocation_pools", "dns_nameservers", "host_routes"} & set(body):
                merged = {"cidr": row.cidr, "ip_version": row.ip_version,
                          "gateway_ip": body.get("gateway_ip", row.gateway_ip),
                          "allocation_pools": body.get("allocation_pools",
                                                       row.allocation_pools),
                          "dns_nameservers": body.get("dns_nameservers", row.dns_nameservers),
                          "host_routes": body.get("host_routes", row.host_routes)}
                checked = ipam.validate_subnet(merged, [])
                gateway = checked["gateway_ip"]
                if "gateway_ip" in body and gateway and gateway != row.gateway_ip and in_use(
                        gateway):
                    raise Conflict(f"Gateway ip {gateway} conflicts with an address in use "
                                   f"on subnet {row.id}")
                values.update({k: checked[k] for k in ("gateway_ip", "allocation_pools",
                                                        "dns_nameservers", "host_routes")
                               if k in body})
            return values

        try:
            db_net.update_subnet(self.db, sub.id, change)
        except NotFound:
            raise NotFound(f"Subnet {ident} could not be found.") from None
        sub = self.get_subnet(sub.id)
        self._postcommit("subnet_postcommit", sub)
        return sub

    def delete_subnet(self, ident: str) -> None:
        sub = self.get_subnet(ident)
        db_net.delete_subnet(self.db, sub.id)
        self._postcommit("delete_subnet_postcommit", sub)

    # ================================================================ ports
    def _fixed_ips(self, reads: db_net.PortReads, net: Network, requested: Any,
                   port_id: str, gateway_ok: bool = False) -> list[dict[str, str]]:
        """The ``ip_allocations`` rows (``port_id``, ``subnet_id``, ``ip_address``) for
        ``requested`` (Neutron's ``fixed_ips``; None: one address of the first subnet),
        read in the caller's write transaction. A subnet's gateway_ip is refused unless
        ``gateway_ok`` (a router's interface). Raises :class:`Invalid`, :class:`Conflict`."""
        subnets = reads.subnets(net.id)
        if requested is None:
            requested = [{"subnet_id": subnets[0].id}] if subnets else []
        if not isinstance(requested, list):
            raise Invalid("fixed_ips must be a list")
        allocs = []
        for item in requested:
            if not isinstance(item, dict):
                raise Invalid("fixed_ips entries must be objects")
            sub = None
            if item.get("subnet_id"):
                sub = next((x for x in subnets if x.id == item["subnet_id"]), None)
                if sub is None:
                    raise Invalid(f"subnet {item['subnet_id']} is not on network {net.id}")
            ip = item.get("ip_address")
            if ip is not None:
                addr = ipam.parse_ip(ip, "fixed_ips/ip_address")
                matching = [x for x in subnets if addr in ipaddress.ip_network(x.cidr)]
                if sub is not None and sub not in matching:
                    raise Invalid(f"IP address {addr} is not in subnet {sub.cidr}")
                if not matching:
                    raise Invalid(f"IP address {addr} is not in any subnet of network "
                                  f"{net.name or net.id} "
                                  f"({', '.join(x.cidr for x in subnets) or 'none'})")
                sub = sub or matching[0]
                if str(addr) == sub.gateway_ip and not gateway_ok:
                    raise Invalid(f"IP address {addr} is the gateway of subnet {sub.cidr}")
                if reads.address_used(sub.id, str(addr)):
                    raise Conflict(f"IP address {addr} already allocated in subnet {sub.id}")
                allocs.append({"port_id": port_id, "subnet_id": sub.id,
                               "ip_address": str(addr)})
                continue
            if sub is None:
                raise Invalid("fixed_ips entries need subnet_id or ip_address")
            used_ips = reads.used_addresses(sub.id)
            used_ips.update(a["ip_address"] for a in allocs if a["subnet_id"] == sub.id)
            free = ipam.first_free(sub.allocation_pools, used_ips)
            if free is None:
                raise Conflict(f"No more IP addresses available on subnet {sub.cidr}")
            allocs.append({"port_id": port_id, "subnet_id": sub.id, "ip_address": free})
        return allocs

    @staticmethod
    def _mac(value: Any) -> str:
        if value is None:
            return "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
        mac = str(value).strip().lower().replace("-", ":")
        if not _MAC.match(mac):
            raise Invalid(f"mac_address '{value}' is not a valid MAC address")
        return mac

    @staticmethod
    def _binding_fields(body: dict[str, Any], values: dict[str, Any]) -> None:
        if "binding:vnic_type" in body:
            vnic = body["binding:vnic_type"]
            if vnic not in VNIC_TYPES:
                raise Invalid(f"binding:vnic_type '{vnic}' is not one of {', '.join(VNIC_TYPES)}")
            values["binding_vnic_type"] = vnic
        if "binding:profile" in body:
            profile = body["binding:profile"] or {}
            if not isinstance(profile, dict):
                raise Invalid("binding:profile must be an object")
            values["binding_profile"] = profile
        if "binding:host_id" in body:
            values["binding_host_id"] = str(body["binding:host_id"] or "")
        if "extra_dhcp_opts" in body:
            opts = body["extra_dhcp_opts"] or []
            if not isinstance(opts, list) or not all(
                    isinstance(o, dict) and isinstance(o.get("opt_name"), str) and o["opt_name"]
                    and "opt_value" in o for o in opts):
                raise Invalid("extra_dhcp_opts must be a list of {opt_name, opt_value}")
            values["extra_dhcp_opts"] = [
                {"opt_name": o["opt_name"], "opt_value": o["opt_value"],
                 "ip_version": int(o.get("ip_version") or 4)} for o in opts]

    def _check_security_groups(self, reads: db_net.PortReads, ids: Any) -> list[str]:
        if ids is None:
            return []
        if not isinstance(ids, list):
            raise Invalid("security_groups must be a list of IDs")
        for sg in ids:
            if not reads.security_group_exists(str(sg)):
                raise Invalid(f"security group {sg} does not exist")
        return [str(x) for x in ids]

    def create_port(self, body: dict[str, Any]) -> NetworkPort:
        """Create a network port, allocate its addresses and, if it asks for a binding
        (``binding:host_id`` set), bind it. Raises :class:`Invalid`, :class:`Conflict`
        (an address or MAC in use), :class:`BindingFailed`."""
        _unknown(body, PORT_FIELDS, "port")
        if not body.get("network_id"):
            raise Invalid("network_id is required")
        net = self.get_network(str(body["network_id"]))
        port_id = str(uuidlib.uuid4())
        values = self._port_values(net, port_id, body)
        self._binding_fields(body, values)

        def prepare(reads: db_net.PortReads) -> list[dict[str, str]]:
            values["security_groups"] = self._check_security_groups(
                reads, body.get("security_groups"))
            return self._fixed_ips(reads, net, body.get("fixed_ips"), port_id)

        db_net.create_port(self.db, values, prepare)  # checks and inserts: one transaction
        port = self.get_port(port_id)
        try:
            self._postcommit("port_postcommit", port)
        except MetalplaneError:
            db_net.delete_port(self.db, port_id)
            raise
        self._groups_changed([], port.security_groups)  # remote_group_id members
        if not port.binding_host_id:
            return port
        self._bind_recorded(port)
        return self.get_port(port_id)

    def _port_values(self, net: Network, port_id: str, body: dict[str, Any],
                     project: str | None = None) -> dict[str, Any]:
        """The columns of a new port ``port_id`` on ``net`` from ``body`` (Neutron's
        attributes; no binding ones): its project (``project``, else ``body``'s, else
        ``net``'s), name, MAC (a random one by default), device."""
        return {
            "id": port_id, "network_id": net.id,
            "project_id": project if project is not None else (_project(body)
                                                                or net.project_id),
            "name": str(body.get("name") or ""), "mac_address": self._mac(body.get("mac_address")),
            "admin_state_up": bool(body.get("admin_state_up", True)),
            "device_id": str(body.get("device_id") or ""),
            "device_owner": str(body.get("device_owner") or ""),
            "description": str(body.get("description") or ""),
        }

    def get_port(self, ident: str) -> NetworkPort:
        port: NetworkPort = self._by_id_or_name(NetworkPort, ident, "Port")
        return port

    def fixed_ips_of(self, port_ids: list[str]) -> list[dict[str, str]]:
        """``{"port_id", "subnet_id", "ip_address"}`` of every address of ``port_ids``
        (one query)."""
        if not port_ids:
            return []
        return [{"port_id": a.port_id, "subnet_id": a.subnet_id, "ip_address": a.ip_address}
                for a in db_api.rows_where(self.db, IPAllocation, order_by=("id",),
                                           port_id=list(port_ids))]

    def fixed_ips(self, port_id: str) -> list[dict[str, str]]:
        return [{"subnet_id": a.subnet_id, "ip_address": a.ip_address}
                for a in db_api.rows_where(self.db, IPAllocation, order_by=("id",),
                                           port_id=port_id)]

    def list_ports(self, filters: dict[str, Any]) -> list[NetworkPort]:
        columns = {"network_id": "network_id", "device_id": "device_id",
                   "device_owner": "device_owner", "mac_address": "mac_address",
                   "project_id": "project_id", "name": "name",
                   "binding:host_id": "binding_host_id", "status": "status",
                   "admin_state_up": "admin_state_up"}
        return db_net.list_ports(self.db, {col: filters[key] for key, col in columns.items()
                                           if key in filters})

    def update_port(self, ident: str, body: dict[str, Any]) -> NetworkPort:
        """Change a port; a change of its binding unbinds the old and binds the new.
        Raises as :meth:`create_port`."""
        allowed = PORT_FIELDS - {"network_id", "mac_address", "project_id", "tenant_id"}
        _unknown(body, allowed, "port update")
        port = self.get_port(ident)
        values: dict[str, Any] = {}
        for key in ("name", "device_id", "device_owner", "description", "admin_state_up"):
            if key in body:
                values[key] = body[key]
        self._binding_fields(body, values)
        binding_changed = any(k in values and values[k] != getattr(port, k) for k in
                              ("binding_host_id", "binding_profile", "binding_vnic_type"))
        if "security_groups" in body or "fixed_ips" in body:
            # a network with ports cannot be deleted: read before the transaction is the same
            net = self.get_network(port.network_id) if "fixed_ips" in body else None
            port_id = port.id
            db_net.update_port_addresses(
                self.db, port_id,
                (lambda reads: self._check_security_groups(reads, body["security_groups"]))
                if "security_groups" in body else None,
                (lambda reads: self._fixed_ips(reads, net, body["fixed_ips"], port_id))
                if net is not None else None)
            self._groups_changed([port_id], {*port.security_groups,
                                             *(body.get("security_groups") or [])})
        if binding_changed and port.binding_vif_type not in ("unbound", "binding_failed"):
            self.unbind(port)
        port = (db_api.update_row(self.db, NetworkPort, port.id, values, "Port") if values
                else self.get_port(port.id))
        if binding_changed and port.binding_host_id:
            self._bind_recorded(port)
            return self.get_port(port.id)
        self._postcommit("port_postcommit", port)
        return port

    def set_mac_address(self, port_id: str, mac: str) -> NetworkPort:
        """Give an unbound port the MAC of the NIC it will be bound to (as Ironic does for a
        VIF it attaches: OVN answers an external port by its MAC). Raises
        :class:`Conflict` for a bound port or a MAC taken on the network, :class:`Invalid`
        for a malformed MAC."""
        port = self.get_port(port_id)
        mac = self._mac(mac)
        if mac == port.mac_address:
            return port
        if port.binding_vif_type not in ("unbound", "binding_failed"):
            raise Conflict(f"port {port.id} is bound: its MAC address cannot change")
        port = db_api.update_row(self.db, NetworkPort, port.id, {"mac_address": mac}, "Port")
        self._postcommit("port_postcommit", port)
        return self.get_port(port.id)

    def delete_port(self, ident: str) -> None:
        """Unbind (the switch port is parked) and delete, releasing its addresses; its
        floating IPs are disassociated and their routers realised again. Raises
        :class:`Conflict` for a router's or floating IP's own port (Neutron's
        ServicePortInUse), :class:`BindingFailed`; a mechanism driver's error."""
        port = self.get_port(ident)
        self.l3.check_port_deletable(port)
        if port.binding_vif_type not in ("unbound", "binding_failed"):
            self.unbind(port)
        routers = db_net.delete_port(self.db, port.id)
        self._postcommit("delete_port_postcommit", port)
        self._groups_changed([], port.security_groups)
        self.l3.realise(routers)

    # ================================================================ binding
    def _context(self, port: NetworkPort,
                 nets: dict[str, tuple[Network, NetworkSegment | None]] | None = None
                 ) -> PortContext:
        """The mechanism drivers' view of ``port``; ``nets`` memoizes networks and their
        segments across one batch (one read per network, not per port)."""
        nets = {} if nets is None else nets
        if port.network_id not in nets:
            nets[port.network_id] = (self.get_network(port.network_id),
                                     self.segment(port.network_id))
        network, segment = nets[port.network_id]
        return PortContext(port_id=port.id, vnic_type=port.binding_vnic_type,
                           host_id=port.binding_host_id, profile=port.binding_profile or {},
                           network=network, segment=segment)

    def _set_binding(self, port_id: str, vif_type: str, details: dict[str, Any],
                     status: str) -> None:
        self._set_bindings([(port_id, vif_type, details, status)])

    def _set_bindings(self, changes: list[tuple[str, str, dict[str, Any], str]]) -> None:
        """``(port_id, vif_type, vif_details, status)`` for many ports, one transaction."""
        db_net.set_port_bindings(self.db, changes)  # one executemany UPDATE by primary key

    def _apply_all(self, changes: dict[str, tuple[Switch, list[PortConfig]]],
                   owners: dict[str, str | None]) -> None:
        """Apply per-switch changes; if one switch fails, restore the ones already done."""
        done: list[tuple[Switch, list[PortConfig], list[Any]]] = []
        for sw, cfgs in changes.values():
            wanted = self.switches.wanted_many(sw, [c.name for c in cfgs])
            before = [wanted.get(c.name) for c in cfgs]
            try:
                self.switches.apply(sw, cfgs, owners)
            except SwitchError:
                for dsw, dcfgs, dbefore in reversed(done):
                    undo = [PortConfig(c.name, (b.vlan if b else None) or
                                       self.settings.parking_vlan,
                                       tuple(b.bond_members) if b else (),
                                       b.bond_mode if b else None)
                            for c, b in zip(dcfgs, dbefore, strict=True)]
                    try:
                        self.switches.apply(dsw, undo, {c.name: (b.network_port_id if b else None)
                                                        for c, b in zip(dcfgs, dbefore,
                                                                        strict=True)})
                    except SwitchError:
                        LOG.error("could not undo the change on switch %s", dsw.name)
                raise
            done.append((sw, cfgs, before))

    def _decide(self, port: NetworkPort,
                nets: dict[str, tuple[Network, NetworkSegment | None]] | None = None
                ) -> Binding:
        ctx = self._context(port, nets)
        for drv in self.mechanism_drivers:
            b = drv.bind_port(ctx)
            if b is not None:
                return b
        raise Invalid(f"no mechanism driver can bind port {port.id} "
                      f"(binding:vnic_type {port.binding_vnic_type})")

    def _bind_recorded(self, port: NetworkPort) -> None:
        """Bind as Neutron does for an API request: a failure is not an error of the
        request; the port shows ``binding:vif_type = binding_failed`` (reason logged)."""
        try:
            self.bind(port)
        except BindingFailed as exc:
            LOG.warning("port %s: %s", port.id, exc.message)

    def bind(self, port: NetworkPort) -> None:
        """Bind ``port`` now. Raises :class:`BindingFailed`; the port then shows
        ``binding_failed`` and no switch keeps a change of this attempt."""
        self.bind_many([port])

    def bind_many(self, ports: list[NetworkPort]) -> None:
        """Bind several ports with one transaction per switch. All or nothing: on failure
        every port shows ``binding_failed`` and switches are restored. Raises
        :class:`BindingFailed`."""
        failed: list[tuple[str, str, dict[str, Any], str]] = [
            (p.id, "binding_failed", {}, "DOWN") for p in ports]
        nets: dict[str, tuple[Network, NetworkSegment | None]] = {}
        try:
            with self.switches.cached_lookups():
                bindings = [self._decide(p, nets) for p in ports]
        except Invalid as exc:
            self._set_bindings(failed)
            raise BindingFailed(f"binding failed: {exc.message}", 400) from None
        owners: dict[str, str | None] = {c.name: p.id for p, b in zip(ports, bindings, strict=True)
                  for _, cfgs in b.changes.values() for c in cfgs}
        try:
            with self.acl.binding(list(zip(ports, bindings, strict=True))):
                self._apply_all(group_changes(bindings), owners)
        except SwitchError as exc:
            self._set_bindings(failed)
            raise BindingFailed(f"binding failed: {exc.message}", 503) from None
        try:
            self._postcommit("bind_ports", ports)
        except MetalplaneError as exc:
            try:  # the wire goes back to where nothing reaches it
                self._switch_unbind(ports, nets)
            except SwitchError as undo:
                LOG.error("could not undo the switch change of a failed binding: %s",
                          undo.message)
            self._set_bindings(failed)
            raise BindingFailed(f"binding failed: {exc.message}", 503) from None
        self._set_bindings([(p.id, b.vif_type, {**b.vif_details, "driver": b.driver}, "ACTIVE")
                            for p, b in zip(ports, bindings, strict=True)])
        for p, b in zip(ports, bindings, strict=True):
            LOG.info("port %s bound on %s for host %s", p.id,
                     ", ".join(sw.name for sw, _ in b.changes.values()) or "no switch",
                     p.binding_host_id)

    def unbind(self, port: NetworkPort) -> None:
        """Release the switch ports of ``port`` (parked). Raises :class:`BindingFailed`
        (503) when a switch cannot be reached; the port keeps its binding then."""
        self.unbind_many([port])

    def unbind_many(self, ports: list[NetworkPort]) -> None:
        """Unbind several ports, one transaction per switch (and one for OVN). Raises
        :class:`BindingFailed`; the ports keep their binding then, on the switches and in
        OVN alike."""
        try:  # OVN first: if its database is away, nothing has changed yet
            self._postcommit("unbind_ports", ports)
        except MetalplaneError as exc:
            raise BindingFailed(f"unbinding failed: {exc.message}", 503) from None
        try:
            self._switch_unbind(ports, {})
        except SwitchError as exc:
            try:  # OVN back to what the wire still is
                self._postcommit("bind_ports", ports)
            except MetalplaneError as undo:
                LOG.error("could not restore OVN after a failed unbinding: %s", undo.message)
            raise BindingFailed(f"unbinding failed: {exc.message}", 503) from None
        self._set_bindings([(p.id, "unbound", {}, "DOWN") for p in ports])

    def _switch_unbind(self, ports: list[NetworkPort],
                       nets: dict[str, tuple[Network, NetworkSegment | None]]) -> None:
        """Park the switch ports of ``ports``. Raises :class:`SwitchError`."""
        bindings: list[Binding] = []
        with self.switches.cached_lookups():
            for p in ports:
                ctx = self._context(p, nets)
                for drv in self.mechanism_drivers:
                    try:
                        bindings.append(drv.unbind_port(ctx))
                    except Invalid as exc:  # e.g. the switch was deleted: nothing to undo
                        LOG.warning("port %s: %s", p.id, exc.message)
                    break
        owners: dict[str, str | None] = {c.name: None for b in bindings
                                         for _, cfgs in b.changes.values() for c in cfgs}
        with self.acl.unbinding(ports, bindings):
            self._apply_all(group_changes(bindings), owners)

    def mark_bound_without_switch(self, port: NetworkPort, host: str) -> None:
        """A binding that needs no switch change (the flat network interface)."""
        with contextlib.suppress(NotFound):
            db_api.update_row(self.db, NetworkPort, port.id, {
                "binding_host_id": host, "binding_vif_type": "other",
                "binding_vif_details": {}, "status": "ACTIVE"}, "Port")

    def set_binding_host(self, port_id: str, host: str) -> NetworkPort:
        """Record ``binding:host_id`` without binding yet (a batch binds them together);
        the port as it is now. Raises :class:`NotFound`."""
        port: NetworkPort = db_api.update_row(self.db, NetworkPort, port_id,
                                              {"binding_host_id": host}, "Port")
        return port

    def host_unwired(self, ports: list[NetworkPort], host: str) -> None:
        """Record ``binding:host_id`` of bare-metal ports no switch port is known for yet (a
        node inspected before LLDP told its wiring: it sits on the ToR's default VLAN).
        They stay unbound on the switches; OVN serves them as external ports. Raises
        :class:`MetalplaneError` (503) when OVN cannot be reached."""
        hosted = [self.set_binding_host(p.id, host) for p in ports]
        for p in hosted:
            self._postcommit("port_postcommit", p)

    def mark_unbound(self, port_id: str) -> None:
        self._set_binding(port_id, "unbound", {}, "DOWN")

    # ================================================================ security groups
    def create_security_group(self, body: dict[str, Any]) -> SecurityGroup:
        _unknown(body, SG_FIELDS, "security group")
        if not body.get("name"):
            raise Invalid("name is required")
        return db_net.create_security_group(self.db, {
            "id": str(uuidlib.uuid4()), "name": str(body["name"]),
            "description": str(body.get("description") or ""),
            "project_id": _project(body), "stateful": bool(body.get("stateful", True))})

    def get_security_group(self, ident: str) -> SecurityGroup:
        sg: SecurityGroup = self._by_id_or_name(SecurityGroup, ident, "Security group")
        return sg

    def list_security_groups(self) -> list[SecurityGroup]:
        return db_net.list_security_groups(self.db)

    def update_security_group(self, ident: str, body: dict[str, Any]) -> SecurityGroup:
        """Change name or description. Raises :class:`Invalid`, :class:`NotFound`."""
        _unknown(body, {"name", "description"}, "security group update")
        sg = self.get_security_group(ident)
        if "name" in body and not body["name"]:
            raise Invalid("name must not be empty")
        if body:
            try:
                db_net.update_security_group(self.db, sg.id, body)
            except NotFound:
                raise NotFound(f"Security group {ident} could not be found.") from None
        return self.get_security_group(sg.id)

    def get_security_group_rule(self, ident: str) -> SecurityGroupRule:
        """Raises :class:`NotFound`."""
        rule: SecurityGroupRule = self._by_id(
            SecurityGroupRule, ident, f"Security group rule {ident} could not be found.")
        return rule

    def sg_rules(self, sg_id: str | None = None) -> list[SecurityGroupRule]:
        return db_net.list_security_group_rules(self.db, sg_id)

    def delete_security_group(self, ident: str) -> None:
        sg = self.get_security_group(ident)
        db_net.delete_security_group(self.db, sg.id)
        self._groups_changed([], [sg.id])

    def create_security_group_rule(self, body: dict[str, Any]) -> SecurityGroupRule:
        """Validated as Neutron does: direction, ethertype, protocol, port range (or ICMP
        type/code), remote prefix matching the ethertype. Raises :class:`Invalid`."""
        _unknown(body, SG_RULE_FIELDS, "security group rule")
        sg = self.get_security_group(str(body.get("security_group_id") or ""))
        direction = body.get("direction")
        if direction not in ("ingress", "egress"):
            raise Invalid("direction must be ingress or egress")
        ethertype = body.get("ethertype") or "IPv4"
        if ethertype not in ("IPv4", "IPv6"):
            raise Invalid("ethertype must be IPv4 or IPv6")
        proto = body.get("protocol")
        if proto is not None:
            proto = str(proto).lower()
            if proto not in PROTOCOLS and not (proto.isdigit() and 0 <= int(proto) <= 255):
                raise Invalid(f"protocol '{proto}' is not one of {', '.join(PROTOCOLS)} or "
                              "a number 0-255")
        lo, hi = body.get("port_range_min"), body.get("port_range_max")
        if lo is not None or hi is not None:
            if proto is None:
                raise Invalid("port_range_min/max need a protocol")
            try:
                lo = int(lo) if lo is not None else None
                hi = int(hi) if hi is not None else None
            except (TypeError, ValueError):
                raise Invalid("port_range_min/max must be numbers") from None
            if proto in ("icmp", "icmpv6", "1", "58"):
                if (lo is not None and not 0 <= lo <= 255) or (hi is not None and
                                                               not 0 <= hi <= 255):
                    raise Invalid("ICMP type (port_range_min) and code (port_range_max) must "
                                  "be 0-255")
            else:
                if lo is None or hi is None or not 1 <= lo <= hi <= 65535:
                    raise Invalid("port_range_min and port_range_max must satisfy "
                                  "1 <= min <= max <= 65535")
        prefix = body.get("remote_ip_prefix")
        if prefix is not None:
            net = ipaddress.ip_network(str(prefix), strict=False) if _is_net(prefix) else None
            if net is None:
                raise Invalid(f"remote_ip_prefix '{prefix}' is not a CIDR")
            if (net.version == 4) != (ethertype == "IPv4"):
                raise Invalid(f"remote_ip_prefix {net} does not match ethertype {ethertype}")
            prefix = str(net)
        if body.get("remote_group_id") and prefix:
            raise Invalid("remote_ip_prefix and remote_group_id are mutually exclusive")
        rule = db_net.create_security_group_rule(self.db, {
            "id": str(uuidlib.uuid4()), "security_group_id": sg.id,
            "project_id": _project(body) or sg.project_id, "direction": direction,
            "ethertype": ethertype, "protocol": proto, "port_range_min": lo,
            "port_range_max": hi, "remote_ip_prefix": prefix,
            "remote_group_id": body.get("remote_group_id"),
            "description": str(body.get("description") or "")})
        self._groups_changed([], [sg.id])
        return rule

    def delete_security_group_rule(self, ident: str) -> None:
        rule = self.get_security_group_rule(ident)
        db_net.delete_security_group_rule(self.db, ident)
        self._groups_changed([], [rule.security_group_id])


def _is_net(value: Any) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return True

