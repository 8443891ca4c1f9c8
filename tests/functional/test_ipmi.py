"""IPMI through pyghmi against pyghmi's own BMC implementation over UDP on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.peers import FakeBmc, fake_ipmi_bmc
from tests.helpers.server import RunningServer

pytestmark = pytest.mark.functional


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[FakeBmc]:
    with fake_ipmi_bmc(tmp_path) as b:
        yield b


def test_power_and_boot_device_over_ipmi(server: RunningServer, bmc: FakeBmc) -> None:
    server.create_node(name="ipmi-1", driver="ipmi", driver_info={
        "ipmi_address": "127.0.0.1", "ipmi_port": bmc.port, "ipmi_username": "admin",
        "ipmi_password": "s3cret-ipmi"})
    assert server.provision("ipmi-1", "manage").status_code == 202
    node = server.wait_state("ipmi-1", "manageable", timeout=60)
    assert node["power_state"] == "power off"

    r = server.http.put("/v1/nodes/ipmi-1/management/boot_device",
                        json={"boot_device": "pxe", "persistent": False})
    assert r.status_code == 204, r.text
    assert bmc.state()["bootdev"] == "network"
    assert server.http.get("/v1/nodes/ipmi-1/management/boot_device").json()["boot_device"] \
        == "pxe"

    assert server.http.put("/v1/nodes/ipmi-1/states/power",
                           json={"target": "power on"}).status_code == 202
    node = server.wait_state("ipmi-1", "manageable", timeout=60)
    assert node["power_state"] == "power on", node["last_error"]
    assert bmc.state()["power"] == "on"

    assert server.http.put("/v1/nodes/ipmi-1/states/power",
                           json={"target": "power off"}).status_code == 202
    assert server.wait_state("ipmi-1", "manageable", timeout=60)["power_state"] == "power off"
    assert bmc.state()["power"] == "off"
    assert "s3cret-ipmi" not in json.dumps(server.node("ipmi-1"))


def test_wrong_ipmi_password_fails_verification(server: RunningServer, bmc: FakeBmc) -> None:
    server.create_node(name="ipmi-bad", driver="ipmi", driver_info={
        "ipmi_address": "127.0.0.1", "ipmi_port": bmc.port, "ipmi_username": "admin",
        "ipmi_password": "wrong-password"})
    assert server.provision("ipmi-bad", "manage").status_code == 202
    node = server.wait_state("ipmi-bad", "enroll", timeout=120)
    assert node["last_error"] and "IPMI" in node["last_error"]
    assert "wrong-password" not in node["last_error"]
    assert bmc.state()["power"] == "off"
