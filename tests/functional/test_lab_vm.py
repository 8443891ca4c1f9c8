"""VM nodes of the lab (``metalplane lab up --vms N``), for real: a private libvirtd, a TCG
domain whose virtio NIC is a tap on the lab's Open vSwitch ToR, sushy-tools' libvirt driver
as its BMC, and a metalplane server that powers it on through Redfish: the NIC's iPXE ROM
takes its script from the lab's dnsmasq, boots ``metalplane ramdisk build``'s ramdisk (the
shared build cache of test_ramdisk.py) and the agent inspects the VM. Every test removes
the lab (domain, disk, tap, libvirtd, emulators) even when it fails. Run under the lab
lock (namespaces, OVS, libvirt)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from metalplane.build import ramdisk
from metalplane.common.bmc_address import parse_bmc_address
from metalplane.lab import lab
from metalplane.lab.demo import Demo
from metalplane.lab.rack import run
from tests.functional.test_lab import assert_nothing_left
from tests.helpers.peers import free_port
from tests.helpers.rack import need_root_and_ovs

pytestmark = pytest.mark.functional
CACHE = Path(os.environ.get("METALPLANE_TEST_CACHE", "/var/tmp/metalplane-test-cache"))


@pytest.fixture
def lab_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    need_root_and_ovs()
    root = Path("/tmp") / f"mpl-{secrets.token_hex(3)}"  # short: unix socket paths
    monkeypatch.setenv("METALPLANE_LAB_ROOT", str(root))
    name = "m" + secrets.token_hex(3)
    try:
        yield name, root
    finally:
        lab.down(name, quiet=True)
        assert_vm_gone(name, root)


def assert_vm_gone(name: str, root: Path) -> None:
    assert_nothing_left(name, root)  # taps, processes (QEMU, libvirtd, emulators), files
    assert not list(Path("/etc/libvirt/qemu").glob(f"{name}-vm*.xml"))  # undefined
    root.rmdir() if root.exists() else None


def _system(url: str) -> dict[str, Any]:
    r = httpx.get(url, timeout=30)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def _wait_power(url: str, want: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = str(_system(url).get("PowerState"))
        if state == want:
            break
        time.sleep(0.5)
    return state


def test_a_vm_node_on_the_tor_powered_through_the_libvirt_bmc(
        lab_root: tuple[str, Path]) -> None:
    import libvirt

    name, root = lab_root
    t0 = time.monotonic()
    spec = lab.up(name, 0, vms=1)
    state = Path(spec["state_dir"])
    assert spec["nodes"] == []
    vm = spec["vms"][0]
    assert vm["domain"] == f"{name}-vm1" and vm["switch_port"] == f"{name}-v1"
    assert json.loads((state / "lab.json").read_text())["vms"][0]["bmc_address"] == \
        vm["bmc_address"]

    # the tap is an access port of the ToR on the provisioning VLAN, as a node's veth
    switch = lab.tor(spec)
    assert switch.tag(vm["switch_port"]) == spec["switch"]["default_vlan"]
    assert json.loads(run("ip", "-j", "-d", "link", "show", vm["switch_port"])
                      )[0]["linkinfo"]["info_kind"] == "tun"

    # the domain: TCG, 1 GiB, network then disk, the tap as its virtio NIC, serial to a file
    conn = libvirt.open(spec["libvirt"]["uri"])
    try:
        xml = ET.fromstring(conn.lookupByName(vm["domain"]).XMLDesc(0))
    finally:
        conn.close()
    assert xml.get("type") == "qemu" and xml.findtext("uuid") == vm["uuid"]
    assert int(xml.findtext("memory") or 0) == 1 << 20  # KiB
    assert [b.get("dev") for b in xml.findall("./os/boot")] == ["network", "hd"]
    nic = xml.find("./devices/interface")
    assert nic is not None and nic.get("type") == "ethernet"
    assert nic.find("target").get("dev") == vm["switch_port"]  # type: ignore[union-attr]
    assert nic.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    assert nic.find("mac").get("address") == vm["mac"]  # type: ignore[union-attr]
    disk = xml.find("./devices/disk/source")
    assert disk is not None and disk.get("file") == vm["disk"] and Path(vm["disk"]).exists()
    assert xml.find("./devices/serial/source").get("path") == vm["console"]  # type: ignore[union-attr]

    # lab status shows it; its BMC (the libvirt emulator) powers it on and off
    status = lab.status(name)
    row = next(n for n in status["nodes"] if n["name"] == "vm-1")
    assert row["power_state"] == "Off" and row["vlan"] == spec["switch"]["default_vlan"]
    url = vm["bmc_address"].removeprefix("redfish+")
    system = _system(url)
    assert system["PowerState"] == "Off" and system["Id"] == vm["uuid"]
    httpx.post(f"{url}/Actions/ComputerSystem.Reset", json={"ResetType": "On"},
               timeout=60).raise_for_status()
    assert _wait_power(url, "On") == "On"
    assert lab.status(name)["nodes"][0]["power_state"] == "On"
    assert Path(vm["console"]).exists()  # QEMU's serial console (virtlogd writes it)
    httpx.post(f"{url}/Actions/ComputerSystem.Reset", json={"ResetType": "ForceOff"},
               timeout=60).raise_for_status()
    assert _wait_power(url, "Off") == "Off"

    # down removes the domain (undefined), disk, tap, libvirtd and emulators
    removed = lab.down(name)
    assert f"domain {name}-vm1" in removed
    assert_vm_gone(name, root)
    print(f"VM lab up/power/down: {time.monotonic() - t0:.0f}s")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ramdisk.Result:
    return ramdisk.build(tmp_path_factory.mktemp("ramdisk-data"), cache_dir=CACHE / "ramdisk",
                         install=False)


@contextlib.contextmanager
def _inspected_vm(name: str, built: ramdisk.Result, uefi: bool = False
                  ) -> Iterator[tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """A lab with one VM (UEFI with ``uefi``), a metalplane server, the VM enrolled (Redfish,
    ``ipxe`` boot; ``boot_mode:uefi`` in its capabilities with ``uefi``) and inspected to
    manageable; yields (client, lab spec, VM spec, node), then tears it all down."""
    buf = io.StringIO()
    d = Demo(nodes=0, name=name, port=free_port(), timeout=180, kubectl=False,
             console=Console(file=buf, width=200, highlight=False))
    try:
        d.spec = spec = lab.up(name, 0, vms=1, uefi_vms=int(uefi))
        state = Path(spec["state_dir"])
        # the server's boot server serves the built ramdisk (the cache's, installed)
        assert ramdisk.build(state / "server", cache_dir=CACHE / "ramdisk").key == built.key
        c = d._start_server()
        d._networks(c)
        vm, sw = spec["vms"][0], spec["switch"]
        driver, info = parse_bmc_address(vm["bmc_address"], "admin", "password")
        assert driver == "redfish"
        node = c.post("/v1/nodes", {
            "name": vm["name"], "driver": driver, "driver_info": info,
            "boot_interface": "ipxe", "deploy_interface": "direct",
            "inspect_interface": "agent", "network_interface": "neutron",
            **({"properties": {"capabilities": "boot_mode:uefi"}} if uefi else {})})
        uuid = node["uuid"]
        c.post("/v1/ports", {"address": vm["mac"], "node_uuid": uuid, "pxe_enabled": True,
                             "local_link_connection": {"switch_id": sw["switch_id"],
                                                       "port_id": vm["switch_port"],
                                                       "switch_info": sw["name"]}})
        c.put(f"/v1/nodes/{uuid}/states/provision", {"target": "manage"})
        _wait(c, uuid, "manageable", 60, vm["console"])
        c.put(f"/v1/nodes/{uuid}/states/provision", {"target": "inspect"})
        inspected = _wait(c, uuid, "manageable", 240, vm["console"])
        console = Path(vm["console"]).read_text(errors="replace")
        assert f"metalplane-ramdisk: metalplane ramdisk {built.key}" in console
        assert f"I am node {uuid}" in console
        yield c, spec, vm, inspected
    finally:
        d._teardown()


def test_a_vm_node_pxe_boots_the_ramdisk_and_is_inspected(
        lab_root: tuple[str, Path], built: ramdisk.Result) -> None:
    name, _root = lab_root
    t0 = time.monotonic()
    with _inspected_vm(name, built) as (c, _spec, vm, inspected):
        assert vm["firmware"] == "bios"
        inv = c.get(f"/v1/nodes/{inspected['uuid']}/inventory")["inventory"]
        nic = next(i for i in inv["interfaces"] if i["mac_address"] == vm["mac"])
        assert nic["driver"] == "virtio_net"
        assert (nic["ipv4_address"] or "").startswith("10.70.0."), nic  # the lab's dnsmasq
        assert inv["disks"][0]["name"] == "/dev/vda"
        assert inv["disks"][0]["size"] == vm["disk_size"]
        assert inv["boot"]["current_boot_mode"] == "bios"
        assert inspected["properties"]["cpus"] == 1
        print(f"VM PXE boot and inspection: {time.monotonic() - t0:.0f}s")


@pytest.mark.timeout(1500)  # TCG: the ramdisk twice, Debian's first boot; perhaps a build
def test_a_uefi_vm_node_pxe_boots_snponly_efi_is_inspected_and_deployed(
        lab_root: tuple[str, Path], built: ramdisk.Result) -> None:
    """OVMF's own PXE client (option 93: x86-64 UEFI) gets snponly.efi over TFTP, because
    the node's boot mode is uefi; snponly.efi (iPXE) gets the node's script, which boots
    the ramdisk; the agent sees UEFI firmware. Then the Debian image is deployed: OVMF
    boots it from the disk (GRUB on its EFI system partition) and cloud-init finishes."""
    import libvirt

    from metalplane.build import image
    from metalplane.lab import vm_demo

    name, _root = lab_root
    t0 = time.monotonic()
    with _inspected_vm(name, built, uefi=True) as (c, spec, vm, inspected):
        assert vm["firmware"] == "uefi" and Path(vm["nvram"]).exists()
        conn = libvirt.open(spec["libvirt"]["uri"])
        try:
            xml = ET.fromstring(conn.lookupByName(vm["domain"]).XMLDesc(0))
        finally:
            conn.close()
        loader = xml.find("./os/loader")
        assert loader is not None and loader.get("type") == "pflash"
        assert loader.get("secure") != "yes" and "OVMF" in (loader.text or "")
        assert xml.findtext("./os/nvram") == vm["nvram"]
        # OVMF's own PXE client started the boot (its console is the serial port), then
        # snponly.efi's iPXE ran on it
        console = Path(vm["console"]).read_text(errors="replace")
        assert ">>Start PXE over IPv4" in console and "iPXE" in console, console[:3000]
        inv = c.get(f"/v1/nodes/{inspected['uuid']}/inventory")["inventory"]
        assert inv["boot"]["current_boot_mode"] == "uefi"
        dhcp = Path(spec["state_dir"]) / "server" / "dhcp"
        log = "".join(p.read_text(errors="replace") for p in dhcp.glob("*/dnsmasq.log"))
        tftp = "".join(p.read_text(errors="replace") for p in dhcp.glob("*/tftp.log"))
        # dnsmasq tagged OVMF's request as UEFI and sent it the EFI first stage, not the
        # BIOS one; the TFTP dnsmasq sent the file; then iPXE asked (user class iPXE)
        assert re.search(r"tags: [^\n]*\befi\b", log), log[-3000:]
        assert re.search(r"option:\s*67 bootfile-name\s+snponly\.efi", log), log[-3000:]
        assert "undionly.kpxe" not in log
        assert re.search(r"sent \S*snponly\.efi to", tftp), tftp[-2000:]
        assert re.search(rf"option:\s*67 bootfile-name\s+\S+/boot/{inspected['uuid']}\.ipxe",
                         log)
        print(f"UEFI VM PXE boot and inspection: {time.monotonic() - t0:.0f}s")

        # the deploy (no cleaning: it is the inspection's ramdisk again), then the disk boot
        im = image.build("debian", Path(spec["state_dir"]) / "server",
                         cache_dir=CACHE / "image", install=False)
        c.patch(f"/v1/nodes/{vm['name']}", [{"op": "replace", "path": "/automated_clean",
                                             "value": False}])
        c.put(f"/v1/nodes/{vm['name']}/states/provision", {"target": "provide"})
        _wait(c, inspected["uuid"], "available", 120, vm["console"])
        written = Path(vm["console"]).stat().st_size
        vm_demo.deploy(c, vm["name"], im.qcow2, im.manifest["files"]["debian-12.qcow2"]["sha256"],
                       {"user_data": "#cloud-config\nruncmd:\n  - [sh, -c, 'echo "
                                     "metalplane-uefi-deployed > /dev/console']\n"})
        _wait(c, inspected["uuid"], "active", 400, vm["console"])
        deadline = time.monotonic() + 400
        boot = ""
        while time.monotonic() < deadline and not vm_demo.BOOTED.search(boot):
            time.sleep(2)
            text = Path(vm["console"]).read_text(errors="replace")[written:]
            boot = text[text.rfind("metalplane-ramdisk:"):]  # after the deploy's ramdisk
        assert vm_demo.BOOTED.search(boot), boot[-3000:]
        assert "efi: EFI v" in boot  # the image's kernel started by UEFI firmware (GRUB)
        assert "DataSourceConfigDrive" in boot and "metalplane-uefi-deployed" in boot
        print(f"... and deployed, cloud-init finished: {time.monotonic() - t0:.0f}s")


def _wait(c: Any, uuid: str, want: str, timeout: float, console: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = c.get(f"/v1/nodes/{uuid}")
        if node["provision_state"] == want and node["target_provision_state"] is None:
            return node
        if node["provision_state"].endswith("failed"):
            break
        time.sleep(1)
    text = Path(console).read_text(errors="replace") if Path(console).exists() else ""
    raise AssertionError(f"node is {node.get('provision_state')} ({node.get('last_error')}); "
                         f"serial console:\n{text[-3000:]}")


def _vm_demo(name: str, **kw: Any) -> tuple[Demo, io.StringIO]:
    buf = io.StringIO()
    return Demo(nodes=0, name=name, port=free_port(), kubectl=False, vms=True,
                build_cache=CACHE, console=Console(file=buf, width=200, highlight=False,
                                                   emoji=False), **kw), buf


@pytest.mark.timeout(1200)  # TCG: several boots of the ramdisk and the image
def test_the_vm_demo_brings_two_vms_to_active_on_isolated_tenant_networks(
        lab_root: tuple[str, Path]) -> None:
    """``metalplane demo --vms`` as the CLI runs it: Redfish and IPMI, real PXE, LLDP in
    the VMs, cleaning, the Debian image with cloud-init from the config drive, traffic."""
    name, _root = lab_root
    d, buf = _vm_demo(name, timeout=900)
    code = d.run()  # tears the rack down itself; the fixture checks nothing is left
    out = buf.getvalue()
    unmet = [f"{c.what} ({c.detail})" for c in d.checks if not c.ok]
    assert code == 0 and not unmet, "\n".join(unmet) + "\n" + out[-8000:]
    whats = "\n".join(c.what for c in d.checks)
    for want in ("vm-2: LLDP heard in the VM wired it to", "vm-1 was cleaned on the cleaning",
                 "vm-1: \"Cloud-init ... finished\" on its serial console",
                 "vm-2: cloud-init set 192.168.50.", "vm-1 answers HTTP on 192.168.50.",
                 "vm-2 is not reached from the other tenant's peer",
                 "vm-1, from inside: provisioning unreachable",
                 "vm-2, from inside: other tenant peer unreachable",
                 "vm-2: off tenant-b's VLAN after undeploy"):
        assert want in whats, whats
    assert [p for p, _t in d.phases] == ["rack", "server", "build", "enroll", "inspect",
                                         "clean", "deploy", "first boot", "checks",
                                         "undeploy"]
    assert "vm-2 enrolled: ipmi://127.0.0.1:" in out  # the IPMI one, through virtualbmc
    print(out[out.rfind("phases"):][:1500])


def _wait_node(c: Any, want: str, timeout: float, console: str,
               until: Any = None) -> dict[str, Any]:
    """The node once it rests in ``want`` (or ``until(node)`` holds); AssertionError with
    the serial console's tail after ``timeout`` s or when it rests elsewhere."""
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = c.get("/v1/nodes/vm-1")
        if until is not None:
            if until(node):
                return node
        elif node["provision_state"] == want and node["target_provision_state"] is None:
            return node
        if node["target_provision_state"] is None and node["provision_state"] != want:
            break
        time.sleep(1)
    text = Path(console).read_text(errors="replace") if Path(console).exists() else ""
    raise AssertionError(f"wanted {want}; node is {node.get('provision_state')} "
                         f"({node.get('last_error')}); serial console:\n{text[-3000:]}")


