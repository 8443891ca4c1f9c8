"""A node's network interface: which networks its ports are on at each step of its life.

Ironic's three network interfaces (``drivers/modules/network/{noop,flat,neutron}.py``), as
implementations of :class:`NetworkInterface` chosen per node by ``network_interface``
(default ``default_network_interface``); the conductor goes through :class:`NodeNetworking`,
which picks the node's interface. Which provider network each state uses is declared once
(:data:`PROVIDER_NETWORK`); the step engine applies it, and the node is powered off around
every flip onto or off its tenant network:

* ``noop``: metalplane leaves the node's networking alone.
* ``flat``: every node shares one flat provider network; VIFs are recorded and marked
  bound, no switch is touched.
* ``neutron`` (multi-tenant): the node's switch ports follow its lifecycle. Inspecting and
  cleaning put them on the configured ``inspection_network`` / ``cleaning_network``,
  deploying on the ``provisioning_network``; going active removes the provisioning network
  and binds the tenant VIFs; undeploy unbinds the VIFs and cleaning follows. Ports not on
  any network are parked.

Provider-network ports are network ports created for the node, one per PXE-enabled port,
portgroup members included, never one per portgroup (Ironic's
``common/neutron.py::add_ports_to_network``): a firmware PXE-boots through one NIC, and a
switch-side bond drops what arrives on a member it does not consider active. Each is
recorded in its port's ``internal_info`` as ``<kind>_vif_port_id``. A tenant VIF is recorded
as ``tenant_vif_port_id`` on the port or portgroup it is attached to (on a portgroup it is
bound as the bond), as Ironic does.
All the switch changes of one step go to the switches together.
"""

from __future__ import annotations

import abc
import ipaddress
import logging
from typing import Any, ClassVar

from metalplane.common.config import Settings
from metalplane.common.exceptions import Conflict, Forbidden, Invalid, MetalplaneError, NotFound
from metalplane.db import api as db_api
from metalplane.db.engine import Database
from metalplane.db.models import NetworkPort, Node, Port, Portgroup
from metalplane.dhcp.manager import DhcpManager
from metalplane.drivers.base import Task
from metalplane.lifecycle import states
from metalplane.network.plugin import NetworkPlugin

__all__ = ["NETWORK_INTERFACES", "PROVIDER_NETWORK", "FlatNetwork", "Forbidden",
           "NetworkInterface", "NeutronNetwork", "NodeNetworking", "NoopNetwork"]

LOG = logging.getLogger(__name__)
NETWORK_INTERFACES = ("noop", "flat", "neutron")
PROVIDER_KINDS = ("inspection", "cleaning", "provisioning", "rescuing")
# The provider network a node is on while in each state, declared once. (Rescue has a
# provider network, ``rescuing``, but no state in the state machine yet.)
PROVIDER_NETWORK: dict[str, str] = {
    states.INSPECTING: "inspection",
    states.CLEANING: "cleaning",
    states.DEPLOYING: "provisioning",
}
TENANT_KEY = "tenant_vif_port_id"
SWITCH_KEYS = (TENANT_KEY, *(f"{k}_vif_port_id" for k in PROVIDER_KINDS))


Attachable = Port | Portgroup


def bond_properties(properties: dict[str, Any] | None) -> dict[str, Any]:
    """A portgroup's ``properties`` as bonding options: each key prefixed ``bond_`` unless it
    starts with ``bond`` already (Ironic's ``common/neutron.py::get_local_group_information``;
    the bonding driver's options, kernel Documentation/networking/bonding.rst), e.g.
    ``{"miimon": 100}`` → ``{"bond_miimon": 100}``."""
    return {(k if str(k).startswith("bond") else f"bond_{k}"): v
            for k, v in (properties or {}).items()}


