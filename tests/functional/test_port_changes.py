"""Port and portgroup changes under the node's lock (issue #16 item 5), on a real Open
vSwitch: a changed ``local_link_connection`` moves the bound switch port, a port joining a
portgroup turns its VIF into a bond, and what Ironic refuses is refused with a 409."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from metalplane.lab.rack import run
from tests.functional.test_networking import (
    PARKING,
    SWITCH_ID,
    attach,
    drive,
    networked,
    tenant_network,
    wait_for,
)
from tests.helpers.rack import Rack
from tests.helpers.server import RunningServer

pytestmark = pytest.mark.functional


def llc(port_id: str) -> dict[str, str]:
    return {"switch_id": SWITCH_ID, "port_id": port_id, "switch_info": "tor"}


def two_nic_node(server: RunningServer, r: Rack, name: str, ip: str,
                 register: int = 1) -> list[dict[str, Any]]:
    """A host with two NICs cabled to the switch, ``ip`` on eth0; the first ``register``
    NICs are the node's ports. Returns the ports."""
    host = r.add_host(name, [], nics=2)
    run("ip", "-n", host.ns, "addr", "add", ip, "dev", "eth0")
    node = server.create_node(name=name, owner="p1")
    ports = []
    for nic in list(host.nics)[:register]:
        resp = server.http.post("/v1/ports", json={
            "address": host.macs[nic], "node_uuid": node["uuid"],
            "physical_network": "physnet1", "local_link_connection": llc(host.nics[nic])})
        assert resp.status_code == 201, resp.text
        ports.append(resp.json())
    return ports


def active_on(server: RunningServer, name: str, net: dict[str, Any]) -> str:
    drive(server, [name], "manage", "manageable")
    drive(server, [name], "provide", "available")
    vif = attach(server, name, net["id"])
    drive(server, [name], "deploy", "active")
    return vif


def patch(server: RunningServer, what: str, ident: str, path: str, value: Any) -> Any:
    return server.http.patch(f"/v1/{what}/{ident}", json=[
        {"op": "add", "path": path, "value": value}])


def maintenance(server: RunningServer, name: str, on: bool) -> None:
    resp = (server.http.put(f"/v1/nodes/{name}/maintenance", json={"reason": "recabling"})
            if on else server.http.delete(f"/v1/nodes/{name}/maintenance"))
    assert resp.status_code in (200, 202, 204), resp.text


