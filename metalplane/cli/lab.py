"""``metalplane lab up|status|down`` and ``metalplane demo``: the virtual rack (root only)."""

from __future__ import annotations

from typing import Annotated

import typer

from metalplane.cli.common import CliError, Output, check_format
from metalplane.cli.output import console, emit, err_console

__all__ = ["demo", "lab_app"]

lab_app = typer.Typer(help="The virtual rack: an Open vSwitch ToR, nodes in namespaces, "
                      "Redfish BMCs (sushy-tools), LLDP. Needs root.", no_args_is_help=True)

Name = Annotated[str, typer.Option(
    "--name", help="The lab's name: the prefix of everything it creates (1-8 lowercase "
    "letters/digits). State lives in $METALPLANE_LAB_ROOT/NAME (default /run/metalplane).")]
NODE_COLUMNS = ("name", "namespace", "mac", "switch_port", "vlan", "ip_addresses",
                "power_state", "os", "bmc_address")


def _lab_error(exc: Exception) -> CliError:
    return CliError(str(exc))


Backend = Annotated[str, typer.Option(
    help="The network's control plane: ovs (the ToR switch and dnsmasq) or ovn (OVN's "
         "NB/SB, northd and a gateway chassis beside the ToR; native DHCP, routers).")]


@lab_app.command("up")
def lab_up(
    nodes: Annotated[int, typer.Option(help="How many nodes (namespaces + BMCs).")] = 4,
    name: Name = "mplab",
    backend: Backend = "ovs",
    undiscovered: Annotated[int, typer.Option(
        help="Nodes more that nobody enrolls, for auto-discovery: Dell servers, each with "
             "an iDRAC of its own (https://127.0.10.N, root/calvin, the lab's CA). The "
             "printed settings then turn discovery on.")] = 0,
    vms: Annotated[int, typer.Option(
        help="VM nodes more (libvirt/QEMU, TCG, 1 GiB): they PXE-boot for real through "
             "the provisioning network; their BMC is sushy-tools' libvirt driver. Serial "
             "consoles in <state_dir>/logs/vm-N-console.log.")] = 0,
    ipmi_vms: Annotated[int, typer.Option(
        help="Of the VMs, how many (the last ones) have an IPMI BMC (virtualbmc, "
             "admin/password) instead of Redfish.")] = 0,
    uefi_vms: Annotated[int, typer.Option(
        help="How many of the VMs (the last ones) boot UEFI (OVMF) instead of SeaBIOS: "
             "their PXE client loads snponly.efi over TFTP. Enroll them with "
             "properties/capabilities boot_mode:uefi.")] = 0,
    vm_nics: Annotated[int, typer.Option(
        help="NICs per VM (1-4), each a tap on a switch port of its own: the first boots; "
             "enroll them as a portgroup for a bond.")] = 1,
) -> None:
    """Build the rack. Prints the settings a `metalplane server` needs to drive it."""
    from metalplane.lab import lab

    try:
        spec = lab.up(name, nodes, progress=lambda s: err_console.print(s, highlight=False),
                      backend=backend, undiscovered=undiscovered, vms=vms,
                      ipmi_vms=ipmi_vms, uefi_vms=uefi_vms, vm_nics=vm_nics)
    except lab.LabError as exc:
        raise _lab_error(exc) from None
    console.print(f"lab {name} is up: {len(spec['nodes'])} node(s), "
                  f"{len(spec.get('vms', []))} VM(s). Run a server for it with:")
    env = " ".join(f"{k}={v}" for k, v in lab.server_settings(spec).items())
    console.print(f"  {env} metalplane server", soft_wrap=True, highlight=False)


@lab_app.command("status")
def lab_status(name: Name = "mplab", output: Output = "table") -> None:
    """Each node: namespace, MAC, switch port and its VLAN, IPs, power state, what it runs,
    BMC address. `-o json` gives the switch, networks and server settings too."""
    from metalplane.lab import lab

    check_format(output)
    try:
        st = lab.status(name)
    except lab.LabError as exc:
        raise _lab_error(exc) from None
    if output == "table":
        emit([{**n, "ip_addresses": ", ".join(n["ip_addresses"]) or "-"} for n in st["nodes"]],
             output, NODE_COLUMNS)
    else:
        emit(st, output)


