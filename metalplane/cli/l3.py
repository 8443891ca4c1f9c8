"""``metalplane router`` and ``metalplane floating ip``: Neutron's L3 over the Networking
v2.0 API (served when the network backend realises routers, e.g. ``ovn``)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import typer

from metalplane.cli.common import CliError, Output, check_format, client, delete_each, kv
from metalplane.cli.output import console, emit
from metalplane.client.http import Client

__all__ = ["floating_app", "router_app"]

router_app = typer.Typer(
    help="Routers: connect subnets to each other and, through a gateway with SNAT, to an "
         "external network (router:external).", no_args_is_help=True)
router_add_app = typer.Typer(help="Attach a router to a subnet or a port.",
                             no_args_is_help=True)
router_remove_app = typer.Typer(help="Detach a router from a subnet or a port.",
                                no_args_is_help=True)
router_app.add_typer(router_add_app, name="add")
router_app.add_typer(router_remove_app, name="remove")
floating_app = typer.Typer(help="Floating IPs.", no_args_is_help=True)
fip_app = typer.Typer(help="Floating IPs: addresses of an external network, NATed by a "
                           "router to a port's fixed IP.", no_args_is_help=True)
floating_app.add_typer(fip_app, name="ip")

ROUTER_COLUMNS = ("id", "name", "project_id", "status", "admin_state_up",
                  "external_gateway_info", "routes")
FIP_COLUMNS = ("id", "floating_ip_address", "fixed_ip_address", "port_id",
               "floating_network_id", "router_id", "status")


def _id(c: Client, collection: str, ident: str) -> str:
    """The UUID of the ``collection`` resource whose UUID or name is ``ident``."""
    return str(next(iter(c.get(f"/v2.0/{collection}/{ident}").values()))["id"])


def _gateway(c: Client, network: str, snat: bool | None) -> dict[str, Any]:
    info: dict[str, Any] = {"network_id": _id(c, "networks", network)}
    if snat is not None:
        info["enable_snat"] = snat
    return info


# ---------------------------------------------------------------------------- routers
@router_app.command("create")
def router_create(
    name: str,
    external_gateway: Annotated[str | None, typer.Option(
        help="External network (name or UUID) for the gateway.")] = None,
    snat: Annotated[bool | None, typer.Option(
        "--enable-snat/--disable-snat",
        help="SNAT on the gateway (admin only) [default: enabled].")] = None,
    project: Annotated[str | None, typer.Option(help="Owning project.")] = None,
    output: Output = "table",
) -> None:
    """Create a router, with a gateway on an external network if given."""
    check_format(output)
    c = client()
    body: dict[str, Any] = {"name": name}
    if external_gateway:
        body["external_gateway_info"] = _gateway(c, external_gateway, snat)
    elif snat is not None:
        raise CliError("--enable-snat/--disable-snat need --external-gateway")
    if project:
        body["project_id"] = project
    emit(c.post("/v2.0/routers", {"router": body})["router"], output)


@router_app.command("list")
def router_list(output: Output = "table") -> None:
    """List routers."""
    check_format(output)
    emit(client().get("/v2.0/routers")["routers"], output, ROUTER_COLUMNS)


@router_app.command("show")
def router_show(router: str, output: Output = "table") -> None:
    """Show a router (name or UUID) with its gateway and routes."""
    check_format(output)
    emit(client().get(f"/v2.0/routers/{router}")["router"], output)


@router_app.command("delete")
def router_delete(routers: list[str]) -> None:
    """Delete routers (remove their interfaces first)."""
    delete_each("/v2.0/routers/{}", routers, "router")


@router_app.command("set")
def router_set(
    router: Annotated[str, typer.Argument(help="Name or UUID.")],
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    external_gateway: Annotated[str | None, typer.Option(
        help="External network (name or UUID) for the gateway.")] = None,
    snat: Annotated[bool | None, typer.Option(
        "--enable-snat/--disable-snat", help="SNAT on the gateway (admin only).")] = None,
    no_external_gateway: Annotated[bool, typer.Option(
        "--no-external-gateway",
        help="Remove the gateway (refused while floating IPs use it).")] = False,
    route: Annotated[list[str] | None, typer.Option(
        help="destination=CIDR,gateway=IP; repeatable; replaces the routes.")] = None,
    no_route: Annotated[bool, typer.Option("--no-route", help="Clear the routes.")] = False,
    output: Output = "table",
) -> None:
    """Change a router: its name, gateway, SNAT or static routes."""
    check_format(output)
    c = client()
    rid = _id(c, "routers", router)
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if no_external_gateway:
        body["external_gateway_info"] = {}
    elif external_gateway or snat is not None:
        current = c.get(f"/v2.0/routers/{rid}")["router"]["external_gateway_info"]
        network = external_gateway or (current or {}).get("network_id")
        if not network:
            raise CliError("--enable-snat/--disable-snat need a gateway (--external-gateway)")
        body["external_gateway_info"] = _gateway(c, network, snat)
    if no_route:
        body["routes"] = []
    elif route:
        routes = []
        for item in route:
            pairs = kv(item.split(","), "--route")
            if set(pairs) != {"destination", "gateway"}:
                raise CliError("--route takes destination=CIDR,gateway=IP")
            routes.append({"destination": str(pairs["destination"]),
                           "nexthop": str(pairs["gateway"])})
        body["routes"] = routes
    if not body:
        raise CliError("nothing to change: give --name, --external-gateway, --disable-snat, "
                       "--no-external-gateway, --route or --no-route")
    emit(c.put(f"/v2.0/routers/{rid}", {"router": body})["router"], output)


def _interface(action: str, router: str, kind: str, ident: str) -> None:
    c = client()
    info = c.put(f"/v2.0/routers/{_id(c, 'routers', router)}/{action}_router_interface",
                 {f"{kind}_id": _id(c, f"{kind}s", ident)})
    done = "attached to" if action == "add" else "detached from"
    console.print(f"router {router} {done} {kind} {ident} (port {info['port_id']})")


@router_add_app.command("subnet")
def router_add_subnet(router: str, subnet: str) -> None:
    """Attach ROUTER to SUBNET: the router takes the subnet's gateway IP."""
    _interface("add", router, "subnet", subnet)