def test_moving_the_cable_of_an_active_node_moves_its_vlan(tmp_path: Path) -> None:
    with networked(tmp_path) as (server, r):
        net = tenant_network(server, "tenant-a")
        vlan = net["provider:segmentation_id"]
        r.add_host("peer", ["10.66.0.40/24"], tag=vlan)
        port = two_nic_node(server, r, "mv", "10.66.0.31/24")[0]
        eth0, eth1 = r.hosts["mv"].nics["eth0"], r.hosts["mv"].nics["eth1"]
        vif = active_on(server, "mv", net)
        assert r.ovs.tag(eth0) == vlan and r.ovs.tag(eth1) != vlan
        wait_for(lambda: r.hosts["mv"].reaches("10.66.0.40", tries=1), timeout=20)

        # Ironic's rule: an active node's wiring changes only in maintenance
        resp = patch(server, "ports", port["uuid"], "/local_link_connection", llc(eth1))
        assert resp.status_code == 409, resp.text
        assert "maintenance" in resp.text and "local_link_connection" in resp.text
        # nor its address
        resp = patch(server, "ports", port["uuid"], "/address", "52:54:00:aa:bb:cc")
        assert resp.status_code == 409 and "hardware address" in resp.text
        assert r.ovs.tag(eth0) == vlan

        # the node's lock is taken: a locked node answers 409 and nothing changes
        maintenance(server, "mv", True)
        with server.conductor.acquire("mv", "someone else"):
            resp = patch(server, "ports", port["uuid"], "/local_link_connection", llc(eth1))
            assert resp.status_code == 409 and "someone else" in resp.text, resp.text
        assert server.http.get(f"/v1/ports/{port['uuid']}").json()[
            "local_link_connection"]["port_id"] == eth0
        assert r.ovs.tag(eth0) == vlan and r.ovs.tag(eth1) != vlan

        # a switch port that does not exist: the switch refuses, the old binding stays
        resp = patch(server, "ports", port["uuid"], "/local_link_connection", llc("ghost"))
        assert resp.status_code == 503 and "ghost" in resp.text, resp.text
        assert server.http.get(f"/v1/ports/{port['uuid']}").json()[
            "local_link_connection"]["port_id"] == eth0
        assert r.ovs.tag(eth0) == vlan
        bound = server.http.get(f"/v2.0/ports/{vif}").json()["port"]
        assert bound["status"] == "ACTIVE"
        assert bound["binding:profile"]["local_link_information"][0]["port_id"] == eth0

        # the cable moves to the other switch port: the VLAN follows it
        resp = patch(server, "ports", port["uuid"], "/local_link_connection", llc(eth1))
        assert resp.status_code == 200, resp.text
        assert resp.json()["local_link_connection"]["port_id"] == eth1
        assert r.ovs.tag(eth0) == PARKING and r.ovs.tag(eth1) == vlan
        bound = server.http.get(f"/v2.0/ports/{vif}").json()["port"]
        assert bound["binding:vif_type"] == "other" and bound["status"] == "ACTIVE"
        assert bound["binding:profile"]["local_link_information"][0]["port_id"] == eth1
        ns = r.hosts["mv"].ns
        run("ip", "-n", ns, "addr", "del", "10.66.0.31/24", "dev", "eth0")
        run("ip", "-n", ns, "addr", "add", "10.66.0.31/24", "dev", "eth1")
        run("ip", "-n", ns, "link", "set", "eth0", "down")
        wait_for(lambda: r.hosts["mv"].reaches("10.66.0.40", tries=1), timeout=20)

        # the switch knows who owns what: a sync changes nothing
        assert server.http.post("/v1/switches/sync").json()["repairs"] == []

        # a port with a VIF is not deleted outside maintenance; in maintenance its VIF is
        # unbound first, so no switch port stays on the tenant VLAN
        maintenance(server, "mv", False)
        resp = server.http.delete(f"/v1/ports/{port['uuid']}")
        assert resp.status_code == 409 and vif in resp.text, resp.text
        assert r.ovs.tag(eth1) == vlan
        maintenance(server, "mv", True)
        assert server.http.delete(f"/v1/ports/{port['uuid']}").status_code == 204
        assert r.ovs.tag(eth1) == PARKING and r.ovs.tag(eth0) == PARKING
        assert server.http.get(f"/v2.0/ports/{vif}").json()["port"]["binding:vif_type"] \
            == "unbound"
        assert server.http.get("/v1/nodes/mv/vifs").json()["vifs"] == []


