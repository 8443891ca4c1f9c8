"""IPMI through pyghmi against virtualbmc in front of a libvirt domain, as metal3-dev-env
runs its virtual BMCs; the results are read back from libvirt itself.

(tests/functional/test_ipmi.py drives pyghmi's own BMC class; this one a real BMC
emulator with a real machine behind it.) Needs root and libvirt (scripts/setup.sh); run
under the shared lock: ``flock -w 1800 /tmp/metalplane-lab.lock pytest <this file>``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.libvirt import Libvirt, VirtualBmc, libvirt_daemon, missing, virtual_bmc
from tests.helpers.server import RunningServer

pytestmark = pytest.mark.functional


@pytest.fixture
def vbmc(tmp_path: Path) -> Iterator[tuple[Libvirt, str, VirtualBmc]]:
    why = missing()
    if why is not None and "root" in why:
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix="mpvbmc-") as tmp, \
            libvirt_daemon(Path(tmp)) as lv:
        domain = lv.domain("ipmi", disk_mib=1)
        with virtual_bmc(lv, Path(tmp), domain) as bmc:
            yield lv, domain, bmc


def _wait_active(lv: Libvirt, domain: str, active: bool, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while lv.is_active(domain) != active:
        assert time.monotonic() < deadline, f"{domain} not {'on' if active else 'off'}"
        time.sleep(0.2)


def test_power_and_boot_device_through_virtualbmc(
        server: RunningServer, vbmc: tuple[Libvirt, str, VirtualBmc]) -> None:
    lv, domain, bmc = vbmc
    server.create_node(name="vbmc-1", driver="ipmi", driver_info={
        "ipmi_address": "127.0.0.1", "ipmi_port": bmc.port, "ipmi_username": bmc.username,
        "ipmi_password": bmc.password})
    assert server.provision("vbmc-1", "manage").status_code == 202
    node = server.wait_state("vbmc-1", "manageable", timeout=60)
    assert node["power_state"] == "power off", node["last_error"]

    r = server.http.put("/v1/nodes/vbmc-1/management/boot_device",
                        json={"boot_device": "pxe", "persistent": True})
    assert r.status_code == 204, r.text
    assert lv.boot_device(domain) == "network"
    assert server.http.get("/v1/nodes/vbmc-1/management/boot_device").json()[
        "boot_device"] == "pxe"

    assert server.http.put("/v1/nodes/vbmc-1/states/power",
                           json={"target": "power on"}).status_code == 202
    node = server.wait_state("vbmc-1", "manageable", timeout=60)
    assert node["power_state"] == "power on", node["last_error"]
    _wait_active(lv, domain, True)

    r = server.http.put("/v1/nodes/vbmc-1/management/boot_device",
                        json={"boot_device": "disk", "persistent": True})
    assert r.status_code == 204, r.text
    assert lv.boot_device(domain) == "hd"

    assert server.http.put("/v1/nodes/vbmc-1/states/power",
                           json={"target": "power off"}).status_code == 202
    node = server.wait_state("vbmc-1", "manageable", timeout=60)
    assert node["power_state"] == "power off", node["last_error"]
    _wait_active(lv, domain, False)
    assert bmc.password not in json.dumps(server.node("vbmc-1"))
