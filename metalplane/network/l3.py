"""Neutron's L3: routers (interfaces, an external gateway with SNAT, static routes) and
floating IPs, stored backend-neutral and realised by the mechanism drivers.

A router's interfaces and gateway are ordinary network ports (``device_owner``
``network:router_interface`` / ``network:router_gateway``, ``device_id`` the router's id);
a floating IP holds its address through a port of its own (``network:floatingip``) on the
external network. Every change runs its checks and writes as one database transaction
(:func:`~metalplane.db.l3.l3_change`); after the commit the routers it touched are built
again as :class:`~metalplane.network.mech.RouterState` (:meth:`L3Plugin.router_state`) and
handed to every mechanism driver's ``router_postcommit`` (``delete_router_postcommit`` for
a deleted router). A postcommit error is the request's error (503), and the database change
stays, as in Neutron's ML2: the datapath is repaired by the next change or a sync.
This module does not talk to a datapath itself. Messages are Neutron's
(``neutron_lib/exceptions/l3.py``, ``neutron/db/l3_db.py``, ``extraroute_db.py``).
"""

from __future__ import annotations

import ipaddress
import logging
import operator
import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from metalplane.common.exceptions import Conflict, Invalid, MetalplaneError, NotFound
from metalplane.db import api as db_api
from metalplane.db.l3 import L3Writes, l3_change
from metalplane.db.models import FloatingIP as FloatingIPRow
from metalplane.db.models import IPAllocation, NetworkPort, Router, Subnet
from metalplane.network import ipam
from metalplane.network.mech import FloatingIP, MechanismDriver, RouterInterface, RouterState
from metalplane.network.plugin import _project, _unknown

if TYPE_CHECKING:
    from metalplane.network.plugin import NetworkPlugin

__all__ = ["FLOATINGIP_OWNER", "L3_OWNERS", "ROUTER_GATEWAY", "ROUTER_INTERFACE", "L3Plugin"]

LOG = logging.getLogger(__name__)
ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
FLOATINGIP_OWNER = "network:floatingip"
L3_OWNERS = (ROUTER_INTERFACE, ROUTER_GATEWAY, FLOATINGIP_OWNER)

ROUTER_FIELDS = {"name", "project_id", "tenant_id", "admin_state_up", "description",
                 "external_gateway_info"}
ROUTER_UPDATE_FIELDS = {"name", "admin_state_up", "description", "external_gateway_info",
                        "routes"}
FIP_FIELDS = {"floating_network_id", "floating_ip_address", "subnet_id", "port_id",
              "fixed_ip_address", "project_id", "tenant_id", "description"}
FIP_UPDATE_FIELDS = {"port_id", "fixed_ip_address", "description"}


def _router_bad(msg: str) -> Invalid:
    return Invalid(f"Bad router request: {msg}.")


def _fip_bad(msg: str) -> Invalid:
    return Invalid(f"Bad floatingip request: {msg}.")