class NetworkInterface(abc.ABC):
    """One network interface (Ironic's ``drivers/base.py`` ``NetworkInterface``): what
    happens to a node's ports when it goes on or off a provider network or its tenant
    network, and when its ports, portgroups or VIFs change. What all three share is here:
    taking a node off a network (whatever put it there), the VIF records, the config
    drive, and refusing port changes the bindings forbid."""

    name: ClassVar[str]

    def __init__(self, settings: Settings, plugin: NetworkPlugin, db: Database,
                 dhcp: DhcpManager) -> None:
        self.settings = settings
        self.plugin = plugin
        self.db = db
        self.dhcp = dhcp

    # ---------------------------------------------------------------- what differs
    @abc.abstractmethod
    def validate(self, task: Task, kinds: tuple[str, ...] = ()) -> None:
        """Check the node can go on the provider networks ``kinds``. Raises
        :class:`Invalid`."""

    @abc.abstractmethod
    def add_network(self, task: Task, kind: str) -> None:
        """Put the node's PXE ports on the ``kind`` provider network."""

    @abc.abstractmethod
    def _bind_tenant(self, node: Node, vifs: list[NetworkPort]) -> None:
        """Mark bound the tenant VIFs ``vifs`` (their profiles set) of ``node``."""

    @abc.abstractmethod
    def _move_switch_ports(self, node: Node,
                           wanted: list[tuple[NetworkPort, dict[str, Any]]]) -> None:
        """Give network ports new binding profiles (switch ports) after a port change."""

    # ---------------------------------------------------------------- helpers

    def _objects(self, node: Node) -> tuple[list[Port], list[Portgroup]]:
        return db_api.node_wiring(self.db, node.id)

    def _save_internal(self, obj: Attachable, info: dict[str, Any]) -> None:
        model = Port if isinstance(obj, Port) else Portgroup
        db_api.update_row(self.db, model, obj.id, {"internal_info": info}, model.__name__)
        obj.internal_info = info

    @staticmethod
    def _llc(port: Port) -> dict[str, Any]:
        llc = dict(port.local_link_connection or {})
        return {k: llc[k] for k in ("switch_id", "port_id", "switch_info") if k in llc}

    def _profile(self, obj: Attachable, members: list[Port]) -> dict[str, Any]:
        if isinstance(obj, Port):
            return {"local_link_information": [self._llc(obj)]}
        return {"local_link_information": [self._llc(p) for p in members],
                "local_group_information": {"id": obj.uuid, "name": obj.name or
                                            f"bond{obj.uuid[:8]}", "bond_mode": obj.mode,
                                            "bond_properties": bond_properties(obj.properties)}}

    def _wired(self, node: Node, pxe_only: bool,
               objects: tuple[list[Port], list[Portgroup]] | None = None
               ) -> list[tuple[Attachable, list[Port]]]:
        """The node's attachable objects: portgroups (with members), then standalone ports.
        ``objects``: the node's ports and portgroups as already read by the caller."""
        ports, groups = objects or self._objects(node)
        out: list[tuple[Attachable, list[Port]]] = []
        for pg in groups:
            members = [p for p in ports if p.portgroup_id == pg.id]
            if members and (not pxe_only or any(p.pxe_enabled for p in members)):
                out.append((pg, members))
        for p in ports:
            if p.portgroup_id is None and (not pxe_only or p.pxe_enabled):
                out.append((p, [p]))
        return out

    @staticmethod
    def _carriers(objects: tuple[list[Port], list[Portgroup]]) -> list[Attachable]:
        """Every port and portgroup of the node: what may carry an ``internal_info`` key
        (provider-network keys are on ports; an older version put them on portgroups)."""
        ports, groups = objects
        return [*groups, *ports]

    # ---------------------------------------------------------------- provider networks
    def _with_host(self, port: NetworkPort, host: str) -> NetworkPort:
        return self.plugin.set_binding_host(port.id, host)

    def _drop_quietly(self, port_id: str) -> None:
        try:
            self.plugin.delete_port(port_id)
        except MetalplaneError as exc:
            LOG.warning("could not delete network port %s: %s", port_id, exc.message)

    def _drop_key(self, obj: Attachable, key: str) -> None:
        if key in (obj.internal_info or {}):
            info = dict(obj.internal_info)
            info.pop(key)
            self._save_internal(obj, info)

    def _forget(self, node: Node, key: str,
                objects: tuple[list[Port], list[Portgroup]] | None = None) -> None:
        for obj in self._carriers(objects or self._objects(node)):
            self._drop_key(obj, key)

    def remove_network(self, task: Task, kind: str,
                       objects: tuple[list[Port], list[Portgroup]] | None = None) -> None:
        """Take the node off the ``kind`` provider network (its switch ports are parked).
        ``objects``: the node's ports and portgroups, if the caller has read them."""
        node = task.node
        key = f"{kind}_vif_port_id"
        objects = objects or self._objects(node)
        ids = list(dict.fromkeys(str(obj.internal_info[key])
                                 for obj in self._carriers(objects)
                                 if (obj.internal_info or {}).get(key)))
        if not ids:
            return
        ports = []
        for pid in ids:
            try:
                ports.append(self.plugin.get_port(pid))
            except NotFound:
                continue
        for p in ports:
            net = self.plugin.get_network(p.network_id)
            dhcp_key = self.dhcp.serves(net.name, net.id)
            if dhcp_key:
                self.dhcp.remove(dhcp_key, p.mac_address)
        bound = [p for p in ports if p.binding_vif_type not in ("unbound", "binding_failed")]
        if bound:
            self.plugin.unbind_many(bound)
        for p in ports:
            self.plugin.delete_port(p.id)
        self._forget(node, key, objects)
        LOG.info("Node %s: removed from %s network", node.uuid, kind)

    def remove_all_provider_networks(self, task: Task) -> None:
        objects = self._objects(task.node)  # read once: removing updates them in place
        for kind in PROVIDER_KINDS:
            self.remove_network(task, kind, objects)

    # ---------------------------------------------------------------- tenant VIFs
    def vifs(self, node: Node) -> list[str]:
        return [obj.internal_info[TENANT_KEY] for obj, _ in self._wired(node, pxe_only=False)
                if (obj.internal_info or {}).get(TENANT_KEY)]

    def _tenant_ports(self, node: Node) -> list[tuple[Attachable, list[Port], NetworkPort]]:
        out = []
        for obj, members in self._wired(node, pxe_only=False):
            vif = (obj.internal_info or {}).get(TENANT_KEY)
            if vif:
                try:
                    out.append((obj, members, self.plugin.get_port(vif)))
                except NotFound:
                    LOG.warning("Node %s: VIF %s no longer exists", node.uuid, vif)
        return out

    def configure_tenant(self, task: Task) -> None:
        """Bind every attached VIF to its node port (going active)."""
        node = task.node
        todo = []
        for obj, members, vif in self._tenant_ports(node):
            if vif.binding_vif_type in ("unbound", "binding_failed"):
                self.plugin.set_mac_address(vif.id, obj.address or members[0].address)
            vif = self.plugin.update_port(vif.id, {
                "binding:vnic_type": "baremetal", "binding:profile": self._profile(obj, members),
                "device_id": node.uuid, "device_owner": "baremetal:none"})
            todo.append(vif)
        if todo:
            self._bind_tenant(node, todo)

    def unconfigure_tenant(self, task: Task) -> None:
        """Unbind every attached VIF (undeploy); the attachments stay."""
        self._release([v for _, _, v in self._tenant_ports(task.node)
                       if v.binding_vif_type != "unbound"])

    def _release(self, vifs: list[NetworkPort]) -> None:
        """Unbind ``vifs`` from their switch ports (one transaction per switch) and clear
        their binding host and profile."""
        switch_bound = [v for v in vifs if v.binding_vif_type == "other"
                        and v.binding_vif_details.get("driver")]
        if switch_bound:
            self.plugin.unbind_many(switch_bound)
        for v in vifs:
            self.plugin.update_port(v.id, {"binding:host_id": "", "binding:profile": {}})
            self.plugin.mark_unbound(v.id)

    # ---------------------------------------------------------------- port changes
    @staticmethod
    def _switch_keys(obj: Attachable) -> dict[str, str]:
        """The network ports ``obj`` carries: ``{internal_info key: network port id}``."""
        info = obj.internal_info or {}
        return {k: str(info[k]) for k in SWITCH_KEYS if info.get(k)}

    def port_changed(self, task: Task, port_id: int, values: dict[str, Any]) -> None:
        """Before node port ``port_id`` takes ``values`` (under the node's lock; not saved
        yet): refuse what Ironic's ``port_changed`` refuses and, for ``neutron``, move every
        bound switch port the change concerns (a new ``local_link_connection``, a port
        joining or leaving a portgroup) to where the port is now plugged, on the same
        network. A VIF carried by a port that joins a portgroup moves to the portgroup (the
        bond), and back to the port when its portgroup's last member leaves.

        Raises :class:`Conflict` (409) for a change the bindings forbid,
        :class:`~metalplane.network.plugin.BindingFailed` when the switch refuses; nothing
        is changed then."""
        node = task.node
        ports, groups = self._objects(node)
        port = next(p for p in ports if p.id == port_id)
        changed = {k for k, v in values.items() if hasattr(port, k) and (
            (getattr(port, k) or {}) if isinstance(v, dict) else getattr(port, k)) != v}
        old_pg = next((g for g in groups if g.id == port.portgroup_id), None)
        new_pg = next((g for g in groups if g.id == values.get("portgroup_id")), None)
        carried = self._switch_keys(port) or (self._switch_keys(old_pg) if old_pg else {})
        if "address" in changed and carried:
            raise Conflict(f"Cannot update hardware address for port {port.uuid}: it carries "
                           f"network port(s) {', '.join(sorted(carried.values()))} of node "
                           f"{node.uuid}; detach the VIF (or finish the step) first")
        if new_pg is not None and not new_pg.standalone_ports_supported:
            reasons = (["'pxe_enabled' was set to True"] if values.get("pxe_enabled") else []
                       ) + [f"VIF {v} is attached to the port"
                            for k, v in self._switch_keys(port).items() if k == TENANT_KEY]
            if reasons:
                raise Conflict(f"Port group {new_pg.uuid} doesn't support standalone ports. "
                               f"This port {port.uuid} cannot be a member of that port group "
                               f"because of: {', '.join(reasons)}")
        if new_pg is not None and values.get("physical_network"):
            others = {p.physical_network for p in ports if p.portgroup_id == new_pg.id
                      and p.id != port.id and p.physical_network}
            if others and others != {values["physical_network"]}:
                raise Conflict(f"Port {port.uuid} is on physical network "
                               f"{values['physical_network']} but the other ports of its port "
                               f"group {new_pg.uuid} are on {', '.join(sorted(others))}")
        moves: list[tuple[Attachable, Attachable, dict[str, str]]] = []
        if "portgroup_id" in changed:
            # a VIF moves to the portgroup (the bond); provider-network ports stay the port's
            vif = {k: v for k, v in self._switch_keys(port).items() if k == TENANT_KEY}
            if new_pg is not None and vif:
                taken = set(vif) & set(self._switch_keys(new_pg))
                if taken:
                    raise Conflict(f"port {port.uuid} and port group {new_pg.uuid} both "
                                   f"carry {', '.join(sorted(taken))}; detach the VIF first")
                moves.append((port, new_pg, vif))
            if old_pg is not None and self._switch_keys(old_pg) and not any(
                    p.portgroup_id == old_pg.id for p in ports if p.id != port.id):
                if new_pg is not None:
                    raise Conflict(f"port {port.uuid} is the last member of port group "
                                   f"{old_pg.uuid}, which carries network port(s) "
                                   f"{', '.join(sorted(self._switch_keys(old_pg).values()))}; "
                                   "detach the VIF before moving it to another port group")
                moves.append((old_pg, port, {k: v for k, v in self._switch_keys(old_pg).items()
                                             if k not in self._switch_keys(port)}))
        for key, value in values.items():  # the port as it will be, in memory only
            if hasattr(port, key):
                setattr(port, key, value)
        self._apply_wiring(task, (ports, groups), moves)

    def portgroup_changed(self, task: Task, pg_id: int, values: dict[str, Any]) -> None:
        """Before portgroup ``pg_id`` takes ``values`` (under the node's lock): refuse what
        Ironic's ``portgroup_changed`` refuses and, for ``neutron``, rebuild a bound bond
        whose name, mode or properties changed. Raises :class:`Conflict`,
        :class:`~metalplane.network.plugin.BindingFailed`."""
        node = task.node
        ports, groups = self._objects(node)
        pg = next(g for g in groups if g.id == pg_id)
        members = [p for p in ports if p.portgroup_id == pg.id]
        changed = {k for k, v in values.items() if hasattr(pg, k) and (
            (getattr(pg, k) or {}) if isinstance(v, dict) else getattr(pg, k)) != v}
        if "node_id" in changed and members:
            raise Conflict(f"Portgroup {pg.uuid} can not be associated with another node "
                           "because there are ports associated with this portgroup.")
        if "address" in changed and self._switch_keys(pg) and values.get("address"):
            raise Conflict(f"Cannot update the address of port group {pg.uuid}: it carries "
                           f"network port(s) {', '.join(sorted(self._switch_keys(pg).values()))}"
                           "; detach the VIF (or finish the step) first")
        if "standalone_ports_supported" in changed and not values["standalone_ports_supported"]:
            pxe = [p.uuid for p in members if p.pxe_enabled]
            if pxe:
                raise Conflict(f"standalone_ports_supported can not be set to False, because "
                               f"the port group {pg.uuid} contains port with 'pxe_enabled' "
                               f"set to True ({', '.join(pxe)})")
        for key, value in values.items():
            if hasattr(pg, key) and key != "node_id":
                setattr(pg, key, value)
        self._apply_wiring(task, (ports, groups), [])

    def port_deleted(self, task: Task, port_id: int) -> None:
        """Before node port ``port_id`` is deleted (under the node's lock): release the
        network ports it carries (a VIF is unbound and stays attached to nothing, a
        provider-network port is deleted; their switch ports are parked), those of its
        portgroup if it is the last member, and rebuild its portgroup's bond without it."""
        node = task.node
        ports, groups = self._objects(node)
        port = next(p for p in ports if p.id == port_id)
        rest = [p for p in ports if p.id != port_id]
        pg = next((g for g in groups if g.id == port.portgroup_id), None)
        carriers: list[Attachable] = [port]
        if pg is not None and not any(p.portgroup_id == pg.id for p in rest):
            carriers.append(pg)
        for obj in carriers:
            self._drop_network_ports(obj)
        if pg is not None and pg not in carriers:
            self._apply_wiring(task, (rest, groups), [])

    def portgroup_deleted(self, task: Task, pg_id: int) -> None:
        """Before portgroup ``pg_id`` is deleted (its ports stay, standalone): release the
        network ports it carries (the bond is unbound and its switch ports parked)."""
        _ports, groups = self._objects(task.node)
        self._drop_network_ports(next(g for g in groups if g.id == pg_id))

    def _drop_network_ports(self, obj: Attachable) -> None:
        for key, np_id in self._switch_keys(obj).items():
            try:
                np = self.plugin.get_port(np_id)
            except NotFound:
                np = None
            if np is not None and key == TENANT_KEY:
                if np.binding_vif_type != "unbound":
                    self._release([np])
            elif np is not None:
                net = self.plugin.get_network(np.network_id)
                dhcp_key = self.dhcp.serves(net.name, net.id)
                if dhcp_key:
                    self.dhcp.remove(dhcp_key, np.mac_address)
                self.plugin.delete_port(np.id)  # unbinds (parks) a bound one first
            self._drop_key(obj, key)

    def _apply_wiring(self, task: Task, objects: tuple[list[Port], list[Portgroup]],
                      moves: list[tuple[Attachable, Attachable, dict[str, str]]]) -> None:
        """Rebind every network port whose switch ports differ in ``objects`` (the node's
        ports and portgroups as they will be) from its current binding, then record the
        ``moves`` of internal_info keys (source, target, keys)."""
        node = task.node
        holder: dict[str, tuple[Attachable, list[Port]]] = {}
        moved = {id(src): keys for src, _dst, keys in moves}
        targets = {id(dst): keys for _src, dst, keys in moves}
        ports, _groups = objects
        carriers = self._wired(node, pxe_only=False, objects=objects) + [
            (p, [p]) for p in ports if p.portgroup_id is not None]  # members' own keys
        for obj, members in carriers:
            keys = {k: v for k, v in self._switch_keys(obj).items()
                    if k not in moved.get(id(obj), {})}
            keys.update(targets.get(id(obj), {}))
            for vif in keys.values():
                holder[vif] = (obj, members)
        wanted: list[tuple[NetworkPort, dict[str, Any]]] = []
        for vif, (obj, members) in holder.items():
            try:
                np = self.plugin.get_port(vif)
            except NotFound:
                continue
            if np.binding_vnic_type != "baremetal":
                continue
            profile = self._profile(obj, members)
            if (np.binding_profile or {}) != profile:
                wanted.append((np, profile))
        self._move_switch_ports(node, wanted)
        for src, dst, keys in moves:
            self._save_internal(src, {k: v for k, v in (src.internal_info or {}).items()
                                      if k not in keys})
            self._save_internal(dst, {**(dst.internal_info or {}), **keys})

    def config_drive(self, node: Node, user: dict[str, Any] | None) -> dict[str, Any]:
        """Config drive contents (cloud-init's OpenStack format): ``meta_data``,
        ``network_data`` (links, tenant IPs, routes, DNS; a bond for a portgroup, carrying
        its ``properties`` as ``bond_<key>`` options, :func:`bond_properties`, which
        cloud-init's OpenStack datasource turns into bond parameters) and ``user_data``.
        What the user gave wins over what is generated."""
        user = dict(user or {})
        links: list[dict[str, Any]] = []
        networks: list[dict[str, Any]] = []
        dns: list[str] = []
        for i, (obj, members, vif) in enumerate(self._tenant_ports(node)):
            if isinstance(obj, Portgroup):
                for j, p in enumerate(members):
                    links.append({"id": f"link{i}-{j}", "type": "phy",
                                  "ethernet_mac_address": p.address, "mtu": 1500})
                link = {"id": f"bond{i}", "type": "bond",
                        "ethernet_mac_address": obj.address or members[0].address,
                        "bond_links": [f"link{i}-{j}" for j in range(len(members))],
                        "bond_mode": obj.mode or "active-backup", "mtu": 1500}
                link = {**bond_properties(obj.properties), **link}
            else:
                link = {"id": f"link{i}", "type": "phy",
                        "ethernet_mac_address": obj.address, "mtu": 1500}
            links.append(link)
            for k, ip in enumerate(self.plugin.fixed_ips(vif.id)):
                sub = self.plugin.get_subnet(ip["subnet_id"])


                net = ipaddress.ip_network(sub.cidr)
                routes = ([{"network": "0.0.0.0", "netmask": "0.0.0.0",
                            "gateway": sub.gateway_ip}] if sub.gateway_ip else [])
                networks.append({"id": f"network{i}-{k}", "type": f"ipv{net.version}",
                                 "link": link["id"], "ip_address": ip["ip_address"],
                                 "netmask": str(net.netmask), "routes": routes,
                                 "network_id": vif.network_id})
                dns += [d for d in sub.dns_nameservers if d not in dns]
        meta = {"uuid": node.uuid, "name": node.name or node.uuid,
                "hostname": node.name or node.uuid, "public_keys": {},
                **(user.get("meta_data") or {})}
        network_data = user.get("network_data") or {
            "links": links, "networks": networks,
            "services": [{"type": "dns", "address": d} for d in dns]}
        return {"meta_data": meta, "network_data": network_data,
                "user_data": user.get("user_data")}

    def get_node_network_data(self, task: Task) -> dict[str, Any]:
        """The node's network configuration for its ramdisk, in ``network_data.json``
        format, which a virtual media boot puts on the ISO for a DHCP-less boot (Ironic's
        ``NetworkInterface.get_node_network_data``): the node's ``network_data`` field;
        ``{}`` when it has none."""
        return dict(task.node.network_data or {})

    def _provider_network_data(self, node: Node) -> dict[str, Any]:
        """``network_data`` of the network ports the node's ports have on the provider
        network it is on now (Ironic's ``get_neutron_port_data`` of ``get_current_vif``):
        a ``phy`` link per port (a ``bond`` for a portgroup that carries one, as an older
        version recorded them) and its fixed IPs, with the subnet's gateway as default
        route and its DNS servers."""
        out: dict[str, list[dict[str, Any]]] = {"links": [], "networks": [], "services": []}
        for obj in self._carriers(self._objects(node)):
            info = obj.internal_info or {}
            vif_id = next((info[f"{kind}_vif_port_id"] for kind in PROVIDER_KINDS
                           if info.get(f"{kind}_vif_port_id")), None)
            if vif_id is None:
                continue
            try:
                vif = self.plugin.get_port(str(vif_id))
            except MetalplaneError as exc:
                LOG.warning("Node %s: network port %s of its provider network is gone: %s",
                            node.uuid, vif_id, exc.message)
                continue
            link_id = f"port-{obj.uuid}"
            out["links"].append({"id": link_id,
                                 "type": "bond" if isinstance(obj, Portgroup) else "phy",
                                 "ethernet_mac_address": obj.address or vif.mac_address,
                                 "vif_id": vif.id, "mtu": 1500})
            for k, ip in enumerate(self.plugin.fixed_ips(vif.id)):
                sub = self.plugin.get_subnet(ip["subnet_id"])
                net = ipaddress.ip_network(sub.cidr)
                routes = ([{"network": "0.0.0.0" if net.version == 4 else "::",
                            "netmask": "0.0.0.0" if net.version == 4 else "::",
                            "gateway": sub.gateway_ip}] if sub.gateway_ip else [])
                out["networks"].append({"id": f"network-{obj.uuid}-{k}",
                                        "type": f"ipv{net.version}", "link": link_id,
                                        "ip_address": ip["ip_address"],
                                        "netmask": str(net.netmask), "routes": routes,
                                        "network_id": vif.network_id})
                out["services"] += [{"type": "dns", "address": d}
                                    for d in sub.dns_nameservers
                                    if {"type": "dns", "address": d} not in out["services"]]
        return out if out["links"] else {}

    def check_project(self, node: Node, vif: NetworkPort) -> None:
        net = self.plugin.get_network(vif.network_id)
        projects = {p for p in (node.owner, node.lessee) if p}
        if net.shared or not projects or net.project_id in projects or not net.project_id:
            return
        raise Forbidden(f"node {node.name or node.uuid} belongs to project "
                        f"{node.owner or node.lessee} and may not attach a VIF on network "
                        f"{net.name or net.id} of project {net.project_id} (not shared)")

    def vif_attach(self, task: Task, vif_id: str) -> None:
        """Attach network port ``vif_id`` to a free port/portgroup of the node; bind it now
        if the node is active. Raises :class:`NotFound`, :class:`Forbidden`,
        :class:`Invalid` (no free port, VIF in use), :class:`Invalid`."""
        node = task.node
        vif = self.plugin.get_port(vif_id)
        if vif.id in self.vifs(node):
            raise Conflict(f"VIF {vif.id} is already attached to node {node.uuid}")
        if vif.binding_host_id and vif.binding_host_id != node.uuid:
            raise Conflict(f"VIF {vif.id} is bound to host {vif.binding_host_id}")
        self.check_project(node, vif)
        seg = self.plugin.segment(vif.network_id)
        physnet = seg.physical_network if seg else None
        self.validate(task)
        free = []
        for obj, members in self._wired(node, pxe_only=False):
            if (obj.internal_info or {}).get(TENANT_KEY):
                continue
            nets = {p.physical_network for p in members if p.physical_network}
            if physnet and nets and physnet not in nets:
                continue
            free.append((obj, members))
        if not free:
            raise Invalid(f"node {node.name or node.uuid} has no free port"
                           f"{' on physical network ' + physnet if physnet else ''} for VIF "
                           f"{vif.id}")
        obj, members = free[0]
        self._save_internal(obj, {**(obj.internal_info or {}), TENANT_KEY: vif.id})
        if node.provision_state == "active":
            try:
                self.configure_tenant(task)
            except MetalplaneError:
                self._drop_key(obj, TENANT_KEY)
                raise

    def vif_detach(self, task: Task, vif_id: str) -> None:
        """Detach (and unbind) a VIF. Raises :class:`NotFound` if it is not attached."""
        node = task.node
        for obj, _members, vif in self._tenant_ports(node):
            if vif.id == vif_id:
                self._release([vif])
                self._drop_key(obj, TENANT_KEY)
                return
        for obj, _ in self._wired(node, pxe_only=False):  # attached, but the port is gone
            if (obj.internal_info or {}).get(TENANT_KEY) == vif_id:
                self._drop_key(obj, TENANT_KEY)
                return
        raise NotFound(f"VIF {vif_id} is not attached to node {node.uuid}")


