"""The networking HTTP API: OpenStack Networking v2.0 shapes under ``/v2.0``, the node VIF
endpoints of the Bare Metal API (``/v1/nodes/{node}/vifs``) and metalplane's switch
registry (``/v1/switches``, an extension: neither Ironic nor Neutron has one).

Bodies are wrapped as Neutron's (``{"network": {...}}``, lists as ``{"networks": [...]}``);
errors under ``/v2.0`` answer ``{"NeutronError": {"type", "message", "detail"}}``.
Source: Networking API v2.0 reference (networks, subnets, ports, port binding extension,
provider extension, security groups).
"""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, Request, Response

from metalplane.common.exceptions import Invalid
from metalplane.conductor.manager import Conductor
from metalplane.db.models import Network, NetworkPort, SecurityGroup, SecurityGroupRule, Subnet

__all__ = ["neutron_versions_document", "register"]


def _ts(value: Any) -> str | None:
    return value.isoformat() if value else None


def _unwrap(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise Invalid(f"the request body must be an object {{\"{key}\": {{...}}}}")
    return dict(body[key])


def neutron_versions_document(base: str) -> dict[str, Any]:
    """Neutron's ``GET /`` answer (Networking API v2.0 reference, "API versions")."""
    return {"versions": [{"id": "v2.0", "status": "CURRENT",
                          "links": [{"href": f"{base}/v2.0/", "rel": "self"}]}]}


def register(app: FastAPI, conductor: Conductor) -> None:
    """Add the networking routes to ``app``."""
    plugin = conductor.network

    # ---------------------------------------------------------------- views
    def network_view(n: Network) -> dict[str, Any]:
        seg = plugin.segment(n.id)
        return {
            "id": n.id, "name": n.name, "project_id": n.project_id, "tenant_id": n.project_id,
            "shared": n.shared, "admin_state_up": n.admin_state_up, "status": n.status,
            "mtu": n.mtu, "description": n.description, "router:external": False,
            "subnets": [s.id for s in plugin.list_subnets({"network_id": n.id})],
            "provider:network_type": seg.network_type if seg else None,
            "provider:physical_network": seg.physical_network if seg else None,
            "provider:segmentation_id": seg.segmentation_id if seg else None,
            "created_at": _ts(n.created_at), "updated_at": _ts(n.updated_at),
        }

    def subnet_view(s: Subnet) -> dict[str, Any]:
        return {
            "id": s.id, "name": s.name, "network_id": s.network_id, "project_id": s.project_id,
            "tenant_id": s.project_id, "cidr": s.cidr, "ip_version": s.ip_version,
            "gateway_ip": s.gateway_ip, "allocation_pools": s.allocation_pools,
            "dns_nameservers": s.dns_nameservers, "host_routes": s.host_routes,
            "enable_dhcp": s.enable_dhcp, "description": s.description,
            "created_at": _ts(s.created_at), "updated_at": _ts(s.updated_at),
        }

    def port_view(p: NetworkPort) -> dict[str, Any]:
        return {
            "id": p.id, "name": p.name, "network_id": p.network_id, "project_id": p.project_id,
            "tenant_id": p.project_id, "mac_address": p.mac_address,
            "fixed_ips": plugin.fixed_ips(p.id), "admin_state_up": p.admin_state_up,
            "status": p.status, "device_id": p.device_id, "device_owner": p.device_owner,
            "binding:host_id": p.binding_host_id, "binding:vnic_type": p.binding_vnic_type,
            "binding:profile": p.binding_profile, "binding:vif_type": p.binding_vif_type,
            "binding:vif_details": p.binding_vif_details,
            "extra_dhcp_opts": p.extra_dhcp_opts, "security_groups": p.security_groups,
            "description": p.description, "created_at": _ts(p.created_at),
            "updated_at": _ts(p.updated_at),
        }

    def rule_view(r: SecurityGroupRule) -> dict[str, Any]:
        return {
            "id": r.id, "security_group_id": r.security_group_id, "direction": r.direction,
            "ethertype": r.ethertype, "protocol": r.protocol,
            "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
            "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
            "project_id": r.project_id, "tenant_id": r.project_id,
            "description": r.description,
        }

    def sg_view(g: SecurityGroup) -> dict[str, Any]:
        return {"id": g.id, "name": g.name, "description": g.description,
                "project_id": g.project_id, "tenant_id": g.project_id, "stateful": g.stateful,
                "security_group_rules": [rule_view(r) for r in plugin.sg_rules(g.id)],
                "created_at": _ts(g.created_at), "updated_at": _ts(g.updated_at)}

    def filters(request: Request) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in request.query_params.items():
            out["project_id" if k == "tenant_id" else k] = (
                v.lower() == "true" if v.lower() in ("true", "false") else v)
        return out

    # ---------------------------------------------------------------- networks
    @app.get("/v2.0/networks", summary="List networks", tags=["networking"])
    def list_networks(request: Request) -> dict[str, Any]:
        return {"networks": [network_view(n) for n in plugin.list_networks(filters(request))]}

    @app.post("/v2.0/networks", status_code=201, summary="Create a network",
              tags=["networking"])
    def create_network(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"network": network_view(plugin.create_network(_unwrap(body, "network")))}

    @app.get("/v2.0/networks/{ident}", tags=["networking"])
    def show_network(ident: str) -> dict[str, Any]:
        return {"network": network_view(plugin.get_network(ident))}

    @app.put("/v2.0/networks/{ident}", tags=["networking"])
    def update_network(ident: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"network": network_view(plugin.update_network(ident,
                                                              _unwrap(body, "network")))}

    @app.delete("/v2.0/networks/{ident}", status_code=204, tags=["networking"])
    def delete_network(ident: str) -> Response:
        plugin.delete_network(ident)
        return Response(status_code=204)

    # ---------------------------------------------------------------- subnets
    @app.get("/v2.0/subnets", summary="List subnets", tags=["networking"])
    def list_subnets(request: Request) -> dict[str, Any]:
        return {"subnets": [subnet_view(s) for s in plugin.list_subnets(filters(request))]}

    @app.post("/v2.0/subnets", status_code=201, summary="Create a subnet", tags=["networking"])
    def create_subnet(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"subnet": subnet_view(plugin.create_subnet(_unwrap(body, "subnet")))}

    @app.get("/v2.0/subnets/{ident}", tags=["networking"])
    def show_subnet(ident: str) -> dict[str, Any]:
        return {"subnet": subnet_view(plugin.get_subnet(ident))}

    @app.delete("/v2.0/subnets/{ident}", status_code=204, tags=["networking"])
    def delete_subnet(ident: str) -> Response:
        plugin.delete_subnet(ident)
        return Response(status_code=204)

    # ---------------------------------------------------------------- ports
    @app.get("/v2.0/ports", summary="List ports", tags=["networking"])
    def list_ports(request: Request) -> dict[str, Any]:
        return {"ports": [port_view(p) for p in plugin.list_ports(filters(request))]}

    @app.post("/v2.0/ports", status_code=201, summary="Create a port", tags=["networking"])
    def create_port(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"port": port_view(plugin.create_port(_unwrap(body, "port")))}

    @app.get("/v2.0/ports/{ident}", tags=["networking"])
    def show_port(ident: str) -> dict[str, Any]:
        return {"port": port_view(plugin.get_port(ident))}

    @app.put("/v2.0/ports/{ident}", tags=["networking"])
    def update_port(ident: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"port": port_view(plugin.update_port(ident, _unwrap(body, "port")))}

    @app.delete("/v2.0/ports/{ident}", status_code=204, tags=["networking"])
    def delete_port(ident: str) -> Response:
        plugin.delete_port(ident)
        return Response(status_code=204)

    # ---------------------------------------------------------------- security groups
    @app.get("/v2.0/security-groups", tags=["networking"])
    def list_sgs() -> dict[str, Any]:
        return {"security_groups": [sg_view(g) for g in plugin.list_security_groups()]}

    @app.post("/v2.0/security-groups", status_code=201, tags=["networking"])
    def create_sg(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"security_group": sg_view(plugin.create_security_group(
            _unwrap(body, "security_group")))}

    @app.get("/v2.0/security-groups/{ident}", tags=["networking"])
    def show_sg(ident: str) -> dict[str, Any]:
        return {"security_group": sg_view(plugin.get_security_group(ident))}

    @app.delete("/v2.0/security-groups/{ident}", status_code=204, tags=["networking"])
    def delete_sg(ident: str) -> Response:
        plugin.delete_security_group(ident)
        return Response(status_code=204)

    @app.get("/v2.0/security-group-rules", tags=["networking"])
    def list_rules() -> dict[str, Any]:
        return {"security_group_rules": [rule_view(r) for r in plugin.sg_rules()]}

    @app.post("/v2.0/security-group-rules", status_code=201, tags=["networking"])
    def create_rule(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"security_group_rule": rule_view(plugin.create_security_group_rule(
            _unwrap(body, "security_group_rule")))}

    @app.delete("/v2.0/security-group-rules/{ident}", status_code=204, tags=["networking"])
    def delete_rule(ident: str) -> Response:
        plugin.delete_security_group_rule(ident)
        return Response(status_code=204)

    # ---------------------------------------------------------------- VIFs
    @app.get("/v1/nodes/{ident}/vifs", summary="VIFs attached to a node")
    def list_vifs(ident: str) -> dict[str, Any]:
        return {"vifs": [{"id": v} for v in conductor.vif_list(ident)]}

    @app.post("/v1/nodes/{ident}/vifs", status_code=204, summary="Attach a VIF")
    def attach_vif(ident: str, body: dict[str, Any] = Body(...)) -> Response:
        vif = body.get("id")
        if not isinstance(vif, str) or not vif:
            raise Invalid("id (the network port to attach) is required")
        conductor.vif_attach(ident, vif)
        return Response(status_code=204)

    @app.delete("/v1/nodes/{ident}/vifs/{vif}", status_code=204, summary="Detach a VIF")
    def detach_vif(ident: str, vif: str) -> Response:
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
    def list_switches() -> dict[str, Any]:
        return {"switches": [switch_view(s) for s in plugin.switches.list_switches()]}

    @app.post("/v1/switches", status_code=201, summary="Register a switch", tags=["switches"])
    def create_switch(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return switch_view(plugin.switches.create(body))

    @app.get("/v1/switches/{ident}", summary="A switch with its ports and VLANs",
             tags=["switches"])
    def show_switch(ident: str) -> dict[str, Any]:
        return switch_view(plugin.switches.get(ident), detail=True)

    @app.delete("/v1/switches/{ident}", status_code=204, tags=["switches"])
    def delete_switch(ident: str) -> Response:
        plugin.switches.delete(ident)
        return Response(status_code=204)

    @app.post("/v1/switches/sync", summary="Repair switch ports changed by hand",
              tags=["switches"])
    def sync_switches() -> dict[str, Any]:
        return {"repairs": conductor.sync_switches()}
