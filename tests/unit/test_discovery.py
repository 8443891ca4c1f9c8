"""Auto-discovery's decisions (metalplane.conductor.discovery): bodies checked as Ironic's
DATA_VALIDATOR, the discovery DHCP range, and what continue_inspection does with a known,
an unknown or a duplicate machine, with discovery on or off. A conductor that is not
started, on a SQLite store in a temporary directory; no HTTP, no BMC."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid, NotFound
from metalplane.common.secrets import SecretBox
from metalplane.conductor.discovery import (
    TooManyDiscoveries,
    check_body,
    discovery_range,
)
from metalplane.conductor.manager import Conductor
from metalplane.db import api as db_api
from metalplane.db import inspection as db_inspection
from metalplane.db.engine import Database

CAPTURED = json.loads((Path(__file__).parent / "fixtures" / "ipa_inventory.json").read_text())
MACS = [n["mac_address"] for n in CAPTURED["inventory"]["interfaces"]]


def body(**inventory: Any) -> dict[str, Any]:
    out = copy.deepcopy(CAPTURED)
    out["inventory"].update(inventory)
    return out


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    conductors: list[Conductor] = []
    db = Database(f"sqlite:///{tmp_path}/store.db")
    db.upgrade()
    secrets = SecretBox(tmp_path / "key")

    def conductor(**settings: Any) -> Conductor:
        s = Settings(data_dir=tmp_path, conductor_hostname=f"c{len(conductors)}", **settings)
        s.validate()
        c = Conductor(s, db, secrets)
        conductors.append(c)
        return c

    yield conductor
    for c in conductors:
        c._executor.shutdown(wait=True)
    db.dispose()


def nodes(c: Conductor) -> list[Any]:
    return db_api.list_nodes(c.db)


@pytest.mark.parametrize(("bad", "field"), [
    ([], "the body must be a JSON object"),
    ({}, "inventory is required"),
    ({"inventory": []}, "inventory is required and must be an object"),
    ({"inventory": {}}, "inventory.interfaces must be a non-empty list"),
    ({"inventory": {"interfaces": []}}, "inventory.interfaces must be a non-empty list"),
    ({"inventory": {"interfaces": [{"name": "eth0"}]}},
     r"inventory.interfaces\[0\].mac_address must be a string"),
    ({"inventory": {"interfaces": [{"mac_address": "52:54:00:00:00:01"}, "x"]}},
     r"inventory.interfaces\[1\].mac_address"),
    ({"inventory": {"interfaces": [{"mac_address": "52:54:00:00:00:01"}],
                    "bmc_address": 10}}, "inventory.bmc_address must be a string or null"),
    ({"inventory": {"interfaces": [{"mac_address": "not-a-mac"}], "bmc_address": "0.0.0.0"}},
     "No lookup information provided"),
])
def test_bad_bodies_name_the_field(bad: Any, field: str) -> None:
    with pytest.raises(Invalid, match=field):
        check_body(bad)


def test_body_parts_invalid_macs_left_out() -> None:
    inv, plugin, macs, bmcs = check_body({"inventory": {"interfaces": [
        {"mac_address": "52-54-00-AA-BB-01"}, {"mac_address": "bogus"},
        {"mac_address": "00:00:00:00:00:00"}], "bmc_address": "10.0.0.9"},
        "boot_interface": "x"})
    assert macs == ["52:54:00:aa:bb:01"] and bmcs == ["10.0.0.9"]
    assert plugin == {"boot_interface": "x"} and "interfaces" in inv


def test_discovery_range_outside_the_pools_and_gateway() -> None:
    pools = [{"start": "10.70.0.10", "end": "10.70.0.250"}]
    assert discovery_range("", "10.70.0.0/24", "10.70.0.1", pools) == ("10.70.0.2", "10.70.0.9")
    assert discovery_range("", "10.70.0.0/24", "10.70.0.1",
                           [{"start": "10.70.0.2", "end": "10.70.0.200"}]) == \
        ("10.70.0.201", "10.70.0.254")
    assert discovery_range("10.70.0.240, 10.70.0.245", "10.70.0.0/24", None, pools) == \
        ("10.70.0.240", "10.70.0.245")
    with pytest.raises(Invalid, match="discovery_dhcp_range"):
        discovery_range("10.71.0.1,10.71.0.9", "10.70.0.0/24", None, [])
    with pytest.raises(Invalid, match="no address outside"):
        discovery_range("", "10.70.0.0/30", "10.70.0.1",
                        [{"start": "10.70.0.2", "end": "10.70.0.2"}])


def test_discovery_off_unknown_machine_is_404_and_nothing_enrolled(make: Any) -> None:
    c = make()
    with pytest.raises(NotFound):
        c.discovery.continue_inspection(body())
    assert nodes(c) == []


def test_unknown_machine_is_enrolled_with_ports_inventory_and_flag(make: Any) -> None:
    c = make(discovery_enabled=True)
    node, new = c.discovery.continue_inspection(body())
    assert new and node.provision_state == "enroll" and node.driver == "fake-hardware"
    assert node.properties["cpus"] > 0 and node.properties["memory_mb"] > 0
    ports = {p.address: p for p in db_api.list_ports(c.db, node_id=node.id)}
    assert sorted(ports) == sorted(MACS)
    # pxe_enabled only on the NIC it booted from (boot.pxe_interface 01-b0-7b-25-de-7a-10)
    assert [m for m, p in ports.items() if p.pxe_enabled] == ["b0:7b:25:de:7a:10"]
    assert ports["b0:7b:25:de:7a:10"].local_link_connection["port_id"] == "Ethernet1/5"
    stored = db_inspection.get_inventory(c.db, node.id)
    assert stored is not None
    assert stored.plugin_data["auto_discovered"] is True
    assert stored.inventory_data["system_vendor"]["manufacturer"] == "Dell Inc."


def test_a_mac_already_enrolled_is_never_enrolled_again(make: Any) -> None:
    c = make(discovery_enabled=True)
    first, _ = c.discovery.continue_inspection(body())
    # the same machine again (its agent posts twice), and one sharing only a NIC with it
    for again in (body(), body(interfaces=[{"name": "x", "mac_address": MACS[1]},
                                           {"name": "y", "mac_address": "52:54:00:12:34:56"}],
                           bmc_address="192.0.2.99")):
        with pytest.raises(NotFound):  # known, not waiting for inspection: 404 as Ironic
            c.discovery.continue_inspection(again)
    assert [n.uuid for n in nodes(c)] == [first.uuid]


def test_known_by_bmc_address_alone(make: Any) -> None:
    c = make(discovery_enabled=True)
    from metalplane.conductor.resources import NodeResources

    NodeResources(c).create_node({"driver": "fake-hardware", "name": "known",
                                  "driver_info": {"ipmi_address": "10.10.0.57"}})
    with pytest.raises(NotFound):
        c.discovery.continue_inspection(body())  # its BMC 10.10.0.57 names "known"
    assert [n.name for n in nodes(c)] == ["known"]


@pytest.mark.parametrize("conductors", [1, 2])
def test_concurrent_posts_of_one_machine_enroll_one_node(make: Any, conductors: int) -> None:
    """Two posts at once, through one conductor (its lock) or two sharing the store (the
    store's unique port address): one node, the other post answered 404."""
    cs = [make(discovery_enabled=True) for _ in range(conductors)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def post(c: Conductor) -> None:
        barrier.wait(timeout=10)
        try:
            c.discovery.continue_inspection(body())
            outcomes.append("enrolled")
        except NotFound:
            outcomes.append("404")

    threads = [threading.Thread(target=post, args=(cs[i % conductors],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["404", "enrolled"]
    assert len(nodes(cs[0])) == 1
    assert len(db_api.list_ports(cs[0].db)) == len(MACS)


def test_discoveries_per_minute_are_bounded(make: Any) -> None:
    c = make(discovery_enabled=True, discovery_max_per_minute=1)
    c.discovery.continue_inspection(body())
    other = {"inventory": {"interfaces": [{"name": "e", "mac_address": "52:54:00:00:00:77"}]}}
    with pytest.raises(TooManyDiscoveries) as exc:
        c.discovery.continue_inspection(other)
    assert exc.value.code == 429 and 0 < exc.value.retry_after <= 60
    assert len(nodes(c)) == 1


def test_discovery_script_only_when_enabled(make: Any) -> None:
    with pytest.raises(NotFound):
        make().discovery.script()
    script = make(discovery_enabled=True, boot_server_url="http://10.69.0.1:8080",
                  agent_api_url="http://10.69.0.1:6385").discovery.script()
    assert script.startswith("#!ipxe\n")
    assert ("metalplane.inspection_callback_url=http://10.69.0.1:6385/v1/continue_inspection"
            in script)
    assert "token" not in script


def test_discovered_node_left_manageable_when_configured(make: Any) -> None:
    import time

    c = make(discovery_enabled=True, discovery_provision_state="manageable")
    node, _ = c.discovery.continue_inspection(body())
    deadline = time.monotonic() + 20
    while True:  # managed on a worker: enroll -> verifying -> manageable, lock released
        now = db_api.get_node(c.db, node.uuid)
        if now.provision_state == "manageable" and not now.reservation:
            break
        assert time.monotonic() < deadline, (now.provision_state, now.last_error)
        time.sleep(0.05)
    assert now.power_state is not None and now.last_error is None