class NoopNetwork(NetworkInterface):
    """``noop``: metalplane leaves the node's networking alone. VIFs are only recorded."""

    name = "noop"

    def validate(self, task: Task, kinds: tuple[str, ...] = ()) -> None:
        return None

    def add_network(self, task: Task, kind: str) -> None:
        return None

    def configure_tenant(self, task: Task) -> None:
        return None

    def _bind_tenant(self, node: Node, vifs: list[NetworkPort]) -> None:
        return None

    def _move_switch_ports(self, node: Node,
                           wanted: list[tuple[NetworkPort, dict[str, Any]]]) -> None:
        return None

    def port_changed(self, task: Task, port_id: int, values: dict[str, Any]) -> None:
        return None

    def portgroup_changed(self, task: Task, pg_id: int, values: dict[str, Any]) -> None:
        return None

    def port_deleted(self, task: Task, port_id: int) -> None:
        return None

    def portgroup_deleted(self, task: Task, pg_id: int) -> None:
        return None


class FlatNetwork(NetworkInterface):
    """``flat``: every node shares one flat provider network. No provider-network ports;
    tenant VIFs are recorded and marked bound, no switch is touched."""

    name = "flat"

    def validate(self, task: Task, kinds: tuple[str, ...] = ()) -> None:
        return None

    def add_network(self, task: Task, kind: str) -> None:
        return None

    def _bind_tenant(self, node: Node, vifs: list[NetworkPort]) -> None:
        for vif in vifs:
            self.plugin.mark_bound_without_switch(vif, node.uuid)

    def _move_switch_ports(self, node: Node,
                           wanted: list[tuple[NetworkPort, dict[str, Any]]]) -> None:
        return None  # no switch port to move


