"""redfish-virtual-media against sushy-tools' emulator (fake driver), over real HTTP: the
ISO is served by metalplane's boot server and fetched from there by the emulator, which
shows the inserted image, the boot device and the eject afterwards."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pycdlib
import pytest

from metalplane.agent import vmedia
from tests.helpers.iso import iso_files
from tests.helpers.peers import Emulator, sushy_emulator
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional

KERNEL = b"fake-kernel\x00" * 1000
RAMDISK = b"fake-ramdisk\x00" * 3000
@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with sushy_emulator(tmp_path, count=2) as emu:
        yield emu


@pytest.fixture
def vm_server(tmp_path: Path) -> Iterator[RunningServer]:
    data = tmp_path / "data"
    (data / "files").mkdir(parents=True)
    (data / "files" / "agent.kernel").write_bytes(KERNEL)
    (data / "files" / "agent.initramfs").write_bytes(RAMDISK)
    with running_server(data, bmc_retries=1) as s:
        yield s


def _node(server: RunningServer, emulator: Emulator, index: int, **info: Any) -> dict[str, Any]:
    system = emulator.systems[index]
    node = server.create_node(
        name=f"vm-{index}", driver="redfish", boot_interface="redfish-virtual-media",
        inspect_interface="agent",
        driver_info={"redfish_address": emulator.url,
                     "redfish_system_id": f"/redfish/v1/Systems/{system['uuid']}", **info})
    server.http.post("/v1/ports", json={"node_uuid": node["uuid"],
                                         "address": system["nics"][0]["mac"]}
                     ).raise_for_status()
    assert server.provision(node["uuid"], "manage").status_code == 202
    server.wait_state(node["uuid"], "manageable")
    return node


def _boot(server: RunningServer) -> str:
    """The boot server's URL, as the node (here: the emulator) reaches it."""
    return str(server.boot.base_url).rstrip("/")


def _waiting(server: RunningServer, uuid: str, timeout: float = 60) -> dict[str, Any]:
    """The node once it waits for its agent (the power-on is left pending: the agent's
    lookup would report it, and no agent runs here)."""
    deadline = time.monotonic() + timeout
    node: dict[str, Any] = {}
    while time.monotonic() < deadline:
        node = server.node(uuid)
        if node["provision_state"] == "inspect wait" and node["reservation"] is None:
            return node
        time.sleep(0.1)
    raise AssertionError(f"node {uuid} is {node.get('provision_state')}, "
                         f"last_error={node.get('last_error')}")


def _media(emulator: Emulator, uuid: str, device: str) -> dict[str, Any]:
    r = httpx.get(f"{emulator.url}/redfish/v1/Systems/{uuid}/VirtualMedia/{device}",
                  timeout=10)
    r.raise_for_status()
    return dict(r.json())


def test_inspection_boots_the_agent_from_the_inserted_iso_and_ejects_it_after(
        vm_server: RunningServer, emulator: Emulator) -> None:
    server = vm_server
    node = _node(server, emulator, 0)
    uuid, system = node["uuid"], emulator.systems[0]["uuid"]
    assert server.provision(uuid, "inspect").status_code == 202
    _waiting(server, uuid)

    iso_url = f"{_boot(server)}/redfish/boot-{uuid}.iso"
    cd = _media(emulator, system, "Cd")
    assert cd["Image"] == iso_url and cd["Inserted"] is True
    assert emulator.system(system)["Boot"]["BootSourceOverrideTarget"] == "Cd"
    deadline = time.monotonic() + 20  # the fake driver applies power 1-11 s later
    while emulator.system(system)["PowerState"] != "On" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert emulator.system(system)["PowerState"] == "On"

    # what the BMC fetched is the ISO the boot server serves: the agent and its parameters
    r = server.boot.get(f"/redfish/boot-{uuid}.iso")
    assert r.status_code == 200
    files = iso_files(r.content, ["/vmlinuz", "/initrd", "/boot/grub/grub.cfg",
                                   "/parameters.txt"])
    assert files["/vmlinuz"] == KERNEL and files["/initrd"] == RAMDISK
    params = files["/parameters.txt"].decode().split()
    assert f"metalplane.node={uuid}" in params
    assert f"metalplane.api_url={server.url}" in params
    assert f"linux /vmlinuz {' '.join(params)}" in files["/boot/grub/grub.cfg"].decode()
    # only the node's images: not their build stamps, not other files
    assert server.boot.get(f"/redfish/boot-{uuid}.iso.sha256").status_code == 404

    assert server.provision(uuid, "abort").status_code == 202
    server.wait_state(uuid, "inspect failed")
    cd = _media(emulator, system, "Cd")
    assert cd["Inserted"] is False and not cd["Image"]
    assert emulator.system(system)["PowerState"] == "Off"
    assert server.boot.get(f"/redfish/boot-{uuid}.iso").status_code == 404


