"""A failed or aborted flow leaves the node safe, checked on the real switch and dnsmasq:
powered off, its switch port parked (off the cleaning VLAN), its network port and its
dnsmasq host file gone, and no agent token (the iPXE script is refused), in its
``* failed`` state with a ``last_error`` that names what failed.

The nodes boot the ramdisk agent for cleaning (``ipxe`` + ``direct``) and no agent comes,
so they wait in ``clean wait`` until the test fails them one of three ways: an abort, a
wait timeout, the agent reporting a failed step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_networking import (
    CLEAN_VLAN,
    PARKING,
    enroll,
    networked,
    switch_port,
    wait_for,
)
from tests.helpers.rack import Rack
from tests.helpers.server import RunningServer

pytestmark = pytest.mark.functional
CLEAN_TIMEOUT = 4.0


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[RunningServer, Rack]]:
    # the cleaning network's dnsmasq runs in the "clean" host's namespace
    with networked(tmp_path, lambda r: {"dhcp_bindings": f"cleaning={r.hosts['clean'].ns}:eth0"},
                   boot_server_url="http://10.66.0.254:6385", periodic=True,
                   clean_callback_timeout=CLEAN_TIMEOUT, timeout_check_interval=0.5) as lab:
        yield lab


def host_files(server: RunningServer) -> list[str]:
    """The MACs in the cleaning dnsmasq's host files."""
    hosts = server.service.settings.data_dir / "dhcp" / "cleaning" / "hosts"
    return [f.read_text().split(",")[0] for f in hosts.glob("*")] if hosts.exists() else []


def cleaning_node(server: RunningServer, r: Rack, name: str, ip: str) -> dict[str, Any]:
    """A node waiting for its agent in ``clean wait``, on the cleaning VLAN with its
    dnsmasq host file written."""
    enroll(server, r, name, ip)
    server.http.patch(f"/v1/nodes/{name}", json=[
        {"op": "add", "path": "/boot_interface", "value": "ipxe"},
        {"op": "add", "path": "/deploy_interface", "value": "direct"}])
    assert server.provision(name, "manage").status_code == 202
    server.wait_state(name, "manageable")
    assert server.provision(name, "provide").status_code == 202
    node = server.wait_state(name, {"clean wait", "clean failed"}, timeout=30)
    assert node["provision_state"] == "clean wait", node["last_error"]
    assert r.ovs.tag(switch_port(r, name)) == CLEAN_VLAN
    mac = r.hosts[name].macs["eth0"]
    assert mac in host_files(server)
    assert server.boot.get(f"/boot/{node['uuid']}.ipxe").status_code == 200
    return node


def assert_safe(server: RunningServer, r: Rack, name: str, uuid: str) -> dict[str, Any]:
    wait_for(lambda: server.node(name)["reservation"] is None, timeout=30)
    node = server.node(name)
    assert node["provision_state"] == "clean failed"
    assert node["power_state"] == "power off"
    assert r.ovs.tag(switch_port(r, name)) == PARKING
    assert r.hosts[name].macs["eth0"] not in host_files(server)
    ports = server.http.get("/v2.0/ports", params={"device_id": uuid}).json()["ports"]
    assert ports == []
    assert "agent_token_hash" not in node["driver_internal_info"]
    assert server.boot.get(f"/boot/{uuid}.ipxe").status_code == 404
    return node


def test_abort_in_a_wait_state_leaves_the_node_safe(lab: tuple[RunningServer, Rack]) -> None:
    server, r = lab
    node = cleaning_node(server, r, "ab1", "10.66.0.11/24")
    assert node["clean_step"]["step"] == "erase_devices"  # the step it waits in
    assert server.provision("ab1", "abort").status_code == 202
    done = assert_safe(server, r, "ab1", node["uuid"])
    assert "Aborted by request while in 'clean wait'" in done["last_error"]


def test_a_wait_timeout_leaves_the_node_safe(lab: tuple[RunningServer, Rack]) -> None:
    server, r = lab
    node = cleaning_node(server, r, "to1", "10.66.0.12/24")
    wait_for(lambda: server.node("to1")["provision_state"] == "clean failed",
             timeout=CLEAN_TIMEOUT + 20)
    done = assert_safe(server, r, "to1", node["uuid"])
    assert ("Timeout reached while waiting in state 'clean wait' for step "
            "'deploy.erase_devices'") in done["last_error"]


def test_a_failed_agent_step_leaves_the_node_safe(lab: tuple[RunningServer, Rack]) -> None:
    server, r = lab
    node = cleaning_node(server, r, "ag1", "10.66.0.13/24")
    mac = r.hosts["ag1"].macs["eth0"]
    found = server.http.get("/v1/lookup", params={"addresses": mac})
    assert found.status_code == 200, found.text
    headers = {"X-Agent-Token": found.json()["config"]["agent_token"]}
    beat = server.http.post(f"/v1/heartbeat/{node['uuid']}", json={}, headers=headers)
    command = beat.json()["command"]
    assert command["name"] == "erase"
    r_result = server.http.post(f"/v1/heartbeat/{node['uuid']}", headers=headers, json={
        "result": {"command_id": command["id"], "status": "failed",
                   "error": "the disk is on fire"}})
    assert r_result.status_code == 200, r_result.text
    done = assert_safe(server, r, "ag1", node["uuid"])
    assert ("clean step 'deploy.erase_devices' failed: the agent's erase failed: the disk "
            "is on fire") in done["last_error"]
    # the token the agent had is worthless now
    again = server.http.post(f"/v1/heartbeat/{node['uuid']}", json={}, headers=headers)
    assert again.status_code in (401, 409), again.text