class NeutronNetwork(NetworkInterface):
    """``neutron`` (multi-tenant): the node's switch ports follow its lifecycle."""

    name = "neutron"

    def validate(self, task: Task, kinds: tuple[str, ...] = ()) -> None:
        """Every port to be wired has a local_link_connection and each provider network in
        ``kinds`` that must exist is configured. The ports: for provider networks the
        PXE-enabled ones; with kinds empty, or for a deploy (``provisioning``, which ends
        on the tenant network), also every member of a port or portgroup that carries a
        tenant VIF, so a bond's unwired member is refused before the image is written.
        Raises :class:`Invalid`. Inspection alone does not need the wiring: it is what
        inspection finds out."""
        node = task.node
        objects = self._objects(node)  # read once
        checked: list[Port] = []
        if not kinds:
            checked = [p for _obj, members in self._wired(node, True, objects)
                       for p in members]
        elif kinds != ("inspection",):
            checked = [p for p in objects[0] if p.pxe_enabled]
        if not kinds or "provisioning" in kinds:
            checked += [p for obj, members in self._wired(node, False, objects)
                        if (obj.internal_info or {}).get(TENANT_KEY)
                        for p in members if p not in checked]
        for p in checked:
            llc = p.local_link_connection or {}
            if not llc.get("switch_id") or not llc.get("port_id"):
                raise Invalid(
                    f"port {p.address} of node {node.name or node.uuid} has no "
                    "local_link_connection (switch_id and port_id): the neutron network "
                    "interface needs it to find the switch port; set it with `metalplane "
                    "port set` or let inspection read it from LLDP")
            if self.plugin.switches.by_switch_id(str(llc["switch_id"])) is None:
                known = ", ".join(f"{sw.name} ({sw.switch_id})"
                                  for sw in self.plugin.switches.list_switches())
                raise Invalid(
                    f"unknown switch {llc['switch_id']} in local_link_connection of port "
                    f"{p.address} of node {node.name or node.uuid}; registered switches: "
                    f"{known or 'none'} (register it with `metalplane switch create`)")
        for kind in kinds:
            name = getattr(self.settings, f"{kind}_network")
            if not name and kind in ("cleaning", "provisioning"):
                raise Invalid(f"the neutron network interface needs {kind}_network "
                              f"(METALPLANE_{kind.upper()}_NETWORK) to be configured")
            if name:
                self.plugin.get_network(name)

    def add_network(self, task: Task, kind: str) -> None:
        """Put the node's PXE-enabled ports on the ``kind`` provider network (no-op unless
        that network is configured): one network port per PXE-enabled port, portgroup
        members included, whose ``binding:profile`` has that port's
        ``local_link_information`` only, recorded in the port's ``internal_info`` as
        ``<kind>_vif_port_id`` (Ironic's ``common/neutron.py::add_ports_to_network``). A
        portgroup is never a bond on a provider network: the firmware PXE-boots through one
        NIC. Raises :class:`~metalplane.network.plugin.BindingFailed`."""
        node = task.node
        name = getattr(self.settings, f"{kind}_network")
        if not name:
            return
        net = self.plugin.get_network(name)
        objects = self._objects(node)  # read once; _save_internal keeps them current
        self.remove_network(task, kind, objects)  # a leftover from an interrupted step
        created: list[NetworkPort] = []
        to_bind: list[NetworkPort] = []
        opts = task.driver.boot.dhcp_options(task)
        dhcp_key = self.dhcp.serves(net.name, net.id)
        subnets = self.plugin.list_subnets({"network_id": net.id})
        try:
            for obj in [p for p in objects[0] if p.pxe_enabled]:
                wired = bool((obj.local_link_connection or {}).get("switch_id"))
                port = self.plugin.create_port({
                    "network_id": net.id, "name": f"{node.name or node.uuid}-{kind}",
                    "mac_address": obj.address,
                    "device_id": node.uuid, "device_owner": "baremetal:none",
                    "project_id": net.project_id, "binding:vnic_type": "baremetal",
                    "binding:profile": self._profile(obj, [obj]),
                    "extra_dhcp_opts": opts,
                    **({} if subnets else {"fixed_ips": []})})
                created.append(port)
                # An unwired port being inspected stays unbound, on the switch's default
                # VLAN (as with ironic-inspector); it still gets its DHCP answer, and LLDP
                # tells where it is plugged.
                if wired or kind != "inspection":
                    to_bind.append(port)
                self._save_internal(obj, {**(obj.internal_info or {}),
                                          f"{kind}_vif_port_id": port.id})
            if to_bind:
                self.plugin.bind_many([self._with_host(p, node.uuid) for p in to_bind])
            unwired = [p for p in created if p not in to_bind]
            if unwired:
                self.plugin.host_unwired(unwired, node.uuid)
            if dhcp_key and subnets:
                for p in created:
                    ips = self.plugin.fixed_ips(p.id)
                    self.dhcp.add(dhcp_key, subnets[0].cidr, p.id, p.mac_address,
                                  ips[0]["ip_address"] if ips else None, p.extra_dhcp_opts)
        except MetalplaneError:
            for p in created:
                self._drop_quietly(p.id)
            self._forget(node, f"{kind}_vif_port_id", objects)
            raise
        LOG.info("Node %s: %d port(s) on %s network %s", node.uuid, len(created), kind, net.name)

    def get_node_network_data(self, task: Task) -> dict[str, Any]:
        """The node's ``network_data`` field if set, else what its ports have on the
        provider network it is on now (Ironic's ``NeutronVIFPortIDMixin``): the addresses
        the provisioning (cleaning, ...) network's IPAM gave them."""
        return super().get_node_network_data(task) or self._provider_network_data(task.node)

    def _bind_tenant(self, node: Node, vifs: list[NetworkPort]) -> None:
        bound = [self._with_host(v, node.uuid) for v in vifs]
        self.plugin.bind_many(bound)
        LOG.info("Node %s: %d tenant VIF(s) bound", node.uuid, len(bound))

    def _move_switch_ports(self, node: Node,
                           wanted: list[tuple[NetworkPort, dict[str, Any]]]) -> None:
        self._rebind(node, wanted)

    def _rebind(self, node: Node, wanted: list[tuple[NetworkPort, dict[str, Any]]]) -> None:
        """Give each network port its new ``binding:profile``; the bound ones are unbound
        from their old switch ports (parked) and bound to the new ones, same network, in
        one batch. If the new binding fails the old one is put back and the error raised."""
        if not wanted:
            return
        bound = [np for np, _ in wanted if np.binding_vif_type == "other"
                 and (np.binding_vif_details or {}).get("driver")]
        if bound:
            self.plugin.unbind_many(bound)

        def put(profiles: list[tuple[NetworkPort, dict[str, Any]]]) -> None:
            for np, profile in profiles:  # no host: update_port must not bind one by one
                self.plugin.update_port(np.id, {"binding:profile": profile,
                                                "binding:host_id": ""})
            rebound = [self.plugin.set_binding_host(np.id, np.binding_host_id)
                       for np, _ in profiles if np.binding_host_id]
            ids = {np.id for np in bound}
            to_bind = [p for p in rebound if p.id in ids]
            if to_bind:
                self.plugin.bind_many(to_bind)

        try:
            put(wanted)
        except MetalplaneError:
            try:
                put([(np, np.binding_profile or {}) for np, _ in wanted])
            except MetalplaneError as exc:
                LOG.error("Node %s: could not restore the old binding of %s: %s", node.uuid,
                          ", ".join(np.id for np in bound), exc.message)
            raise
        LOG.info("Node %s: %d network port(s) moved to new switch ports (%d rebound)",
                 node.uuid, len(wanted), len(bound))


