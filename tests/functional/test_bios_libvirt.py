"""BIOS settings through the redfish bios interface, against sushy-tools' libvirt driver.

Real peers all the way: a libvirtd (tests/helpers/libvirt.py) with small TCG domains
defined here, sushy-tools' emulator in front of them with its libvirt driver (which keeps
each domain's BIOS attributes in its XML ``<metadata>``, and serves the attribute
registry), a metalplane server with its periodic tasks (the polled steps), and the field's
client, python-ironicclient's ``baremetal``. Settings go through Ironic's manual cleaning
API; what the BMC shows afterwards is read back from the emulator and from libvirt itself.

Needs root and libvirt (scripts/setup.sh); run under the shared lock:
``flock -w 1800 /tmp/metalplane-lab.lock pytest tests/functional/test_bios_libvirt.py``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.functional.test_clients_baremetal import baremetal, bm, ok
from tests.helpers.libvirt import Libvirt, libvirt_daemon, missing, sushy_libvirt_emulator
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional

SUSHY_NS = "{http://openstack.org/xmlns/libvirt/sushy}"
# sushy-tools' libvirt driver's defaults (DEFAULT_BIOS_ATTRIBUTES), restored by ResetBios
DEFAULTS = {"BootMode": "Uefi", "EmbeddedSata": "Raid", "NicBoot1": "NetworkBoot",
            "NumCores": "10", "ProcTurboMode": "Enabled", "QuietBoot": "true"}
TWO = [{"name": "ProcTurboMode", "value": "Disabled"},
       {"name": "EmbeddedSata", "value": "Ahci"}]


@dataclass
class Rig:
    lv: Libvirt
    emulator: str
    domains: list[str]

    def system_id(self, domain: str) -> str:
        return f"/redfish/v1/Systems/{self.lv.uuid(domain)}"

    def emulator_bios(self, domain: str) -> dict[str, Any]:
        """The Attributes the emulator's Bios resource shows."""
        r = httpx.get(f"{self.emulator}{self.system_id(domain)}/BIOS", timeout=30)
        r.raise_for_status()
        return dict(r.json()["Attributes"])

    def libvirt_bios(self, domain: str) -> dict[str, str]:
        """The BIOS attributes sushy-tools keeps in the domain's persistent XML."""
        return {a.get("name", ""): a.get("value", "")
                for a in self.lv.xml(domain).iter(f"{SUSHY_NS}attribute")}


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    why = missing()
    if why is not None and "root" in why:
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix="mpbios-") as tmp, \
            libvirt_daemon(Path(tmp)) as lv:
        domains = [lv.domain(f"bios{i}") for i in range(3)]
        with sushy_libvirt_emulator(lv, Path(tmp), domains) as url:
            yield Rig(lv, url, domains)


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    """A server whose periodic tasks run: step polling every 0.5 s, the rest out of the
    way."""
    with running_server(tmp_path / "data", periodic=True, step_poll_interval=0.5,
                        heartbeat_interval=3600, network_sync_interval=3600) as s:
        yield s


def _enroll(srv: RunningServer, rig: Rig, domain: str, name: str) -> dict[str, Any]:
    node = srv.create_node(name=name, driver="redfish", driver_info={
        "redfish_address": rig.emulator, "redfish_system_id": rig.system_id(domain)})
    assert node["bios_interface"] == "redfish"  # the redfish hardware type's default
    assert srv.provision(name, "manage").status_code == 202
    return srv.wait_state(name, "manageable", timeout=60)


def _clean(srv: RunningServer, name: str, steps: list[dict[str, Any]]) -> httpx.Response:
    return srv.http.put(f"/v1/nodes/{name}/states/provision",
                        json={"target": "clean", "clean_steps": steps})


def _bios_api(srv: RunningServer, name: str) -> dict[str, str | None]:
    r = srv.http.get(f"/v1/nodes/{name}/bios")
    assert r.status_code == 200, r.text
    return {s["name"]: s["value"] for s in r.json()["bios"]}