def io_tune(spec: dict[str, Any], vm: dict[str, Any], write_bytes_sec: int) -> None:
    """Limit the VM's disk writes to ``write_bytes_sec`` bytes/s (0: no limit) from its
    next start (libvirt's ``<iotune>``, virDomainSetBlockIoTune)."""
    import libvirt

    conn = libvirt.open(spec["libvirt"]["uri"])
    try:
        conn.lookupByName(vm["domain"]).setBlockIoTune(
            "vda", {"write_bytes_sec": write_bytes_sec}, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    finally:
        conn.close()


def _progress(stage: str, share: float) -> Any:
    def reached(node: dict[str, Any]) -> bool:
        p = (node.get("driver_internal_info") or {}).get("agent_progress") or {}
        return bool(p.get("stage") == stage and p.get("total")
                    and p["bytes"] >= p["total"] * share)
    return reached


@pytest.mark.timeout(1200)  # TCG: several boots of the ramdisk and the image
def test_a_vm_deploy_fails_cleanly_on_a_bad_checksum_and_a_power_cut_and_survives_30s_offline(
        lab_root: tuple[str, Path]) -> None:
    """The real path's failures (issue #21): a wrong checksum fails the deploy; 30 s
    without network in the middle of the download, the agent resumes; powered off through
    the BMC in the middle of the image write, the deploy fails and the disk is not booted;
    then a redeploy works and the Debian image comes up."""
    from metalplane.build.common import sha256_file
    from metalplane.lab import vm_demo

    name, _root = lab_root
    # the deploy timeout ends the deploy whose machine was powered off (as Ironic's)
    d, _buf = _vm_demo(name, timeout=600, callback_timeout=240, cabled=True)
    try:
        d.spec = spec = lab.up(name, 0, vms=1)
        vm = spec["vms"][0]
        c = d._start_server()
        d._networks(c)
        qcow2 = vm_demo._builds(d)
        digest = sha256_file(qcow2)
        d._enroll(c, ["vm-1"])
        d._provision(c, ["vm-1"], "manage", "manageable")
        d._provision(c, ["vm-1"], "provide", "available")

        def deploy(checksum: str) -> None:
            vm_demo.deploy(c, "vm-1", qcow2, checksum,
                           {"user_data": "#cloud-config\nhostname: vm-1\n"})

        # 1. the wrong checksum: refused before a byte is written
        deploy("0" * 64)
        node = _wait_node(c, "deploy failed", 400, vm["console"])
        assert "checksum mismatch" in node["last_error"], node["last_error"]

        # 2. 30 s without network a fifth into the download: the agent resumes; the disk
        # written at 16 MiB/s (libvirt's I/O tuning, from the next start), so that the power
        # cut below lands in the write whatever the machine's speed
        io_tune(spec, vm, 16 << 20)
        deploy(digest)
        _wait_node(c, "", 400, vm["console"], until=_progress("download", 0.2))
        run("ip", "link", "set", vm["switch_port"], "down")
        try:
            time.sleep(30)
        finally:
            run("ip", "link", "set", vm["switch_port"], "up")
        # ... and the power cut through the BMC in the write
        node = _wait_node(c, "", 400, vm["console"], until=_progress("write", 0.05))
        assert node["provision_state"] == "wait call-back"
        url = vm["bmc_address"].removeprefix("redfish+")
        written = Path(vm["console"]).stat().st_size
        httpx.post(f"{url}/Actions/ComputerSystem.Reset", json={"ResetType": "ForceOff"},
                   timeout=60).raise_for_status()
        console = Path(vm["console"]).read_text(errors="replace")
        assert "download interrupted at" in console and "resuming from there" in console, \
            console[-3000:]
        node = _wait_node(c, "deploy failed", 400, vm["console"])
        assert "Timeout reached while waiting in state 'wait call-back'" in node["last_error"]
        assert _system(url)["PowerState"] == "Off"  # the half-written disk was not booted
        assert c.get("/v1/nodes/vm-1/management/boot_device")["boot_device"] != "disk"
        assert "Cloud-init" not in Path(vm["console"]).read_text(errors="replace")[written:]

        # 3. a redeploy works: the image boots and cloud-init finishes
        io_tune(spec, vm, 0)
        deploy(digest)
        _wait_node(c, "active", 400, vm["console"])
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            text = Path(vm["console"]).read_text(errors="replace")
            if vm_demo.BOOTED.search(text):
                break
            time.sleep(2)
        assert vm_demo.BOOTED.search(text), text[-3000:]
    finally:
        d._teardown()


def _set_link(spec: dict[str, Any], vm: dict[str, Any], mac: str, up: bool) -> None:
    """The link of the VM's NIC ``mac`` up or down as its guest sees it (its carrier), as
    ``virsh domif-setlink`` does: the live interface's XML with ``<link state=...>``."""
    import libvirt

    conn = libvirt.open(spec["libvirt"]["uri"])
    try:
        dom = conn.lookupByName(vm["domain"])
        xml = ET.fromstring(dom.XMLDesc(0))
        iface = next(i for i in xml.findall("./devices/interface")
                     if i.find("mac").get("address") == mac)  # type: ignore[union-attr]
        link = iface.find("link")
        if link is None:
            link = ET.SubElement(iface, "link")
        link.set("state", "up" if up else "down")
        dom.updateDeviceFlags(ET.tostring(iface, encoding="unicode"),
                              libvirt.VIR_DOMAIN_AFFECT_LIVE)
    finally:
        conn.close()


def _until(what: str, fetch: Any, ok: Any, timeout: float) -> Any:
    """``fetch()``'s first value for which ``ok(value)`` holds, within ``timeout`` s (once a
    second); AssertionError naming ``what`` with the last value otherwise."""
    deadline = time.monotonic() + timeout
    got = fetch()
    while not ok(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s; last:\n{got}")
        time.sleep(1)
        got = fetch()
    return got


@pytest.mark.timeout(1200)  # TCG: a ramdisk boot for cleaning, one for the deploy, Debian's
def test_a_two_nic_vm_in_an_802_3ad_portgroup_is_deployed_onto_an_lacp_bond(
        lab_root: tuple[str, Path]) -> None:
    """A VM with two NICs on two ToR ports, enrolled as a portgroup (802.3ad, Ironic's
    shape): cleaning and the deploy PXE-boot through the first NIC alone, each provider
    network binding a port of its own; once active, the ToR bonds both switch ports (LACP)
    on the tenant VLAN, cloud-init builds the VM's bond0 from the config drive and LACP
    negotiates between them; a peer on the tenant VLAN reaches the VM over the bond, and
    still does with one cable pulled (the link down at both ends)."""
    from metalplane.build.common import sha256_file
    from metalplane.lab import vm_demo
    from metalplane.lab.demo import TENANT_CIDR
    from metalplane.lab.rack import reaches

    name, _root = lab_root
    d, _buf = _vm_demo(name, timeout=600, cabled=True)
    try:
        d.spec = spec = lab.up(name, 0, vms=1, vm_nics=2)
        vm, sw = spec["vms"][0], spec["switch"]
        nic1, nic2 = vm["nics"]
        assert nic1 == {"mac": vm["mac"], "switch_port": vm["switch_port"]}
        assert nic2["switch_port"] == f"{name}-v1n2" and nic2["mac"] != nic1["mac"]
        tor = lab.tor(spec)
        assert {tor.tag(nic1["switch_port"]), tor.tag(nic2["switch_port"])} == \
            {sw["default_vlan"]}
        c = d._start_server()
        d._networks(c)
        qcow2 = vm_demo._builds(d)
        d._enroll(c, ["vm-1"])  # the boot NIC, wired
        uuid = d.uuids["vm-1"]
        c.post("/v1/ports", {"address": nic2["mac"], "node_uuid": uuid, "pxe_enabled": False,
                             "local_link_connection": {"switch_id": sw["switch_id"],
                                                       "port_id": nic2["switch_port"],
                                                       "switch_info": sw["name"]}})
        pg = c.post("/v1/portgroups", {"node_uuid": uuid, "name": "vm1-bond",
                                       "address": nic1["mac"], "mode": "802.3ad",
                                       "properties": {"miimon": "100", "lacp_rate": "fast"}})
        for port in c.get(f"/v1/nodes/{uuid}/ports")["ports"]:
            c.patch(f"/v1/ports/{port['uuid']}", [{"op": "add", "path": "/portgroup_uuid",
                                                   "value": pg["uuid"]}])
        d._provision(c, ["vm-1"], "manage", "manageable")
        # cleaning PXE-boots through NIC 1 alone, on a switch port of its own (Ironic binds a
        # provider network per PXE port): on a bond, OVS drops what arrives on the member it
        # does not take as active
        cleaning = next(n["vlan"] for n in spec["networks"] if n["name"] == "cleaning")
        c.put("/v1/nodes/vm-1/states/provision", {"target": "provide"})
        _until("vm-1 waiting for its ramdisk in cleaning",
               lambda: c.get("/v1/nodes/vm-1")["provision_state"],
               lambda st: st in ("clean wait", "clean failed", "available"), 120)
        during = tor.tags()
        assert "vm1-bond" not in during, during
        assert during.get(nic1["switch_port"]) == cleaning, during
        assert during.get(nic2["switch_port"]) != cleaning, during  # not PXE-enabled
        d._wait(c, ["vm-1"], "available", "clean")
        assert "vm1-bond" not in tor.tags()

        nets = {n["name"]: n for n in c.get("/v2.0/networks")["networks"]}
        net = nets["tenant-a"]
        vlan = int(net["provider:segmentation_id"])
        vif = c.post("/v2.0/ports", {"port": {"network_id": net["id"],
                                              "name": "vm-1-vif"}})["port"]
        c.post("/v1/nodes/vm-1/vifs", {"id": vif["id"]})
        assert c.get(f"/v1/portgroups/{pg['uuid']}")["internal_info"][
            "tenant_vif_port_id"] == vif["id"]  # the VIF is on the portgroup, not a port
        ip = vif["fixed_ips"][0]["ip_address"]
        peer, other = vm_demo.PEERS["tenant-a"][1], vm_demo.PEERS["tenant-b"][1]
        lab.host_on_vlan(tor, f"{name}-ta", f"{name}-ta0", vlan, TENANT_CIDR, peer)
        prov = next(n for n in spec["networks"] if n["name"] == "provisioning")
        borrow = prov["cidr"].rsplit(".", 1)[0] + ".240/24"
        vm_demo.deploy(c, "vm-1", qcow2, sha256_file(qcow2), {"user_data": vm_demo._user_data(
            "vm-1", "tenant-a", prov["gateway"], borrow, peer, other)})
        d._wait(c, ["vm-1"], "active", "deploy")
        boot = vm_demo._wait_booted(d)["vm-1"]
        assert vm_demo.BOOTED.search(boot), boot[-3000:]
        console = Path(vm["console"]).read_text(errors="replace")
        assert console.count("metalplane-ramdisk:") >= 2, console[-3000:]

        # the ToR: one LACP bond of both switch ports on the tenant VLAN
        ports = tor.tags()
        assert ports.get("vm1-bond") == vlan, ports
        assert nic1["switch_port"] not in ports and nic2["switch_port"] not in ports
        assert tor.vsctl("get", "port", "vm1-bond", "bond_mode") == "balance-tcp"
        assert tor.vsctl("get", "port", "vm1-bond", "lacp") == "active"
        # the guest: cloud-init made bond0 with the tenant address (its table on the console)
        assert re.search(rf"\|\s*bond0\s*\|\s*True\s*\|\s*{re.escape(ip)}\s*\|", boot), \
            boot[-4000:]
        # LACP negotiated between the VM's bond and the ToR's, both members in it
        def bond() -> str:
            return tor.appctl("bond/show", "vm1-bond")

        try:
            show = _until("LACP negotiated on vm1-bond", bond,
                          lambda s: "lacp_status: negotiated" in s, 60)
        except AssertionError as exc:
            said = [line for line in Path(vm["console"]).read_text(errors="replace")
                    .splitlines() if "bond" in line.lower()]
            raise AssertionError(f"{exc}\n{tor.appctl('lacp/show', 'vm1-bond')}\nthe "
                                 "console on bonds:\n" + "\n".join(said[-40:])) from None
        for nic in (nic1, nic2):
            assert re.search(rf"member {nic['switch_port']}: enabled", show), show
        lacp = tor.appctl("lacp/show", "vm1-bond")
        assert re.search(rf"partner sys_id\s*:?\s*{nic1['mac']}", lacp), lacp  # the VM's bond

        # traffic over the bond: ping and HTTP from the tenant peer; the probes from inside
        assert reaches(f"{name}-ta", ip), f"{name}-ta does not reach {ip}"
        body = d.get_http(f"{name}-ta", f"http://{ip}:8000/marker", seconds=5)
        assert body is not None and "vm-1" in body, body
        assert re.search(rf"metalplane-probe own-tenant-peer {peer} reached", boot), boot[-3000:]
        assert re.search(r"metalplane-probe provisioning \S+ unreachable", boot)

        # a cable pulled: NIC 1's link down at both ends; the bond carries on over NIC 2
        _set_link(spec, vm, nic1["mac"], up=False)
        run("ip", "link", "set", nic1["switch_port"], "down")
        try:
            _until("vm1-bond without its first member", bond,
                   lambda s: re.search(rf"member {nic1['switch_port']}: disabled", s), 30)
            _until(f"{ip} reached over NIC 2 alone", lambda: reaches(f"{name}-ta", ip, 1),
                   bool, 30)
            body = _until("HTTP over NIC 2 alone", lambda: d.get_http(
                f"{name}-ta", f"http://{ip}:8000/marker", seconds=5), bool, 30)
            assert "vm-1" in body
        finally:
            run("ip", "link", "set", nic1["switch_port"], "up")
            _set_link(spec, vm, nic1["mac"], up=True)
        _until("NIC 1 back in vm1-bond", bond,
               lambda s: re.search(rf"member {nic1['switch_port']}: enabled", s), 60)
    finally:
        d._teardown()