def test_a_new_portgroup_on_an_active_node_becomes_a_bond(tmp_path: Path) -> None:
    with networked(tmp_path) as (server, r):
        net = tenant_network(server, "tenant-b")
        vlan = net["provider:segmentation_id"]
        p0, p1 = two_nic_node(server, r, "bd", "10.66.0.33/24", register=2)
        members = sorted(r.hosts["bd"].nics.values())
        vif = active_on(server, "bd", net)
        assert {r.ovs.tag(m) for m in members} == {vlan, PARKING}
        node = server.node("bd")

        # a portgroup that refuses standalone PXE ports: a PXE port cannot join it
        strict = server.http.post("/v1/portgroups", json={
            "node_uuid": node["uuid"], "name": "bd-strict",
            "standalone_ports_supported": False}).json()
        maintenance(server, "bd", True)
        resp = patch(server, "ports", p1["uuid"], "/portgroup_uuid", strict["uuid"])
        assert resp.status_code == 409 and "standalone" in resp.text, resp.text

        pg = server.http.post("/v1/portgroups", json={
            "node_uuid": node["uuid"], "name": "bd-bond", "mode": "balance-xor"}).json()
        for port in (p0, p1):  # the VIF moves to the portgroup, then it is a bond of two
            resp = patch(server, "ports", port["uuid"], "/portgroup_uuid", pg["uuid"])
            assert resp.status_code == 200, resp.text
        ports = r.ovs.vsctl("list-ports", r.ovs.bridge).split()
        assert "bd-bond" in ports and not set(members) & set(ports)
        assert r.ovs.interfaces("bd-bond") == members
        assert r.ovs.tag("bd-bond") == vlan
        # balance-xor: a static aggregation, which takes broadcasts on every member
        assert r.ovs.port_field("bd-bond", "bond_mode") == "balance-slb"
        assert r.ovs.port_field("bd-bond", "lacp") == "off"
        assert r.ovs.port_field("bd-bond", "other_config:all-members-active") == '"true"'
        assert [v["id"] for v in server.http.get("/v1/nodes/bd/vifs").json()["vifs"]] == [vif]
        profile = server.http.get(f"/v2.0/ports/{vif}").json()["port"]["binding:profile"]
        assert profile["local_group_information"]["name"] == "bd-bond"

        # a portgroup change rebuilds the bond (under the lock too); active-backup needs
        # no switch configuration (bonding HOWTO): the bond is dissolved, each member an
        # access port on the tenant VLAN
        resp = patch(server, "portgroups", pg["uuid"], "/mode", "active-backup")
        assert resp.status_code == 200, resp.text
        ports = r.ovs.vsctl("list-ports", r.ovs.bridge).split()
        assert "bd-bond" not in ports and set(members) <= set(ports)
        assert {r.ovs.tag(m) for m in members} == {vlan}
        assert all(r.ovs.interfaces(m) == [m] for m in members)
        profile = server.http.get(f"/v2.0/ports/{vif}").json()["port"]["binding:profile"]
        assert profile["local_group_information"]["bond_mode"] == "active-backup"
        assert server.http.post("/v1/switches/sync").json()["repairs"] == []
        # and back to a mode that needs an LACP aggregation: a bond again
        resp = patch(server, "portgroups", pg["uuid"], "/mode", "802.3ad")
        assert resp.status_code == 200, resp.text
        ports = r.ovs.vsctl("list-ports", r.ovs.bridge).split()
        assert "bd-bond" in ports and not set(members) & set(ports)
        assert r.ovs.interfaces("bd-bond") == members
        assert r.ovs.port_field("bd-bond", "bond_mode") == "balance-tcp"
        assert r.ovs.port_field("bd-bond", "lacp") == "active"
        assert r.ovs.tag("bd-bond") == vlan
        assert server.http.post("/v1/switches/sync").json()["repairs"] == []
        with server.conductor.acquire("bd", "someone else"):
            resp = patch(server, "portgroups", pg["uuid"], "/name", "bd-other")
            assert resp.status_code == 409, resp.text
        assert server.http.get(f"/v1/portgroups/{pg['uuid']}").json()["name"] == "bd-bond"

        # the bond cannot be deleted with its VIF outside maintenance
        maintenance(server, "bd", False)
        resp = server.http.delete(f"/v1/portgroups/{pg['uuid']}")
        assert resp.status_code == 409 and vif in resp.text, resp.text
        assert r.ovs.tag("bd-bond") == vlan
        maintenance(server, "bd", True)

        # a member leaves for good: the bond is rebuilt without it
        assert server.http.delete(f"/v1/ports/{p1['uuid']}").status_code == 204
        assert "bd-bond" not in r.ovs.vsctl("list-ports", r.ovs.bridge).split()
        assert r.ovs.tag(r.hosts["bd"].nics["eth0"]) == vlan
        assert r.ovs.tag(r.hosts["bd"].nics["eth1"]) == PARKING

        maintenance(server, "bd", False)
        drive(server, ["bd"], "undeploy", "available")
        ports = r.ovs.vsctl("list-ports", r.ovs.bridge).split()
        assert "bd-bond" not in ports and set(members) <= set(ports)
        assert {r.ovs.tag(m) for m in members} == {PARKING}