def test_apply_configuration_and_factory_reset_through_manual_cleaning(
        srv: RunningServer, rig: Rig) -> None:
    domain = rig.domains[0]
    _enroll(srv, rig, domain, "bios-a")
    # verify read the settings: the API serves the emulator's values, with the registry
    assert {k: _bios_api(srv, "bios-a")[k] for k in DEFAULTS} == DEFAULTS
    apply = [{"interface": "bios", "step": "apply_configuration", "args": {"settings": TWO}}]
    r = _clean(srv, "bios-a", apply)
    assert r.status_code == 202, r.text
    node = srv.wait_state("bios-a", "manageable", timeout=120)
    assert node["last_error"] is None
    wanted = {s["name"]: s["value"] for s in TWO}
    assert {k: rig.emulator_bios(domain)[k] for k in wanted} == wanted
    assert {k: rig.libvirt_bios(domain)[k] for k in wanted} == wanted
    assert {k: _bios_api(srv, "bios-a")[k] for k in wanted} == wanted  # refreshed
    assert rig.lv.is_active(domain)  # rebooted (powered on) for the BIOS to apply them
    internal = node["driver_internal_info"]
    assert "redfish_bios_state" not in internal and "cleaning_polling" not in internal
    assert rig.emulator_bios(domain)["QuietBoot"] == "true"  # untouched ones stay

    r = _clean(srv, "bios-a", [{"interface": "bios", "step": "factory_reset"}])
    assert r.status_code == 202, r.text
    node = srv.wait_state("bios-a", "manageable", timeout=120)
    assert node["last_error"] is None
    assert {k: rig.emulator_bios(domain)[k] for k in DEFAULTS} == DEFAULTS
    assert {k: _bios_api(srv, "bios-a")[k] for k in DEFAULTS} == DEFAULTS


def test_read_only_or_unknown_settings_are_refused_before_anything_is_written(
        srv: RunningServer, rig: Rig) -> None:
    domain = rig.domains[1]
    _enroll(srv, rig, domain, "bios-b")
    before_emulator, before_xml = rig.emulator_bios(domain), rig.libvirt_bios(domain)
    for settings, says in (
            ([*TWO, {"name": "NumCores", "value": "12"}], "'NumCores' is read-only"),
            ([TWO[0], {"name": "HyperThreading", "value": "Off"}],
             "'HyperThreading' is unknown to the BMC's attribute registry"),
            ([{"name": "ProcTurboMode", "value": "Maybe"}],
             "'Maybe' is not one of Enabled, Disabled")):
        r = _clean(srv, "bios-b", [{"interface": "bios", "step": "apply_configuration",
                                    "args": {"settings": settings}}])
        assert r.status_code == 202, r.text
        node = srv.wait_state("bios-b", "clean failed", timeout=60)
        assert "clean step 'bios.apply_configuration' failed" in node["last_error"]
        assert says in node["last_error"] and "nothing was written" in node["last_error"]
        assert rig.emulator_bios(domain) == before_emulator
        assert rig.libvirt_bios(domain) == before_xml
        assert srv.provision("bios-b", "manage").status_code == 202
        srv.wait_state("bios-b", "manageable", timeout=60)


