"""Inspection against a real server, without namespaces: /v1/inspection_rules in Ironic's
shapes and micro-versions, the seed's rules.json imported as is through the CLI, and the
real ramdisk agent (a process on this host, its DMI identity and BMC from a hardware file)
inspecting a node: its inventory in IPA's shape served by GET /v1/nodes/{id}/inventory,
the rules applied in priority order, a failing rule putting the node in inspect failed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalplane.agent.main import local_interfaces
from tests.functional.test_cli import assert_one_line_error, run
from tests.helpers.peers import stop_process
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional
V = {"X-OpenStack-Ironic-API-Version": "1.96"}
# the rules.json, as is
SEED = json.loads((Path(__file__).parents[1] / "unit" / "fixtures" / "seed_rules.json")
                  .read_text())
HARDWARE = {"system_vendor": {"manufacturer": "Dell Inc.", "product_name": "PowerEdge R640",
                              "serial_number": "LAB-0001"},
            "bmc_address": "192.0.2.31", "bmc_mac": "02:00:00:0a:00:01"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "data", agent_heartbeat_interval=0.3) as srv:
        yield srv


def rule(server: RunningServer, body: dict[str, Any]) -> dict[str, Any]:
    r = server.http.post("/v1/inspection_rules", json=body, headers=V)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_rules_api_in_ironic_shapes(server: RunningServer) -> None:
    body = {"description": "GPU nodes", "priority": 50, "conditions": [
        {"op": "contains", "args": {"value": "{inventory[cpu][model_name]}", "regex": "Xeon"}}],
        "actions": [{"op": "add-trait", "args": {"name": "CUSTOM_XEON"}}]}
    created = rule(server, body)
    uuid = created["uuid"]
    assert created["phase"] == "main" and created["sensitive"] is False
    assert created["conditions"] == body["conditions"] and created["actions"] == body["actions"]
    assert created["links"][0]["href"].endswith(f"/v1/inspection_rules/{uuid}")
    listed = server.http.get("/v1/inspection_rules", headers=V).json()["inspection_rules"]
    assert [set(r) for r in listed] == [{"uuid", "priority", "phase", "description", "links"}]
    detail = server.http.get("/v1/inspection_rules", params={"detail": "true"},
                             headers=V).json()["inspection_rules"]
    assert detail[0]["actions"] == body["actions"]
    fields = server.http.get(f"/v1/inspection_rules/{uuid}", params={"fields": "priority"},
                             headers=V).json()
    assert fields == {"priority": 50}
    r = server.http.patch(f"/v1/inspection_rules/{uuid}", headers=V, json=[
        {"op": "replace", "path": "/priority", "value": 70},
        {"op": "add", "path": "/actions/-", "value": {"op": "log", "args": {"msg": "x"}}}])
    assert r.status_code == 200, r.text
    assert r.json()["priority"] == 70 and len(r.json()["actions"]) == 2
    # a sensitive rule: conditions and actions hidden, the flag cannot be unset
    secret = rule(server, {"sensitive": True, "actions": [
        {"op": "set-attribute", "args": {"path": "driver_info/ipmi_password",
                                         "value": "hunter2"}}]})
    assert secret["conditions"] is None and secret["actions"] is None
    shown = server.http.get(f"/v1/inspection_rules/{secret['uuid']}", headers=V).text
    assert "hunter2" not in shown
    r = server.http.patch(f"/v1/inspection_rules/{secret['uuid']}", headers=V,
                          json=[{"op": "replace", "path": "/sensitive", "value": False}])
    assert r.status_code == 400 and "sensitive" in r.text
    # older micro-versions: 404 to read, 405 to write (Ironic's answers)
    old = {"X-OpenStack-Ironic-API-Version": "1.95"}
    assert server.http.get("/v1/inspection_rules", headers=old).status_code == 404
    assert server.http.post("/v1/inspection_rules", json=body, headers=old).status_code == 405
    assert server.http.delete(f"/v1/inspection_rules/{uuid}", headers=V).status_code == 204
    assert server.http.get(f"/v1/inspection_rules/{uuid}", headers=V).status_code == 404
    assert server.http.delete(f"/v1/inspection_rules/{uuid}", headers=V).status_code == 404


@pytest.mark.parametrize(("body", "fragment"), [
    ({"conditions": [{"op": "equals", "args": {}}],
      "actions": [{"op": "log", "args": {"msg": "x"}}]}, "conditions[0].op"),
    ({"actions": [{"op": "set-attribute", "args": {"path": "uuid", "value": "x"}}]},
     "actions[0].args.path: bad path"),
    ({"actions": [{"op": "set-attribute", "args": {"path": "driver", "value": "{data[x"}}]},
     "actions[0].args.value: bad format string"),
    ({"actions": "none"}, "actions"),
    ([1, 2], "rule: must be an object"),
])
def test_bad_rules_are_400_naming_the_field(server: RunningServer, body: Any,
                                            fragment: str) -> None:
    r = server.http.post("/v1/inspection_rules", json=body, headers=V)
    assert r.status_code == 400, r.text
    assert fragment in r.text


def test_seed_rules_import_as_is_through_the_cli(server: RunningServer, tmp_path: Path) -> None:
    seed = tmp_path / "rules.json"
    seed.write_text(json.dumps(SEED))
    out = run("inspection", "rule", "import", str(seed), "-o", "json", url=server.url)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert [r["description"] for r in created] == [SEED[0]["description"]]
    stored = server.http.get(f"/v1/inspection_rules/{created[0]['uuid']}", headers=V).json()
    assert stored["conditions"][1] == {"op": "eq", "args": {"values": [
        "{data[inventory][system_vendor][manufacturer]}", "Dell Inc."]}}
    assert stored["actions"][3]["args"] == {"path": "driver_info/drac_address",
                                            "value": "{data[inventory][bmc_address]}"}
    listed = run("inspection", "rule", "list", "-o", "json", url=server.url)
    assert json.loads(listed.stdout)[0]["uuid"] == created[0]["uuid"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"conditions": [{"op": "eq", "field": "ftp://x"}],
                                "actions": [{"action": "fail", "message": "x"}]}]))
    assert_one_line_error(run("inspection", "rule", "import", str(bad), url=server.url),
                          "rule 0: conditions[0].field: bad path")
    bad.write_text(json.dumps({"actions": [{"action": "set-attribute", "path": "id",
                                            "value": 1}]}))
    assert_one_line_error(run("inspection", "rule", "import", str(bad), url=server.url),
                          "actions[0].args.path: bad path")


def _inspect_with_agent(server: RunningServer, tmp: Path, name: str) -> dict[str, Any]:
    """Inspect node ``name`` with the real agent on this host (its lookup finds the node by
    one of this host's MACs); return the node once inspection ends."""
    assert server.provision(name, "inspect").status_code == 202
    server.wait_state(name, "inspect wait")
    hardware = tmp / "hardware.json"
    hardware.write_text(json.dumps(HARDWARE))
    disk = tmp / f"{name}.disk"
    with open(disk, "wb") as f:
        f.truncate(8 << 20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "metalplane.agent.main", f"--api-url={server.url}",
         f"--disk={disk}", f"--work-dir={tmp / 'work'}", "--lldp-wait=0",
         "--max-runtime=60", f"--hardware={hardware}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        node = server.wait_state(name, {"manageable", "inspect failed"}, timeout=60)
    except AssertionError as exc:
        stop_process(proc)
        out = proc.stdout.read() if proc.stdout else ""
        raise AssertionError(f"{exc}\n--- agent ---\n{out[-3000:]}") from None
    stop_process(proc)
    if proc.stdout:
        proc.stdout.close()
    return node


def test_agent_inventory_and_rules_on_a_node(server: RunningServer, tmp_path: Path) -> None:
    nics = local_interfaces()
    if not nics:
        pytest.skip("this host has no NIC with a MAC for the agent's lookup")
    mac = next(iter(nics.values()))
    node = server.create_node(name="r640", boot_interface="ipxe", inspect_interface="agent",
                              network_interface="noop")
    r = server.http.post("/v1/ports", json={"address": mac, "node_uuid": node["uuid"]})
    assert r.status_code == 201, r.text
    assert server.provision("r640", "manage").status_code == 202
    server.wait_state("r640", "manageable")
    seed = tmp_path / "rules.json"
    seed.write_text(json.dumps(SEED))  # not auto-discovered: the seed's rule does not apply
    assert run("inspection", "rule", "import", str(seed), url=server.url).returncode == 0
    rule(server, {"description": "Dell identity", "priority": 20, "conditions": [
        {"op": "eq", "args": {"values": ["{inventory[system_vendor][manufacturer]}",
                                         "Dell Inc."]}},
        {"op": "!is-true", "args": {"value": "{data[auto_discovered]}"}}],
        "actions": [
            {"op": "set-attribute", "args": {"path": "extra/serial",
                                             "value": "{inventory[system_vendor]"
                                                      "[serial_number]}"}},
            {"op": "set-attribute", "args": {"path": "driver_info/bmc_ip",
                                             "value": "{inventory[bmc_address]}"}},
            {"op": "add-trait", "args": {"name": "CUSTOM_DELL"}},
            {"op": "set-capability", "args": {"name": "boot_mode",
                                              "value": "{inventory[boot][current_boot_mode]}"}},
            {"op": "set-port-attribute", "args": {"port_id": mac, "path": "physical_network",
                                                  "value": "fabric-a"}}]})
    rule(server, {"description": "later, lower priority", "priority": 10, "actions": [
        {"op": "set-attribute", "args": {"path": "extra/serial", "value": "overwritten"}}]})
    rule(server, {"sensitive": True, "priority": 5, "actions": [
        {"op": "set-attribute", "args": {"path": "driver_info/ipmi_password",
                                         "value": "s3cret-{inventory[bmc_mac]}"}}]})
    node = _inspect_with_agent(server, tmp_path, "r640")
    assert node["provision_state"] == "manageable", node["last_error"]
    assert node["extra"]["serial"] == "overwritten"  # priority 20, then 10
    assert node["driver"] == "fake-hardware" and "drac_address" not in node["driver_info"]
    assert node["driver_info"].get("bmc_ip") == "192.0.2.31", node["driver_info"]
    assert node["driver_info"]["ipmi_password"] == "******"  # sealed, never shown
    assert node["traits"] == ["CUSTOM_DELL"]
    assert node["properties"]["capabilities"].startswith("boot_mode:")
    assert node["properties"]["cpus"] >= 1 and node["properties"]["memory_mb"] > 0
    port = server.http.get("/v1/ports", params={"address": mac, "detail": True}).json()
    assert port["ports"][0]["physical_network"] == "fabric-a"
    # the inventory as Ironic serves it (1.81)
    old = server.http.get("/v1/nodes/r640/inventory",
                          headers={"X-OpenStack-Ironic-API-Version": "1.80"})
    assert old.status_code == 404
    got = server.http.get("/v1/nodes/r640/inventory", headers=V)
    assert got.status_code == 200, got.text
    inv, plugin = got.json()["inventory"], got.json()["plugin_data"]
    assert set(inv) >= {"cpu", "memory", "disks", "interfaces", "system_vendor", "boot",
                        "bmc_address", "bmc_mac", "hostname"}
    assert {k: inv["system_vendor"][k] for k in HARDWARE["system_vendor"]} \
        == HARDWARE["system_vendor"]  # the hardware file's, over this host's DMI
    assert inv["bmc_address"] == "192.0.2.31" and inv["bmc_mac"] == "02:00:00:0a:00:01"
    assert set(inv["cpu"]) >= {"count", "architecture", "model_name", "frequency", "flags"}
    assert set(inv["memory"]) == {"total", "physical_mb"}
    assert inv["disks"][0]["size"] == 8 << 20 and inv["disks"][0]["name"].endswith(".disk")
    nic = next(i for i in inv["interfaces"] if i["mac_address"] == mac)
    assert set(nic) >= {"name", "mac_address", "ipv4_address", "has_carrier", "lldp",
                        "speed_mbps"}
    assert inv["boot"]["current_boot_mode"] in ("bios", "uefi")
    assert nic["name"] in plugin["all_interfaces"]
    assert "s3cret" not in got.text
    # python-ironicclient reads it unmodified
    from tests.functional.test_clients_baremetal import bm_do
    saved = json.loads(bm_do(server, "node", "inventory", "save", "r640"))
    assert saved == got.json()
    # a rule that fails: inspect failed, the rule named
    failing = rule(server, {"description": "no R640 here", "priority": 1, "conditions": [
        {"op": "matches", "args": {"value": "{inventory[system_vendor][product_name]}",
                                   "regex": "PowerEdge R6.*"}}],
        "actions": [{"op": "fail", "args": {"msg": "{inventory[system_vendor][serial_number]}"
                                                   " is retired"}}]})
    node = _inspect_with_agent(server, tmp_path, "r640")
    assert node["provision_state"] == "inspect failed"
    assert failing["uuid"] in node["last_error"] and "no R640 here" in node["last_error"]
    assert "LAB-0001 is retired" in node["last_error"]
    # a change the node refuses (a hardware type that does not exist): the rule is named
    assert server.http.delete(f"/v1/inspection_rules/{failing['uuid']}",
                              headers=V).status_code == 204
    drac = rule(server, {"description": "Dell: drac", "priority": 2, "actions": [
        {"op": "set-attribute", "args": {"path": "driver", "value": "drac"}},
        {"op": "set-attribute", "args": {"path": "driver_info/drac_address",
                                         "value": "{inventory[bmc_address]}"}}]})
    node = _inspect_with_agent(server, tmp_path, "r640")  # from inspect failed
    assert node["provision_state"] == "inspect failed"
    assert f"inspection rule {drac['uuid']} (Dell: drac)" in node["last_error"]
    assert "drac" in node["last_error"].split("refused its changes")[1]
    assert node["driver"] == "fake-hardware" and "drac_address" not in node["driver_info"]


def test_inventory_404_before_inspection(server: RunningServer) -> None:
    server.create_node(name="fresh")
    r = server.http.get("/v1/nodes/fresh/inventory", headers=V)
    assert r.status_code == 404 and "inventory" in r.text.lower()
    assert server.http.get("/v1/nodes/nope/inventory", headers=V).status_code == 404


def test_python_ironicclient_inspection_rule_commands(server: RunningServer) -> None:
    """``baremetal inspection rule create/list/show/set/unset/delete`` (python-ironicclient,
    unmodified; it negotiates 1.96 with the server)."""
    from tests.functional.test_clients_baremetal import bm, bm_do

    conditions = [{"op": "is-true", "args": {"value": "{inventory[interfaces][0]"
                                                      "[has_carrier]}"}}]
    actions = [{"op": "set-capability", "args": {"name": "boot_mode", "value": "uefi"}}]
    created = bm(server, "inspection", "rule", "create", "--description", "from the client",
                 "--priority", "30", "--conditions", json.dumps(conditions),
                 "--actions", json.dumps(actions))
    uuid = created["uuid"]
    assert created["priority"] == 30 and created["actions"] == actions
    listed = bm(server, "inspection", "rule", "list")
    assert [r.get("UUID", r.get("uuid")) for r in listed] == [uuid], listed
    bm_do(server, "inspection", "rule", "set", uuid, "--priority", "40",
          "--description", "changed")
    shown = bm(server, "inspection", "rule", "show", uuid)
    assert shown["priority"] == 40 and shown["description"] == "changed"
    bm_do(server, "inspection", "rule", "unset", uuid, "--description")
    assert bm(server, "inspection", "rule", "show", uuid)["description"] is None
    bm_do(server, "inspection", "rule", "delete", uuid)
    assert bm(server, "inspection", "rule", "list") == []


# openstacksdk warns about its own internals (InfluxDB support), as test_clients_baremetal
@pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning")
@pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning")
def test_openstacksdk_inspection_rules_and_inventory(server: RunningServer) -> None:
    """openstacksdk's baremetal proxy, unmodified: inspection rules (1.96) and a node's
    inventory (1.81; NotFound before any inspection)."""
    import openstack
    from openstack import exceptions as os_exc

    conn = openstack.connection.Connection(auth_type="none",
                                           baremetal_endpoint_override=server.url)
    try:
        rule_ = conn.baremetal.create_inspection_rule(
            description="sdk", priority=3,
            actions=[{"op": "add-trait", "args": {"name": "CUSTOM_SDK"}}])
        assert rule_.priority == 3 and rule_.id
        assert [r.id for r in conn.baremetal.inspection_rules()] == [rule_.id]
        conn.baremetal.update_inspection_rule(rule_.id, priority=9)
        assert conn.baremetal.get_inspection_rule(rule_.id).priority == 9
        conn.baremetal.delete_inspection_rule(rule_.id)
        assert list(conn.baremetal.inspection_rules()) == []
        server.create_node(name="sdk-node")
        with pytest.raises(os_exc.NotFoundException):
            conn.baremetal.get_node_inventory("sdk-node")
    finally:
        conn.close()


def test_the_seed_rule_makes_a_dell_node_idrac_reaching_its_bmc(server: RunningServer,
                                                                tmp_path: Path) -> None:
    """The seed's rule, imported as is, and a copy without its ``auto_discovered``
    condition (discovery is not there yet): an inspected Dell becomes ``idrac`` with its
    drac_* credentials and its BMC address from the inventory; the drac_* aliases then
    reach the BMC (sushy-tools) through Redfish."""
    from metalplane.drivers.registry import hardware_types
    from tests.helpers.peers import sushy_emulator

    assert "idrac" in hardware_types(), \
        "the idrac entry points are not installed: pip install -e . (see pyproject.toml)"
    nics = local_interfaces()
    if not nics:
        pytest.skip("this host has no NIC with a MAC for the agent's lookup")
    mac = next(iter(nics.values()))
    with sushy_emulator(tmp_path, count=1) as emulator:
        system = emulator.systems[0]
        server.create_node(name="dell", boot_interface="ipxe", inspect_interface="agent",
                           network_interface="noop")
        r = server.http.post("/v1/ports", json={"address": mac,
                                                "node_uuid": server.node("dell")["uuid"]})
        assert r.status_code == 201, r.text
        assert server.provision("dell", "manage").status_code == 202
        server.wait_state("dell", "manageable")
        rules = tmp_path / "rules.json"
        # the copy also says where the emulator listens (an iDRAC's https on 443 is the
        # aliases' default): ending inspection powers the node off through its new driver
        port = emulator.url.rsplit(":", 1)[1]
        copy_ = {**SEED[0], "description": "Dell, discovered or not",
                 "conditions": SEED[0]["conditions"][1:],
                 "actions": [*SEED[0]["actions"],
                             {"action": "set-attribute", "path": "driver_info/drac_protocol",
                              "value": "http"},
                             {"action": "set-attribute", "path": "driver_info/drac_port",
                              "value": port},
                             {"action": "set-attribute",
                              "path": "driver_info/redfish_system_id",
                              "value": f"/redfish/v1/Systems/{system['uuid']}"}]}
        rules.write_text(json.dumps([*SEED, copy_]))
        out = run("inspection", "rule", "import", str(rules), url=server.url)
        assert out.returncode == 0, out.stderr
        global HARDWARE
        saved, HARDWARE = HARDWARE, {**HARDWARE, "bmc_address": "127.0.0.1"}
        try:
            node = _inspect_with_agent(server, tmp_path, "dell")
        finally:
            HARDWARE = saved
        assert node["provision_state"] == "manageable", node["last_error"]
        assert node["driver"] == "idrac"
        assert node["power_interface"] == "idrac-redfish"  # reset to the type's default
        assert node["inspect_interface"] == "agent"  # supported by idrac: kept
        info = node["driver_info"]
        assert info["drac_username"] == "root" and info["drac_address"] == "127.0.0.1"
        assert info["drac_password"] == "******"  # sealed, never shown
        # inspection ended powering it off through the aliases (else: inspect failed);
        # power on the same way, and the BMC shows it
        r = server.http.put("/v1/nodes/dell/states/power", json={"target": "power on"})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while server.node("dell")["power_state"] != "power on":
            assert time.monotonic() < deadline, server.node("dell")["last_error"]
            time.sleep(0.2)
        assert emulator.system(system["uuid"])["PowerState"] == "On"
