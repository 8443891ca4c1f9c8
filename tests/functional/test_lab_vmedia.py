"""A lab node with the redfish-virtual-media boot interface, for real: metalplane builds
its ISO with the node's network_data, sushy-tools' BMC fetches it over the lab's loopback
"management network", and the boot supervisor boots the node from what is inserted: the
agent's parameters from the ISO, its address from network_data (DHCP-less), no PXE. The
node is then inspected through that agent. Run under the lab lock (namespaces, OVS)."""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from metalplane.common.bmc_address import parse_bmc_address
from metalplane.lab import lab
from metalplane.lab.demo import Demo
from tests.functional.test_lab import assert_nothing_left
from tests.helpers.peers import free_port
from tests.helpers.rack import need_root_and_ovs

pytestmark = pytest.mark.functional


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """A one-node rack with its server, switch and provider networks (the demo's own
    bring-up), removed afterwards even on failure."""
    need_root_and_ovs()
    root = Path("/tmp") / f"mpl-{secrets.token_hex(3)}"  # short: unix socket paths
    monkeypatch.setenv("METALPLANE_LAB_ROOT", str(root))
    name = "v" + secrets.token_hex(3)
    buf = io.StringIO()
    d = Demo(nodes=1, name=name, port=free_port(), timeout=150, kubectl=False,
             console=Console(file=buf, width=200, highlight=False))
    try:
        yield d
    finally:
        d._teardown()
        lab.down(name, quiet=True)
        assert_nothing_left(name, root)
        root.rmdir() if root.exists() else None


def _wait(demo: Demo, uuid: str, want: str, timeout: float = 150) -> dict[str, Any]:
    assert demo.client is not None
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = demo.client.get(f"/v1/nodes/{uuid}")
        if node["provision_state"] == want and node["target_provision_state"] is None:
            return node
        if node["provision_state"].endswith("failed"):
            break
        time.sleep(1)
    log = Path(demo.spec["state_dir"]) / "logs" / "node-1.log"
    raise AssertionError(f"node is {node.get('provision_state')} "
                         f"({node.get('last_error')}); boot log:\n{log.read_text()[-2000:]}")


