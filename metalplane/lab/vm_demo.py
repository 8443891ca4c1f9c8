"""``metalplane demo --vms``: two real machines (libvirt/QEMU, TCG) from enroll to active.

The rack has no namespace nodes but two VM nodes (``lab up --vms 2 --ipmi-vms 1``): vm-1
behind sushy-tools' libvirt driver (Redfish), vm-2 behind virtualbmc (IPMI). The demo:

1. builds (or takes from the cache) the ramdisk (``metalplane ramdisk build``) and the
   Debian image (``metalplane image build debian``);
2. enrolls the VMs by their BMC addresses and boot MACs, no wiring given;
3. inspects them: SeaBIOS, the virtio NIC's iPXE ROM, the node's iPXE script, the ramdisk;
   the agent reports the virtual hardware and the ToR port it hears over LLDP;
4. cleans them (the ramdisk on the cleaning VLAN);
5. deploys the qcow2 Debian image with a config drive onto tenant A (vm-1) and tenant B
   (vm-2): the VM reboots from its disk, cloud-init reads ``config-2``, sets the tenant
   address from ``network_data.json`` and runs the user data (a marker file, an HTTP
   responder on port 8000, and probes whose results it prints on the serial console);
6. checks by traffic from a peer namespace on each tenant's VLAN (``<lab>-ta`` with
   ``192.168.50.250``, ``<lab>-tb`` with ``.251``: the tenants share one subnet, so only
   VLANs keep them apart), and from inside each VM (its probes);
7. undeploys vm-2, which is cleaned and ``available`` again.

It reports each phase's time and where the serial consoles' logs are.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalplane.build import image, ramdisk
from metalplane.build.common import BuildError, sha256_file
from metalplane.client.http import Client
from metalplane.lab import lab
from metalplane.lab.demo import TENANT_CIDR, TENANTS, DemoError
from metalplane.lab.rack import reaches

if TYPE_CHECKING:
    from metalplane.lab.demo import Demo

__all__ = ["BUILD_CACHE", "PEERS", "VMS", "deploy", "run"]

VMS = 2  # vm-1 Redfish, vm-2 IPMI
BUILD_CACHE = Path(os.environ.get("METALPLANE_BUILD_CACHE", "/var/cache/metalplane/build"))
PEERS = {"tenant-a": ("ta", "192.168.50.250"), "tenant-b": ("tb", "192.168.50.251")}
BOOTED = re.compile(r"Cloud-init v\. \S+ finished")
OS_TIMEOUT = 420.0  # s: from active to cloud-init finished, under TCG


def _user_data(name: str, tenant: str, gateway: str, borrow: str, own_peer: str,
               other_peer: str) -> str:
    """The cloud-config the demo deploys (cloud-init's ``write_files`` and ``runcmd``): a
    marker file, ``python3 -m http.server 8000`` serving it (a transient systemd unit, so it
    outlives cloud-init), and a script of ping probes whose results go to the serial console
    as ``metalplane-probe <what> <address> <result>``: its tenant's peer (reached), the other
    tenant's peer (not reached), and the provisioning network's gateway from a borrowed
    address in that subnet (not reached)."""
    marker = f"deployed by metalplane: {name} on {tenant}"
    script = "\n".join([
        "#!/bin/sh",
        "probe() {",
        '  if ping -c 3 -W 1 "$2" >/dev/null 2>&1; then r=reached; else r=unreachable; fi',
        '  echo "metalplane-probe $1 $2 $r" > /dev/console',
        "}",
        "dev=$(ip -o -4 addr show | awk '$4 ~ /^192[.]168[.]50[.]/ {print $2; exit}')",
        f"probe own-tenant-peer {own_peer}",
        f"probe other-tenant-peer {other_peer}",
        f'ip addr add {borrow} dev "$dev"',
        f"probe provisioning {gateway}",
        f'ip addr del {borrow} dev "$dev"', ""])
    return (f"#cloud-config\nhostname: {name}\n"
            "write_files:\n"
            "  - path: /srv/www/marker\n"
            f"    content: {json.dumps(marker + chr(10))}\n"
            "  - path: /usr/local/sbin/metalplane-probes\n"
            "    permissions: '0755'\n"
            f"    content: {json.dumps(script)}\n"
            "runcmd:\n"
            "  - [systemd-run, --unit=demo-http, python3, -m, http.server, '8000', "
            "--directory, /srv/www]\n"
            "  - [sh, -c, 'echo metalplane-marker: $(cat /srv/www/marker) > /dev/console']\n"
            "  - [/usr/local/sbin/metalplane-probes]\n")


def _peers(demo: Demo, c: Client) -> dict[str, dict[str, Any]]:
    """A namespace on each tenant network's VLAN with its address of :data:`PEERS`; by
    tenant: namespace, VLAN, address."""
    switch = lab.tor(demo.spec)
    nets = {n["name"]: n for n in c.get("/v2.0/networks")["networks"]}
    peers = {}
    for tenant, (short, address) in PEERS.items():
        vlan = int(nets[tenant]["provider:segmentation_id"])
        ns = f"{demo.name}-{short}"
        lab.host_on_vlan(switch, ns, f"{demo.name}-{short}0", vlan, TENANT_CIDR, address)
        peers[tenant] = {"namespace": ns, "vlan": vlan, "address": address}
        demo.say(f"peer {ns}: {address} on {tenant}'s VLAN {vlan}")
    return peers


def _builds(demo: Demo) -> Path:
    """The ramdisk installed for the server, and the Debian image; the qcow2's path."""
    server = Path(demo.spec["state_dir"]) / "server"
    cache = demo.build_cache or BUILD_CACHE
    try:
        rd = ramdisk.build(server, cache_dir=cache / "ramdisk", progress=demo.say)
        demo.say(f"ramdisk {rd.key}: initramfs {rd.initramfs.stat().st_size >> 20} MiB, "
                 f"kernel {rd.kernel.stat().st_size >> 20} MiB "
                 f"({'cached' if rd.cached else 'built'}, {rd.seconds:.0f}s)")
        im = image.build("debian", server, cache_dir=cache / "image", install=False,
                         progress=demo.say)
    except BuildError as exc:
        raise DemoError(f"build: {exc}") from None
    demo.say(f"image {im.qcow2.name}: {im.qcow2.stat().st_size >> 20} MiB qcow2 "
             f"({'cached' if im.cached else 'built'}, {im.seconds:.0f}s)")
    return im.qcow2


def _check_inspection(demo: Demo, c: Client) -> None:
    sw = demo.spec["switch"]
    for v in demo.spec["vms"]:
        port = c.get("/v1/ports", address=v["mac"], detail=True)["ports"][0]
        llc = port.get("local_link_connection") or {}
        demo.check(f"{v['name']}: LLDP heard in the VM wired it to {sw['name']} port "
                   f"{v['switch_port']}", llc.get("switch_id") == sw["switch_id"]
                   and llc.get("port_id") == v["switch_port"], str(llc or "no LLDP"))
        inv = c.get(f"/v1/nodes/{v['name']}/inventory")["inventory"]
        nic: dict[str, Any] = next(
            (i for i in inv["interfaces"] if i["mac_address"] == v["mac"]), {})
        disk = (inv.get("disks") or [{}])[0]
        vendor = inv.get("system_vendor") or {}
        demo.check(f"{v['name']}: its inventory is the VM's hardware (virtio NIC, "
                   f"{disk.get('name')} of {v['disk_size'] >> 30} GiB, "
                   f"{vendor.get('manufacturer')} "
                   f"{vendor.get('product_name')})",
                   nic.get("driver") == "virtio_net" and disk.get("name") == "/dev/vda"
                   and disk.get("size") == v["disk_size"] and vendor.get("manufacturer") == "QEMU",
                   f"NIC {nic.get('driver')}, disk {disk.get('name')} {disk.get('size')}")
        console = Path(v["console"]).read_text(errors="replace")
        demo.check(f"{v['name']}: its serial console shows the ramdisk's agent",
                   "metalplane-ramdisk:" in console)


def _check_cleaning(demo: Demo) -> None:
    """Each VM asked the cleaning network's dnsmasq for an address (its DHCP log)."""
    dhcp = Path(demo.spec["state_dir"]) / "server" / "dhcp"
    logs = {p.parent.name: p.read_text(errors="replace").lower()
            for p in dhcp.glob("*/dnsmasq.log")}
    cleaning = next((t for n, t in logs.items() if "cleaning" in n), "")
    for v in demo.spec["vms"]:
        demo.check(f"{v['name']} was cleaned on the cleaning network (its DHCPACK there)",
                   bool(re.search(rf"dhcpack\S* \S+ {v['mac']}", cleaning)),
                   ", ".join(logs) or "no dnsmasq log")


def deploy(c: Client, name: str, qcow2: Path, checksum: str, configdrive: dict[str, Any],
           consumer: str | None = None) -> None:
    """Ask node ``name`` to deploy the qcow2 image ``qcow2`` whose SHA-256 is ``checksum``
    (its ``instance_info``; ``consumer`` in ``extra/consumer``) with ``configdrive`` (the
    Bare Metal API's dict). Raises :class:`~metalplane.client.http.ApiError`."""
    patch = [{"op": "add", "path": "/instance_info", "value": {
        "image_source": str(qcow2), "image_checksum": f"sha256:{checksum}",
        "image_disk_format": "qcow2"}}]
    if consumer is not None:
        patch.append({"op": "add", "path": "/extra/consumer", "value": consumer})
    c.patch(f"/v1/nodes/{name}", patch)
    c.put(f"/v1/nodes/{name}/states/provision", {"target": "active",
                                                 "configdrive": configdrive})


def _deploy(demo: Demo, c: Client, qcow2: Path) -> dict[str, dict[str, Any]]:
    digest = sha256_file(qcow2)
    nets = {n["name"]: n for n in c.get("/v2.0/networks")["networks"]}
    prov = next(n for n in demo.spec["networks"] if n["name"] == "provisioning")
    plan: dict[str, dict[str, Any]] = {}
    for i, v in enumerate(demo.spec["vms"]):
        tenant = TENANTS[i % 2][0]
        other = TENANTS[(i + 1) % 2][0]
        net = nets[tenant]
        port = c.post("/v2.0/ports", {"port": {"network_id": net["id"],
                                               "name": f"{v['name']}-vif"}})["port"]
        c.post(f"/v1/nodes/{v['name']}/vifs", {"id": port["id"]})
        ip = port["fixed_ips"][0]["ip_address"]
        plan[v["name"]] = {"tenant": tenant, "other": other, "ip": ip,
                           "vlan": net["provider:segmentation_id"]}
        demo.say(f"{v['name']} → {tenant} (VLAN {net['provider:segmentation_id']}, {ip}), "
                 f"Debian 12 qcow2")
        borrow = prov["cidr"].rsplit(".", 1)[0] + f".{240 + i}/24"
        deploy(c, v["name"], qcow2, digest, {
            "user_data": _user_data(v["name"], tenant, prov["gateway"], borrow,
                                    PEERS[tenant][1], PEERS[other][1]),
            "meta_data": {"consumer": tenant}}, consumer=f"{tenant}/{v['name']}")
    demo._wait(c, list(plan), "active", "deploy")
    return plan


def _wait_booted(demo: Demo) -> dict[str, str]:
    """Each VM's serial console once cloud-init finished there (or the timeout)."""
    deadline = time.monotonic() + OS_TIMEOUT
    consoles: dict[str, str] = {}
    pending = {v["name"]: Path(v["console"]) for v in demo.spec["vms"]}
    seen: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name, path in list(pending.items()):
            text = path.read_text(errors="replace") if path.exists() else ""
            # what this boot printed: after the last ramdisk's lines
            boot = text[text.rfind("metalplane-ramdisk:"):]
            consoles[name] = boot
            last = next((line for line in reversed(boot.splitlines()) if line.strip()), "")
            if "login:" in last and seen.get(name) != "login":
                seen[name] = "login"
                demo.say(f"{name}: {last.strip()[:100]}")
            booted = BOOTED.search(boot)
            if booted and "metalplane-probe provisioning" in boot:
                demo.say(f"{name}: {booted.group(0)}")
                del pending[name]
        if pending:
            time.sleep(2)
    return consoles


def _check_tenants(demo: Demo, plan: dict[str, dict[str, Any]],
                   peers: dict[str, dict[str, Any]], consoles: dict[str, str]) -> None:
    tags = lab.tor(demo.spec).tags()
    for v in demo.spec["vms"]:
        name, p = v["name"], plan[v["name"]]
        boot = consoles.get(name, "")
        demo.check(f"{name}: switch port {v['switch_port']} on {p['tenant']}'s VLAN "
                   f"{p['vlan']}", tags.get(v["switch_port"]) == p["vlan"],
                   f"VLAN {tags.get(v['switch_port'])}")
        demo.check(f"{name}: \"Cloud-init ... finished\" on its serial console, from the "
                   "config drive", bool(BOOTED.search(boot))
                   and "DataSourceConfigDrive" in boot, f"see {v['console']}")
        demo.check(f"{name}: cloud-init set {p['ip']} from network_data.json",
                   bool(re.search(rf"\|\s+True\s+\|\s+{re.escape(p['ip'])}\s+\|", boot)))
        demo.check(f"{name}: the user data ran (its marker on the console)",
                   f"metalplane-marker: deployed by metalplane: {name} on {p['tenant']}" in boot)
        own, other = peers[p["tenant"]]["namespace"], peers[p["other"]]["namespace"]
        demo.check(f"{name} answers ping on {p['ip']} from {own} ({p['tenant']})",
                   reaches(own, p["ip"]))
        body = demo.get_http(own, f"http://{p['ip']}:8000/marker", seconds=3)
        demo.check(f"{name} answers HTTP on {p['ip']}:8000 from {own}: its marker",
                   body is not None and name in body, repr(body)[:80])
        demo.check(f"{name} is not reached from the other tenant's peer {other} (same "
                   "subnet, other VLAN)", not reaches(other, p["ip"], 2))
        for what, want in (("own-tenant-peer", "reached"),
                           ("other-tenant-peer", "unreachable"),
                           ("provisioning", "unreachable")):
            got = re.search(rf"metalplane-probe {what} \S+ (\w+)", boot)
            demo.check(f"{name}, from inside: {what.replace('-', ' ')} {want}",
                       bool(got) and got.group(1) == want,  # type: ignore[union-attr]
                       got.group(0) if got else "no probe on the console")


def _undeploy(demo: Demo, c: Client, plan: dict[str, dict[str, Any]],
              peers: dict[str, dict[str, Any]]) -> None:
    v = demo.spec["vms"][-1]
    name, p = v["name"], plan[v["name"]]
    demo._provision(c, [name], "deleted", "available")
    c.patch(f"/v1/nodes/{name}", [{"op": "remove", "path": "/extra/consumer"}])
    tag = lab.tor(demo.spec).tag(v["switch_port"])
    demo.check(f"{name}: off {p['tenant']}'s VLAN after undeploy", tag != p["vlan"],
               f"switch port on VLAN {tag}")
    demo.check(f"{peers[p['tenant']]['namespace']} no longer reaches {name} ({p['ip']})",
               not reaches(peers[p["tenant"]]["namespace"], p["ip"], 1))
    node = c.get(f"/v1/nodes/{name}")
    demo.check(f"{name}: cleaned, powered off and available",
               node["power_state"] == "power off" and node["provision_state"] == "available",
               node["power_state"])


def run(demo: Demo, c: Client) -> int:
    """The VM demo on ``demo``'s rack and server; 0 if every check passed."""
    names = [v["name"] for v in demo.spec["vms"]]
    with demo.phase("build"):
        qcow2 = _builds(demo)
    with demo.phase("enroll"):
        demo._enroll(c, names)
        demo._provision(c, names, "manage", "manageable")
    with demo.phase("inspect"):
        demo._provision(c, names, "inspect", "manageable")
        _check_inspection(demo, c)
    with demo.phase("clean"):
        demo._provision(c, names, "provide", "available")
        _check_cleaning(demo)
    with demo.phase("deploy"):
        peers = _peers(demo, c)
        plan = _deploy(demo, c, qcow2)
    with demo.phase("first boot"):
        consoles = _wait_booted(demo)
    with demo.phase("checks"):
        _check_tenants(demo, plan, peers, consoles)
    with demo.phase("undeploy"):
        _undeploy(demo, c, plan, peers)
    demo._report(c)
    for v in demo.spec["vms"]:
        demo.console.print(f"{v['name']} serial console: {v['console']}"
                           + ("" if demo.keep else " (removed with the rack; --keep keeps it)"),
                           highlight=False)
    return 0 if all(ch.ok for ch in demo.checks) else 1
