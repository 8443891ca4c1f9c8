"""The networking HTTP API: OpenStack Networking v2.0 shapes under ``/v2.0``, the node VIF
endpoints of the Bare Metal API (``/v1/nodes/{node}/vifs``) and metalplane's switch
registry (``/v1/switches``, an extension: neither Ironic nor Neutron has one).

Bodies are wrapped as Neutron's (``{"network": {...}}``, lists as ``{"networks": [...]}``);
errors under ``/v2.0`` answer ``{"NeutronError": {"type", "message", "detail"}}``.
Routers and floating IPs (``/v2.0/routers``, ``/v2.0/floatingips``) are served only while a
mechanism driver realises them (:attr:`NetworkPlugin.l3_enabled`); otherwise they answer
404 and their extensions are not listed, as Neutron without an L3 plugin.
Source: Networking API v2.0 reference (networks, subnets, ports, port binding extension,
provider extension, external networks, security groups, layer-3 networking: routers and
floating IPs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import Body, Depends, FastAPI, Request, Response

from metalplane.api import network_schemas as schemas
from metalplane.api import policy
from metalplane.api.schemas_common import printable, to_bool
from metalplane.api.views import timestamp as _ts
from metalplane.common.exceptions import Invalid, NotFound
from metalplane.conductor.manager import Conductor
from metalplane.db import api as db_api
from metalplane.db.models import (
    FloatingIP,
    Network,
    NetworkPort,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)

__all__ = ["EXTENSIONS", "L3_EXTENSIONS", "L3_RESOURCES", "RESOURCES",
           "neutron_versions_document", "register"]

# The collections served under /v2.0, as Neutron lists them at GET /v2.0; the L3 ones
# while L3 is served.
RESOURCES = (("network", "networks"), ("subnet", "subnets"), ("port", "ports"),
             ("security_group", "security-groups"),
             ("security_group_rule", "security-group-rules"))
L3_RESOURCES = (("router", "routers"), ("floatingip", "floatingips"))

_UPDATED = "2026-12-01T00:00:00-00:00"
# The extensions this API really implements (alias, name, description). Left out on
# purpose: port-security (no port_security_enabled), multi-provider (one segment a
# network), sorting, pagination, filter-validation, tag, qos, allowed-address-pairs,
# l3-ha, dvr, router-availability-zone, fip-port-details.
EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("provider", "Provider Network",
     "provider:network_type, provider:physical_network and provider:segmentation_id on "
     "networks (flat, vlan, vxlan), set at creation"),
    ("binding", "Port Binding",
     "binding:host_id, binding:vnic_type, binding:profile (local_link_information), "
     "binding:vif_type and binding:vif_details on ports"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options",
     "extra_dhcp_opts on ports: {opt_name, opt_value, ip_version}"),
    ("security-group", "security-group",
     "security groups and their rules, and security_groups on ports (stored and validated; "
     "not enforced on bare-metal ports)"),
    ("stateful-security-group", "Stateful security group",
     "the stateful attribute of security groups, set at creation"),
    ("standard-attr-description", "standard-attr-description",
     "description on networks, subnets, ports, security groups and rules"),
    ("standard-attr-timestamp", "Resource timestamps",
     "created_at and updated_at on networks, subnets, ports, security groups and rules "
     "(no changed_since filter)"),
    ("project-id", "project_id field enabled",
     "project_id alongside tenant_id on every resource, accepted at creation"),
    ("net-mtu", "Network MTU", "mtu on networks"),
    ("net-mtu-writable", "Network MTU (writable)", "mtu set at creation and by update"),
    ("external-net", "Neutron external network",
     "router:external on networks, set by the admin; external networks are visible to all"),
)
# Listed while L3 is served (neutron_lib/api/definitions: l3, l3_ext_gw_mode, extraroute).
L3_EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("router", "Neutron L3 Router",
     "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to "
     "external networks via a NAT gateway."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode",
     "Extension of the router abstraction for specifying whether SNAT should occur on the "
     "external gateway"),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
)


def neutron_versions_document(base_url: str) -> dict[str, Any]:
    """Neutron's version document, ``GET /`` of the networking endpoint:
    ``{"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"href":
    "<base_url>/v2.0/", "rel": "self"}]}]}``. ``base_url`` is the listener's root URL
    (a trailing slash is ignored). Source: Networking API v2.0 reference, "List API
    versions"."""
    base = base_url.rstrip("/")
    return {"versions": [{"id": "v2.0", "status": "CURRENT",
                          "links": [{"href": f"{base}/v2.0/", "rel": "self"}]}]}


def _extension_view(alias: str, name: str, description: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description,
            "updated": _UPDATED, "links": []}


