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
from metalplane.lab.rack import Switch, run
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
    switch = Switch(rundir=state / "ovs", bridge=spec["switch"]["bridge"])
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


def test_a_uefi_vm_node_pxe_boots_snponly_efi_and_is_inspected(
        lab_root: tuple[str, Path], built: ramdisk.Result) -> None:
    """OVMF's own PXE client (option 93: x86-64 UEFI) gets snponly.efi over TFTP, because
    the node's boot mode is uefi; snponly.efi (iPXE) gets the node's script, which boots
    the ramdisk; the agent sees UEFI firmware."""
    import libvirt

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
