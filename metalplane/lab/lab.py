"""The virtual rack: ``metalplane lab up | status | down``.

``up`` builds, as root, on this machine only:

- a top-of-rack switch: Open vSwitch on the userspace datapath, its own ovsdb-server and
  run directory (``<state_dir>/ovs``), bridge ``<name>-tor``;
- per node, a namespace ``<name>-nodeN`` whose ``eth0`` is a veth pair, the outer end
  ``<name>-nN`` an access port of the switch on the provisioning VLAN (the switch's
  default), and a sparse disk file;
- per provider network (provisioning, also used for inspection, and cleaning), a
  service namespace ``<name>-svc-<net>`` on that network's VLAN holding its gateway
  address and the server's address as nodes reach it; metalplane's dnsmasq runs there
  (the server's ``dhcp_bindings``) and two forwarders carry the API's port and the boot
  server's to the server's unix sockets;
- BMCs: sushy-tools' Redfish emulator (fake driver, one system per node, on loopback)
  whose external notifier tells the boot supervisor (:mod:`metalplane.lab.supervisor`)
  about power changes; the BMCs reach the boot server (the virtual media images they
  fetch) through a forwarder on loopback, the lab's management network
  (``boot_server.external_url``, the server's ``external_http_url``);
- lldpd on the switch ports, so every node hears LLDP from "its" switch port;
- with ``--backend ovn``: OVN (:mod:`metalplane.lab.ovn`): NB and SB databases and
  ovn-northd in ``<state_dir>/ovn``, and a gateway chassis ``<name>-gw`` (ovn-controller on
  the lab's Open vSwitch: ``system-id`` set, ``ovn-bridge-mappings`` physnet1 to its
  provider bridge ``<name>-ex``, ``enable-chassis-as-gw``), ``<name>-ex`` trunked to the
  ToR by patch ports, as a gateway node's uplink is cabled to a ToR trunk port; and an
  "outside" namespace ``<name>-outside`` on the public VLAN, what a router's SNAT leads to.

Every name starts with ``<name>-`` and every process is started with the state directory
on its command line, so ``down`` finds them all, also after a crash. Traffic stays on
loopback and in the lab's namespaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from metalplane.lab import idrac, vm
from metalplane.lab.ovn import Central, Chassis, patch
from metalplane.lab.rack import (
    LabError,
    Switch,
    _spawn,
    _wait_for,
    add_nic,
    free_port,
    kill_mentioning,
    netns_exec,
    reap,
    remove_prefixed,
    run,
    wait_http,
)

__all__ = ["LabError", "down", "host_on_vlan", "lab_dir", "load", "server_settings", "status",
           "tor", "up"]

BOOT_ADDRESS = "10.69.0.1"  # the server as nodes reach it, on every provider network
API_PORT = 6385  # the API (the agent's lookup and heartbeats)
BOOT_PORT = 8080  # the boot server (iPXE scripts, images): a listener of its own
DISK_SIZE = 192 << 20
NETWORKS = (  # name, VLAN, CIDR, gateway (the service namespace)
    ("provisioning", 1100, "10.70.0.0/24", "10.70.0.1", "prov"),
    ("cleaning", 1101, "10.71.0.0/24", "10.71.0.1", "clean"),
)
PUBLIC_VLAN, PUBLIC_CIDR, PUBLIC_GATEWAY = 1200, "172.24.4.0/24", "172.24.4.1"  # ovn: outside
BACKENDS = ("ovs", "ovn")
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")

Progress = Callable[[str], None]


def lab_dir(name: str) -> Path:
    """``$METALPLANE_LAB_ROOT/<name>`` (default root ``/run/metalplane``)."""
    return Path(os.environ.get("METALPLANE_LAB_ROOT", "/run/metalplane")) / name


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise LabError(f"lab name '{name}' must be 1-8 lowercase letters or digits, starting "
                       "with a letter (it prefixes interface names, 15 characters at most)")


def _need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, Open vSwitch): run it with sudo")
    for tool in ("ovs-vswitchd", "ovsdb-server", "lldpd", "dhclient", "curl", "ethtool",
                 "mkfs.ext4", "qemu-img", "sfdisk", "blkid"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise LabError(f"{tool} is not installed (run scripts/setup.sh)")


def load(name: str) -> dict[str, Any]:
    """The lab's description (``lab.json``). Raises :class:`LabError` if it is not up."""
    path = lab_dir(name) / "lab.json"
    if not path.exists():
        raise LabError(f"lab '{name}' is not up (run `metalplane lab up`)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def up(name: str = "mplab", nodes: int = 4, progress: Progress = lambda _: None,
       backend: str = "ovs", undiscovered: int = 0, vms: int = 0, ipmi_vms: int = 0,
       uefi_vms: int = 0, vm_nics: int = 1) -> dict[str, Any]:
    """Build the rack; returns its description (also in ``<state_dir>/lab.json``).
    ``backend``: ``ovs`` (the ToR and dnsmasq), or ``ovn`` (OVN beside them).
    ``undiscovered``: nodes more that metalplane is not told about (``undiscovered`` in the
    description): Dell servers whose BMC is an "iDRAC" of their own at
    ``https://127.0.10.N`` (:mod:`metalplane.lab.idrac`), for auto-discovery.
    ``vms``: libvirt/QEMU machines more (``vms`` in the description, :mod:`metalplane.lab.vm`)
    that PXE-boot for real, their BMC sushy-tools' libvirt driver; the last ``ipmi_vms`` of
    them have virtualbmc (IPMI) instead; the last ``uefi_vms`` of them boot UEFI (OVMF), the
    others SeaBIOS (``firmware`` in each VM's description). ``vm_nics``: NICs per VM, each
    on a switch port of its own (``nics`` in each VM's description; 2 for a portgroup).

    Raises :class:`LabError` (root missing, a tool missing, the lab already up, a
    command failed); what was built is removed again in that case.
    """
    check_name(name)
    if not 0 <= nodes <= 200 or not 0 <= undiscovered <= 20 or not 0 <= vms <= 8 \
            or nodes + undiscovered + vms < 1 or not 0 <= ipmi_vms <= vms:
        raise LabError("--nodes must be between 1 and 200 (0 with --undiscovered or --vms), "
                       "--undiscovered between 0 and 20, --vms between 0 and 8, "
                       "--ipmi-vms between 0 and --vms")
    if not 0 <= uefi_vms <= vms:
        raise LabError(f"--uefi-vms must be between 0 and --vms ({vms})")
    if not 1 <= vm_nics <= 4:
        raise LabError(f"--vm-nics must be between 1 and 4, not {vm_nics}")
    if backend not in BACKENDS:
        raise LabError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    _need_root()
    state = lab_dir(name)
    if (state / "lab.json").exists():
        raise LabError(f"lab '{name}' is already up (`metalplane lab down --name {name}` first)")
    down(name, quiet=True)  # what a crashed run may have left
    state.mkdir(parents=True)
    try:
        return _build(name, nodes, state, progress, backend, undiscovered, vms, ipmi_vms,
                      uefi_vms, vm_nics)
    except BaseException:
        down(name, quiet=True)
        raise