class NodeNetworking:
    """The conductor's one door to networking: picks each node's network interface (its
    ``network_interface``, else ``default_network_interface``). The flips of the lifecycle
    are steps: the step engine (:mod:`metalplane.conductor.steps`) puts a node on the
    provider network of its phase's state (:data:`PROVIDER_NETWORK`) and takes it off
    again; the deploy step ``switch_to_tenant_network`` binds the tenant VIFs with the node
    powered off (``boot_instance`` powers it on afterwards), as Ironic does."""

    def __init__(self, settings: Settings, plugin: NetworkPlugin, db: Database) -> None:
        self.settings = settings
        self.plugin = plugin
        self.db = db
        self.dhcp = DhcpManager(settings)
        self.interfaces: dict[str, NetworkInterface] = {
            cls.name: cls(settings, plugin, db, self.dhcp)
            for cls in (NoopNetwork, FlatNetwork, NeutronNetwork)}

    def interface(self, node: Node) -> str:
        return node.network_interface or self.settings.default_network_interface

    def for_node(self, node: Node) -> NetworkInterface:
        return self.interfaces[self.interface(node)]

    # ---------------------------------------------------------------- the lifecycle
    def validate(self, task: Task, for_states: tuple[str, ...] = ()) -> None:
        """The node can go on the provider networks of ``for_states``. Raises
        :class:`Invalid`."""
        kinds = tuple(PROVIDER_NETWORK[s] for s in for_states)
        self.for_node(task.node).validate(task, kinds)

    def leave_all(self, task: Task) -> None:
        """Take the node off every provider network (making it safe, tearing down)."""
        self.for_node(task.node).remove_all_provider_networks(task)

    # ---------------------------------------------------------------- VIFs and ports
    def vifs(self, node: Node) -> list[str]:
        return self.for_node(node).vifs(node)

    def vif_attach(self, task: Task, vif_id: str) -> None:
        self.for_node(task.node).vif_attach(task, vif_id)

    def vif_detach(self, task: Task, vif_id: str) -> None:
        self.for_node(task.node).vif_detach(task, vif_id)

    def port_changed(self, task: Task, port_id: int, values: dict[str, Any]) -> None:
        self.for_node(task.node).port_changed(task, port_id, values)

    def portgroup_changed(self, task: Task, pg_id: int, values: dict[str, Any]) -> None:
        self.for_node(task.node).portgroup_changed(task, pg_id, values)

    def port_deleted(self, task: Task, port_id: int) -> None:
        self.for_node(task.node).port_deleted(task, port_id)

    def portgroup_deleted(self, task: Task, pg_id: int) -> None:
        self.for_node(task.node).portgroup_deleted(task, pg_id)
