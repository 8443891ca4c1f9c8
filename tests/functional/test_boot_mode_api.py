"""A node's boot mode through the API of a real server (no namespaces, no lock): a boot
mode that is not bios/uefi is refused with 400 naming the field before inspection
starts; a valid one is accepted. (What first stage each boot mode gets: test_boot_mode.py;
a UEFI VM booting it for real: test_lab_vm.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.server import running_server

pytestmark = pytest.mark.functional


def test_a_bad_boot_mode_is_refused_with_400_naming_the_field(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        server.create_node(name="n1", boot_interface="ipxe", deploy_interface="direct",
                           inspect_interface="agent", network_interface="noop",
                           properties={"capabilities": "boot_mode:legacy"})
        assert server.provision("n1", "manage").status_code == 202
        server.wait_state("n1", "manageable")
        r = server.provision("n1", "inspect")
        assert r.status_code == 400, r.text
        assert "properties.capabilities boot_mode" in r.text and "legacy" in r.text
        assert server.node("n1")["provision_state"] == "manageable"  # nothing started
        r = server.http.patch("/v1/nodes/n1", json=[
            {"op": "replace", "path": "/properties/capabilities", "value": "boot_mode:uefi"}])
        assert r.status_code == 200, r.text

        assert server.provision("n1", "inspect").status_code == 202  # uefi: accepted