def test_a_virtual_media_node_boots_the_agent_dhcp_less_and_is_inspected(demo: Demo) -> None:
    t0 = time.monotonic()
    c = demo._bring_up()
    spec = demo.spec
    state = Path(spec["state_dir"])
    n = spec["nodes"][0]
    # the kernel and ramdisk the ISO carries (the lab's ramdisk is the agent process the
    # supervisor starts; these stand in for the files a real machine would boot)
    files = state / "server" / "files"
    files.mkdir(parents=True, exist_ok=True)
    (files / "agent.kernel").write_bytes(b"lab kernel stand-in\n" * 64)
    (files / "agent.initramfs").write_bytes(b"lab initramfs stand-in\n" * 64)
    prov = spec["networks"][0]
    address = prov["cidr"].rsplit(".", 1)[0] + ".251"  # outside the DHCP pool (.10-.250)
    network_data = {
        "links": [{"id": "port-0", "type": "phy", "ethernet_mac_address": n["mac"]}],
        "networks": [{"id": "net0", "type": "ipv4", "link": "port-0", "network_id": "prov",
                      "ip_address": address, "netmask": "255.255.255.0",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                  "gateway": prov["gateway"]}]}],
        "services": []}
    driver, info = parse_bmc_address(n["bmc_address"], "admin", "password")
    node = c.post("/v1/nodes", {
        "name": n["name"], "driver": driver, "driver_info": info,
        "boot_interface": "redfish-virtual-media", "deploy_interface": "direct",
        "inspect_interface": "agent", "network_interface": "neutron",
        "network_data": network_data})
    uuid = node["uuid"]
    c.post("/v1/ports", {"address": n["mac"], "node_uuid": uuid, "pxe_enabled": True})
    c.put(f"/v1/nodes/{uuid}/states/provision", {"target": "manage"})
    _wait(demo, uuid, "manageable", 60)
    c.put(f"/v1/nodes/{uuid}/states/provision", {"target": "inspect"})
    inspected = _wait(demo, uuid, "manageable")

    # inspection worked through the agent booted from the ISO: hardware, LLDP wiring
    assert inspected["properties"].get("cpus") and inspected["properties"].get("memory_mb")
    port = c.get(f"/v1/ports?node_uuid={uuid}&detail=true")["ports"][0]
    assert port["local_link_connection"]["port_id"] == n["switch_port"]
    inventory = c.get(f"/v1/nodes/{uuid}/inventory")["inventory"]
    nics = {i["mac_address"]: i for i in inventory["interfaces"]}
    assert nics[n["mac"]]["ipv4_address"] == address  # the agent ran on network_data's address

    # the node booted from the inserted ISO, DHCP-less: its boot log says so
    boot_log = (state / "logs" / "node-1.log").read_text()
    iso = f"{spec['boot_server']['external_url']}/redfish/boot-{uuid}.iso"
    assert f"booted from virtual media {iso} (volume config-2)" in boot_log, boot_log
    assert f"network_data: {address}/24 (static, no DHCP)" in boot_log, boot_log
    assert "pxe" not in boot_log and "ipxe" not in boot_log, boot_log
    # and nobody answered it over DHCP: no lease on its side, none in dnsmasq
    assert not (state / "dhcp" / "node-1.lease").exists()
    dhcp = state / "server" / "dhcp"
    logs = list(dhcp.rglob("dnsmasq.log"))
    assert logs, "dnsmasq wrote no log"  # it answers with --log-dhcp: a DISCOVER would show
    for f in [*logs, *dhcp.rglob("leases")]:
        assert n["mac"] not in f.read_text(errors="replace").lower(), f

    # an image that is no boot ISO (here: the kernel file), inserted and booted by hand
    # through the BMC: the node stays dark, and its boot log says why
    emu = f"{spec['emulator']['url']}/redfish/v1/Systems/{n['uuid']}"
    bogus = f"{spec['boot_server']['external_url']}/files/agent.kernel"
    with httpx.Client(timeout=30) as bmc:
        bmc.post(f"{emu}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia", json={})
        bmc.post(f"{emu}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
                 json={"Image": bogus, "Inserted": True}).raise_for_status()
        bmc.patch(emu, json={"Boot": {"BootSourceOverrideTarget": "Cd"}}).raise_for_status()
        bmc.post(f"{emu}/Actions/ComputerSystem.Reset",
                 json={"ResetType": "On"}).raise_for_status()
    runtime: dict[str, Any] = {}
    deadline = time.monotonic() + 30  # the fake BMC powers on 1-11 s later
    while time.monotonic() < deadline and runtime.get("os") != "halted":
        time.sleep(0.5)
        runtime = json.loads((state / "nodes" / "node-1.json").read_text())
    assert runtime["os"] == "halted", runtime
    assert f"cannot boot {bogus}: not an ISO 9660 image" in runtime["detail"]
    assert runtime["agent_pid"] is None
    print(f"virtual media lab test: {time.monotonic() - t0:.0f}s")


def test_the_demo_with_a_virtual_media_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """``metalplane demo --vmedia``: node-1 is inspected, cleaned (on the cleaning VLAN),
    and deployed with every ramdisk booted from virtual media, its addresses
    generated from its provider network ports (no network_data field), no DHCP."""
    need_root_and_ovs()
    root = Path("/tmp") / f"mpl-{secrets.token_hex(3)}"
    monkeypatch.setenv("METALPLANE_LAB_ROOT", str(root))
    name = "v" + secrets.token_hex(3)
    buf = io.StringIO()
    demo = Demo(nodes=2, name=name, port=free_port(), timeout=150, kubectl=False,
                vmedia=True, console=Console(file=buf, width=200, highlight=False))
    t0 = time.monotonic()
    try:
        code = demo.run()
    finally:
        lab.down(name, quiet=True)
        assert_nothing_left(name, root)
        root.rmdir() if root.exists() else None
    out = buf.getvalue()
    failed = [c for c in demo.checks if not c.ok]
    assert code == 0 and not failed, out[-6000:]
    whats = " | ".join(c.what for c in demo.checks)
    assert "node-1: its ramdisk booted from virtual media 3 times" in whats
    assert "node-1: no DHCP exchange with dnsmasq" in whats
    assert "node-1 was cleaned on the cleaning network" in whats
    assert "deploy: 2 node(s) active" in whats
    assert "node-1: booted its disk with 192.168.50." in whats  # then from its disk
    print(f"demo --vmedia with 2 nodes: {time.monotonic() - t0:.0f}s")
