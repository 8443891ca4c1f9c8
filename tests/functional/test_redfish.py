"""Redfish through sushy against sushy-tools' emulator (fake driver), over real HTTP."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.peers import Emulator, sushy_emulator
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with sushy_emulator(tmp_path, count=3) as emu:
        yield emu


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metalplane.cli.main", "--url", server.url,
                           *args], capture_output=True, text=True, timeout=300)


def test_enroll_by_bmc_address_and_full_lifecycle(server: RunningServer,
                                                  emulator: Emulator) -> None:
    """The README's walk-through: three emulated servers, enroll -> ... -> available."""
    host = emulator.url.removeprefix("http://")
    names = []
    for i, system in enumerate(emulator.systems):
        name = f"rf-{i}"
        r = cli(server, "node", "create", "--name", name, "--bmc-address",
                f"redfish+http://{host}/redfish/v1/Systems/{system['uuid']}",
                "--bmc-username", "admin", "--bmc-password", "pw-not-shown", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert "pw-not-shown" not in r.stdout and '"******"' in r.stdout
        names.append(name)
    node = server.node("rf-0")
    assert node["driver"] == "redfish"
    assert node["driver_info"]["redfish_address"] == emulator.url
    assert node["driver_info"]["redfish_system_id"] == \
        f"/redfish/v1/Systems/{emulator.systems[0]['uuid']}"

    for verb, state in (("manage", "manageable"), ("inspect", "manageable"),
                        ("provide", "available"), ("deploy", "active")):
        r = cli(server, "node", verb, *names, "--wait", "--timeout", "120")
        assert r.returncode == 0, r.stderr + r.stdout
        for n in names:
            assert server.node(n)["provision_state"] == state

    # inspection created a port from the emulator's NIC
    for i, n in enumerate(names):
        ports = server.http.get(f"/v1/nodes/{n}/ports").json()["ports"]
        assert [p["address"] for p in ports] == [emulator.systems[i]["nics"][0]["mac"]]
        assert server.node(n)["inspection_finished_at"] is not None

    # the emulator itself shows the deploy powered the systems on, booting from disk
    for i, n in enumerate(names):
        system = emulator.system(emulator.systems[i]["uuid"])
        assert system["PowerState"] == "On"
        assert system["Boot"]["BootSourceOverrideTarget"] == "Hdd"
        assert system["Boot"]["BootSourceOverrideEnabled"] == "Continuous"
        assert server.node(n)["power_state"] == "power on"

    r = cli(server, "node", "undeploy", *names, "--wait", "--timeout", "120")
    assert r.returncode == 0, r.stderr
    for i, n in enumerate(names):
        assert server.node(n)["provision_state"] == "available"
        assert emulator.system(emulator.systems[i]["uuid"])["PowerState"] == "Off"


def test_power_and_boot_device_reach_the_emulator(server: RunningServer,
                                                  emulator: Emulator) -> None:
    system = emulator.systems[1]
    server.create_node(name="rfp", driver="redfish", driver_info={
        "redfish_address": emulator.url,
        "redfish_system_id": f"/redfish/v1/Systems/{system['uuid']}"})
    r = server.http.put("/v1/nodes/rfp/management/boot_device",
                        json={"boot_device": "pxe", "persistent": False})
    assert r.status_code == 204, r.text
    boot = emulator.system(system["uuid"])["Boot"]
    assert boot["BootSourceOverrideTarget"] == "Pxe"
    # the emulator ignores BootSourceOverrideEnabled and always reports Continuous, so
    # "once" cannot be checked on it; what we read back is what the BMC says
    shown = server.http.get("/v1/nodes/rfp/management/boot_device").json()
    assert shown == {"boot_device": "pxe",
                     "persistent": boot["BootSourceOverrideEnabled"] == "Continuous"}

    assert server.http.put("/v1/nodes/rfp/states/power",
                           json={"target": "power on"}).status_code == 202
    node = server.wait_state("rfp", "enroll", timeout=60)
    assert node["power_state"] == "power on" and node["last_error"] is None
    assert emulator.system(system["uuid"])["PowerState"] == "On"
    assert server.http.put("/v1/nodes/rfp/states/power",
                           json={"target": "power off"}).status_code == 202
    assert server.wait_state("rfp", "enroll", timeout=60)["power_state"] == "power off"
    assert emulator.system(system["uuid"])["PowerState"] == "Off"


def test_unknown_system_and_dead_bmc_land_in_last_error(server: RunningServer,
                                                        emulator: Emulator) -> None:
    server.create_node(name="ghost", driver="redfish", driver_info={
        "redfish_address": emulator.url, "redfish_system_id": "/redfish/v1/Systems/nope"})
    assert server.provision("ghost", "manage").status_code == 202
    node = server.wait_state("ghost", "enroll")
    assert "nope" in node["last_error"] or "not found" in node["last_error"].lower()

    server.create_node(name="dead", driver="redfish",
                       driver_info={"redfish_address": "http://127.0.0.1:9"})
    r = server.http.put("/v1/nodes/dead/management/boot_device", json={"boot_device": "pxe"})
    assert r.status_code == 503
    assert "failed after 2 attempts" in server.node("dead")["last_error"]
    assert server.http.put("/v1/nodes/dead/states/power",
                           json={"target": "power on"}).status_code == 202
    node = server.wait_state("dead", "enroll")
    assert "127.0.0.1:9" in node["last_error"] and node["power_state"] is None


def test_power_sync_sees_changes_made_behind_our_back(tmp_path: Path,
                                                      emulator: Emulator) -> None:
    import sushy

    with running_server(tmp_path / "data") as server:
        system = emulator.systems[2]
        server.create_node(name="sync", driver="redfish", driver_info={
            "redfish_address": emulator.url,
            "redfish_system_id": f"/redfish/v1/Systems/{system['uuid']}"})
        server.provision("sync", "manage")
        assert server.wait_state("sync", "manageable")["power_state"] == "power off"
        # someone powers it on at the BMC directly
        conn = sushy.Sushy(emulator.url, username="", password="", server_side_retries=1)
        conn.get_system(f"/redfish/v1/Systems/{system['uuid']}").reset_system(
            sushy.ResetType.ON)
        for _ in range(30):
            server.conductor.sync_power_states()
            if server.node("sync")["power_state"] == "power on":
                break
            time.sleep(1)
        assert server.node("sync")["power_state"] == "power on"


def test_many_redfish_nodes_work_in_parallel(server: RunningServer,
                                             emulator: Emulator) -> None:
    """Power changes on the emulator take 1-11 s each; three at once must overlap."""
    for i, system in enumerate(emulator.systems):
        server.create_node(name=f"par{i}", driver="redfish", driver_info={
            "redfish_address": emulator.url,
            "redfish_system_id": f"/redfish/v1/Systems/{system['uuid']}"})
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda i: server.http.put(
            f"/v1/nodes/par{i}/states/power", json={"target": "power on"}).status_code,
            range(3)))
    assert codes == [202, 202, 202]
    # while one node waits on its BMC the others are not blocked behind it
    busy = [server.node(f"par{i}")["reservation"] for i in range(3)]
    assert busy.count("test-conductor") >= 2
    for i in range(3):
        assert server.wait_state(f"par{i}", "enroll", timeout=60)["power_state"] == "power on"