@router_add_app.command("port")
def router_add_port(router: str, port: str) -> None:
    """Attach ROUTER to an existing network PORT (its fixed IP is the router's)."""
    _interface("add", router, "port", port)


@router_remove_app.command("subnet")
def router_remove_subnet(router: str, subnet: str) -> None:
    """Detach ROUTER from SUBNET (refused while floating IPs or routes need it)."""
    _interface("remove", router, "subnet", subnet)


@router_remove_app.command("port")
def router_remove_port(router: str, port: str) -> None:
    """Detach ROUTER from PORT (the port is deleted)."""
    _interface("remove", router, "port", port)


# ---------------------------------------------------------------------------- floating IPs
def _fip_id(c: Client, ident: str) -> str:
    """The UUID of the floating IP whose UUID or address is ``ident``."""
    try:
        ipaddress.ip_address(ident)
    except ValueError:
        return ident
    found = c.get("/v2.0/floatingips", floating_ip_address=ident)["floatingips"]
    if not found:
        raise CliError(f"no floating IP {ident}")
    return str(found[0]["id"])


@fip_app.command("create")
def fip_create(
    network: Annotated[str, typer.Argument(help="External network (name or UUID).")],
    port: Annotated[str | None, typer.Option(help="Port (name or UUID) to associate.")]
    = None,
    fixed_ip_address: Annotated[str | None, typer.Option(
        help="Which fixed IP of --port, if it has several.")] = None,
    floating_ip_address: Annotated[str | None, typer.Option(
        help="The address to take (admin only).")] = None,
    project: Annotated[str | None, typer.Option(help="Owning project.")] = None,
    output: Output = "table",
) -> None:
    """Allocate a floating IP on an external network, associated with --port if given."""
    check_format(output)
    c = client()
    body: dict[str, Any] = {"floating_network_id": _id(c, "networks", network)}
    if port:
        body["port_id"] = _id(c, "ports", port)
    for key, value in (("fixed_ip_address", fixed_ip_address),
                       ("floating_ip_address", floating_ip_address), ("project_id", project)):
        if value:
            body[key] = value
    emit(c.post("/v2.0/floatingips", {"floatingip": body})["floatingip"], output)


@fip_app.command("list")
def fip_list(output: Output = "table") -> None:
    """List floating IPs."""
    check_format(output)
    emit(client().get("/v2.0/floatingips")["floatingips"], output, FIP_COLUMNS)


@fip_app.command("show")
def fip_show(floating_ip: str, output: Output = "table") -> None:
    """Show a floating IP (UUID or address)."""
    check_format(output)
    c = client()
    emit(c.get(f"/v2.0/floatingips/{_fip_id(c, floating_ip)}")["floatingip"], output)


@fip_app.command("delete")
def fip_delete(floating_ips: list[str]) -> None:
    """Release floating IPs (UUIDs or addresses)."""
    c = client()
    delete_each("/v2.0/floatingips/{}", [_fip_id(c, f) for f in floating_ips], "floating IP")


@fip_app.command("set")
def fip_set(
    floating_ip: Annotated[str, typer.Argument(help="UUID or address.")],
    port: Annotated[str | None, typer.Option(help="Port (name or UUID) to associate.")]
    = None,
    fixed_ip_address: Annotated[str | None, typer.Option(
        help="Which fixed IP of --port, if it has several.")] = None,
    no_port: Annotated[bool, typer.Option("--no-port", help="Disassociate.")] = False,
    output: Output = "table",
) -> None:
    """Associate a floating IP with a port, or disassociate it. A router must connect the
    port's subnet to the floating IP's network."""
    check_format(output)
    c = client()
    if no_port == bool(port):
        raise CliError("give one of --port PORT or --no-port")
    body: dict[str, Any] = {"port_id": _id(c, "ports", port) if port else None}
    if fixed_ip_address:
        body["fixed_ip_address"] = fixed_ip_address
    emit(c.put(f"/v2.0/floatingips/{_fip_id(c, floating_ip)}",
               {"floatingip": body})["floatingip"], output)
