"""``metalplane network|subnet|switch`` and ``metalplane node vif``: the networking verbs,
over the OpenStack Networking v2.0 API and metalplane's switch registry."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from metalplane.cli.common import CliError, Output, check_format, client, delete_each, kv
from metalplane.cli.output import console, emit

__all__ = ["network_app", "subnet_app", "switch_app", "vif_app"]

network_app = typer.Typer(help="Networks (Neutron v2.0) and their ports.", no_args_is_help=True)
netport_app = typer.Typer(help="Network ports: the VIFs to attach to nodes.",
                          no_args_is_help=True)
subnet_app = typer.Typer(help="Subnets and their address pools.", no_args_is_help=True)
switch_app = typer.Typer(help="Top-of-rack switches metalplane configures.",
                         no_args_is_help=True)
vif_app = typer.Typer(help="VIFs attached to a node.", no_args_is_help=True)
network_app.add_typer(netport_app, name="port")

NET_COLUMNS = ("id", "name", "project_id", "provider:network_type",
               "provider:physical_network", "provider:segmentation_id", "shared", "subnets")
SUBNET_COLUMNS = ("id", "name", "network_id", "cidr", "gateway_ip", "allocation_pools")
PORT_COLUMNS = ("id", "name", "network_id", "mac_address", "fixed_ips", "binding:host_id",
                "binding:vif_type", "status")


def _network_id(c: Any, ident: str) -> str:
    return str(c.get(f"/v2.0/networks/{ident}")["network"]["id"])


# ---------------------------------------------------------------------------- networks
@network_app.command("create")
def network_create(
    name: str,
    provider_network_type: Annotated[str | None, typer.Option(
        help="flat, vlan, vxlan or geneve [default: a tenant VLAN from the ranges].")] = None,
    provider_physical_network: Annotated[str | None, typer.Option(help="e.g. physnet1")]
    = None,
    provider_segment: Annotated[int | None, typer.Option(help="VLAN ID or VNI.")] = None,
    shared: Annotated[bool, typer.Option(help="Usable by every project.")] = False,
    external: Annotated[bool, typer.Option(
        "--external", help="router:external: routers' gateways and floating IPs take "
                           "their addresses here (admin only).")] = False,
    project: Annotated[str | None, typer.Option(help="Owning project.")] = None,
    output: Output = "table",
) -> None:
    """Create a network (a provider network with --provider-*, else a tenant network)."""
    check_format(output)
    body: dict[str, Any] = {"name": name, "shared": shared}
    if external:
        body["router:external"] = True
    for key, value in (("provider:network_type", provider_network_type),
                       ("provider:physical_network", provider_physical_network),
                       ("provider:segmentation_id", provider_segment),
                       ("project_id", project)):
        if value is not None:
            body[key] = value
    emit(client().post("/v2.0/networks", {"network": body})["network"], output)


@network_app.command("list")
def network_list(output: Output = "table") -> None:
    """List networks with their segments."""
    check_format(output)
    emit(client().get("/v2.0/networks")["networks"], output, NET_COLUMNS)


@network_app.command("show")
def network_show(network: str, output: Output = "table") -> None:
    """Show a network (name or UUID)."""
    check_format(output)
    emit(client().get(f"/v2.0/networks/{network}")["network"], output)


@network_app.command("delete")
def network_delete(networks: list[str]) -> None:
    """Delete networks (no port may remain on them)."""
    delete_each("/v2.0/networks/{}", networks, "network")


# ---------------------------------------------------------------------------- subnets
@subnet_app.command("create")
def subnet_create(
    name: str,
    network: Annotated[str, typer.Option(help="Network name or UUID.")],
    subnet_range: Annotated[str, typer.Option(help="CIDR, e.g. 10.0.0.0/24.")],
    gateway: Annotated[str | None, typer.Option(help="Gateway IP, or 'none'.")] = None,
    allocation_pool: Annotated[list[str] | None, typer.Option(
        help="start=IP,end=IP; repeatable.")] = None,
    dns_nameserver: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    dhcp: Annotated[bool, typer.Option("--dhcp/--no-dhcp")] = True,
    output: Output = "table",
) -> None:
    """Create a subnet on a network."""
    check_format(output)
    c = client()
    body: dict[str, Any] = {"name": name, "network_id": _network_id(c, network),
                            "cidr": subnet_range, "enable_dhcp": dhcp}
    if gateway is not None:
        body["gateway_ip"] = None if gateway.lower() == "none" else gateway
    if allocation_pool:
        pools = []
        for item in allocation_pool:
            pool = kv(item.split(","), "--allocation-pool")
            if set(pool) != {"start", "end"}:
                raise CliError("--allocation-pool takes start=IP,end=IP")
            pools.append({k: str(v) for k, v in pool.items()})
        body["allocation_pools"] = pools
    if dns_nameserver:
        body["dns_nameservers"] = dns_nameserver
    emit(c.post("/v2.0/subnets", {"subnet": body})["subnet"], output)


@subnet_app.command("list")
def subnet_list(network: Annotated[str | None, typer.Option()] = None,
                output: Output = "table") -> None:
    """List subnets."""
    check_format(output)
    c = client()
    params = {"network_id": _network_id(c, network)} if network else {}
    emit(c.get("/v2.0/subnets", **params)["subnets"], output, SUBNET_COLUMNS)


@subnet_app.command("delete")
def subnet_delete(subnets: list[str]) -> None:
    """Delete subnets (no address may be in use)."""
    delete_each("/v2.0/subnets/{}", subnets, "subnet")


# ---------------------------------------------------------------------------- network ports
@netport_app.command("create")
def netport_create(
    name: str,
    network: Annotated[str, typer.Option(help="Network name or UUID.")],
    fixed_ip: Annotated[list[str] | None, typer.Option(
        help="subnet=ID and/or ip-address=IP; repeatable.")] = None,
    mac_address: Annotated[str | None, typer.Option()] = None,
    extra_dhcp_opt: Annotated[list[str] | None, typer.Option(
        help="name=OPT,value=VAL; repeatable.")] = None,
    project: Annotated[str | None, typer.Option()] = None,
    output: Output = "table",
) -> None:
    """Create a network port (a VIF to attach with `metalplane node vif attach`)."""
    check_format(output)
    c = client()
    body: dict[str, Any] = {"name": name, "network_id": _network_id(c, network)}
    if fixed_ip:
        ips = []
        for item in fixed_ip:
            pairs = kv(item.split(","), "--fixed-ip")
            entry = {}
            if "subnet" in pairs:
                entry["subnet_id"] = str(pairs["subnet"])
            if "ip-address" in pairs:
                entry["ip_address"] = str(pairs["ip-address"])
            if not entry:
                raise CliError("--fixed-ip takes subnet=ID and/or ip-address=IP")
            ips.append(entry)
        body["fixed_ips"] = ips
    if mac_address:
        body["mac_address"] = mac_address
    if project:
        body["project_id"] = project
    if extra_dhcp_opt:
        opts = []
        for item in extra_dhcp_opt:
            pairs = kv(item.split(","), "--extra-dhcp-opt")
            if "name" not in pairs or "value" not in pairs:
                raise CliError("--extra-dhcp-opt takes name=OPT,value=VAL")
            opts.append({"opt_name": str(pairs["name"]), "opt_value": str(pairs["value"])})
        body["extra_dhcp_opts"] = opts
    emit(c.post("/v2.0/ports", {"port": body})["port"], output)


@netport_app.command("list")
def netport_list(network: Annotated[str | None, typer.Option()] = None,
                 output: Output = "table") -> None:
    """List network ports."""
    check_format(output)
    c = client()
    params = {"network_id": _network_id(c, network)} if network else {}
    emit(c.get("/v2.0/ports", **params)["ports"], output, PORT_COLUMNS)


@netport_app.command("show")
def netport_show(port: str, output: Output = "table") -> None:
    """Show a network port with its binding."""
    check_format(output)
    emit(client().get(f"/v2.0/ports/{port}")["port"], output)


@netport_app.command("delete")
def netport_delete(ports: list[str]) -> None:
    """Delete network ports (their switch ports are parked)."""
    delete_each("/v2.0/ports/{}", ports, "network port")


# ---------------------------------------------------------------------------- switches
@switch_app.command("create")
def switch_create(
    name: str,
    switch_id: Annotated[str, typer.Option(help="MAC or datapath ID that ports' "
                                                "local_link_connection name.")],
    address: Annotated[str, typer.Option(help="OVSDB address: unix:/path or tcp:host:port.")],
    bridge: Annotated[str, typer.Option(help="The OVS bridge that is the switch.")],
    physical_network: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    output: Output = "table",
) -> None:
    """Register an Open vSwitch top-of-rack switch (checked by connecting to it)."""
    check_format(output)
    emit(client().post("/v1/switches", {
        "name": name, "switch_id": switch_id, "address": address, "bridge": bridge,
        "driver": "ovs", "physical_networks": physical_network or []}), output)


@switch_app.command("list")
def switch_list(output: Output = "table") -> None:
    """List switches."""
    check_format(output)
    emit(client().get("/v1/switches")["switches"], output,
         ("uuid", "name", "switch_id", "driver", "address", "bridge"))


@switch_app.command("show")
def switch_show(switch: str, output: Output = "table") -> None:
    """A switch's managed ports: the VLAN set, the VLAN the switch reports, and owner."""
    check_format(output)
    sw = client().get(f"/v1/switches/{switch}")
    if output != "table":
        emit(sw, output)
        return
    console.print(f"switch {sw['name']} ({sw['switch_id']}) at {sw['address']} bridge "
                  f"{sw['bridge']}: {'reachable' if sw.get('reachable') else 'UNREACHABLE'}")
    rows = [{**p, "state": "parked" if p["parked"] else "bound",
             "drift": "" if p["observed_vlan"] == p["vlan"] else "DRIFT"}
            for p in sw["ports"]]
    emit(rows, output, ("port_name", "vlan", "observed_vlan", "state", "bond_members",
                        "network_port_id", "drift"))