class L3Plugin:
    """Routers and floating IPs of ``core``'s networks (Neutron's L3 router plugin)."""

    def __init__(self, core: NetworkPlugin) -> None:
        self.core = core
        self.db = core.db

    # ================================================================ reads
    def get_router(self, ident: str) -> Router:
        """By UUID or name. Raises :class:`NotFound` ("Router X could not be found")."""
        router: Router = self.core._by_id_or_name(Router, ident, "Router")
        return router

    def list_routers(self, filters: dict[str, Any]) -> list[Router]:
        """Routers whose ``id``, ``name``, ``project_id``, ``admin_state_up``, ``status``
        or ``description`` equal ``filters``' (other keys are ignored)."""
        return db_api.rows_where(self.db, Router, order_by=("created_at", "id"), **{
            k: filters[k] for k in ("id", "name", "project_id", "admin_state_up", "status",
                                    "description") if k in filters})

    def get_floatingip(self, ident: str) -> FloatingIPRow:
        """By UUID. Raises :class:`NotFound` ("Floating IP X could not be found")."""
        fip: FloatingIPRow = self.core._by_id(FloatingIPRow, ident,
                                              f"Floating IP {ident} could not be found")
        return fip

    def list_floatingips(self, filters: dict[str, Any]) -> list[FloatingIPRow]:
        """Floating IPs whose attributes (Neutron's filters: ``floating_ip_address``,
        ``floating_network_id``, ``router_id``, ``port_id``, ``fixed_ip_address``,
        ``status``...) equal ``filters``'."""
        return db_api.rows_where(self.db, FloatingIPRow, order_by=("created_at", "id"), **{
            k: filters[k] for k in ("id", "floating_ip_address", "floating_network_id",
                                    "router_id", "port_id", "fixed_ip_address", "project_id",
                                    "status", "description") if k in filters})

    def gateway_ips(self, router_ids: list[str]) -> dict[str, list[dict[str, str]]]:
        """``{router_id: [{"subnet_id", "ip_address"}]}``: the addresses of the routers'
        gateway ports (Neutron's ``external_fixed_ips``)."""
        ports = db_api.rows_where(self.db, NetworkPort, device_id=router_ids,
                                  device_owner=ROUTER_GATEWAY) if router_ids else []
        owner = {p.id: p.device_id for p in ports}
        out: dict[str, list[dict[str, str]]] = {}
        for a in self._allocations(list(owner)):
            out.setdefault(owner[a.port_id], []).append(
                {"subnet_id": a.subnet_id, "ip_address": a.ip_address})
        return out

    def _allocations(self, port_ids: list[str]) -> list[IPAllocation]:
        return db_api.rows_where(self.db, IPAllocation, order_by=("id",),
                                 port_id=port_ids) if port_ids else []

    def router_state(self, router_id: str) -> RouterState:
        """Router ``router_id`` as the mechanism drivers realise it, read from the
        database: interfaces, gateway (the next hop is the gateway subnet's
        ``gateway_ip``), SNAT, routes and the floating IPs associated through it. Raises
        :class:`NotFound`."""
        router = self.get_router(router_id)
        ports = db_api.rows_where(self.db, NetworkPort, order_by=("created_at", "id"),
                                  device_id=router.id,
                                  device_owner=[ROUTER_INTERFACE, ROUTER_GATEWAY])
        allocs = self._allocations([p.id for p in ports])
        subnets = {s.id: s for s in db_api.rows_where(
            self.db, Subnet, id=sorted({a.subnet_id for a in allocs}))} if allocs else {}
        state = RouterState(id=router.id, name=router.name,
                            admin_state_up=router.admin_state_up,
                            enable_snat=router.enable_snat, routes=list(router.routes or []))
        for port in ports:
            for a in (a for a in allocs if a.port_id == port.id):
                sub = subnets[a.subnet_id]
                iface = RouterInterface(port_id=port.id, mac_address=port.mac_address,
                                        network_id=port.network_id, subnet_id=sub.id,
                                        cidr=sub.cidr, ip_address=a.ip_address)
                if port.device_owner == ROUTER_INTERFACE:
                    state.interfaces.append(iface)
                elif state.gateway is None and sub.ip_version == 4:
                    state.gateway, state.gateway_next_hop = iface, sub.gateway_ip
        fips = db_api.rows_where(self.db, FloatingIPRow, order_by=("created_at", "id"),
                                 router_id=router.id)
        fixed_ports = {p.id: p for p in db_api.rows_where(
            self.db, NetworkPort, id=[f.port_id for f in fips if f.port_id])} if fips else {}
        state.floating_ips = [
            FloatingIP(id=f.id, floating_ip_address=f.floating_ip_address,
                       fixed_ip_address=str(f.fixed_ip_address), port_id=f.port_id,
                       port_mac=fixed_ports[f.port_id].mac_address)
            for f in fips if f.port_id in fixed_ports]
        return state

    # ================================================================ realising
    def _each_driver(self, call: Callable[[MechanismDriver], None], what: str) -> None:
        """``call`` on every mechanism driver; the first :class:`MetalplaneError` is raised
        once all were called (the others are logged)."""
        failure: MetalplaneError | None = None
        for drv in self.core.mechanism_drivers:
            try:
                call(drv)
            except MetalplaneError as exc:
                LOG.error("mechanism driver %s failed to realise %s: %s", drv.name, what,
                          exc.message)
                failure = failure or exc
        if failure is not None:
            raise failure

    def realise(self, router_ids: Iterable[str | None]) -> None:
        """Hand the state of each router of ``router_ids`` (None and repeats skipped) to
        every mechanism driver's ``router_postcommit``. Raises the first driver's
        :class:`MetalplaneError` (the database change stays)."""
        for router_id in dict.fromkeys(r for r in router_ids if r):
            self._each_driver(operator.methodcaller("router_postcommit",
                                                    self.router_state(router_id)),
                              f"router {router_id}")

    # ================================================================ routers
    def create_router(self, body: dict[str, Any]) -> Router:
        """Create a router, with a gateway port when ``external_gateway_info`` names an
        external network. Raises :class:`Invalid` (an unknown attribute, a network that
        is not external, a bad external fixed IP), :class:`NotFound` (no such network),
        :class:`Conflict` (an address in use); a driver's error after the commit."""
        _unknown(body, ROUTER_FIELDS, "router")
        router_id = str(uuidlib.uuid4())
        values = {"id": router_id, "name": str(body.get("name") or ""),
                  "project_id": _project(body),
                  "admin_state_up": bool(body.get("admin_state_up", True)),
                  "description": str(body.get("description") or ""), "routes": []}
        info = self._gateway_request(body.get("external_gateway_info"))

        def work(w: L3Writes) -> None:
            w.insert("router", values)
            if info is not None:
                w.update("router", router_id,
                         self._change_gateway(w, w.row("router", router_id), info))

        l3_change(self.db, work)
        LOG.info("router %s (%s) created", values["name"], router_id)
        self.realise([router_id])
        return self.get_router(router_id)

    def update_router(self, ident: str, body: dict[str, Any]) -> Router:
        """Change name, description, admin_state_up, the gateway (``external_gateway_info``;
        null or ``{}`` removes it) or ``routes`` (each nexthop on a subnet of the router's
        ports, not one of its addresses). Raises :class:`Invalid`, :class:`NotFound`,
        :class:`Conflict` (the gateway is needed by floating IPs); a driver's error."""
        _unknown(body, ROUTER_UPDATE_FIELDS, "router update")
        router = self.get_router(ident)
        values: dict[str, Any] = {k: body[k] for k in ("name", "description", "admin_state_up")
                                  if k in body}
        gateway_given = "external_gateway_info" in body
        info = self._gateway_request(body.get("external_gateway_info"))

        def work(w: L3Writes) -> None:
            row = w.row("router", router.id)
            if row is None:
                raise NotFound(f"Router {router.id} could not be found")
            if gateway_given:
                values.update(self._change_gateway(w, row, info))
            if "routes" in body or gateway_given:  # a new gateway may strand a route
                routes = body.get("routes", row.routes)
                values["routes"] = self._check_routes(w, row.id, routes or [])
            if values:
                w.update("router", row.id, values)

        l3_change(self.db, work)
        self.realise([router.id])
        return self.get_router(router.id)

    def delete_router(self, ident: str) -> None:
        """Delete a router and its gateway port. Raises :class:`Conflict` while it has
        interfaces (Neutron's RouterInUse) or floating IPs; a driver's error."""
        router = self.get_router(ident)

        def work(w: L3Writes) -> None:
            ports = w.rows("port", device_id=router.id,
                           device_owner=[ROUTER_INTERFACE, ROUTER_GATEWAY])
            attached = [p.id for p in ports if p.device_owner == ROUTER_INTERFACE]
            if attached:
                raise Conflict(f"Router {router.id} has ports still attached: "
                               f"{', '.join(attached)}")
            self._gateway_unused(w, router)
            w.delete_ports(p.id for p in ports)
            w.delete("router", id=router.id)

        l3_change(self.db, work)
        LOG.info("router %s deleted", router.id)
        self._each_driver(operator.methodcaller("delete_router_postcommit", router.id),
                          f"the deletion of router {router.id}")

    def _gateway_request(self, info: Any) -> dict[str, Any] | None:
        """``external_gateway_info`` with its network resolved to an id (name or UUID), or
        None for no gateway (null or ``{}``). Raises :class:`Invalid`, :class:`NotFound`."""
        if not info:
            return None
        if not isinstance(info, dict) or not info.get("network_id"):
            raise Invalid("external_gateway_info/network_id is required")
        return {**info, "network_id": self.core.get_network(str(info["network_id"])).id}

    def _change_gateway(self, w: L3Writes, router: Any,
                        info: dict[str, Any] | None) -> dict[str, Any]:
        """Make the gateway port of ``router`` match ``info`` (None: no gateway); the
        router's columns that change with it."""
        current = next(iter(w.rows("port", device_id=router.id,
                                   device_owner=ROUTER_GATEWAY)), None)
        if info is None:
            if current is not None:
                self._gateway_unused(w, router)
                w.delete_ports([current.id])
            return {"gw_network_id": None}
        net = w.row("network", info["network_id"])
        if net is None:
            raise NotFound(f"Network {info['network_id']} could not be found.")
        if not net.router_external:
            raise _router_bad(f"Network {net.id} is not an external network")
        requested = [dict(ip) for ip in info.get("external_fixed_ips") or []] or None
        if current is not None and current.network_id == net.id:
            if requested is not None:
                w.replace_allocations(current.id, self.core._fixed_ips(w, net, requested,
                                                                       current.id))
        else:
            if current is not None:
                self._gateway_unused(w, router)
                w.delete_ports([current.id])
            port_id = str(uuidlib.uuid4())
            allocs = self.core._fixed_ips(w, net, requested, port_id)
            if not allocs:
                raise _router_bad(f"External network {net.id} has no subnet to give the "
                                  "router's gateway an address")
            w.insert_port(self.core._port_values(net, port_id, {
                "device_id": router.id, "device_owner": ROUTER_GATEWAY}, ""), allocs)
        return {"gw_network_id": net.id, "enable_snat": bool(info.get("enable_snat", True))}

    @staticmethod
    def _gateway_unused(w: L3Writes, router: Any) -> None:
        if w.rows("floatingip", router_id=router.id):
            raise Conflict(f"Gateway cannot be updated for router {router.id}, since a "
                           f"gateway to external network {router.gw_network_id} is "
                           "required by one or more floating IPs.")

    @staticmethod
    def _router_subnets(w: L3Writes, router_id: str) -> tuple[list[Any], set[str]]:
        """The subnets the router reaches (its interfaces' and every subnet of its gateway
        network) and the router's own addresses."""
        ports = w.rows("port", device_id=router_id,
                       device_owner=[ROUTER_INTERFACE, ROUTER_GATEWAY])
        allocs = w.rows("allocation", port_id=[p.id for p in ports])
        subnets = w.rows("subnet", id=[a.subnet_id for a in allocs])
        for p in ports:
            if p.device_owner == ROUTER_GATEWAY:
                known = {s.id for s in subnets}
                subnets += [s for s in w.subnets(p.network_id) if s.id not in known]
        return subnets, {a.ip_address for a in allocs}

    def _check_routes(self, w: L3Writes, router_id: str, routes: Any) -> list[dict[str, str]]:
        """``routes`` checked as Neutron's extraroute does. Raises :class:`Invalid`."""
        if not isinstance(routes, list):
            raise Invalid("routes must be a list of {destination, nexthop}")
        subnets, own = self._router_subnets(w, router_id)
        cidrs = [ipaddress.ip_network(s.cidr) for s in subnets]
        out = []
        for r in routes:
            if not isinstance(r, dict) or "destination" not in r or "nexthop" not in r:
                raise Invalid("routes entries need destination and nexthop")
            dest = ipam.parse_cidr(r["destination"], "routes/destination")
            hop = ipam.parse_ip(r["nexthop"], "routes/nexthop")
            shown = [{"destination": str(x.get("destination")), "nexthop": str(x.get("nexthop"))}
                     for x in routes]
            if not any(hop in c for c in cidrs):
                raise Invalid(f"Invalid format for routes: {shown}, the nexthop is not "
                              "connected with router")
            if str(hop) in own:
                raise Invalid(f"Invalid format for routes: {shown}, the nexthop is used by "
                              "router")
            out.append({"destination": str(dest), "nexthop": str(hop)})
        return out

    # ---------------------------------------------------------------- interfaces
    @staticmethod
    def interface_request(body: Any, removal: bool) -> tuple[str | None, str | None]:
        """The ``(port_id, subnet_id)`` of an add (``removal`` False) or remove interface
        request. Raises :class:`Invalid` for neither (or, to add, both)."""
        if not isinstance(body, dict):
            raise _router_bad("the body must be an object {\"subnet_id\": ...} or "
                              "{\"port_id\": ...}")
        _unknown(body, {"subnet_id", "port_id"}, "router interface")
        port_id, subnet_id = body.get("port_id"), body.get("subnet_id")
        if not port_id and not subnet_id:
            raise _router_bad("Either subnet_id or port_id must be specified")
        if port_id and subnet_id and not removal:
            raise _router_bad("Cannot specify both subnet-id and port-id")
        return (str(port_id) if port_id else None), (str(subnet_id) if subnet_id else None)

    @staticmethod
    def _interface_info(router: Router, port: Any, subnet_ids: list[str]) -> dict[str, Any]:
        return {"id": router.id, "tenant_id": port.project_id, "project_id": port.project_id,
                "port_id": port.id, "network_id": port.network_id,
                "subnet_id": subnet_ids[0] if subnet_ids else None, "subnet_ids": subnet_ids}

    def _check_new_subnets(self, w: L3Writes, router_id: str, new: list[Any]) -> None:
        """Refuse a subnet the router is on already or one overlapping its subnets."""
        subnets, _ = self._router_subnets(w, router_id)
        for sub in new:
            for other in subnets:
                if other.id == sub.id:
                    raise _router_bad(f"Router already has a port on subnet {sub.id}")
                if ipaddress.ip_network(other.cidr).overlaps(ipaddress.ip_network(sub.cidr)):
                    raise _router_bad(f"Cidr {sub.cidr} of subnet {sub.id} overlaps with "
                                      f"cidr {other.cidr} of subnet {other.id}")

    def add_router_interface(self, ident: str, body: dict[str, Any]) -> dict[str, Any]:
        """Attach the router to a subnet (a new port holding the subnet's gateway_ip) or
        to a port (one without ``device_id``, with fixed IPs). Returns Neutron's interface
        info ``{"id", "tenant_id", "project_id", "port_id", "network_id", "subnet_id",
        "subnet_ids"}``. Raises :class:`Invalid` (no gateway_ip, a subnet already on the
        router or overlapping one of its subnets), :class:`NotFound`, :class:`Conflict`
        (the port is in use by a device); a driver's error."""
        port_id, subnet_id = self.interface_request(body, removal=False)
        router = self.get_router(ident)
        if subnet_id is not None:
            sub = self.core.get_subnet(subnet_id)
            if not sub.gateway_ip:
                raise _router_bad("Subnet for router interface must have a gateway IP")
            net = self.core.get_network(sub.network_id)
            new_id = str(uuidlib.uuid4())

            def by_subnet(w: L3Writes) -> dict[str, Any]:
                self._check_new_subnets(w, router.id, [sub])
                allocs = self.core._fixed_ips(w, net, [{"subnet_id": sub.id,
                                                        "ip_address": sub.gateway_ip}],
                                              new_id, gateway_ok=True)
                values = self.core._port_values(net, new_id, {
                    "project_id": router.project_id, "device_id": router.id,
                    "device_owner": ROUTER_INTERFACE})
                w.insert_port(values, allocs)
                return self._interface_info(router, w.row("port", new_id), [sub.id])

            info = l3_change(self.db, by_subnet)
        else:
            port = self.core.get_port(str(port_id))

            def by_port(w: L3Writes) -> dict[str, Any]:
                row = w.row("port", port.id)
                if row is None:
                    raise NotFound(f"Port {port.id} could not be found.")
                if row.device_id:
                    raise Conflict(f"Unable to complete operation on port {row.id} for "
                                   f"network {row.network_id}. Port already has an attached "
                                   f"device {row.device_id}.")
                allocs = w.rows("allocation", port_id=row.id)
                if not allocs:
                    raise _router_bad("Router port must have at least one fixed IP")
                subnets = w.rows("subnet", id=[a.subnet_id for a in allocs])
                if len([s for s in subnets if s.ip_version == 4]) > 1:
                    raise _router_bad("Cannot have multiple IPv4 subnets on router port")
                self._check_new_subnets(w, router.id, subnets)
                w.update("port", row.id, {"device_id": router.id,
                                          "device_owner": ROUTER_INTERFACE})
                return self._interface_info(router, row, [s.id for s in subnets])

            info = l3_change(self.db, by_port)
        LOG.info("router %s: interface %s on subnet(s) %s", router.id, info["port_id"],
                 ", ".join(info["subnet_ids"]))
        self.realise([router.id])
        return info

    def remove_router_interface(self, ident: str, body: dict[str, Any]) -> dict[str, Any]:
        """Detach the router from a subnet or port: the interface port is deleted (or, for a
        port on several subnets removed by subnet, loses that subnet's address). Returns
        the interface info as :meth:`add_router_interface`. Raises :class:`NotFound` (no
        such interface), :class:`Invalid` (the port is not on that subnet),
        :class:`Conflict` (floating IPs or routes need the interface); a driver's error."""
        port_id, subnet_id = self.interface_request(body, removal=True)
        router = self.get_router(ident)
        if port_id is not None:
            port_id = self.core.get_port(port_id).id
        if subnet_id is not None:
            subnet_id = self.core.get_subnet(subnet_id).id

        def work(w: L3Writes) -> dict[str, Any]:
            ports = w.rows("port", device_id=router.id, device_owner=ROUTER_INTERFACE)
            allocs = w.rows("allocation", port_id=[p.id for p in ports])
            if port_id is not None:
                port = next((p for p in ports if p.id == port_id), None)
                if port is None:
                    raise NotFound(f"Router {router.id} does not have an interface with id "
                                   f"{port_id}")
                if subnet_id and subnet_id not in {a.subnet_id for a in allocs
                                                   if a.port_id == port.id}:
                    raise Invalid(f"Subnet on port {port_id} does not match the requested "
                                  f"subnet {subnet_id}.")
            else:
                alloc = next((a for a in allocs if a.subnet_id == subnet_id), None)
                if alloc is None:
                    raise NotFound(f"Router {router.id} has no interface on subnet "
                                   f"{subnet_id}")
                port = next(p for p in ports if p.id == alloc.port_id)
            on = [a.subnet_id for a in allocs if a.port_id == port.id]
            gone = [subnet_id] if port_id is None and len(on) > 1 else on
            for sub in w.rows("subnet", id=gone):
                self._check_interface_unused(w, router, sub)
            if gone == on:
                w.delete_ports([port.id])
            else:
                w.delete("allocation", port_id=port.id, subnet_id=subnet_id)
            return self._interface_info(router, port, [str(s) for s in gone])

        info = l3_change(self.db, work)
        LOG.info("router %s: interface %s removed", router.id, info["port_id"])
        self.realise([router.id])
        return info

    @staticmethod
    def _check_interface_unused(w: L3Writes, router: Router, sub: Any) -> None:
        cidr = ipaddress.ip_network(sub.cidr)
        on_subnet = {a.port_id for a in w.rows("allocation", subnet_id=sub.id)}
        for fip in w.rows("floatingip", router_id=router.id):
            if fip.port_id in on_subnet and ipaddress.ip_address(fip.fixed_ip_address) in cidr:
                raise Conflict(f"Router interface for subnet {sub.id} on router {router.id} "
                               "cannot be deleted, as it is required by one or more "
                               "floating IPs.")
        row = w.row("router", router.id)
        if any(ipaddress.ip_address(r["nexthop"]) in cidr for r in row.routes or []):
            raise Conflict(f"Router interface for subnet {sub.id} on router {router.id} "
                           "cannot be deleted, as it is required by one or more routes.")

    # ================================================================ floating IPs
    def create_floatingip(self, body: dict[str, Any]) -> FloatingIPRow:
        """Allocate an address on external network ``floating_network_id`` (optionally
        ``subnet_id``, ``floating_ip_address``) and, with ``port_id``, associate it.
        Raises :class:`Invalid` (a network that is not external or has no IPv4 subnet; see
        :meth:`update_floatingip` for the association), :class:`NotFound`,
        :class:`Conflict` (the address is taken, the pool is exhausted); a driver's
        error."""
        _unknown(body, FIP_FIELDS, "floatingip")
        if not body.get("floating_network_id"):
            raise Invalid("floating_network_id is required")
        net = self.core.get_network(str(body["floating_network_id"]))
        assoc = self._association_request(body, None)
        fip_id, port_id = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        wanted = {k: str(body[v]) for k, v in (("subnet_id", "subnet_id"),
                                               ("ip_address", "floating_ip_address"))
                  if body.get(v)}

        def work(w: L3Writes) -> str | None:
            row = w.row("network", net.id)
            if row is None or not row.router_external:
                raise _fip_bad(f"Network {net.id} is not a valid external network")
            v4 = [s for s in w.subnets(net.id) if s.ip_version == 4]
            if not v4:
                raise _fip_bad(f"Network {net.id} does not contain any IPv4 subnet")
            allocs = self.core._fixed_ips(w, row, [wanted or {"subnet_id": v4[0].id}],
                                          port_id)
            w.insert_port(self.core._port_values(  # Neutron: no project, never shown to one
                row, port_id, {"device_id": fip_id, "device_owner": FLOATINGIP_OWNER}, ""),
                allocs)
            values = {"id": fip_id, "project_id": _project(body),
                      "floating_network_id": net.id,
                      "floating_ip_address": allocs[0]["ip_address"],
                      "floating_port_id": port_id,
                      "description": str(body.get("description") or "")}
            values.update(self._associate(w, values, assoc))
            w.insert("floatingip", values)
            return values["router_id"]

        router_id = l3_change(self.db, work)
        self.realise([router_id])
        return self.get_floatingip(fip_id)

    def update_floatingip(self, ident: str, body: dict[str, Any]) -> FloatingIPRow:
        """Associate (``port_id``, optionally ``fixed_ip_address``), disassociate
        (``port_id`` null) or describe a floating IP. The port's fixed IP must be on a
        subnet with an interface of a router whose gateway is on the floating network.
        Raises :class:`Invalid` (a port owned by the network, no such fixed IP, several
        IPv4 addresses to choose from), :class:`NotFound` (no such port; no router reaches
        the external network: Neutron's ExternalGatewayForFloatingIPNotFound),
        :class:`Conflict` (that fixed IP has a floating IP already); a driver's error."""
        _unknown(body, FIP_UPDATE_FIELDS, "floatingip update")
        fip = self.get_floatingip(ident)
        assoc = self._association_request(body, fip)

        def work(w: L3Writes) -> list[str | None]:
            row = w.row("floatingip", fip.id)
            if row is None:
                raise NotFound(f"Floating IP {fip.id} could not be found")
            values: dict[str, Any] = {k: body[k] for k in ("description",) if k in body}
            if assoc is not None:
                values.update(self._associate(w, row._asdict(), assoc))
            if values:
                w.update("floatingip", row.id, values)
            return [row.router_id, values.get("router_id")]

        routers = l3_change(self.db, work)
        self.realise(routers)
        return self.get_floatingip(fip.id)

    def delete_floatingip(self, ident: str) -> None:
        """Release a floating IP and its address. Raises :class:`NotFound`; a driver's
        error."""
        fip = self.get_floatingip(ident)

        def work(w: L3Writes) -> None:
            w.delete("floatingip", id=fip.id)
            w.delete_ports([fip.floating_port_id])

        l3_change(self.db, work)
        self.realise([fip.router_id])

    def _association_request(self, body: dict[str, Any],
                             fip: FloatingIPRow | None) -> dict[str, Any] | None:
        """``{"port_id", "fixed_ip_address"}`` the floating IP is to have (the port
        resolved to its id; ``port_id`` None: none), or None when ``body`` leaves the
        association as it is. Raises :class:`Invalid`, :class:`NotFound`."""
        if "port_id" not in body and "fixed_ip_address" not in body:
            return None
        port = body.get("port_id", fip.port_id if fip else None)
        fixed = body.get("fixed_ip_address")
        if fixed and not port:
            raise _fip_bad("fixed_ip_address cannot be specified without a port_id")
        return {"port_id": self.core.get_port(str(port)).id if port else None,
                "fixed_ip_address": fixed}

    def _associate(self, w: L3Writes, fip: dict[str, Any],
                   assoc: dict[str, Any] | None) -> dict[str, Any]:
        """The columns of floating IP ``fip`` for association ``assoc`` (see
        :meth:`_association_request`): port, fixed IP, router and status."""
        if assoc is None or assoc["port_id"] is None:
            return {"port_id": None, "fixed_ip_address": None, "router_id": None,
                    "status": "DOWN"}
        port = w.row("port", assoc["port_id"])
        if port is None:
            raise NotFound(f"Port {assoc['port_id']} could not be found.")
        if port.device_owner.startswith("network:"):
            raise _fip_bad(f"Port {port.id} is unable to be assigned a floating IP")
        allocs = w.rows("allocation", port_id=port.id)
        if assoc["fixed_ip_address"]:
            addr = ipam.parse_ip(assoc["fixed_ip_address"], "fixed_ip_address")
            if addr.version != 4:
                raise _fip_bad(f"Cannot process floating IP association with {addr}, since "
                               "that is not an IPv4 address")
            chosen = [a for a in allocs if a.ip_address == str(addr)]
            if not chosen:
                raise _fip_bad(f"Port {port.id} does not have fixed ip {addr}")
        else:
            chosen = [a for a in allocs if ipaddress.ip_address(a.ip_address).version == 4]
            if not chosen:
                raise _fip_bad(f"Cannot add floating IP to port {port.id} that has no fixed "
                               "IPv4 addresses")
            if len(chosen) > 1:
                raise _fip_bad(f"Port {port.id} has multiple fixed IPv4 addresses.  Must "
                               "provide a specific IPv4 address when assigning a floating IP")
        alloc = chosen[0]
        net_id = fip["floating_network_id"]
        router_id = self._router_for(w, port, alloc.subnet_id, net_id)
        if any(f.id != fip["id"] for f in w.rows("floatingip", port_id=port.id,
                                                  fixed_ip_address=alloc.ip_address,
                                                  floating_network_id=net_id)):
            raise Conflict(f"Cannot associate floating IP {fip['floating_ip_address']} "
                           f"({fip['id']}) with port {port.id} using fixed IP "
                           f"{alloc.ip_address}, as that fixed IP already has a floating IP "
                           f"on external network {net_id}.")
        return {"port_id": port.id, "fixed_ip_address": alloc.ip_address,
                "router_id": router_id, "status": "ACTIVE"}

    @staticmethod
    def _router_for(w: L3Writes, port: Any, subnet_id: str, external_net: str) -> str:
        """The router with an interface on ``subnet_id`` and its gateway on
        ``external_net`` (the one whose interface is the subnet's gateway first)."""
        interfaces = w.rows("port", network_id=port.network_id,
                            device_owner=ROUTER_INTERFACE)
        on_subnet = {a.port_id: a.ip_address for a in w.rows(
            "allocation", port_id=[p.id for p in interfaces], subnet_id=subnet_id)}
        routers = [p.device_id for p in interfaces if p.id in on_subnet]
        gateways = {p.device_id for p in w.rows("port", device_id=routers,
                                                device_owner=ROUTER_GATEWAY,
                                                network_id=external_net)}
        reaching = [p for p in interfaces if p.id in on_subnet and p.device_id in gateways]
        if not reaching:
            raise NotFound(f"External network {external_net} is not reachable from subnet "
                           f"{subnet_id}. Therefore, cannot associate Port {port.id} with a "
                           "Floating IP.")
        sub = w.row("subnet", subnet_id)
        best = next((p for p in reaching if on_subnet[p.id] == sub.gateway_ip), reaching[0])
        return str(best.device_id)

    # ================================================================ core hooks
    def check_port_deletable(self, port: NetworkPort) -> None:
        """Refuse the deletion through the port API of a router's or floating IP's port
        (Neutron's ServicePortInUse, 409) while its router or floating IP exists."""
        if port.device_owner not in L3_OWNERS:
            return
        model = FloatingIPRow if port.device_owner == FLOATINGIP_OWNER else Router
        if db_api.rows_where(self.db, model, id=port.device_id):
            raise Conflict(f"Port {port.id} cannot be deleted directly via the port API: "
                           f"has device owner {port.device_owner}.")

    def check_external_unset(self, network_id: str) -> None:
        """Refuse making network ``network_id`` non-external while routers' gateways or
        floating IPs are on it (Neutron's ExternalNetworkInUse, 409)."""
        if db_api.rows_where(self.db, NetworkPort, network_id=network_id,
                             device_owner=[ROUTER_GATEWAY, FLOATINGIP_OWNER]):
            raise Conflict(f"External network {network_id} cannot be updated to be made "
                           "non-external, since it has existing gateway ports.")
