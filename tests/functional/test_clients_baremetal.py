"""The field's own clients against a real metalplane server, as an operator runs them.

python-ironicclient's ``baremetal`` CLI (a subprocess, ``-f json`` output) and openstacksdk's
baremetal proxy, unmodified, both with ``auth_type none`` and with their own ``http_basic``
auth type. Every test asserts the effect on the server, not just the exit status. The
expected behaviour is Ironic's (Bare Metal API v1 reference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack
import openstack.exceptions
import pytest

from metalplane.api.auth import hash_password
from tests.helpers.server import RunningServer, running_server

# openstacksdk warns about its own internals (InfluxDB support, _compute_attributes,
# service_type) on ordinary calls; those are not metalplane's
pytestmark = [pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
              pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning")]

BAREMETAL = str(Path(sys.executable).parent / "baremetal")
# the clients must not pick up an operator's cloud settings
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}


# ---------------------------------------------------------------------------- helpers
def baremetal(url: str, *args: str, auth: tuple[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``baremetal ARGS`` against ``url`` (noauth, or http_basic with ``auth``)."""
    if auth is None:
        opts = ["--os-auth-type", "none", "--os-endpoint", url]
    else:
        opts = ["--os-auth-type", "http_basic", "--os-username", auth[0],
                "--os-password", auth[1], "--os-endpoint", url]
    return subprocess.run([BAREMETAL, *opts, *args], capture_output=True, text=True,
                          timeout=timeout, env=CLEAN_ENV, stdin=subprocess.DEVNULL)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args[1:]} failed ({r.returncode}): {r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def bm(server: RunningServer, *args: str) -> Any:
    """``baremetal ARGS -f json``, parsed; the command must succeed."""
    return json.loads(ok(baremetal(server.url, *args, "-f", "json")))


def bm_do(server: RunningServer, *args: str) -> str:
    """``baremetal ARGS`` (no output format); the command must succeed."""
    return ok(baremetal(server.url, *args))


def failed(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, f"{r.args[1:]} unexpectedly succeeded: {r.stdout}"
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr


def poll(fn: Callable[[], Any], timeout: float = 30) -> Any:
    """``fn()`` until it is truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def power_is(server: RunningServer, ident: str, state: str) -> bool:
    node = server.node(ident)
    return bool(node["power_state"] == state and node["target_power_state"] is None)


def neutron_port(server: RunningServer, name: str) -> str:
    """A network port (a VIF) on a fresh tenant network, made through /v2.0."""
    r = server.http.post("/v2.0/networks", json={"network": {"name": f"net-{name}"}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]["id"]
    r = server.http.post("/v2.0/ports", json={"port": {"network_id": net,
                                                       "name": f"vif-{name}"}})
    assert r.status_code == 201, r.text
    return str(r.json()["port"]["id"])


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One noauth server (fake-hardware available) for the whole module."""
    with running_server(tmp_path_factory.mktemp("clients") / "data") as s:
        yield s


@pytest.fixture(scope="module")
def sdk(srv: RunningServer) -> Iterator[Any]:
    conn = openstack.connection.Connection(auth_type="none",
                                           baremetal_endpoint_override=srv.url)
    try:
        yield conn
    finally:
        conn.close()


# ============================================================================ CLI: nodes
def test_cli_node_create_show_list(srv: RunningServer) -> None:
    created = bm(srv, "node", "create", "--name", "cli-n1", "--driver", "fake-hardware",
                 "--resource-class", "gold", "--description", "rack 7 slot 3",
                 "--property", "cpus=8", "--property", "memory_mb=4096",
                 "--extra", "rack=r7")
    assert created["name"] == "cli-n1" and created["driver"] == "fake-hardware"
    assert created["provision_state"] == "enroll"
    assert created["resource_class"] == "gold"
    assert created["description"] == "rack 7 slot 3"
    assert created["properties"] == {"cpus": 8, "memory_mb": 4096}
    assert created["extra"] == {"rack": "r7"}

    shown = bm(srv, "node", "show", "cli-n1")
    assert shown["uuid"] == created["uuid"]
    assert shown["description"] == "rack 7 slot 3" and shown["resource_class"] == "gold"
    by_uuid = bm(srv, "node", "show", created["uuid"], "--fields", "uuid", "name")
    assert by_uuid["name"] == "cli-n1"

    # (with -f json the client keys list rows by field name)
    listed = bm(srv, "node", "list")
    row = next(n for n in listed if n["name"] == "cli-n1")
    assert row == {"uuid": created["uuid"], "name": "cli-n1", "instance_uuid": None,
                   "power_state": None, "provision_state": "enroll", "maintenance": False}

    long = bm(srv, "node", "list", "--long")
    row = next(n for n in long if n["name"] == "cli-n1")
    assert row["driver"] == "fake-hardware" and row["resource_class"] == "gold"
    assert row["properties"] == {"cpus": 8, "memory_mb": 4096}
    assert row["extra"] == {"rack": "r7"} and row["description"] == "rack 7 slot 3"
    assert row["deploy_interface"] == "fake"

    fields = bm(srv, "node", "list", "--fields", "uuid", "name", "resource_class")
    row = next(n for n in fields if n["name"] == "cli-n1")
    assert row == {"uuid": created["uuid"], "name": "cli-n1", "resource_class": "gold"}

    enroll = bm(srv, "node", "list", "--provision-state", "enroll")
    assert "cli-n1" in [n["name"] for n in enroll]
    assert all(n["provision_state"] == "enroll" for n in enroll)
    active = bm(srv, "node", "list", "--provision-state", "active")
    assert "cli-n1" not in [n["name"] for n in active]
    gold = bm(srv, "node", "list", "--resource-class", "gold", "--driver", "fake-hardware")
    assert [n["name"] for n in gold] == ["cli-n1"]
    assert bm(srv, "node", "list", "--resource-class", "no-such-class") == []


def test_openstack_cli_plugin(srv: RunningServer) -> None:
    """The same commands as ``openstack baremetal ...`` (the OSC plugin)."""
    openstack_cli = str(Path(sys.executable).parent / "openstack")
    opts = ["--os-auth-type", "none", "--os-endpoint", srv.url]
    r = subprocess.run([openstack_cli, *opts, "baremetal", "node", "create", "--driver",
                        "fake-hardware", "--name", "osc-n1", "-f", "json"],
                       capture_output=True, text=True, timeout=60, env=CLEAN_ENV,
                       stdin=subprocess.DEVNULL)
    uuid = json.loads(ok(r))["uuid"]
    r = subprocess.run([openstack_cli, *opts, "baremetal", "node", "list", "-f", "json"],
                       capture_output=True, text=True, timeout=60, env=CLEAN_ENV,
                       stdin=subprocess.DEVNULL)
    assert uuid in [n["uuid"] for n in json.loads(ok(r))]


def test_cli_node_set_unset(srv: RunningServer) -> None:
    uuid = bm(srv, "node", "create", "--name", "cli-set", "--driver", "fake-hardware")["uuid"]
    bm_do(srv, "node", "set", "cli-set", "--name", "cli-set2", "--extra", "a=b",
          "--extra", "c=d", "--description", "described", "--property", "cpus=4",
          "--driver-info", "deploy_kernel=file:///k", "--resource-class", "silver",
          "--network-interface", "noop", "--owner", "team-a")
    node = srv.node(uuid)
    assert node["name"] == "cli-set2"
    assert node["extra"] == {"a": "b", "c": "d"}
    assert node["description"] == "described"
    assert node["properties"] == {"cpus": 4}
    assert node["driver_info"] == {"deploy_kernel": "file:///k"}
    assert node["resource_class"] == "silver"
    assert node["network_interface"] == "noop" and node["owner"] == "team-a"
    shown = bm(srv, "node", "show", "cli-set2")
    assert shown["extra"] == {"a": "b", "c": "d"}

    # JSON patch "remove" of a top-level field: Ironic resets it to its default
    bm_do(srv, "node", "unset", "cli-set2", "--extra", "a", "--description", "--property",
          "cpus", "--driver-info", "deploy_kernel", "--resource-class", "--owner",
          "--network-interface")
    node = srv.node(uuid)
    assert node["extra"] == {"c": "d"}
    assert node["properties"] == {}
    assert node["driver_info"] == {}
    assert (node["description"], node["resource_class"], node["owner"]) == (None, None, None)
    assert node["network_interface"] == "flat"  # the configured default
    bm_do(srv, "node", "unset", "cli-set2", "--name")
    assert srv.node(uuid)["name"] is None


def test_cli_node_lifecycle_with_wait(srv: RunningServer) -> None:
    uuid = bm(srv, "node", "create", "--name", "cli-life", "--driver", "fake-hardware")["uuid"]
    for verb, state in (("manage", "manageable"), ("provide", "available"),
                        ("deploy", "active"), ("undeploy", "available")):
        started = time.monotonic()
        bm_do(srv, "node", verb, "cli-life", "--wait", "60")
        assert time.monotonic() - started < 30, verb
        node = srv.node(uuid)
        assert node["provision_state"] == state, (verb, node["last_error"])
        assert node["target_provision_state"] is None
        shown = bm(srv, "node", "show", "cli-life", "--fields", "provision_state")
        assert shown["provision_state"] == state


def test_cli_inspect_with_wait(srv: RunningServer) -> None:
    uuid = bm(srv, "node", "create", "--name", "cli-insp", "--driver", "fake-hardware")["uuid"]
    bm_do(srv, "node", "manage", "cli-insp", "--wait", "60")
    bm_do(srv, "node", "inspect", "cli-insp", "--wait", "60")
    node = srv.node(uuid)
    assert node["provision_state"] == "manageable", node["last_error"]
    assert node["inspection_finished_at"] is not None


BIOS = [{"name": "hyper_threading_enabled", "value": "False"},
        {"name": "cpu_vt_enabled", "value": "True"}]


def test_cli_manual_cleaning_runs_the_named_steps(srv: RunningServer) -> None:
    uuid = bm(srv, "node", "create", "--name", "cli-clean", "--driver", "fake-hardware")["uuid"]
    steps = srv.http.get(f"/v1/nodes/{uuid}/steps").json()
    assert [(s["interface"], s["step"], s["priority"]) for s in steps["clean_steps"]] == [
        ("deploy", "erase_devices", 10), ("bios", "apply_configuration", 0),
        ("bios", "factory_reset", 0)]
    assert steps["clean_steps"][1]["argsinfo"]["settings"]["required"] is True
    assert [s["step"] for s in steps["deploy_steps"]] == [
        "deploy", "switch_to_tenant_network", "boot_instance"]
    bm_do(srv, "node", "manage", "cli-clean", "--wait", "60")
    wanted = [{"interface": "bios", "step": "apply_configuration", "args": {"settings": BIOS}}]
    bm_do(srv, "node", "clean", "cli-clean", "--clean-steps", json.dumps(wanted),
          "--wait", "60")
    node = srv.node(uuid)
    assert node["provision_state"] == "manageable", node["last_error"]
    assert node["driver_internal_info"]["fake_bios_settings"] == {
        "hyper_threading_enabled": "False", "cpu_vt_enabled": "True"}
    assert node["clean_step"] == {}
    # a step the driver lacks, or one without its required argument: 400, nothing runs
    for bad, says in (([{"interface": "raid", "step": "create_configuration"}],
                       "has no clean step 'raid.create_configuration'"),
                      ([{"interface": "bios", "step": "apply_configuration"}],
                       "needs argument(s) settings")):
        err = failed(baremetal(srv.url, "node", "clean", "cli-clean", "--clean-steps",
                               json.dumps(bad)))
        assert says in err and "clean_steps[0]" in err
        assert srv.node(uuid)["provision_state"] == "manageable"
    r = srv.http.put(f"/v1/nodes/{uuid}/states/provision", json={"target": "clean"})
    assert r.status_code == 400 and "clean_steps" in r.text
    r = srv.http.put(f"/v1/nodes/{uuid}/states/provision",
                     json={"target": "provide", "clean_steps": wanted})
    assert r.status_code == 400 and "clean_steps" in r.text
    assert srv.node(uuid)["provision_state"] == "manageable"


def test_cli_power_maintenance_validate_boot_device(srv: RunningServer) -> None:
    bm(srv, "node", "create", "--name", "cli-pw", "--driver", "fake-hardware")
    bm_do(srv, "node", "power", "on", "cli-pw")
    assert poll(lambda: power_is(srv, "cli-pw", "power on"))
    assert bm(srv, "node", "show", "cli-pw")["power_state"] == "power on"
    bm_do(srv, "node", "power", "off", "cli-pw")
    assert poll(lambda: power_is(srv, "cli-pw", "power off"))

    bm_do(srv, "node", "maintenance", "set", "cli-pw", "--reason", "fan broken")
    node = srv.node("cli-pw")
    assert node["maintenance"] is True and node["maintenance_reason"] == "fan broken"
    assert "cli-pw" in [n["name"] for n in bm(srv, "node", "list", "--maintenance")]
    bm_do(srv, "node", "maintenance", "unset", "cli-pw")
    node = srv.node("cli-pw")
    assert node["maintenance"] is False and node["maintenance_reason"] is None

    rows = bm(srv, "node", "validate", "cli-pw")
    results = {r["Interface"]: r["Result"] for r in rows}
    for iface in ("power", "management", "boot", "deploy"):
        assert results.get(iface) is True, rows

    bm_do(srv, "node", "boot", "device", "set", "cli-pw", "pxe", "--persistent")
    shown = bm(srv, "node", "boot", "device", "show", "cli-pw")
    assert shown["boot_device"] == "pxe"
    assert shown["persistent"] is True
    bm_do(srv, "node", "boot", "device", "set", "cli-pw", "disk")
    assert bm(srv, "node", "boot", "device", "show", "cli-pw")["boot_device"] == "disk"
    supported = bm(srv, "node", "boot", "device", "show", "cli-pw", "--supported")
    assert {"pxe", "disk"} <= set(supported["supported_boot_devices"].split(", "))


def test_cli_wrong_state_verb_fails_fast(srv: RunningServer) -> None:
    bm(srv, "node", "create", "--name", "cli-wrong", "--driver", "fake-hardware")
    started = time.monotonic()
    r = baremetal(srv.url, "node", "deploy", "cli-wrong")
    elapsed = time.monotonic() - started
    err = failed(r)
    assert elapsed < 2, f"a refused verb took {elapsed:.1f}s (the client retried?): {err}"
    assert "enroll" in err and "deploy" in err, err
    assert "HTTP 400" in err, err  # Ironic: InvalidStateRequested is a 400
    assert srv.node("cli-wrong")["provision_state"] == "enroll"


def test_cli_other_refusals_are_fast_and_clear(srv: RunningServer) -> None:
    bm(srv, "node", "create", "--name", "cli-ref", "--driver", "fake-hardware")
    bm_do(srv, "node", "manage", "cli-ref", "--wait", "60")
    bm_do(srv, "node", "provide", "cli-ref", "--wait", "60")
    for args, fragments, code in (
            (("node", "provide", "cli-ref"), ("provide", "available"), 400),
            (("node", "maintenance", "set", "cli-ref", "--reason", "broken"), None, None),
            (("node", "deploy", "cli-ref"), ("maintenance",), 400),
            (("node", "vif", "detach", "cli-ref", "no-such-vif"), ("no-such-vif",), 404),
            (("node", "remove", "trait", "cli-ref", "CUSTOM_NOPE"), ("CUSTOM_NOPE",), 404)):
        if fragments is None:
            bm_do(srv, *args)
            continue
        started = time.monotonic()
        err = failed(baremetal(srv.url, *args))
        assert time.monotonic() - started < 2, (args, err)
        assert all(f in err for f in fragments) and f"HTTP {code}" in err, (args, err)
    assert srv.node("cli-ref")["provision_state"] == "available"


def test_cli_unknown_node(srv: RunningServer) -> None:
    err = failed(baremetal(srv.url, "node", "show", "no-such-node"))
    assert "could not be found" in err and "no-such-node" in err, err
    assert "HTTP 404" in err, err


def test_cli_node_delete(srv: RunningServer) -> None:
    uuid = bm(srv, "node", "create", "--name", "cli-del", "--driver", "fake-hardware")["uuid"]
    bm_do(srv, "node", "delete", "cli-del")
    assert srv.http.get(f"/v1/nodes/{uuid}").status_code == 404
    assert "cli-del" not in [n["name"] for n in bm(srv, "node", "list")]
    err = failed(baremetal(srv.url, "node", "delete", "cli-del"))
    assert "cli-del" in err


# Fields Ironic returns at API 1.90 (the version both clients negotiate here: they ask for
# their newest, get 406 and retry with the server's maximum). The clients print "" / None
# for a missing one, so this reads the server's answer itself.
IRONIC_1_90_NODE_FIELDS = (
    "allocation_uuid", "automated_clean", "bios_interface", "boot_interface", "boot_mode",
    "chassis_uuid", "clean_step", "conductor", "conductor_group", "console_enabled",
    "console_interface", "created_at", "deploy_interface", "deploy_step", "description",
    "driver", "driver_info", "driver_internal_info", "extra", "fault", "firmware_interface",
    "inspect_interface", "inspection_finished_at", "inspection_started_at", "instance_info",
    "instance_uuid", "last_error", "lessee", "maintenance", "maintenance_reason",
    "management_interface", "name", "network_data", "network_interface", "owner",
    "parent_node", "power_interface", "power_state", "properties", "protected",
    "protected_reason", "provision_state", "provision_updated_at", "raid_config",
    "raid_interface", "rescue_interface", "reservation", "resource_class", "retired",
    "retired_reason", "secure_boot", "shard", "storage_interface", "target_power_state",
    "target_provision_state", "target_raid_config", "traits", "updated_at", "uuid",
    "vendor_interface")
IRONIC_1_90_PORT_FIELDS = (
    "uuid", "address", "node_uuid", "portgroup_uuid", "local_link_connection", "pxe_enabled",
    "physical_network", "internal_info", "is_smartnic", "name", "extra", "created_at",
    "updated_at", "links")
IRONIC_1_90_PORTGROUP_FIELDS = (
    "uuid", "address", "name", "node_uuid", "mode", "properties",
    "standalone_ports_supported", "internal_info", "extra", "created_at", "updated_at",
    "links", "ports")


def test_fields_the_clients_read(srv: RunningServer) -> None:
    node = bm(srv, "node", "create", "--name", "cli-fields", "--driver", "fake-hardware")
    port = bm(srv, "port", "create", "52:54:00:ff:00:01", "--node", node["uuid"])
    pg = bm(srv, "port", "group", "create", "--node", node["uuid"],
            "--address", "52:54:00:ff:00:02")
    v190 = {"X-OpenStack-Ironic-API-Version": "1.90"}
    missing = {}
    for kind, path, wanted in (
            ("node", f"/v1/nodes/{node['uuid']}", IRONIC_1_90_NODE_FIELDS),
            ("port", f"/v1/ports/{port['uuid']}", IRONIC_1_90_PORT_FIELDS),
            ("portgroup", f"/v1/portgroups/{pg['uuid']}", IRONIC_1_90_PORTGROUP_FIELDS)):
        body = srv.http.get(path, headers=v190).json()
        if set(wanted) - set(body):
            missing[kind] = sorted(set(wanted) - set(body))
    assert missing == {}, f"fields missing at 1.90: {missing}"
    shown = srv.http.get(f"/v1/nodes/{node['uuid']}", headers=v190).json()
    assert shown["protected"] is False and shown["retired"] is False
    assert shown["conductor"] == "test-conductor"
    assert shown["console_enabled"] is False


# ============================================================================ CLI: ports
def test_cli_port_crud(srv: RunningServer) -> None:
    node = bm(srv, "node", "create", "--name", "cli-port", "--driver", "fake-hardware")
    other = bm(srv, "node", "create", "--name", "cli-port-other", "--driver", "fake-hardware")
    mac = "52:54:00:aa:00:01"
    port = bm(srv, "port", "create", mac, "--node", node["uuid"], "--pxe-enabled", "false",
              "--local-link-connection", "switch_id=aa:bb:cc:dd:ee:ff",
              "--local-link-connection", "port_id=Ethernet1/1",
              "--physical-network", "physnet1", "--extra", "cable=c1")
    assert port["address"] == mac and port["node_uuid"] == node["uuid"]
    assert port["pxe_enabled"] is False
    assert port["local_link_connection"] == {"switch_id": "aa:bb:cc:dd:ee:ff",
                                             "port_id": "Ethernet1/1"}
    assert port["physical_network"] == "physnet1"
    stored = srv.http.get(f"/v1/ports/{port['uuid']}").json()
    assert stored["pxe_enabled"] is False  # really stored, not just echoed
    bm(srv, "port", "create", "52:54:00:aa:00:02", "--node", other["uuid"])

    listed = bm(srv, "port", "list")
    assert {"uuid": port["uuid"], "address": mac} in listed
    long = bm(srv, "port", "list", "--long")
    row = next(p for p in long if p["uuid"] == port["uuid"])
    assert row["node_uuid"] == node["uuid"]
    assert row["pxe_enabled"] is False
    assert row["physical_network"] == "physnet1"
    assert row["local_link_connection"] == {"switch_id": "aa:bb:cc:dd:ee:ff",
                                            "port_id": "Ethernet1/1"}
    by_addr = bm(srv, "port", "list", "--address", mac)
    assert [p["uuid"] for p in by_addr] == [port["uuid"]]
    by_node = bm(srv, "port", "list", "--node", "cli-port")
    assert [p["uuid"] for p in by_node] == [port["uuid"]]

    shown = bm(srv, "port", "show", port["uuid"])
    assert shown["address"] == mac and shown["extra"] == {"cable": "c1"}
    assert bm(srv, "port", "show", "--address", mac)["uuid"] == port["uuid"]

    bm_do(srv, "port", "set", port["uuid"], "--pxe-enabled", "--extra", "label=eth0",
          "--physical-network", "physnet2")
    stored = srv.http.get(f"/v1/ports/{port['uuid']}").json()
    assert stored["pxe_enabled"] is True and stored["physical_network"] == "physnet2"
    assert stored["extra"] == {"cable": "c1", "label": "eth0"}
    bm_do(srv, "port", "set", port["uuid"], "--pxe-disabled")
    assert srv.http.get(f"/v1/ports/{port['uuid']}").json()["pxe_enabled"] is False
    bm_do(srv, "port", "unset", port["uuid"], "--extra", "cable", "--physical-network")
    stored = srv.http.get(f"/v1/ports/{port['uuid']}").json()
    assert stored["extra"] == {"label": "eth0"} and stored["physical_network"] is None

    bm_do(srv, "port", "delete", port["uuid"])
    assert srv.http.get(f"/v1/ports/{port['uuid']}").status_code == 404
    assert bm(srv, "port", "list", "--node", "cli-port") == []


def test_cli_portgroup_crud(srv: RunningServer) -> None:
    node = bm(srv, "node", "create", "--name", "cli-pg", "--driver", "fake-hardware")
    pg = bm(srv, "port", "group", "create", "--node", node["uuid"], "--name", "bond0",
            "--address", "52:54:00:bb:00:01", "--mode", "802.3ad",
            "--unsupport-standalone-ports", "--property", "miimon=100",
            "--extra", "k=v")
    assert pg["name"] == "bond0" and pg["node_uuid"] == node["uuid"]
    assert pg["mode"] == "802.3ad"
    assert pg["standalone_ports_supported"] is False
    stored = srv.http.get(f"/v1/portgroups/{pg['uuid']}").json()
    assert stored["standalone_ports_supported"] is False
    assert stored["properties"] == {"miimon": 100}  # the client sends key=value as JSON

    listed = bm(srv, "port", "group", "list")
    assert {"uuid": pg["uuid"], "address": "52:54:00:bb:00:01", "name": "bond0"} in listed
    long = bm(srv, "port", "group", "list", "--long")
    row = next(p for p in long if p["uuid"] == pg["uuid"])
    assert row["node_uuid"] == node["uuid"] and row["mode"] == "802.3ad"
    assert row["standalone_ports_supported"] is False

    assert bm(srv, "port", "group", "show", "bond0")["uuid"] == pg["uuid"]
    assert bm(srv, "port", "group", "show", pg["uuid"])["name"] == "bond0"

    bm_do(srv, "port", "group", "set", "bond0", "--name", "bond1", "--mode", "active-backup",
          "--support-standalone-ports", "--extra", "k2=v2")
    stored = srv.http.get(f"/v1/portgroups/{pg['uuid']}").json()
    assert stored["name"] == "bond1" and stored["mode"] == "active-backup"
    assert stored["standalone_ports_supported"] is True
    assert stored["extra"] == {"k": "v", "k2": "v2"}

    member = bm(srv, "port", "create", "52:54:00:bb:00:02", "--node", node["uuid"],
                "--port-group", pg["uuid"])
    assert member["portgroup_uuid"] == pg["uuid"]
    bm_do(srv, "port", "delete", member["uuid"])
    bm_do(srv, "port", "group", "delete", "bond1")
    assert srv.http.get(f"/v1/portgroups/{pg['uuid']}").status_code == 404


# ============================================================================ CLI: drivers
def test_cli_drivers(srv: RunningServer) -> None:
    listed = bm(srv, "driver", "list")
    names = [d["name"] for d in listed]
    assert "fake-hardware" in names
    row = next(d for d in listed if d["name"] == "fake-hardware")
    assert row["hosts"] == "test-conductor"

    shown = bm(srv, "driver", "show", "fake-hardware")
    assert shown["name"] == "fake-hardware"
    assert shown["hosts"] and shown["type"] == "dynamic"
    assert shown["default_power_interface"] == "fake"
    assert "fake" in shown["enabled_deploy_interfaces"]

    props = bm(srv, "driver", "property", "list", "fake-hardware")
    assert isinstance(props, list)
    assert all(set(p) == {"property", "description"} for p in props)
    ipmi = bm(srv, "driver", "property", "list", "ipmi")
    assert "ipmi_address" in [p["property"] for p in ipmi]

    err = failed(baremetal(srv.url, "driver", "show", "no-such-driver"))
    assert "no-such-driver" in err and "HTTP 404" in err, err


# ============================================================================ CLI: traits
def test_cli_traits(srv: RunningServer) -> None:
    uuid = bm(srv, "node", "create", "--name", "cli-tr", "--driver", "fake-hardware")["uuid"]
    bm_do(srv, "node", "add", "trait", "cli-tr", "CUSTOM_GPU", "CUSTOM_FAST")
    assert sorted(srv.node(uuid)["traits"]) == ["CUSTOM_FAST", "CUSTOM_GPU"]
    listed = bm(srv, "node", "trait", "list", "cli-tr")
    assert sorted(t["traits"] for t in listed) == ["CUSTOM_FAST", "CUSTOM_GPU"]
    bm_do(srv, "node", "remove", "trait", "cli-tr", "CUSTOM_GPU")
    assert srv.node(uuid)["traits"] == ["CUSTOM_FAST"]
    bm_do(srv, "node", "trait", "add", "cli-tr", "CUSTOM_X")
    bm_do(srv, "node", "trait", "remove", "cli-tr", "--all")
    assert srv.node(uuid)["traits"] == []
    assert bm(srv, "node", "trait", "list", "cli-tr") == []


# ============================================================================ CLI: VIFs
def test_cli_vifs(srv: RunningServer) -> None:
    # flat network interface (the default): VIFs are recorded, no switch needed
    node = bm(srv, "node", "create", "--name", "cli-vif", "--driver", "fake-hardware")
    assert node["network_interface"] == "flat"
    bm(srv, "port", "create", "52:54:00:cc:00:01", "--node", node["uuid"])
    vif = neutron_port(srv, "cli")
    bm_do(srv, "node", "vif", "attach", "cli-vif", vif)
    assert bm(srv, "node", "vif", "list", "cli-vif") == [{"id": vif}]
    assert srv.http.get(f"/v1/nodes/{node['uuid']}/vifs").json()["vifs"] == [{"id": vif}]
    bm_do(srv, "node", "vif", "detach", "cli-vif", vif)
    assert bm(srv, "node", "vif", "list", "cli-vif") == []


def test_cli_vif_attach_without_a_free_port_fails_fast(srv: RunningServer) -> None:
    # Ironic: NoFreePhysicalPorts is an InvalidParameterValue, 400 ("Unable to attach VIF
    # ..., not enough free physical ports."); a 409 makes ironicclient retry for ~20 s.
    bm(srv, "node", "create", "--name", "cli-noport", "--driver", "fake-hardware")
    vif = neutron_port(srv, "noport")
    started = time.monotonic()
    err = failed(baremetal(srv.url, "node", "vif", "attach", "cli-noport", vif))
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"took {elapsed:.1f}s: {err}"
    assert vif in err and "free" in err and "HTTP 400" in err, err
    assert bm(srv, "node", "vif", "list", "cli-noport") == []


# ============================================================================ openstacksdk
def test_sdk_node_crud(srv: RunningServer, sdk: Any) -> None:
    node = sdk.baremetal.create_node(name="sdk-n1", driver="fake-hardware",
                                     resource_class="gold", description="from sdk",
                                     properties={"cpus": 2}, extra={"a": "b"})
    assert node.id and node.name == "sdk-n1"
    # Ironic's API >= 1.11 creates in enroll; the sdk does not move it on
    assert node.provision_state == "enroll"
    assert node.resource_class == "gold" and node.description == "from sdk"
    assert srv.node(node.id)["properties"] == {"cpus": 2}

    got = sdk.baremetal.get_node("sdk-n1")
    assert got.id == node.id and got.extra == {"a": "b"}
    detailed = {n.name: n for n in sdk.baremetal.nodes(details=True)}
    assert detailed["sdk-n1"].driver == "fake-hardware"
    assert detailed["sdk-n1"].properties == {"cpus": 2}
    brief = [n.name for n in sdk.baremetal.nodes(provision_state="enroll")]
    assert "sdk-n1" in brief

    updated = sdk.baremetal.update_node(node, extra={"a": "c"}, description="changed",
                                        driver_info={"deploy_kernel": "file:///k"})
    assert updated.extra == {"a": "c"}
    stored = srv.node(node.id)
    assert stored["extra"] == {"a": "c"} and stored["description"] == "changed"
    assert stored["driver_info"] == {"deploy_kernel": "file:///k"}
    patched = sdk.baremetal.patch_node(node, [{"op": "add", "path": "/properties/ram",
                                               "value": 512}])
    assert patched.properties == {"cpus": 2, "ram": 512}

    sdk.baremetal.delete_node(node)
    assert srv.http.get(f"/v1/nodes/{node.id}").status_code == 404
    with pytest.raises(openstack.exceptions.NotFoundException):
        sdk.baremetal.get_node(node.id)


def test_sdk_provision_and_power(srv: RunningServer, sdk: Any) -> None:
    node = sdk.baremetal.create_node(name="sdk-life", driver="fake-hardware")
    for target, state in (("manage", "manageable"), ("provide", "available"),
                          ("active", "active"), ("deleted", "available")):
        started = time.monotonic()
        result = sdk.baremetal.set_node_provision_state(node, target, wait=True, timeout=60)
        assert time.monotonic() - started < 30, target
        assert result.provision_state == state, (target, result.last_error)
        assert srv.node(node.id)["provision_state"] == state
    sdk.baremetal.set_node_power_state(node, "power on", wait=True, timeout=30)
    assert power_is(srv, node.id, "power on")
    assert sdk.baremetal.get_node(node.id).power_state == "power on"
    sdk.baremetal.set_node_power_state(node, "power off", wait=True, timeout=30)
    assert power_is(srv, node.id, "power off")

    sdk.baremetal.set_node_maintenance(node, reason="sdk says so")
    stored = srv.node(node.id)
    assert stored["maintenance"] is True and stored["maintenance_reason"] == "sdk says so"
    sdk.baremetal.unset_node_maintenance(node)
    assert srv.node(node.id)["maintenance"] is False

    result = sdk.baremetal.validate_node(node, required=("power", "management"))
    assert result["power"].result is True and result["management"].result is True
    sdk.baremetal.set_node_boot_device(node, "pxe", persistent=True)
    assert sdk.baremetal.get_node_boot_device(node)["boot_device"] == "pxe"


def test_sdk_manual_cleaning(srv: RunningServer, sdk: Any) -> None:
    node = sdk.baremetal.create_node(name="sdk-clean", driver="fake-hardware")
    sdk.baremetal.set_node_provision_state(node, "manage", wait=True, timeout=60)
    sdk.baremetal.set_node_provision_state(
        node, "clean", wait=True, timeout=60,
        clean_steps=[{"interface": "bios", "step": "apply_configuration",
                      "args": {"settings": BIOS[:1]}},
                     {"interface": "bios", "step": "factory_reset"}])
    got = srv.node(node.id)
    assert got["provision_state"] == "manageable", got["last_error"]
    assert "fake_bios_settings" not in got["driver_internal_info"]  # reset ran second


def test_sdk_wrong_state_fails_fast(srv: RunningServer, sdk: Any) -> None:
    node = sdk.baremetal.create_node(name="sdk-wrong", driver="fake-hardware")
    started = time.monotonic()
    with pytest.raises(openstack.exceptions.HttpException) as info:
        sdk.baremetal.set_node_provision_state(node, "active")
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"a refused verb took {elapsed:.1f}s"
    assert info.value.status_code == 400
    assert "enroll" in str(info.value), info.value
    assert srv.node(node.id)["provision_state"] == "enroll"


def test_sdk_ports_and_portgroups(srv: RunningServer, sdk: Any) -> None:
    node = sdk.baremetal.create_node(name="sdk-port", driver="fake-hardware")
    mac = "52:54:00:dd:00:01"
    port = sdk.baremetal.create_port(node_id=node.id, address=mac, is_pxe_enabled=False,
                                     physical_network="physnet1",
                                     local_link_connection={"switch_id": "aa:bb:cc:dd:ee:ff",
                                                            "port_id": "Ethernet1/2"})
    assert port.address == mac and port.node_id == node.id
    stored = srv.http.get(f"/v1/ports/{port.id}").json()
    assert stored["pxe_enabled"] is False and stored["physical_network"] == "physnet1"

    found = list(sdk.baremetal.ports(details=True, address=mac))
    assert [p.id for p in found] == [port.id]
    assert found[0].is_pxe_enabled is False
    assert found[0].local_link_connection == {"switch_id": "aa:bb:cc:dd:ee:ff",
                                              "port_id": "Ethernet1/2"}
    assert [p.id for p in sdk.baremetal.ports(node_id=node.id)] == [port.id]
    assert sdk.baremetal.get_port(port.id).address == mac
    sdk.baremetal.update_port(port, extra={"x": "y"})
    assert srv.http.get(f"/v1/ports/{port.id}").json()["extra"] == {"x": "y"}

    pg = sdk.baremetal.create_port_group(node_id=node.id, name="sdk-bond",
                                         address="52:54:00:dd:00:02", mode="802.3ad",
                                         is_standalone_ports_supported=False)
    assert pg.name == "sdk-bond"
    stored = srv.http.get(f"/v1/portgroups/{pg.id}").json()
    assert stored["standalone_ports_supported"] is False and stored["mode"] == "802.3ad"
    groups = {g.id: g for g in sdk.baremetal.port_groups(details=True)}
    assert groups[pg.id].node_id == node.id
    assert groups[pg.id].is_standalone_ports_supported is False
    assert sdk.baremetal.get_port_group("sdk-bond").id == pg.id

    sdk.baremetal.delete_port(port)
    sdk.baremetal.delete_port_group(pg)
    assert srv.http.get(f"/v1/ports/{port.id}").status_code == 404
    assert srv.http.get(f"/v1/portgroups/{pg.id}").status_code == 404


def test_sdk_drivers(sdk: Any) -> None:
    names = [d.name for d in sdk.baremetal.drivers()]
    assert "fake-hardware" in names
    driver = sdk.baremetal.get_driver("fake-hardware")
    assert driver.name == "fake-hardware" and driver.hosts
    assert driver.default_power_interface == "fake"
    assert "fake" in driver.enabled_deploy_interfaces


def test_sdk_traits(srv: RunningServer, sdk: Any) -> None:
    node = sdk.baremetal.create_node(name="sdk-tr", driver="fake-hardware")
    sdk.baremetal.add_node_trait(node, "CUSTOM_A")
    assert srv.node(node.id)["traits"] == ["CUSTOM_A"]
    sdk.baremetal.set_node_traits(node, ["CUSTOM_B", "CUSTOM_C"])
    assert sorted(srv.node(node.id)["traits"]) == ["CUSTOM_B", "CUSTOM_C"]
    sdk.baremetal.remove_node_trait(node, "CUSTOM_B")
    assert srv.node(node.id)["traits"] == ["CUSTOM_C"]
    assert sdk.baremetal.get_node(node.id).traits == ["CUSTOM_C"]


def test_sdk_vifs(srv: RunningServer, sdk: Any) -> None:
    node = sdk.baremetal.create_node(name="sdk-vif", driver="fake-hardware")
    sdk.baremetal.create_port(node_id=node.id, address="52:54:00:ee:00:01")
    vif = neutron_port(srv, "sdk")
    sdk.baremetal.attach_vif_to_node(node, vif)
    assert sdk.baremetal.list_node_vifs(node) == [vif]
    assert srv.http.get(f"/v1/nodes/{node.id}/vifs").json()["vifs"] == [{"id": vif}]
    sdk.baremetal.detach_vif_from_node(node, vif)
    assert sdk.baremetal.list_node_vifs(node) == []

    portless = sdk.baremetal.create_node(name="sdk-noport", driver="fake-hardware")
    started = time.monotonic()
    with pytest.raises(openstack.exceptions.HttpException) as info:
        sdk.baremetal.attach_vif_to_node(portless, vif)
    assert time.monotonic() - started < 2
    assert info.value.status_code == 400


# ============================================================================ http_basic
@pytest.fixture(scope="module")
def basic_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("basic") / "data"
    data.mkdir(parents=True)
    (data / "htpasswd").write_text(f"ops:{hash_password('correct horse')}\n")
    with running_server(data, auth_strategy="http_basic") as s:
        s.http.auth = ("ops", "correct horse")
        s.create_node(name="basic-n1")
        yield s


def test_cli_http_basic(basic_srv: RunningServer) -> None:
    url = basic_srv.url
    r = baremetal(url, "node", "list", "-f", "json", auth=("ops", "correct horse"))
    assert [n["name"] for n in json.loads(ok(r))] == ["basic-n1"]
    started = time.monotonic()
    err = failed(baremetal(url, "node", "list", auth=("ops", "wrong")))
    assert time.monotonic() - started < 10
    assert "HTTP 401" in err or "Unauthorized" in err, err
    err = failed(baremetal(url, "node", "list"))  # auth type none: no credentials
    assert "HTTP 401" in err or "Unauthorized" in err, err


def test_sdk_http_basic(basic_srv: RunningServer) -> None:
    # As bifrost's clouds.yaml: credentials in auth, the service at baremetal_endpoint_override.
    # (keystoneauth's http_basic ``endpoint`` alone is used verbatim, no version discovery:
    # the sdk then asks for {endpoint}/nodes, which Ironic does not serve either.)
    def connect(password: str) -> Any:
        return openstack.connection.Connection(
            auth_type="http_basic", auth={"username": "ops", "password": password},
            baremetal_endpoint_override=basic_srv.url)

    good = connect("correct horse")
    try:
        assert [n.name for n in good.baremetal.nodes()] == ["basic-n1"]
        assert good.baremetal.get_node("basic-n1").driver == "fake-hardware"
    finally:
        good.close()
    bad = connect("wrong")
    try:
        with pytest.raises(openstack.exceptions.HttpException) as info:
            list(bad.baremetal.nodes())
        assert info.value.status_code == 401
    finally:
        bad.close()