# Query-string filters read as booleans (Neutron: convert_to_boolean), by collection.
_BOOL_FILTERS = {"networks": ("shared", "admin_state_up", "router:external"),
                 "subnets": ("enable_dhcp",), "ports": ("admin_state_up",),
                 "routers": ("admin_state_up",)}


def _pick(doc: dict[str, Any], request: Request) -> dict[str, Any]:
    """``doc`` limited to the attributes of ``?fields=`` (repeatable, or comma-separated),
    if any: Neutron's ``resource_fields``."""
    wanted = {f.strip() for v in request.query_params.getlist("fields") for f in v.split(",")
              if f.strip()}
    return {k: v for k, v in doc.items() if k in wanted} if wanted else doc


def _project_of(values: dict[str, Any]) -> str:
    return str(values.get("project_id") or values.get("tenant_id") or "")


def register(app: FastAPI, conductor: Conductor) -> None:
    """Add the networking routes to ``app``."""
    plugin = conductor.network

    # ---------------------------------------------------------------- views
    def network_view(n: Network, p: policy.Principal) -> dict[str, Any]:
        seg = plugin.segment(n.id)
        return policy.strip_attributes(p, "get_network:provider", {
            "id": n.id, "name": n.name, "project_id": n.project_id, "tenant_id": n.project_id,
            "shared": n.shared, "admin_state_up": n.admin_state_up, "status": n.status,
            "mtu": n.mtu, "description": n.description, "router:external": n.router_external,
            "subnets": [s.id for s in plugin.list_subnets({"network_id": n.id})],
            "provider:network_type": seg.network_type if seg else None,
            "provider:physical_network": seg.physical_network if seg else None,
            "provider:segmentation_id": seg.segmentation_id if seg else None,
            "created_at": _ts(n.created_at), "updated_at": _ts(n.updated_at),
        }, policy.NETWORK_PROVIDER_KEYS)

    def subnet_view(s: Subnet) -> dict[str, Any]:
        return {
            "id": s.id, "name": s.name, "network_id": s.network_id, "project_id": s.project_id,
            "tenant_id": s.project_id, "cidr": s.cidr, "ip_version": s.ip_version,
            "gateway_ip": s.gateway_ip, "allocation_pools": s.allocation_pools,
            "dns_nameservers": s.dns_nameservers, "host_routes": s.host_routes,
            "enable_dhcp": s.enable_dhcp, "description": s.description,
            "created_at": _ts(s.created_at), "updated_at": _ts(s.updated_at),
        }

    def port_view(x: NetworkPort, who: policy.Principal) -> dict[str, Any]:
        return policy.strip_attributes(who, "get_port:binding", {
            "id": x.id, "name": x.name, "network_id": x.network_id, "project_id": x.project_id,
            "tenant_id": x.project_id, "mac_address": x.mac_address,
            "fixed_ips": plugin.fixed_ips(x.id), "admin_state_up": x.admin_state_up,
            "status": x.status, "device_id": x.device_id, "device_owner": x.device_owner,
            "binding:host_id": x.binding_host_id, "binding:vnic_type": x.binding_vnic_type,
            "binding:profile": x.binding_profile, "binding:vif_type": x.binding_vif_type,
            "binding:vif_details": x.binding_vif_details,
            "extra_dhcp_opts": x.extra_dhcp_opts, "security_groups": x.security_groups,
            "description": x.description, "created_at": _ts(x.created_at),
            "updated_at": _ts(x.updated_at),
        }, policy.PORT_BINDING_KEYS)

    def rule_view(r: SecurityGroupRule) -> dict[str, Any]:
        return {
            "id": r.id, "security_group_id": r.security_group_id, "direction": r.direction,
            "ethertype": r.ethertype, "protocol": r.protocol,
            "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
            "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
            "project_id": r.project_id, "tenant_id": r.project_id,
            "description": r.description,
            "created_at": _ts(r.created_at), "updated_at": _ts(r.updated_at),
        }

    def sg_view(g: SecurityGroup) -> dict[str, Any]:
        return {"id": g.id, "name": g.name, "description": g.description,
                "project_id": g.project_id, "tenant_id": g.project_id, "stateful": g.stateful,
                "security_group_rules": [rule_view(r) for r in plugin.sg_rules(g.id)],
                "created_at": _ts(g.created_at), "updated_at": _ts(g.updated_at)}

    def filters(request: Request, collection: str) -> dict[str, Any]:
        """The query string as the plugin's filters: ``tenant_id`` read as
        ``project_id``; the boolean attributes through ``convert_to_boolean``. Raises
        :class:`Invalid` for a boolean filter that is not one."""
        out: dict[str, Any] = {}
        booleans = _BOOL_FILTERS.get(collection, ())
        for k, v in request.query_params.items():
            value: Any = v
            if k in booleans:
                try:
                    value = to_bool(v)
                except ValueError as exc:
                    raise Invalid(f"Invalid input for {k}: {exc}") from None
            out["project_id" if k == "tenant_id" else k] = value
        return out

    # ---------------------------------------------------------------- policy
    who = policy.principal

    def networks_by_id() -> Callable[[], dict[str, Network]]:
        """The networks by id, read once when first asked for (a list's filter for a
        project user needs them; the system's does not)."""
        return functools.cache(lambda: {n.id: n for n in plugin.list_networks({})})

    def net_target(net: Network) -> policy.Target:
        return policy.network_target(net)

    def network(request: Request, ident: str, rule: str) -> Network:
        """Network ``ident`` if ``rule`` allows the caller on it: 404 if the caller may not
        see it (as if it did not exist), 403 if it may but ``rule`` forbids. So for the
        other resources."""
        net = plugin.get_network(ident)
        policy.require(who(request), rule, net_target(net),
                       hidden=f"Network {ident} could not be found.")
        return net

    def on_network(request: Request, row: Any, what: str, ident: str, rule: str) -> None:
        """``rule`` on ``row``, a subnet or port, whose network is its parent."""
        policy.require(who(request), rule,
                       policy.child_target(row, plugin.get_network(row.network_id)),
                       hidden=f"{what} {ident} could not be found.")

    def subnet(request: Request, ident: str, rule: str) -> Subnet:
        row = plugin.get_subnet(ident)
        on_network(request, row, "Subnet", ident, rule)
        return row

    def port(request: Request, ident: str, rule: str) -> NetworkPort:
        row = plugin.get_port(ident)
        on_network(request, row, "Port", ident, rule)
        return row

    def security_group(request: Request, ident: str, rule: str) -> SecurityGroup:
        row = plugin.get_security_group(ident)
        policy.require(who(request), rule, policy.child_target(row, None),
                       hidden=f"Security group {ident} could not be found.")
        return row

    def sg_rule(request: Request, ident: str, rule: str) -> SecurityGroupRule:
        row = plugin.get_security_group_rule(ident)
        policy.require(who(request), rule, policy.child_target(
            row, plugin.get_security_group(row.security_group_id)),
            hidden=f"Security group rule {ident} could not be found.")
        return row

    def creating(request: Request, body: dict[str, Any], rule: str,
                 parent: policy.Target | None = None) -> policy.Principal:
        """Check the creation of ``body`` (in its project_id or tenant_id; a project user's
        own by default, set in ``body``) by the caller."""
        p = who(request)
        policy.require_creation(p, rule, body, "project_id", "tenant_id", parent)
        return p

    # ---------------------------------------------------------------- discovery
    def served(common: tuple[Any, ...], l3: tuple[Any, ...]) -> tuple[Any, ...]:
        return common + l3 if plugin.l3_enabled else common

    def resources_doc(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        version = neutron_versions_document(base)["versions"][0]
        return {"resources": [{"name": name, "collection": coll,
                               "links": [{"href": f"{base}/v2.0/{coll}", "rel": "self"}]}
                              for name, coll in served(RESOURCES, L3_RESOURCES)],
                "version": version}

    @app.get("/v2.0", summary="Networking API v2.0 resources", tags=["networking"])
    def v2_root(request: Request) -> dict[str, Any]:
        """``{"resources": [{"name", "collection", "links"}], "version": {...}}``:
        Neutron's ``GET /v2.0`` (the resources), plus the version object of
        :func:`neutron_versions_document` under ``version``. Neutron sends no ``version``
        there; keystoneauth's discovery (which openstacksdk runs on an endpoint override
        such as ``http://host:port/v2.0``) reads a versioned endpoint's document from
        that key and otherwise fails, as metalplane's ``/`` is the Bare Metal API's."""
        return resources_doc(request)

    @app.get("/v2.0/", include_in_schema=False)
    def v2_root_slash(request: Request) -> dict[str, Any]:
        return resources_doc(request)

    @app.get("/v2.0/extensions", summary="List extensions", tags=["networking"])
    def list_extensions() -> dict[str, Any]:
        """``{"extensions": [{"alias", "name", "description", "updated", "links"}]}``:
        the extensions implemented here (Networking API v2.0 reference, Extensions); the L3
        ones while a mechanism driver realises routers."""
        return {"extensions": [_extension_view(*e)
                               for e in served(EXTENSIONS, L3_EXTENSIONS)]}

    @app.get("/v2.0/extensions/{alias}", summary="Show an extension", tags=["networking"])
    def show_extension(alias: str) -> dict[str, Any]:
        """``{"extension": {...}}``. Raises :class:`NotFound` (404) for an alias not
        implemented here."""
        for ext in served(EXTENSIONS, L3_EXTENSIONS):
            if ext[0] == alias:
                return {"extension": _extension_view(*ext)}
        raise NotFound(f"Extension with alias {printable(alias)} does not exist")

    # ---------------------------------------------------------------- networks
    @app.get("/v2.0/networks", summary="List networks", tags=["networking"])
    def list_networks(request: Request) -> dict[str, Any]:
        p = who(request)
        found = policy.visible(p, "get_network", plugin.list_networks(
            filters(request, "networks")), net_target)
        return {"networks": [network_view(n, p) for n in found]}

    @app.post("/v2.0/networks", status_code=201, summary="Create a network",
              tags=["networking"])
    def create_network(request: Request, body: schemas.NetworkCreateRequest) -> dict[str, Any]:
        values = schemas.plugin_body(body)
        p = creating(request, values, "create_network")
        if values.get("shared"):
            policy.require(p, "create_network:shared")
        if values.get("segments") or any(k in values for k in policy.NETWORK_PROVIDER_KEYS):
            policy.require(p, "create_network:provider")
        if values.get("router:external"):
            policy.require(p, "create_network:router:external")
        return {"network": network_view(plugin.create_network(values), p)}

    @app.get("/v2.0/networks/{ident}", tags=["networking"])
    def show_network(ident: str, request: Request) -> dict[str, Any]:
        return {"network": network_view(network(request, ident, "get_network"),
                                        who(request))}

    @app.put("/v2.0/networks/{ident}", tags=["networking"])
    def update_network(ident: str, request: Request,
                       body: schemas.NetworkUpdateRequest) -> dict[str, Any]:
        values = schemas.plugin_body(body)
        net = network(request, ident, "update_network")
        for key in ("shared", "router:external"):
            if key in values:
                policy.require(who(request), f"update_network:{key}", net_target(net))
        return {"network": network_view(plugin.update_network(net.id, values),
                                        who(request))}

    @app.delete("/v2.0/networks/{ident}", status_code=204, tags=["networking"])
    def delete_network(ident: str, request: Request) -> Response:
        plugin.delete_network(network(request, ident, "delete_network").id)
        return Response(status_code=204)

    # ---------------------------------------------------------------- subnets
    @app.get("/v2.0/subnets", summary="List subnets", tags=["networking"])
    def list_subnets(request: Request) -> dict[str, Any]:
        nets = networks_by_id()
        found = policy.visible(who(request), "get_subnet", plugin.list_subnets(
            filters(request, "subnets")), lambda s: policy.child_target(
                s, nets().get(s.network_id)))
        return {"subnets": [subnet_view(s) for s in found]}

    @app.post("/v2.0/subnets", status_code=201, summary="Create a subnet", tags=["networking"])
    def create_subnet(request: Request, body: schemas.SubnetCreateRequest) -> dict[str, Any]:
        values = schemas.plugin_body(body)
        if values.get("network_id"):  # else the plugin refuses it (400)
            net = network(request, str(values["network_id"]), "get_network")
            creating(request, values, "create_subnet", net_target(net))
        return {"subnet": subnet_view(plugin.create_subnet(values))}

    @app.get("/v2.0/subnets/{ident}", tags=["networking"])
    def show_subnet(ident: str, request: Request) -> dict[str, Any]:
        return {"subnet": subnet_view(subnet(request, ident, "get_subnet"))}

    @app.put("/v2.0/subnets/{ident}", summary="Update a subnet", tags=["networking"])
    def update_subnet(ident: str, request: Request,
                      body: schemas.SubnetUpdateRequest) -> dict[str, Any]:
        """name, description, gateway_ip, allocation_pools, dns_nameservers, host_routes,
        enable_dhcp. 400 for cidr, network_id, ip_version (read-only) or a gateway/pool
        outside the CIDR; 409 for a gateway a port holds."""
        row = subnet(request, ident, "update_subnet")
        return {"subnet": subnet_view(plugin.update_subnet(row.id, schemas.plugin_body(body)))}

    @app.delete("/v2.0/subnets/{ident}", status_code=204, tags=["networking"])
    def delete_subnet(ident: str, request: Request) -> Response:
        plugin.delete_subnet(subnet(request, ident, "delete_subnet").id)
        return Response(status_code=204)

    # ---------------------------------------------------------------- ports
    @app.get("/v2.0/ports", summary="List ports", tags=["networking"])
    def list_ports(request: Request) -> dict[str, Any]:
        p, nets = who(request), networks_by_id()
        found = policy.visible(p, "get_port", plugin.list_ports(filters(request, "ports")),
                               lambda x: policy.child_target(x, nets().get(x.network_id)))
        return {"ports": [port_view(x, p) for x in found]}

    def _binds(values: dict[str, Any]) -> bool:
        return any(values.get(k) for k in ("binding:host_id", "binding:profile"))

    @app.post("/v2.0/ports", status_code=201, summary="Create a port", tags=["networking"])
    def create_port(request: Request, body: schemas.PortCreateRequest) -> dict[str, Any]:
        values = schemas.plugin_body(body)
        p = who(request)
        if values.get("network_id"):  # else the plugin refuses it (400)
            net = network(request, str(values["network_id"]), "get_network")
            creating(request, values, "create_port", net_target(net))
        if _binds(values):
            policy.require(p, "create_port:binding")
        return {"port": port_view(plugin.create_port(values), p)}

    @app.get("/v2.0/ports/{ident}", tags=["networking"])
    def show_port(ident: str, request: Request) -> dict[str, Any]:
        return {"port": port_view(port(request, ident, "get_port"), who(request))}

    @app.put("/v2.0/ports/{ident}", tags=["networking"])
    def update_port(ident: str, request: Request,
                    body: schemas.PortUpdateRequest) -> dict[str, Any]:
        values = schemas.plugin_body(body)
        row = port(request, ident, "update_port")
        if any(k in values for k in ("binding:host_id", "binding:profile")):
            policy.require(who(request), "update_port:binding")
        return {"port": port_view(plugin.update_port(row.id, values), who(request))}

    @app.delete("/v2.0/ports/{ident}", status_code=204, tags=["networking"])
    def delete_port(ident: str, request: Request) -> Response:
        plugin.delete_port(port(request, ident, "delete_port").id)
        return Response(status_code=204)

    # ---------------------------------------------------------------- security groups
    @app.get("/v2.0/security-groups", tags=["networking"])
    def list_sgs(request: Request) -> dict[str, Any]:
        found = policy.visible(who(request), "get_security_group",
                               plugin.list_security_groups(),
                               lambda g: policy.child_target(g, None))
        return {"security_groups": [sg_view(g) for g in found]}

    @app.post("/v2.0/security-groups", status_code=201, tags=["networking"])
    def create_sg(request: Request,
                  body: schemas.SecurityGroupCreateRequest) -> dict[str, Any]:
        values = schemas.plugin_body(body)
        creating(request, values, "create_security_group")
        return {"security_group": sg_view(plugin.create_security_group(values))}

    @app.get("/v2.0/security-groups/{ident}", tags=["networking"])
    def show_sg(ident: str, request: Request) -> dict[str, Any]:
        return {"security_group": sg_view(security_group(request, ident,
                                                         "get_security_group"))}

    @app.put("/v2.0/security-groups/{ident}", tags=["networking"])
    def update_sg(ident: str, request: Request,
                  body: schemas.SecurityGroupUpdateRequest) -> dict[str, Any]:
        """name and description; 400 for the others (read-only or unknown)."""
        row = security_group(request, ident, "update_security_group")
        return {"security_group": sg_view(plugin.update_security_group(
            row.id, schemas.plugin_body(body)))}

    @app.delete("/v2.0/security-groups/{ident}", status_code=204, tags=["networking"])
    def delete_sg(ident: str, request: Request) -> Response:
        plugin.delete_security_group(security_group(request, ident,
                                                    "delete_security_group").id)
        return Response(status_code=204)

    @app.get("/v2.0/security-group-rules", tags=["networking"])
    def list_rules(request: Request) -> dict[str, Any]:
        groups = functools.cache(lambda: {g.id: g for g in plugin.list_security_groups()})
        found = policy.visible(who(request), "get_security_group_rule", plugin.sg_rules(),
                               lambda r: policy.child_target(
                                   r, groups().get(r.security_group_id)))
        return {"security_group_rules": [rule_view(r) for r in found]}

    @app.post("/v2.0/security-group-rules", status_code=201, tags=["networking"])
    def create_rule(request: Request,
                    body: schemas.SecurityGroupRuleCreateRequest) -> dict[str, Any]:
        values = schemas.plugin_body(body)
        if values.get("security_group_id"):  # else the plugin refuses it
            group = security_group(request, str(values["security_group_id"]),
                                   "get_security_group")
            creating(request, values, "create_security_group_rule",
                     policy.child_target(group, None))
        return {"security_group_rule": rule_view(plugin.create_security_group_rule(values))}

    @app.get("/v2.0/security-group-rules/{ident}", tags=["networking"])
    def show_rule(ident: str, request: Request) -> dict[str, Any]:
        return {"security_group_rule": rule_view(sg_rule(request, ident,
                                                         "get_security_group_rule"))}

    @app.delete("/v2.0/security-group-rules/{ident}", status_code=204, tags=["networking"])
    def delete_rule(ident: str, request: Request) -> Response:
        plugin.delete_security_group_rule(sg_rule(request, ident,
                                                  "delete_security_group_rule").id)
        return Response(status_code=204)

    # ---------------------------------------------------------------- routers
    l3 = plugin.l3

    async def l3_served() -> None:
        """404 for the L3 paths unless a mechanism driver realises routers (Neutron
        without an L3 plugin has no such resources)."""
        if not plugin.l3_enabled:
            raise NotFound("The resource could not be found.")

    L3 = [Depends(l3_served)]

    def router_view(r: Router, gateway_ips: dict[str, list[dict[str, str]]]
                    ) -> dict[str, Any]:
        gateway = None if r.gw_network_id is None else {
            "network_id": r.gw_network_id, "enable_snat": r.enable_snat,
            "external_fixed_ips": gateway_ips.get(r.id, [])}
        return {"id": r.id, "name": r.name, "project_id": r.project_id,
                "tenant_id": r.project_id, "admin_state_up": r.admin_state_up,
                "status": r.status, "description": r.description,
                "external_gateway_info": gateway, "routes": r.routes or [],
                "created_at": _ts(r.created_at), "updated_at": _ts(r.updated_at)}

    def routers_view(rows: list[Router], request: Request) -> list[dict[str, Any]]:
        ips = l3.gateway_ips([r.id for r in rows if r.gw_network_id])
        return [_pick(router_view(r, ips), request) for r in rows]

    def fip_view(f: FloatingIP, request: Request) -> dict[str, Any]:
        return _pick({
            "id": f.id, "project_id": f.project_id, "tenant_id": f.project_id,
            "floating_ip_address": f.floating_ip_address,
            "floating_network_id": f.floating_network_id, "router_id": f.router_id,
            "port_id": f.port_id, "fixed_ip_address": f.fixed_ip_address, "status": f.status,
            "description": f.description, "created_at": _ts(f.created_at),
            "updated_at": _ts(f.updated_at)}, request)

    def router(request: Request, ident: str, rule: str) -> Router:
        row = l3.get_router(ident)
        policy.require(who(request), rule, policy.owner_target(row.project_id),
                       hidden=f"Router {ident} could not be found")
        return row

    def floatingip(request: Request, ident: str, rule: str) -> FloatingIP:
        row = l3.get_floatingip(ident)
        policy.require(who(request), rule, policy.owner_target(row.project_id),
                       hidden=f"Floating IP {ident} could not be found")
        return row

    def gateway_rules(request: Request, values: dict[str, Any], action: str,
                      target: policy.Target) -> None:
        """The gateway's network must be one the caller sees; its SNAT and addresses are
        the admin's to choose."""
        info = values.get("external_gateway_info") or {}
        for key in ("enable_snat", "external_fixed_ips"):
            if key in info:
                policy.require(who(request), f"{action}:external_gateway_info:{key}", target)
        if info.get("network_id"):
            network(request, str(info["network_id"]), "get_network")

    @app.get("/v2.0/routers", summary="List routers", tags=["networking"], dependencies=L3)
    def list_routers(request: Request) -> dict[str, Any]:
        found = policy.visible(who(request), "get_router",
                               l3.list_routers(filters(request, "routers")),
                               lambda r: policy.owner_target(r.project_id))
        return {"routers": routers_view(found, request)}

    @app.post("/v2.0/routers", status_code=201, summary="Create a router",
              tags=["networking"], dependencies=L3)
    def create_router(request: Request, body: schemas.RouterCreateRequest) -> dict[str, Any]:
        """400 for a gateway network that is not external (``router:external``)."""
        values = schemas.plugin_body(body)
        creating(request, values, "create_router")
        gateway_rules(request, values, "create_router",
                      policy.owner_target(_project_of(values)))
        return {"router": routers_view([l3.create_router(values)], request)[0]}

    @app.get("/v2.0/routers/{ident}", tags=["networking"], dependencies=L3)
    def show_router(ident: str, request: Request) -> dict[str, Any]:
        return {"router": routers_view([router(request, ident, "get_router")], request)[0]}

    @app.put("/v2.0/routers/{ident}", tags=["networking"], dependencies=L3)
    def update_router(ident: str, request: Request,
                      body: schemas.RouterUpdateRequest) -> dict[str, Any]:
        """name, description, admin_state_up, external_gateway_info (``{}`` or null
        removes the gateway: 409 while floating IPs use it), routes (400 for a nexthop on
        none of the router's subnets)."""
        values = schemas.plugin_body(body)
        row = router(request, ident, "update_router")
        gateway_rules(request, values, "update_router", policy.owner_target(row.project_id))
        return {"router": routers_view([l3.update_router(row.id, values)], request)[0]}

    @app.delete("/v2.0/routers/{ident}", status_code=204, tags=["networking"],
                dependencies=L3)
    def delete_router(ident: str, request: Request) -> Response:
        """409 while the router has interfaces (RouterInUse)."""
        l3.delete_router(router(request, ident, "delete_router").id)
        return Response(status_code=204)

    @app.put("/v2.0/routers/{ident}/add_router_interface", tags=["networking"],
             summary="Add an interface to a router", dependencies=L3)
    def add_router_interface(ident: str, request: Request,
                             body: schemas.RouterInterfaceRequest) -> dict[str, Any]:
        """``{"subnet_id"}`` (the router takes the subnet's gateway_ip) or ``{"port_id"}``;
        answers ``{"id", "tenant_id", "project_id", "port_id", "subnet_id", "subnet_ids",
        "network_id"}``."""
        row = router(request, ident, "add_router_interface")
        values = body.model_dump(exclude_unset=True)
        l3.interface_request(values, removal=False)
        p = who(request)
        if values.get("subnet_id"):
            sub = subnet(request, values["subnet_id"], "get_subnet")
            if not p.system and sub.project_id != p.project:
                raise Invalid(f"Bad router request: Cannot add interface to router because "
                              f"subnet {sub.id} is not owned by project making the request.")
        if values.get("port_id"):
            port(request, values["port_id"], "update_port")
        return l3.add_router_interface(row.id, values)

    @app.put("/v2.0/routers/{ident}/remove_router_interface", tags=["networking"],
             summary="Remove an interface from a router", dependencies=L3)
    def remove_router_interface(ident: str, request: Request,
                                body: schemas.RouterInterfaceRequest) -> dict[str, Any]:
        """As add_router_interface; 409 while floating IPs or routes need the interface."""
        row = router(request, ident, "remove_router_interface")
        return l3.remove_router_interface(row.id, body.model_dump(exclude_unset=True))

    # ---------------------------------------------------------------- floating IPs
    def association_rules(request: Request, values: dict[str, Any], project: str) -> None:
        """The port must be one the caller sees and, for a project user, of the floating
        IP's project."""
        if values.get("port_id"):
            row = port(request, str(values["port_id"]), "get_port")
            if not who(request).system and row.project_id != project:
                raise Invalid(f"Bad floatingip request: Cannot process floating IP "
                              f"association with Port {row.id}, since that port is owned "
                              "by a different project.")

    @app.get("/v2.0/floatingips", summary="List floating IPs", tags=["networking"],
             dependencies=L3)
    def list_floatingips(request: Request) -> dict[str, Any]:
        found = policy.visible(who(request), "get_floatingip",
                               l3.list_floatingips(filters(request, "floatingips")),
                               lambda f: policy.owner_target(f.project_id))
        return {"floatingips": [fip_view(f, request) for f in found]}

    @app.post("/v2.0/floatingips", status_code=201, summary="Create a floating IP",
              tags=["networking"], dependencies=L3)
    def create_floatingip(request: Request,
                          body: schemas.FloatingIPCreateRequest) -> dict[str, Any]:
        """400 for a network that is not external; with ``port_id``, 404 when no router
        connects the port's subnet to the floating network."""
        values = schemas.plugin_body(body)
        p = creating(request, values, "create_floatingip")
        network(request, str(values["floating_network_id"]), "get_network")
        if values.get("floating_ip_address"):
            policy.require(p, "create_floatingip:floating_ip_address")
        association_rules(request, values, _project_of(values))
        return {"floatingip": fip_view(l3.create_floatingip(values), request)}

    @app.get("/v2.0/floatingips/{ident}", tags=["networking"], dependencies=L3)
    def show_floatingip(ident: str, request: Request) -> dict[str, Any]:
        return {"floatingip": fip_view(floatingip(request, ident, "get_floatingip"), request)}

    @app.put("/v2.0/floatingips/{ident}", tags=["networking"], dependencies=L3)
    def update_floatingip(ident: str, request: Request,
                          body: schemas.FloatingIPUpdateRequest) -> dict[str, Any]:
        """``port_id`` (null disassociates), ``fixed_ip_address``, description; 409 when
        that fixed IP has a floating IP already."""
        values = schemas.plugin_body(body)
        row = floatingip(request, ident, "update_floatingip")
        association_rules(request, values, row.project_id)
        return {"floatingip": fip_view(l3.update_floatingip(row.id, values), request)}

    @app.delete("/v2.0/floatingips/{ident}", status_code=204, tags=["networking"],
                dependencies=L3)
    def delete_floatingip(ident: str, request: Request) -> Response:
        l3.delete_floatingip(floatingip(request, ident, "delete_floatingip").id)
        return Response(status_code=204)

    # ---------------------------------------------------------------- VIFs
    def node(request: Request, ident: str, rule: str) -> None:
        policy.require_node(who(request), rule, db_api.get_node(conductor.db, ident), ident)

    @app.get("/v1/nodes/{ident}/vifs", summary="VIFs attached to a node")
    def list_vifs(ident: str, request: Request) -> dict[str, Any]:
        node(request, ident, "baremetal:node:vif:list")
        return {"vifs": [{"id": v} for v in conductor.vif_list(ident)]}

    @app.post("/v1/nodes/{ident}/vifs", status_code=204, summary="Attach a VIF")
    def attach_vif(ident: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
        """The VIF (a network port) must be one the caller sees, else it is unknown."""
        vif = body.get("id")
        if not isinstance(vif, str) or not vif:
            raise Invalid("id (the network port to attach) is required")
        node(request, ident, "baremetal:node:vif:attach")
        port(request, vif, "get_port")
        conductor.vif_attach(ident, vif)
        return Response(status_code=204)

    @app.delete("/v1/nodes/{ident}/vifs/{vif}", status_code=204, summary="Detach a VIF")
    def detach_vif(ident: str, vif: str, request: Request) -> Response:
        node(request, ident, "baremetal:node:vif:detach")
        conductor.vif_detach(ident, vif)
        return Response(status_code=204)

    # ---------------------------------------------------------------- switches
    def switch_view(sw: Any, detail: bool = False) -> dict[str, Any]:
        out = {"uuid": sw.id, "name": sw.name, "switch_id": sw.switch_id,
               "driver": sw.driver, "address": sw.address, "bridge": sw.bridge,
               "physical_networks": sw.physical_networks, "created_at": _ts(sw.created_at)}
        if detail:
            wanted = plugin.switches.bindings(sw.id)
            try:
                seen: dict[str, Any] | None = plugin.switches.observed(sw)
                out["reachable"] = True
            except Exception as exc:
                seen, out["reachable"] = None, False
                out["error"] = str(getattr(exc, "message", exc))
            out["ports"] = [{
                "port_name": b.port_name, "vlan": b.vlan,
                "observed_vlan": (seen.get(b.port_name) or {}).get("vlan") if seen else None,
                "bond_members": b.bond_members, "network_port_id": b.network_port_id,
                "parked": b.network_port_id is None,
            } for b in wanted]
        return out

    @app.get("/v1/switches", summary="Registered top-of-rack switches", tags=["switches"])
    def list_switches(request: Request) -> dict[str, Any]:
        policy.require(who(request), "metalplane:switch:get")
        return {"switches": [switch_view(s) for s in plugin.switches.list_switches()]}

    @app.post("/v1/switches", status_code=201, summary="Register a switch", tags=["switches"])
    def create_switch(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        policy.require(who(request), "metalplane:switch:create")
        return switch_view(plugin.switches.create(body))

    @app.get("/v1/switches/{ident}", summary="A switch with its ports and VLANs",
             tags=["switches"])
    def show_switch(ident: str, request: Request) -> dict[str, Any]:
        policy.require(who(request), "metalplane:switch:get")
        return switch_view(plugin.switches.get(ident), detail=True)

    @app.delete("/v1/switches/{ident}", status_code=204, tags=["switches"])
    def delete_switch(ident: str, request: Request) -> Response:
        policy.require(who(request), "metalplane:switch:delete")
        plugin.switches.delete(ident)
        return Response(status_code=204)

    @app.post("/v1/switches/sync", summary="Repair switch ports changed by hand",
              tags=["switches"])
    def sync_switches(request: Request) -> dict[str, Any]:
        policy.require(who(request), "metalplane:switch:sync")
        return {"repairs": conductor.sync_switches()}

    @app.post("/v1/network/sync", tags=["switches"],
              summary="Compare the datapaths with the database, and repair them")
    def sync_network(request: Request,
                     body: schemas.NetworkSyncRequest | None = None) -> dict[str, Any]:
        """The top-of-rack switches and, with the ovn backend, OVN's Northbound database
        against metalplane's database, as neutron-ovn-db-sync-util does: ``mode`` ``log``
        reports the differences, ``repair`` (the default) also fixes them. 503 when OVN
        cannot be reached."""
        policy.require(who(request), "metalplane:network:sync")
        mode = body.mode if body is not None else "repair"
        return {"mode": mode, "differences": conductor.sync_network(mode == "repair")}