def test_a_prebuilt_deploy_iso_gets_its_parameters_on_a_config_image(
        vm_server: RunningServer, emulator: Emulator) -> None:
    server = vm_server
    prebuilt = server.service.settings.data_dir / "files" / "prebuilt.iso"
    prebuilt.write_bytes(b"\x00" * 4096)
    deploy_iso = f"{_boot(server)}/files/prebuilt.iso"
    node = _node(server, emulator, 1, deploy_iso=deploy_iso)
    uuid, system = node["uuid"], emulator.systems[1]["uuid"]
    assert server.provision(uuid, "inspect").status_code == 202
    _waiting(server, uuid)

    assert _media(emulator, system, "Cd")["Image"] == deploy_iso
    floppy = _media(emulator, system, "Floppy")
    assert floppy["Inserted"] is True
    assert floppy["Image"].endswith(f"/redfish/config-{uuid}.img")
    config = server.boot.get(f"/redfish/config-{uuid}.img")
    assert config.status_code == 200
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(config.content))
    assert iso.pvd.volume_identifier.decode().strip() == "ir-vfd-dev"
    iso.close()
    params = iso_files(config.content, ["/parameters.txt"])["/parameters.txt"].decode()
    assert f"metalplane.node={uuid}" in params.split()

    assert server.provision(uuid, "abort").status_code == 202
    server.wait_state(uuid, "inspect failed")
    assert _media(emulator, system, "Cd")["Inserted"] is False
    assert _media(emulator, system, "Floppy")["Inserted"] is False
    assert server.boot.get(f"/redfish/config-{uuid}.img").status_code == 404


def test_a_bmc_that_cannot_fetch_the_iso_fails_the_node_naming_the_call(
        vm_server: RunningServer, emulator: Emulator) -> None:
    server = vm_server
    missing = f"{_boot(server)}/files/no-such.iso"
    node = _node(server, emulator, 0, deploy_iso=missing)
    uuid = node["uuid"]
    # the configuration image goes in first; make the CD's insert the one that fails
    assert server.provision(uuid, "inspect").status_code == 202
    failed = server.wait_state(uuid, "inspect failed")
    assert "VirtualMedia.InsertMedia" in failed["last_error"]
    assert missing in failed["last_error"]


NETWORK_DATA = {
    "links": [{"id": "port-0", "type": "phy", "ethernet_mac_address": "52:54:00:aa:00:00"}],
    "networks": [{"id": "net0", "type": "ipv4", "link": "port-0", "network_id": "prov",
                  "ip_address": "192.0.2.50", "netmask": "255.255.255.0",
                  "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                              "gateway": "192.0.2.1"}]}],
    "services": []}


def _baremetal(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """python-ironicclient's ``baremetal`` against ``server`` (noauth)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return subprocess.run([str(Path(sys.executable).parent / "baremetal"), "--os-auth-type",
                           "none", "--os-endpoint", server.url, *args], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_network_data_goes_on_the_iso_for_a_dhcp_less_boot(
        vm_server: RunningServer, emulator: Emulator, tmp_path: Path) -> None:
    server = vm_server
    node = _node(server, emulator, 0, external_http_url="http://127.0.0.1:1/bmc-side")
    uuid, system = node["uuid"], emulator.systems[0]["uuid"]
    # python-ironicclient's --network-data (API 1.66) takes a file
    (tmp_path / "nd.json").write_text(json.dumps(NETWORK_DATA))
    r = _baremetal(server, "node", "set", uuid, "--network-data", str(tmp_path / "nd.json"))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    shown = _baremetal(server, "node", "show", uuid, "--fields", "network_data", "-f", "json")
    assert json.loads(shown.stdout)["network_data"] == NETWORK_DATA
    # bad network_data: 400 naming the path, nothing stored
    bad = {**NETWORK_DATA, "networks": [{**NETWORK_DATA["networks"][0], "link": "nope"}]}
    r2 = server.http.patch(f"/v1/nodes/{uuid}", json=[
        {"op": "replace", "path": "/network_data", "value": bad}])
    assert r2.status_code == 400 and "network_data/networks/0/link" in r2.text
    assert server.node(uuid)["network_data"] == NETWORK_DATA

    assert server.provision(uuid, "inspect").status_code == 202
    failed = server.wait_state(uuid, "inspect failed")
    # the BMC is given the URL under driver_info external_http_url, which nothing serves
    assert "http://127.0.0.1:1/bmc-side/redfish/boot-" in failed["last_error"]
    server.http.patch(f"/v1/nodes/{uuid}", json=[
        {"op": "remove", "path": "/driver_info/external_http_url"}]).raise_for_status()
    assert server.provision(uuid, "manage").status_code == 202
    server.wait_state(uuid, "manageable")
    assert server.provision(uuid, "inspect").status_code == 202
    _waiting(server, uuid)
    assert _media(emulator, system, "Cd")["Image"] == f"{_boot(server)}/redfish/boot-{uuid}.iso"
    media = vmedia.read(server.boot.get(f"/redfish/boot-{uuid}.iso").content)
    assert media.label == "config-2" and media.network_data == NETWORK_DATA
    assert media.parameters["metalplane.node"] == uuid
    assert server.provision(uuid, "abort").status_code == 202
    server.wait_state(uuid, "inspect failed")