@switch_app.command("delete")
def switch_delete(switches: list[str]) -> None:
    """Forget switches (none of their ports may be bound)."""
    delete_each("/v1/switches/{}", switches, "switch")


@switch_app.command("sync")
def switch_sync() -> None:
    """Repair now every switch port whose VLAN was changed behind metalplane's back."""
    repairs = client().post("/v1/switches/sync", {})["repairs"]
    for line in repairs:
        console.print(line)
    console.print(f"{len(repairs)} port(s) repaired")


@network_app.command("sync")
def network_sync(
    log_only: Annotated[bool, typer.Option(
        "--log-only", help="Only report the differences; repair nothing.")] = False,
) -> None:
    """Compare the top-of-rack switches and OVN's Northbound database (ovn backend) with
    metalplane's database, and repair them (neutron-ovn-db-sync-util's log and repair
    modes). The server also does this at start and every network_sync_interval seconds."""
    out = client().post("/v1/network/sync", {"mode": "log" if log_only else "repair"})
    for line in out["differences"]:
        console.print(line)
    verb = "found" if log_only else "repaired"
    console.print(f"{len(out['differences'])} difference(s) {verb}")


# ---------------------------------------------------------------------------- VIFs
@vif_app.command("attach")
def vif_attach(node: str, vif: Annotated[str, typer.Argument(help="Network port ID.")]) -> None:
    """Attach a network port to a node (bound on the switch once the node is active)."""
    client().post(f"/v1/nodes/{node}/vifs", {"id": vif})
    console.print(f"attached VIF {vif} to node {node}")


@vif_app.command("detach")
def vif_detach(node: str, vif: str) -> None:
    """Detach a VIF from a node (unbound from the switch)."""
    client().delete(f"/v1/nodes/{node}/vifs/{vif}")
    console.print(f"detached VIF {vif} from node {node}")


@vif_app.command("list")
def vif_list(node: str, output: Output = "table") -> None:
    """The VIFs attached to a node."""
    check_format(output)
    emit(client().get(f"/v1/nodes/{node}/vifs")["vifs"], output, ("id",))