def host_on_vlan(switch: Switch, ns: str, port: str, vlan: int, cidr: str,
                 address: str) -> None:
    """Namespace ``ns`` whose eth0 is switch port ``port`` on ``vlan``, holding ``address``
    in ``cidr``."""
    run("ip", "netns", "add", ns)
    run("ip", "-n", ns, "link", "set", "lo", "up")
    add_nic(switch, ns, "eth0", port, vlan)
    run("ip", "-n", ns, "addr", "add", f"{address}/{cidr.split('/')[1]}", "dev", "eth0")


def _ovn(name: str, state: Path, switch: Switch, progress: Progress) -> dict[str, Any]:
    """OVN beside the ToR, and the outside namespace; the spec's ``ovn`` and ``outside``."""
    central = Central(state / "ovn")
    central.start()
    gw = Chassis(switch, f"{name}-gw", central, integration_bridge=f"{name}-int",
                 bridge_mappings={"physnet1": f"{name}-ex"}, gateway=True)
    gw.start()
    patch(switch, switch.bridge, f"{name}-ex")
    progress(f"OVN: NB {central.nb}, SB {central.sb}, ovn-northd; gateway chassis {gw.name} "
             f"(physnet1 on {name}-ex, trunked to {switch.bridge})")
    ns = f"{name}-outside"
    host_on_vlan(switch, ns, f"{name}-o0", PUBLIC_VLAN, PUBLIC_CIDR, PUBLIC_GATEWAY)
    progress(f"outside namespace {ns}: {PUBLIC_GATEWAY} on the public VLAN {PUBLIC_VLAN}")
    return {"ovn": {"nb": central.nb, "sb": central.sb, "gateway_chassis": gw.name,
                    "bridge_mappings": f"physnet1:{name}-ex",
                    "integration_bridge": gw.integration_bridge},
            "outside": {"name": "public", "vlan": PUBLIC_VLAN, "cidr": PUBLIC_CIDR,
                        "gateway": PUBLIC_GATEWAY, "namespace": ns,
                        "switch_port": f"{name}-o0"}}


