"""The ramdisk ``metalplane ramdisk build`` makes, booted in QEMU (TCG) against a real server.

The build runs once per test session into a cache shared between sessions
(``$METALPLANE_TEST_CACHE``, default /var/tmp/metalplane-test-cache; keyed by the inputs'
hash, so a changed agent or package is built anew). The VM's virtio NIC is on QEMU's user
network, where 10.0.2.2 is the host's loopback: the agent's traffic goes to the test server
on 127.0.0.1 and nowhere else. Run under the lab lock (it runs QEMU)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalplane.build import ramdisk
from metalplane.lifecycle.states import FAILED_STATES
from tests.helpers.peers import stop_process
from tests.helpers.server import RunningServer, distinct_free_ports, running_server

pytestmark = pytest.mark.functional
MAC = "52:54:00:6d:70:01"
DISK = 2 << 30
V = {"X-OpenStack-Ironic-API-Version": "1.81"}
CACHE = Path(os.environ.get("METALPLANE_TEST_CACHE", "/var/tmp/metalplane-test-cache"))


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> ramdisk.Result:
    if os.geteuid() != 0:
        pytest.skip("ramdisk build needs root (mmdebstrap's root mode, chroot; CI runs as "
                    "root)")
    data = tmp_path_factory.mktemp("ramdisk-data")
    return ramdisk.build(data, cache_dir=CACHE / "ramdisk", install=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    api, boot = distinct_free_ports(2)
    # the VM reaches the host's loopback as 10.0.2.2 (QEMU user networking)
    with running_server(tmp_path / "data", port=api, agent_api_url=f"http://10.0.2.2:{api}",
                        boot_listen=f"127.0.0.1:{boot}",
                        boot_server_url=f"http://10.0.2.2:{boot}",
                        agent_heartbeat_interval=1) as srv:
        yield srv


def boot_vm(disk: Path, log: Path, *how: str) -> subprocess.Popen[bytes]:
    """QEMU (TCG, 1 GiB, one CPU) with a virtio NIC on the user network and a virtio disk,
    booting ``how``: a kernel and initramfs, or the NIC's iPXE ROM."""
    netdev = "user,id=n0"
    if how[0] == "-boot":  # iPXE: the DHCP answer's bootfile is the node's script
        netdev += f",bootfile={how[-1]}"
        how = ("-boot", "n")
    return subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "1", *how,
         "-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
         "-drive", f"file={disk},if=virtio,format=qcow2",
         "-display", "none", "-monitor", "none", "-serial", f"file:{log}", "-no-reboot"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def test_the_build_is_cached_and_installed_where_the_boot_server_serves_it(
        built: ramdisk.Result, server: RunningServer) -> None:
    files = built.manifest["files"]
    assert files["agent.initramfs"]["size"] < 150 << 20  # the bound
    data = server.service.conductor.settings.data_dir
    started = time.monotonic()
    again = ramdisk.build(data, cache_dir=CACHE / "ramdisk")  # same inputs: a cache hit
    assert again.cached and again.key == built.key
    assert time.monotonic() - started < 60
    assert sorted(p.name for p in again.installed) == ["agent.initramfs", "agent.kernel"]
    served = server.boot.get("/files/agent.initramfs")
    assert served.status_code == 200
    assert hashlib.sha256(served.content).hexdigest() == files["agent.initramfs"]["sha256"]


