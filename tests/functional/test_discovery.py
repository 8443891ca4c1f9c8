"""POST /v1/continue_inspection against a real server: a captured ironic-python-agent
inventory (a Dell) from a machine nobody enrolled is enrolled with auto-discovery on, the
seed's rules.json (imported as is through the CLI) makes it ``idrac`` with its BMC address
from the inventory; with discovery off it is 404 and nothing is enrolled; a known node
waiting in ``inspect wait`` finishes its inspection with the data; Ironic's answer shapes
by micro-version; bad bodies 400 naming the field; no secret in any answer."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_cli import run
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional
FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures"
CAPTURED = json.loads((FIXTURES / "ipa_inventory.json").read_text())
BOOT_MAC = "b0:7b:25:de:7a:10"


def captured(bmc: str = "127.0.0.1") -> dict[str, Any]:
    """The captured Dell, its BMC on loopback (the tests send no traffic elsewhere; nothing
    listens on 127.0.0.1:443, so powering it off after discovery fails at once)."""
    data = copy.deepcopy(CAPTURED)
    data["inventory"]["bmc_address"] = bmc
    return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "data", discovery_enabled=True, bmc_retries=1,
                        bmc_connect_timeout=2) as srv:
        yield srv


def test_an_unknown_dell_is_enrolled_and_made_idrac_by_the_seed_rule(
        server: RunningServer) -> None:
    out = run("inspection", "rule", "import", str(FIXTURES / "seed_rules.json"),
              url=server.url)
    assert out.returncode == 0, out.stderr
    r = server.http.post("/v1/continue_inspection", json=captured())  # no credentials
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["config"]["agent_token"] == "******"  # never a secret
    assert "calvin" not in r.text
    node = server.node(answer["node"]["uuid"])
    assert node["provision_state"] == "enroll"
    assert node["driver"] == "idrac" and node["power_interface"] == "idrac-redfish"
    info = node["driver_info"]
    assert info["drac_address"] == "127.0.0.1" and info["drac_username"] == "root"
    assert info["drac_password"] == "******"
    assert node["properties"]["cpu_arch"] == "x86_64"
    inv = server.http.get(f"/v1/nodes/{node['uuid']}/inventory").json()
    assert inv["plugin_data"]["auto_discovered"] is True
    assert inv["inventory"]["system_vendor"]["manufacturer"] == "Dell Inc."
    ports = server.http.get("/v1/ports", params={"node": node["uuid"],
                                                 "detail": True}).json()["ports"]
    assert {p["address"]: p["pxe_enabled"] for p in ports} == {
        BOOT_MAC: True, "b0:7b:25:de:7a:11": False, "b0:7b:25:de:7a:12": False}
    boot = next(p for p in ports if p["address"] == BOOT_MAC)
    assert boot["local_link_connection"]["port_id"] == "Ethernet1/5"
    # the same machine again: known, and not being inspected: 404, still one node
    again = server.http.post("/v1/continue_inspection", json=captured())
    assert again.status_code == 404, again.text
    assert len(server.http.get("/v1/nodes").json()["nodes"]) == 1


def test_answer_shapes_by_microversion(server: RunningServer) -> None:
    r = server.http.post("/v1/continue_inspection", json=captured(),
                         headers={"X-OpenStack-Ironic-API-Version": "1.1"})
    assert r.status_code == 202 and set(r.json()) == {"uuid"}  # ironic-inspector's callback
    other = captured("127.0.0.2")
    other["inventory"]["interfaces"] = [{"name": "eth0", "mac_address": "52:54:00:00:99:01"}]
    r = server.http.post("/v1/continue_inspection", json=other,
                         headers={"X-OpenStack-Ironic-API-Version": "1.83"})
    assert r.status_code == 404 and "1.84" in r.text
    r = server.http.post("/v1/continue_inspection", json=other,
                         headers={"X-OpenStack-Ironic-API-Version": "1.84"})
    assert r.status_code == 202 and set(r.json()) == {"node", "config"}


@pytest.mark.parametrize(("body", "field"), [
    ({"inventory": {"interfaces": [{"name": "eth0"}]}}, "inventory.interfaces[0].mac_address"),
    ({"inventory": {"interfaces": []}}, "inventory.interfaces"),
    ({"foo": 1}, "inventory"),
    ([1, 2], "JSON object"),
])
def test_bad_bodies_are_400_naming_the_field(server: RunningServer, body: Any,
                                             field: str) -> None:
    r = server.http.post("/v1/continue_inspection", json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error_message"] or field in r.text
    r = server.http.post("/v1/continue_inspection", content=b"{not json",
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_discovery_off_is_404_and_enrolls_nothing(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        r = srv.http.post("/v1/continue_inspection", json=captured())
        assert r.status_code == 404, r.text
        assert srv.http.get("/v1/nodes").json()["nodes"] == []
        assert srv.boot.get("/boot/discovery.ipxe").status_code == 404


def test_a_known_node_in_inspect_wait_finishes_with_the_posted_data(
        server: RunningServer) -> None:
    server.create_node(name="known", boot_interface="ipxe", inspect_interface="agent",
                       network_interface="noop")
    r = server.http.post("/v1/ports", json={"address": BOOT_MAC,
                                            "node_uuid": server.node("known")["uuid"]})
    assert r.status_code == 201, r.text
    assert server.provision("known", "manage").status_code == 202
    server.wait_state("known", "manageable")
    # not waiting for inspection yet: 404, and nothing is enrolled for its MAC
    assert server.http.post("/v1/continue_inspection", json=captured()).status_code == 404
    assert server.provision("known", "inspect").status_code == 202
    server.wait_state("known", "inspect wait")
    r = server.http.post("/v1/continue_inspection", json=captured())
    assert r.status_code == 202, r.text
    node = server.wait_state("known", {"manageable", "inspect failed"})
    assert node["provision_state"] == "manageable", node["last_error"]
    assert node["driver"] == "fake-hardware"  # the seed's rule wants auto_discovered: none here
    inv = server.http.get("/v1/nodes/known/inventory").json()
    assert inv["inventory"]["system_vendor"]["serial_number"] == "8XK4L33"
    assert "auto_discovered" not in inv["plugin_data"]
    assert len(server.http.get("/v1/nodes").json()["nodes"]) == 1


def test_public_like_lookup_under_http_basic(tmp_path: Path) -> None:
    """No operator credentials are asked (an unknown machine has none); the rest of the API
    still wants them."""
    from metalplane.api.auth import hash_password

    data = tmp_path / "data"
    data.mkdir()
    (data / "htpasswd").write_text(f"ops:{hash_password('correct horse')}\n")
    with running_server(data, auth_strategy="http_basic", discovery_enabled=True) as srv:
        assert srv.http.get("/v1/nodes").status_code == 401
        r = srv.http.post("/v1/continue_inspection", json=captured())
        assert r.status_code == 202, r.text
        assert r.json()["config"]["agent_token"] == "******"