def _build(name: str, count: int, state: Path, progress: Progress,
           backend: str = "ovs", undiscovered: int = 0, vms: int = 0, ipmi_vms: int = 0,
           uefi_vms: int = 0, vm_nics: int = 1) -> dict[str, Any]:
    switch = Switch(rundir=state / "ovs", bridge=f"{name}-tor")
    progress(f"switch {switch.bridge}: Open vSwitch, userspace datapath")
    switch.start()
    extra = _ovn(name, state, switch, progress) if backend == "ovn" else {}
    for sub in ("disks", "logs", "nodes"):
        (state / sub).mkdir(exist_ok=True)
    sock, boot_sock = state / "api.sock", state / "boot.sock"
    networks = []
    for j, (net, vlan, cidr, gateway, short) in enumerate(NETWORKS):
        ns = f"{name}-svc-{short}"
        host_on_vlan(switch, ns, f"{name}-s{j}", vlan, cidr, gateway)
        run("ip", "-n", ns, "addr", "add", f"{BOOT_ADDRESS}/32", "dev", "eth0")
        for port, target, what in ((API_PORT, sock, "api"), (BOOT_PORT, boot_sock, "boot")):
            _spawn(netns_exec(ns, sys.executable, "-m", "metalplane.lab.forward", "--listen",
                              f"0.0.0.0:{port}", "--unix", str(target)), None,
                   state / "logs" / f"forward-{short}-{what}.log")
        networks.append({"name": net, "vlan": vlan, "cidr": cidr, "gateway": gateway,
                         "namespace": ns, "interface": "eth0", "switch_port": f"{name}-s{j}"})
        progress(f"provider network {net}: VLAN {vlan}, {cidr}, service namespace {ns}")
    bmc_side = free_port()  # the BMCs' way to the boot server: the management network
    _spawn([sys.executable, "-m", "metalplane.lab.forward", "--listen", f"127.0.0.1:{bmc_side}",
            "--unix", str(boot_sock)], None, state / "logs" / "forward-bmc-boot.log")
    default_vlan = NETWORKS[0][1]
    node_specs = []
    for i in range(1, count + 1):
        node = _node_namespace(switch, state, f"{name}-node{i}", f"{name}-n{i}",
                               f"node-{i}", default_vlan)
        node["hardware"] = node_hardware(name, i, node["mac"])
        node_specs.append(node)
    if count:
        progress(f"{count} node namespace(s) {name}-node1..{count}, each a NIC on the switch "
                 "and a disk file")
    unknown = _undiscovered(name, switch, state, count, undiscovered, default_vlan)
    if unknown:
        progress(f"{undiscovered} undiscovered node namespace(s) {name}-new1..{undiscovered}: "
                 "nobody enrolls them; each has an iDRAC of its own (TLS, the lab's CA)")
    machines = (vm.create_vms(name, state, switch, default_vlan, vms, uefi_vms, vm_nics)
                if vms else [])
    if machines:
        progress(f"{vms} VM(s) {name}-vm1..{vms} (libvirt, TCG): taps {name}-v1..{vms} on the "
                 + (f"switch (and {name}-vInK for NIC K up to {vm_nics}), " if vm_nics > 1
                    else "switch, ") + f"consoles in {state}/logs/vm-I-console.log"
                 + (f"; the last {uefi_vms} boot UEFI (OVMF)" if uefi_vms else ""))
    chassis = _start_lldpd(name, state)
    progress(f"lldpd: LLDP from every switch port (chassis {chassis})")
    sup_port, emu_port = free_port(), free_port()
    spec: dict[str, Any] = {
        "name": name, "state_dir": str(state), "created_at": time.time(), "backend": backend,
        **extra,
        "switch": {"name": switch.bridge, "bridge": switch.bridge, "address": switch.address,
                   "switch_id": chassis, "default_vlan": default_vlan},
        "boot_server": {"address": BOOT_ADDRESS, "port": BOOT_PORT,
                        "url": f"http://{BOOT_ADDRESS}:{BOOT_PORT}",
                        "unix_socket": str(boot_sock),
                        "external_url": f"http://127.0.0.1:{bmc_side}"},
        "agent_api_url": f"http://{BOOT_ADDRESS}:{API_PORT}",
        "unix_socket": str(sock),
        "networks": networks,
        "emulator": {"url": f"http://127.0.0.1:{emu_port}"},
        "supervisor": {"url": f"http://127.0.0.1:{sup_port}"},
        "nodes": node_specs,
        **({"undiscovered": unknown} if unknown else {}),
        **({"vms": machines, "libvirt": {"uri": vm.libvirt_uri(state)}} if machines else {}),
    }
    for n in node_specs:
        n["bmc_address"] = f"redfish+http://127.0.0.1:{emu_port}/redfish/v1/Systems/{n['uuid']}"
    (state / "lab.json.tmp").write_text(json.dumps(spec, indent=2))
    sup = _spawn([sys.executable, "-m", "metalplane.lab.supervisor", "--state-dir", str(state),
                  "--port", str(sup_port)], None, state / "logs" / "supervisor.log")
    (state / "lab.json.tmp").rename(state / "lab.json")
    wait_http(spec["supervisor"]["url"], sup, state / "logs" / "supervisor.log",
               "the boot supervisor")
    emu = _start_emulator(state, emu_port, sup_port, node_specs)
    wait_http(f"{spec['emulator']['url']}/redfish/v1/Systems", emu,
               state / "logs" / "emulator.log", "sushy-emulator")
    progress(f"BMCs: sushy-tools Redfish emulator at {spec['emulator']['url']}")
    if machines:
        spec["emulator_libvirt"] = {"url": vm.start_emulator(state, machines)}
        progress(f"VM BMCs: sushy-tools Redfish emulator (libvirt driver) at "
                 f"{spec['emulator_libvirt']['url']}")
    if ipmi_vms:
        vm.start_virtualbmc(state, machines[-ipmi_vms:])
        progress("VM BMCs: virtualbmc (IPMI, admin/password) for " + ", ".join(
            f"{m['name']} at {m['bmc_address']}" for m in machines[-ipmi_vms:]))
    if machines:  # with the VMs' BMC addresses
        (state / "lab.json").write_text(json.dumps(spec, indent=2))
    for u in unknown:
        bmc = u["idrac"]
        cfg = idrac.write_emulator_config(state, u, f"http://127.0.0.1:{sup_port}/notify")
        log = state / "logs" / f"idrac-{u['name']}.log"
        proc = _spawn(emulator_command(cfg), None, log)
        _wait_for(lambda bmc=bmc, proc=proc: _idrac_up(bmc, proc), 30,
                  f"the iDRAC of {u['name']} did not answer: see {log}")
        progress(f"{u['name']}'s iDRAC: {bmc['url']}{bmc['system']} "
                 f"({bmc['username']}/{bmc['password']}, CA {bmc['ca']})")
    return spec