def test_bios_api_shapes_and_microversions(srv: RunningServer, rig: Rig) -> None:
    node = _enroll(srv, rig, rig.domains[2], "bios-c")
    http = srv.http
    plain = http.get("/v1/nodes/bios-c/bios").json()["bios"]
    turbo = next(s for s in plain if s["name"] == "ProcTurboMode")
    assert set(turbo) == {"name", "value", "created_at", "updated_at", "links"}
    assert turbo["links"][0] == {
        "href": f"{srv.url}/v1/nodes/bios-c/bios/ProcTurboMode", "rel": "self"}
    detail = http.get("/v1/nodes/bios-c/bios", params={"detail": "True"}).json()["bios"]
    by_name = {s["name"]: s for s in detail}
    assert by_name["ProcTurboMode"]["attribute_type"] == "Enumeration"
    assert by_name["ProcTurboMode"]["allowable_values"] == ["Enabled", "Disabled"]
    assert by_name["ProcTurboMode"]["read_only"] is False
    assert by_name["NumCores"]["read_only"] is True
    assert (by_name["NumCores"]["lower_bound"], by_name["NumCores"]["upper_bound"]) == (10, 20)
    assert by_name["SerialNumber"]["unique"] is True
    assert by_name["L2Cache"]["max_length"] == 16
    only = http.get("/v1/nodes/bios-c/bios", params={"fields": "name,read_only"}).json()
    assert set(only["bios"][0]) == {"name", "read_only", "created_at", "updated_at", "links"}
    one = http.get(f"/v1/nodes/{node['uuid']}/bios/NumCores").json()
    assert list(one) == ["NumCores"] and one["NumCores"]["value"] == "10"
    assert one["NumCores"]["attribute_type"] == "Integer"
    # Ironic's answers to older micro-versions, bad queries, unknown names
    old = {"X-OpenStack-Ironic-API-Version": "1.73"}
    one = http.get("/v1/nodes/bios-c/bios/NumCores", headers=old).json()["NumCores"]
    assert set(one) == {"name", "value", "created_at", "updated_at", "links"}
    assert http.get("/v1/nodes/bios-c/bios", params={"detail": "True"},
                    headers=old).status_code == 400
    r = http.get("/v1/nodes/bios-c/bios", headers={"X-OpenStack-Ironic-API-Version": "1.39"})
    assert r.status_code == 404
    r = http.get("/v1/nodes/bios-c/bios", params={"detail": "True", "fields": "name"})
    assert r.status_code == 400 and "fields" in r.text
    r = http.get("/v1/nodes/bios-c/bios", params={"fields": "name,colour"})
    assert r.status_code == 400 and "colour" in r.text
    r = http.get("/v1/nodes/bios-c/bios/NoSuchSetting")
    assert r.status_code == 404
    assert f"Node {node['uuid']} doesn't have a BIOS setting 'NoSuchSetting'" in r.text
    assert http.get("/v1/nodes/no-such-node/bios").status_code == 404


def test_the_baremetal_cli_lists_and_applies_bios_settings(srv: RunningServer,
                                                           rig: Rig) -> None:
    """The issue's "done when": ``baremetal node bios setting list`` and ``baremetal node
    clean --clean-steps`` against metalplane."""
    domain = rig.domains[2]
    node = _enroll(srv, rig, domain, "bios-d")
    listed = bm(srv, "node", "bios", "setting", "list", node["name"])
    assert {s["name"]: s["value"] for s in listed}["NumCores"] == "10"
    detailed = bm(srv, "node", "bios", "setting", "list", node["name"], "--long")
    turbo = next(s for s in detailed if s["name"] == "ProcTurboMode")
    assert turbo["allowable_values"] == ["Enabled", "Disabled"]
    assert turbo["attribute_type"] == "Enumeration" and turbo["read_only"] is False
    shown = bm(srv, "node", "bios", "setting", "show", node["name"], "QuietBoot")
    assert shown["value"] == "true"
    steps = [{"interface": "bios", "step": "apply_configuration",
              "args": {"settings": [{"name": "QuietBoot", "value": "false"},
                                    {"name": "NicBoot1", "value": "Disabled"}]}}]
    t0 = time.monotonic()
    ok(baremetal(srv.url, "node", "clean", node["name"], "--clean-steps", json.dumps(steps),
                 "--wait", "120", timeout=180))
    assert time.monotonic() - t0 < 120
    assert srv.node(node["name"])["provision_state"] == "manageable"
    assert {k: rig.emulator_bios(domain)[k] for k in ("QuietBoot", "NicBoot1")} == {
        "QuietBoot": "False", "NicBoot1": "Disabled"}  # a Boolean goes as JSON false
    listed = bm(srv, "node", "bios", "setting", "list", node["name"])
    values = {s["name"]: s["value"] for s in listed}
    assert (values["QuietBoot"], values["NicBoot1"]) == ("False", "Disabled")