@lab_app.command("down")
def lab_down(name: Name = "mplab") -> None:
    """Remove everything the lab created (also after a crash, also when it is not up)."""
    from metalplane.lab import lab

    try:
        removed = lab.down(name)
    except lab.LabError as exc:
        raise _lab_error(exc) from None
    console.print(f"lab {name}: removed {', '.join(removed)}" if removed
                  else f"lab {name}: nothing to remove")


def demo(
    nodes: Annotated[int, typer.Option(help="Nodes in the rack (half per tenant).")] = 4,
    keep: Annotated[bool, typer.Option(help="Leave the rack and the server running.")] = False,
    port: Annotated[int, typer.Option(help="The demo server's API port.")] = 6385,
    name: Name = "mplab",
    backend: Backend = "ovs",
    kubectl: Annotated[bool, typer.Option(
        "--kubectl/--no-kubectl",
        help="Enroll half the nodes as BareMetalHosts with kubectl and deploy them by "
             "scaling a MachineSet (skipped, with a note, where kubectl is absent).")] = True,
    vmedia: Annotated[bool, typer.Option(
        "--vmedia", help="node-1 boots its ramdisk from Redfish virtual media, DHCP-less "
                         "(boot interface redfish-virtual-media).")] = False,
    discovery: Annotated[bool, typer.Option(
        "--discovery", help="The auto-discovery variant instead: one node nobody enrolled "
        "is powered on through its iDRAC, discovered, made idrac by the seed's inspection "
        "rule and brought to available (--nodes is ignored).")] = False,
    vms: Annotated[bool, typer.Option(
        "--vms", help="The real-machine variant instead: two libvirt/QEMU VMs (TCG), one "
        "behind a Redfish BMC (sushy-tools, libvirt driver), one behind an IPMI BMC "
        "(virtualbmc), PXE-boot the built ramdisk, get the built Debian image and configure "
        "themselves with cloud-init from the config drive (--nodes is ignored; ~5 min, 2 "
        "more for the first builds, cached in $METALPLANE_BUILD_CACHE, default "
        "/var/cache/metalplane/build).")
    ] = False,
) -> None:
    """The main job: nodes from enroll to active on isolated tenant networks, on a virtual rack.

    Builds the rack, enrolls, inspects, cleans and deploys its nodes onto two tenant
    networks, checks the isolation with real traffic, undeploys one node and tears it all
    down. With --backend ovn, OVN answers the nodes' PXE and tenant DHCP, tenant A reaches
    an outside namespace through a router with SNAT, and a security group is checked with
    traffic. Half the nodes speak Kubernetes: enrolled with `kubectl create -f` as Metal3
    BareMetalHosts and deployed by `kubectl scale machineset` (--no-kubectl: all through
    the Bare Metal API). Exit status 1 if a check failed. Needs root."""
    from metalplane.lab.demo import Demo

    if vms and discovery:
        raise CliError("--vms and --discovery are two demos: pick one")
    if vms and backend != "ovs":
        raise CliError("--vms runs on the ovs backend")
    if vms:
        raise typer.Exit(Demo(nodes=0, name=name, port=port, keep=keep, vms=True,
                              timeout=900).run())
    if discovery:
        if backend != "ovs":
            raise CliError("--discovery runs on the ovs backend (OVN's DHCP answers no "
                           "unknown MAC)")
        raise typer.Exit(Demo(nodes=0, name=name, port=port, keep=keep,
                              discovery=True).run())
    if nodes < 2:
        raise CliError("--nodes must be at least 2 (one per tenant network)")
    if backend not in ("ovs", "ovn"):
        raise CliError(f"--backend must be ovs or ovn, not {backend!r}")
    raise typer.Exit(Demo(nodes=nodes, name=name, port=port, keep=keep,
                          backend=backend, kubectl=kubectl, vmedia=vmedia).run())