def _idrac_up(bmc: dict[str, Any], proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise LabError(f"the iDRAC emulator at {bmc['url']} exited")
    try:
        idrac.read_power(bmc)
        return True
    except LabError:
        return False


def _undiscovered(name: str, switch: Switch, state: Path, first: int, count: int,
                  vlan: int) -> list[dict[str, Any]]:
    """Namespaces ``<name>-newJ`` on switch ports ``<name>-uJ`` (the provisioning VLAN, as
    any port the switch was not told about), each a Dell with its BMC address
    ``127.0.10.<first+J>`` and an iDRAC spec (:func:`idrac.bmc_spec`)."""
    if not count:
        return []
    ca = idrac.make_ca(state / "tls")
    out = []
    for j in range(1, count + 1):
        spec = _node_namespace(switch, state, f"{name}-new{j}", f"{name}-u{j}", f"new-{j}",
                               vlan)
        hardware = node_hardware(name, first + j, spec["mac"])
        hardware["system_vendor"].update(manufacturer="Dell Inc.", product_name="PowerEdge R640")
        spec.update(hardware=hardware, idrac=idrac.bmc_spec(hardware["bmc_address"], ca),
                    bmc_address=f"https://{hardware['bmc_address']}")
        out.append(spec)
    return out


def _node_namespace(switch: Switch, state: Path, ns: str, port: str, node: str,
                    vlan: int) -> dict[str, Any]:
    """A node: namespace ``ns`` with lo up and an eth0 that is switch port ``port`` on
    ``vlan``, and a sparse disk file of :data:`DISK_SIZE` bytes; its spec (name ``node``,
    uuid, namespace, mac, switch_port, disk, disk_size)."""
    run("ip", "netns", "add", ns)
    run("ip", "-n", ns, "link", "set", "lo", "up")
    mac = add_nic(switch, ns, "eth0", port, vlan)
    disk = state / "disks" / f"{node}.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_SIZE)
    return {"name": node, "uuid": str(uuidlib.uuid4()), "namespace": ns, "mac": mac,
            "switch_port": port, "disk": str(disk), "disk_size": DISK_SIZE}


# The lab's servers, by turns: what each node's DMI says it is (its agent reports it).
LAB_MODELS = (("Dell Inc.", "PowerEdge R640"), ("HPE", "ProLiant DL360 Gen10"),
              ("Supermicro", "SYS-1029P-WTR"))


def node_hardware(lab: str, i: int, mac: str) -> dict[str, Any]:
    """Node ``i``'s own identity, as its agent's hardware file gives it (the nodes are
    namespaces of one host, which has one DMI): ``system_vendor`` (manufacturer and
    product by turns from :data:`LAB_MODELS`, serial ``<LAB>-<i>``), a BMC address
    ``127.0.10.<i>`` and BMC MAC of its own (stand-ins: the lab's BMCs are one Redfish
    emulator), and the NIC it PXE-boots from."""
    maker, product = LAB_MODELS[(i - 1) % len(LAB_MODELS)]
    return {"system_vendor": {"manufacturer": maker, "product_name": product,
                              "serial_number": f"{lab.upper()}-{i:04d}"},
            "bmc_address": f"127.0.10.{i}", "bmc_mac": f"02:00:00:0a:00:{i:02x}",
            "boot": {"pxe_interface": mac}}


def _start_lldpd(name: str, state: Path) -> str:
    """lldpd on the switch's node and service ports, sending every second with the port
    name as port ID; the chassis ID is the MAC of the first service port (lldpd takes it
    from a managed interface). Returns the chassis ID. Source: lldpd(8), lldpcli(8)."""
    sock = str(state / "lldpd.sock")
    # The settings go in the file lldpd has its own lldpcli apply before it resumes:
    # set over the socket afterwards, a change of tx-interval could race the first
    # transmission and leave lldpd silent after one frame (1 lab in 6 here).
    conf = state / "lldpd.conf"
    conf.write_text(f"configure system hostname {name}-tor\n"
                    "configure lldp portidsubtype ifname\n"
                    "configure lldp tx-interval 1\n")
    _spawn(["lldpd", "-d", "-u", sock, "-I", f"{name}-n*,{name}-s*,{name}-u*,{name}-v*",
            "-C", f"{name}-s0",
            "-O", str(conf), "-p", str(state / "lldpd.pid")], None,
           state / "logs" / "lldpd.log")
    _wait_for(lambda: Path(sock).exists(), 15, f"lldpd did not start: see {state}/logs/lldpd.log")
    chassis = ""

    def found() -> bool:
        nonlocal chassis
        out = json.loads(run("lldpcli", "-u", sock, "-f", "json", "show", "chassis") or "{}")
        body = out.get("local-chassis", {}).get("chassis", {})
        first: Any = next(iter(body.values()), {}) if isinstance(body, dict) else {}
        cid = first.get("id", {}) if isinstance(first, dict) else {}
        chassis = str(cid.get("value", "")) if cid.get("type") == "mac" else ""
        return bool(chassis)

    _wait_for(found, 10, f"lldpd reports no MAC chassis ID: see {state}/logs/lldpd.log")
    return chassis.lower()


def write_emulator_config(path: Path, port: int, state_dir: Path,
                          systems: list[dict[str, Any]], notify_url: str) -> None:
    """sushy-tools' emulator configuration: the fake driver on 127.0.0.1:``port`` with
    ``systems`` (SUSHY_EMULATOR_FAKE_SYSTEMS entries), telling ``notify_url`` of changes."""
    path.write_text(textwrap.dedent(f"""
        SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
        SUSHY_EMULATOR_LISTEN_PORT = {port}
        SUSHY_EMULATOR_FAKE_DRIVER = True
        SUSHY_EMULATOR_STATE_DIR = {str(state_dir)!r}
        SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}
        EXTERNAL_NOTIFICATION_URL = {notify_url!r}
    """))


def emulator_command(config: Path) -> list[str]:
    """The command that runs sushy-emulator with ``config``. Raises :class:`LabError` when
    it is not installed."""
    exe = Path(sys.executable).parent / "sushy-emulator"
    if not exe.exists():
        raise LabError("sushy-emulator is not installed: pip install 'metalplane[lab]' "
                       "(scripts/setup.sh does)")
    return [str(exe), "--config", str(config)]


def _start_emulator(state: Path, port: int, notify_port: int, nodes: list[dict[str, Any]]
                    ) -> subprocess.Popen[bytes]:
    systems = [{"uuid": n["uuid"], "name": n["name"], "power_state": "Off",
                "external_notifier": True, "nics": [{"mac": n["mac"]}]} for n in nodes]
    cfg = state / "emulator.conf"
    write_emulator_config(cfg, port, state / "emulator-state", systems,
                          f"http://127.0.0.1:{notify_port}/notify")
    return _spawn(emulator_command(cfg), None, state / "logs" / "emulator.log")


def server_settings(spec: dict[str, Any]) -> dict[str, str]:
    """The ``METALPLANE_*`` settings a server needs to run this lab's nodes."""
    nets = {n["name"]: n for n in spec["networks"]}
    ovn = ({"METALPLANE_NETWORK_BACKEND": "ovn",
            "METALPLANE_OVN_NB_CONNECTION": spec["ovn"]["nb"],
            "METALPLANE_OVN_GATEWAY_CHASSIS": spec["ovn"]["gateway_chassis"]}
           if spec.get("backend") == "ovn" else {})
    # undiscovered nodes: discovery on, and their iDRACs' certificates trusted (the lab's CA)
    discovery = ({"METALPLANE_DISCOVERY_ENABLED": "true",
                  "METALPLANE_REDFISH_VERIFY_CA": spec["undiscovered"][0]["idrac"]["ca"]}
                 if spec.get("undiscovered") else {})
    return {**ovn, **discovery,
        "METALPLANE_UNIX_SOCKET": spec["unix_socket"],
        "METALPLANE_BOOT_UNIX_SOCKET": spec["boot_server"]["unix_socket"],
        "METALPLANE_BOOT_SERVER_URL": spec["boot_server"]["url"],
        "METALPLANE_EXTERNAL_HTTP_URL": spec["boot_server"].get("external_url", ""),
        "METALPLANE_AGENT_API_URL": spec["agent_api_url"],
        "METALPLANE_DHCP_BINDINGS": ",".join(f"{n}={v['namespace']}:{v['interface']}"
                                             for n, v in nets.items()),
        "METALPLANE_INSPECTION_NETWORK": "provisioning",
        "METALPLANE_PROVISIONING_NETWORK": "provisioning",
        "METALPLANE_CLEANING_NETWORK": "cleaning",
        "METALPLANE_DEFAULT_NETWORK_INTERFACE": "neutron",
        # nodes made by a BareMetalHost (kubectl) boot the agent too, as BMO sets them
        "METALPLANE_DEFAULT_BOOT_INTERFACE": "ipxe",
        "METALPLANE_DEFAULT_DEPLOY_INTERFACE": "direct",
        "METALPLANE_DEFAULT_INSPECT_INTERFACE": "agent",
    }


def tor(spec: dict[str, Any]) -> Switch:
    """The ToR of the rack ``spec`` describes (its bridge in its private run directory)."""
    return Switch(rundir=Path(spec["state_dir"]) / "ovs", bridge=spec["switch"]["bridge"])


def status(name: str = "mplab") -> dict[str, Any]:
    """What each node looks like now: namespace, MAC, switch port and its VLAN, IP
    addresses, power state (from its BMC), what runs on it, BMC address."""
    spec = load(name)
    state = Path(spec["state_dir"])
    try:
        tags = tor(spec).tags()
    except LabError:
        tags = {}
    nodes = []
    with httpx.Client(timeout=5) as http:
        for n in [*spec["nodes"], *spec.get("undiscovered", [])]:
            try:
                r = http.get(f"{spec['emulator']['url']}/redfish/v1/Systems/{n['uuid']}")
                power = str(r.json().get("PowerState", "unknown")) if r.status_code == 200 \
                    else "unknown"
            except (httpx.TransportError, ValueError):
                power = "unreachable"
            if "idrac" in n:
                try:
                    power = idrac.read_power(n["idrac"])
                except LabError:
                    power = "unreachable"
            try:
                addrs = json.loads(run("ip", "-j", "-n", n["namespace"], "addr", "show", "eth0"))
                ips = [f"{a['local']}/{a['prefixlen']}" for a in addrs[0].get("addr_info", [])
                       if a.get("family") == "inet"]
            except (LabError, ValueError, IndexError):
                ips = []
            try:
                runtime = json.loads((state / "nodes" / f"{n['name']}.json").read_text())
            except (OSError, ValueError):
                runtime = {}
            nodes.append({"name": n["name"], "namespace": n["namespace"], "mac": n["mac"],
                          "switch_port": n["switch_port"], "vlan": tags.get(n["switch_port"]),
                          "ip_addresses": ips, "power_state": power,
                          "os": runtime.get("os", "unknown"), "detail": runtime.get("detail", ""),
                          "bmc_address": n["bmc_address"]})
    for m in spec.get("vms", []):
        nodes.append({"name": m["name"], "namespace": f"(VM {m['domain']})", "mac": m["mac"],
                      "switch_port": m["switch_port"], "vlan": tags.get(m["switch_port"]),
                      "ip_addresses": [], "power_state": vm.power(spec["libvirt"]["uri"],
                                                                  m["domain"]),
                      "os": "unknown", "detail": f"console: {m['console']}",
                      "bmc_address": m["bmc_address"]})
    return {"name": name, "state_dir": str(state), "switch": spec["switch"],
            "networks": [{**n, "switch_vlan": tags.get(n["switch_port"])}
                         for n in spec["networks"]],
            "boot_server": spec["boot_server"], "server_settings": server_settings(spec),
            "nodes": nodes}


def down(name: str = "mplab", quiet: bool = False) -> list[str]:
    """Remove everything lab ``name`` created: processes (found by the state directory
    on their command line and in its namespaces), namespaces, links, the switch, files.
    Works after a crash and when nothing is up. Returns what it removed."""
    check_name(name)
    state = lab_dir(name)
    removed = vm.remove_vms(name, state)  # before its libvirtd is killed below
    if state.exists() or not quiet:
        n = kill_mentioning(str(state)) if state.exists() else 0
        if n:
            removed.append(f"{n} process(es)")
    removed += remove_prefixed(f"{name}-")
    reap()
    if state.exists():
        shutil.rmtree(state, ignore_errors=True)
        removed.append(f"directory {state}")
    return removed