@pytest.mark.parametrize("via", ["kernel", "ipxe"])
def test_the_ramdisk_boots_the_agent_which_inspects_the_vm(
        built: ramdisk.Result, server: RunningServer, tmp_path: Path, via: str) -> None:
    """``kernel``: QEMU loads the kernel and initramfs, with the kernel command line of the
    node's iPXE script. ``ipxe``: the NIC's iPXE ROM (Debian's ipxe-qemu) takes the script's
    URL from DHCP, runs it and fetches both from the boot server, as on a real rack."""
    assert shutil.which("qemu-system-x86_64"), "qemu-system-x86 missing: run scripts/setup.sh"
    node = server.create_node(name="vm1", boot_interface="ipxe", deploy_interface="direct",
                              inspect_interface="agent", network_interface="noop")
    r = server.http.post("/v1/ports", json={"address": MAC, "node_uuid": node["uuid"]})
    assert r.status_code == 201, r.text
    assert server.provision("vm1", "manage").status_code == 202
    server.wait_state("vm1", "manageable")
    assert server.provision("vm1", "inspect").status_code == 202
    server.wait_state("vm1", "inspect wait")

    # the kernel command line is the iPXE script's: what the ramdisk's init reads
    settings = server.service.conductor.settings
    script_url = f"{settings.boot_server_url}/boot/{node['uuid']}.ipxe"
    script = server.boot.get(f"/boot/{node['uuid']}.ipxe")
    assert script.status_code == 200, script.text
    kernel_line = next(line for line in script.text.splitlines() if line.startswith("kernel "))
    params = [w for w in kernel_line.split()[2:] if not w.startswith("initrd=")]
    assert f"metalplane.api_url={settings.agent_api_url}" in params
    if via == "ipxe":
        installed = ramdisk.build(settings.data_dir, cache_dir=CACHE / "ramdisk")
        assert installed.cached  # the session's build, now where the boot server serves it
        how: tuple[str, ...] = ("-boot", script_url)
    else:
        append = " ".join([*params, "metalplane.lldp_wait=1", "quiet"])
        how = ("-kernel", str(built.kernel), "-initrd", str(built.initramfs),
               "-append", append)

    disk = tmp_path / "vm1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), str(DISK)],
                   check=True, timeout=30)
    log = tmp_path / "vm1-serial.log"
    vm = boot_vm(disk, log, *how)
    try:
        deadline = time.monotonic() + 150
        state = ""
        while time.monotonic() < deadline and vm.poll() is None:
            got = server.node("vm1")
            state = got["provision_state"]
            if state in {"manageable", *FAILED_STATES} and got["reservation"] is None:
                break
            time.sleep(1)
        console = log.read_text(errors="replace") if log.exists() else ""
        assert state == "manageable", (
            f"inspection ended in {state!r} ({server.node('vm1')['last_error']}); "
            f"qemu exit {vm.poll()}; serial console:\n{console[-4000:]}")
    finally:
        stop_process(vm)
        if vm.stderr:
            vm.stderr.close()

    # the console shows the script's command line, the init's progress and the agent
    assert re.search(rf"metalplane-ramdisk: command line: .*metalplane\.node={node['uuid']}",
                     console)
    assert "metalplane-ramdisk: DHCP on eth0" in console
    assert f"metalplane-ramdisk: metalplane ramdisk {built.key}" in console
    assert "metalplane-ramdisk: starting metalplane-agent (run 1)" in console
    assert f"I am node {node['uuid']}" in console
    # the inventory is the virtual machine's own hardware
    inv = server.http.get("/v1/nodes/vm1/inventory", headers=V).json()["inventory"]
    nic = next(i for i in inv["interfaces"] if i["mac_address"] == MAC)
    assert nic["name"] == "eth0" and nic["driver"] == "virtio_net"
    assert re.fullmatch(r"10\.0\.2\.\d+", nic["ipv4_address"] or ""), nic
    assert inv["disks"][0]["name"] == "/dev/vda" and inv["disks"][0]["size"] == DISK
    assert inv["system_vendor"]["manufacturer"] == "QEMU"
    assert inv["cpu"]["count"] == 1
    assert 800 < inv["memory"]["physical_mb"] <= 1024
    inspected = server.node("vm1")
    assert inspected["properties"]["cpus"] == 1
    assert inspected["properties"]["local_gb"] == 1  # the 2 GiB disk less 1 GiB, as Ironic
