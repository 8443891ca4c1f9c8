"""Bare-metal networking on a real Open vSwitch, checked with real traffic.

Nodes are network namespaces whose NICs are ports of a private OVS bridge on the userspace
datapath; a provisioning server sits on the provisioning VLAN. metalplane drives the
switch through OVSDB as the nodes go through their lifecycle.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.rack import Rack, rack
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional

SWITCH_ID = "02:00:00:00:00:01"
PROV_VLAN, CLEAN_VLAN = 100, 101
PARKING = 4094


def neutron_error(resp: Any) -> str:
    body = resp.json()
    assert set(body) == {"NeutronError"}, body
    return str(body["NeutronError"]["message"])


@contextlib.contextmanager
def networked(tmp_path: Path, from_rack: Callable[[Rack], dict[str, Any]] | None = None,
              **overrides: Any) -> Iterator[tuple[RunningServer, Rack]]:
    """A rack with a registered switch, the provisioning and cleaning networks (VLANs 100
    and 101, one subnet each, a host on each: "prov" and "clean") and a server whose nodes
    use the neutron interface; ``overrides`` and ``from_rack(rack)`` change its settings."""
    with rack() as r:
        r.add_host("prov", ["10.66.0.254/24"], tag=PROV_VLAN)  # the provisioning server
        r.add_host("clean", ["10.66.0.253/24"], tag=CLEAN_VLAN)  # the cleaning network's
        settings: dict[str, Any] = dict(
            network_vlan_ranges="physnet1:100:199", cleaning_network="cleaning",
            provisioning_network="provisioning", default_network_interface="neutron",
            fake_delays={"deploy": 1.5})
        settings.update(overrides)
        settings.update(from_rack(r) if from_rack else {})
        with running_server(tmp_path / "data", **settings) as server:
            register_tor_and_provider_networks(server, r)
            yield server, r


def register_tor_and_provider_networks(server: RunningServer, r: Rack) -> None:
    """The rack's switch registered as "tor", and the provisioning and cleaning networks
    (VLANs 100 and 101, subnet 10.66.0.0/24 each, pool .100-.199)."""
    r_sw = server.http.post("/v1/switches", json={
        "name": "tor", "switch_id": SWITCH_ID, "address": r.ovs.address,
        "bridge": r.ovs.bridge, "physical_networks": ["physnet1"]})
    assert r_sw.status_code == 201, r_sw.text
    for name, vlan in (("provisioning", PROV_VLAN), ("cleaning", CLEAN_VLAN)):
        r_net = server.http.post("/v2.0/networks", json={"network": {
            "name": name, "provider:network_type": "vlan",
            "provider:physical_network": "physnet1",
            "provider:segmentation_id": vlan, "shared": True}})
        assert r_net.status_code == 201, r_net.text
        r_sub = server.http.post("/v2.0/subnets", json={"subnet": {
            "network_id": r_net.json()["network"]["id"], "cidr": "10.66.0.0/24",
            "allocation_pools": [{"start": "10.66.0.100", "end": "10.66.0.199"}]}})
        assert r_sub.status_code == 201, r_sub.text


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[RunningServer, Rack]]:
    with networked(tmp_path) as (server, r):
        yield server, r


def tenant_network(server: RunningServer, name: str, project: str = "p1") -> dict[str, Any]:
    r = server.http.post("/v2.0/networks", json={"network": {"name": name,
                                                             "project_id": project}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]
    r = server.http.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.66.0.0/24", "project_id": project}})
    assert r.status_code == 201, r.text
    return dict(net)


def enroll(server: RunningServer, r: Rack, name: str, ip: str, owner: str = "p1",
           nics: int = 1) -> dict[str, Any]:
    host = r.add_host(name, [ip], nics=nics)
    node = server.create_node(name=name, owner=owner)
    for nic, outside in host.nics.items():
        resp = server.http.post("/v1/ports", json={
            "address": host.macs[nic], "node_uuid": node["uuid"],
            "physical_network": "physnet1",
            "local_link_connection": {"switch_id": SWITCH_ID, "port_id": outside,
                                      "switch_info": "tor"}})
        assert resp.status_code == 201, resp.text
    return node


def drive(server: RunningServer, names: list[str], verb: str, state: str) -> None:
    for n in names:
        r = server.provision(n, verb)
        assert r.status_code == 202, r.text
    for n in names:
        node = server.wait_state(n, {state, "deploy failed", "clean failed"}, timeout=90)
        assert node["provision_state"] == state, node["last_error"]


def attach(server: RunningServer, node: str, network_id: str, project: str = "p1") -> str:
    r = server.http.post("/v2.0/ports", json={"port": {"network_id": network_id,
                                                       "project_id": project}})
    assert r.status_code == 201, r.text
    vif = r.json()["port"]["id"]
    r = server.http.post(f"/v1/nodes/{node}/vifs", json={"id": vif})
    assert r.status_code == 204, r.text
    return str(vif)


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def switch_port(r: Rack, node: str) -> str:
    return next(iter(r.hosts[node].nics.values()))


def test_tenant_isolation_follows_the_lifecycle(lab: tuple[RunningServer, Rack]) -> None:
    server, r = lab
    net_a, net_b = tenant_network(server, "tenant-a"), tenant_network(server, "tenant-b")
    vlan_a, vlan_b = net_a["provider:segmentation_id"], net_b["provider:segmentation_id"]
    assert {vlan_a, vlan_b} <= set(range(100, 200)) and vlan_a != vlan_b
    assert {vlan_a, vlan_b}.isdisjoint({PROV_VLAN, CLEAN_VLAN})
    for i, name in enumerate(("n1", "n2", "n3"), start=1):
        enroll(server, r, name, f"10.66.0.{i}/24")
    drive(server, ["n1", "n2", "n3"], "manage", "manageable")

    # cleaning puts the node on the cleaning VLAN, then it is parked
    assert server.provision("n1", "provide").status_code == 202
    wait_for(lambda: r.ovs.tag(switch_port(r, "n1")) == CLEAN_VLAN)
    assert server.node("n1")["provision_state"] == "cleaning"
    drive(server, ["n2", "n3"], "provide", "available")
    server.wait_state("n1", "available")
    assert r.ovs.tag(switch_port(r, "n1")) == PARKING

    attach(server, "n1", net_a["id"])
    attach(server, "n2", net_a["id"])
    attach(server, "n3", net_b["id"])
    assert len(server.http.get("/v1/nodes/n1/vifs").json()["vifs"]) == 1

    # a deploying node reaches the provisioning server
    for n in ("n1", "n2", "n3"):
        assert server.provision(n, "deploy").status_code == 202
    wait_for(lambda: r.ovs.tag(switch_port(r, "n1")) == PROV_VLAN)
    assert server.node("n1")["provision_state"] == "deploying"
    assert r.hosts["n1"].reaches("10.66.0.254")
    for n in ("n1", "n2", "n3"):
        assert server.wait_state(n, {"active", "deploy failed"})["provision_state"] == "active"

    # active: tenant peers reach each other, nothing else
    assert r.ovs.tag(switch_port(r, "n1")) == vlan_a
    assert r.ovs.tag(switch_port(r, "n3")) == vlan_b
    assert r.hosts["n1"].reaches("10.66.0.2")
    assert r.hosts["n2"].reaches("10.66.0.1")
    assert not r.hosts["n3"].reaches("10.66.0.1", tries=1)
    assert not r.hosts["n3"].reaches("10.66.0.2", tries=1)
    assert not r.hosts["n1"].reaches("10.66.0.254", tries=1)
    vif_id = server.http.get("/v1/nodes/n1/vifs").json()["vifs"][0]["id"]
    vif = server.http.get(f"/v2.0/ports/{vif_id}").json()["port"]
    assert vif["binding:vif_type"] == "other" and vif["status"] == "ACTIVE"
    assert vif["binding:host_id"] == server.node("n1")["uuid"]
    assert vif["binding:profile"]["local_link_information"][0]["port_id"] == switch_port(r, "n1")

    # the switch view shows ports and VLANs
    shown = server.http.get("/v1/switches/tor").json()
    by_port = {p["port_name"]: p for p in shown["ports"]}
    assert by_port[switch_port(r, "n2")]["vlan"] == vlan_a
    assert by_port[switch_port(r, "n2")]["observed_vlan"] == vlan_a

    # undeploy: off the tenant network, onto the cleaning VLAN, then available
    assert server.provision("n1", "undeploy").status_code == 202
    wait_for(lambda: r.ovs.tag(switch_port(r, "n1")) == CLEAN_VLAN)
    assert server.node("n1")["provision_state"] == "cleaning"
    assert not r.hosts["n2"].reaches("10.66.0.1", tries=1)
    server.wait_state("n1", "available")
    assert r.ovs.tag(switch_port(r, "n1")) == PARKING
    assert server.http.get("/v1/nodes/n1/vifs").json()["vifs"]  # still attached, unbound

    # drift: someone moves n2 to another VLAN by hand; the sync puts it back
    r.ovs.vsctl("set", "port", switch_port(r, "n2"), "tag=555")
    logged = server.http.post("/v1/network/sync", json={"mode": "log"}).json()["differences"]
    assert any(switch_port(r, "n2") in line and "would restore" in line for line in logged)
    assert r.ovs.tag(switch_port(r, "n2")) == 555  # log mode changes nothing
    repairs = server.http.post("/v1/switches/sync").json()["repairs"]
    assert any(switch_port(r, "n2") in line and "555" in line for line in repairs)
    assert r.ovs.tag(switch_port(r, "n2")) == vlan_a
    assert server.http.post("/v1/switches/sync").json()["repairs"] == []


def test_portgroup_becomes_a_bond(lab: tuple[RunningServer, Rack]) -> None:
    server, r = lab
    net = tenant_network(server, "tenant-bond")
    node = enroll(server, r, "nb", "10.66.0.9/24", nics=2)
    members = sorted(r.hosts["nb"].nics.values())
    pg = server.http.post("/v1/portgroups", json={"node_uuid": node["uuid"], "name": "nb-bond",
                                                  "mode": "802.3ad"}).json()
    for port in server.http.get("/v1/nodes/nb/ports").json()["ports"]:
        r_p = server.http.patch(f"/v1/ports/{port['uuid']}", json=[
            {"op": "add", "path": "/portgroup_uuid", "value": pg["uuid"]}])
        assert r_p.status_code == 200, r_p.text
    drive(server, ["nb"], "manage", "manageable")
    drive(server, ["nb"], "provide", "available")
    attach(server, "nb", net["id"])

    # deploying: on the provisioning network the portgroup is no bond (the firmware
    # PXE-boots through one NIC): each PXE port is a plain switch port on the provisioning
    # VLAN with a network port of its own (Ironic's add_ports_to_network)
    def on_provisioning() -> bool:
        plain = set(r.ovs.vsctl("list-ports", r.ovs.bridge).split())
        return set(members) <= plain and {r.ovs.tag(m) for m in members} == {PROV_VLAN}

    assert server.provision("nb", "deploy").status_code == 202
    wait_for(on_provisioning)
    assert server.node("nb")["provision_state"] == "deploying"
    prov = server.http.get("/v2.0/networks", params={"name": "provisioning"}).json()
    prov_ports = server.http.get("/v2.0/ports", params={
        "network_id": prov["networks"][0]["id"], "device_id": node["uuid"]}).json()["ports"]
    assert sorted(p["mac_address"] for p in prov_ports) == sorted(r.hosts["nb"].macs.values())
    for p in prov_ports:
        assert set(p["binding:profile"]) == {"local_link_information"}, p["binding:profile"]
        assert len(p["binding:profile"]["local_link_information"]) == 1
    by_mac = {p["address"]: server.http.get(f"/v1/ports/{p['uuid']}").json()
              for p in server.http.get("/v1/nodes/nb/ports").json()["ports"]}
    assert {by_mac[p["mac_address"]]["internal_info"]["provisioning_vif_port_id"]
            for p in prov_ports} == {p["id"] for p in prov_ports}
    assert server.wait_state("nb", {"active", "deploy failed"})["provision_state"] == "active"

    # active, 802.3ad: the tenant VIF is an LACP bond on the switch
    ports = r.ovs.vsctl("list-ports", r.ovs.bridge).split()
    assert "nb-bond" in ports and not set(members) & set(ports)
    assert r.ovs.interfaces("nb-bond") == members
    assert r.ovs.tag("nb-bond") == net["provider:segmentation_id"]
    assert r.ovs.port_field("nb-bond", "bond_mode") == "balance-tcp"
    assert r.ovs.port_field("nb-bond", "lacp") == "active"
    drive(server, ["nb"], "undeploy", "available")
    ports = r.ovs.vsctl("list-ports", r.ovs.bridge).split()
    assert "nb-bond" not in ports and set(members) <= set(ports)
    assert {r.ovs.tag(m) for m in members} == {PARKING}


def test_bad_input_is_refused_and_leaves_the_switch_alone(
        lab: tuple[RunningServer, Rack]) -> None:
    server, r = lab
    net_a = tenant_network(server, "tenant-a", project="p1")
    enroll(server, r, "m1", "10.66.0.21/24", owner="p1")
    drive(server, ["m1"], "manage", "manageable")
    drive(server, ["m1"], "provide", "available")
    before = r.ovs.tags()
    n_networks = len(server.http.get("/v2.0/networks").json()["networks"])

    # a VLAN outside the configured range
    resp = server.http.post("/v2.0/networks", json={"network": {
        "name": "x", "provider:network_type": "vlan", "provider:physical_network": "physnet1",
        "provider:segmentation_id": 300}})
    assert resp.status_code == 400 and "outside" in neutron_error(resp)
    # a physical network that is not configured
    resp = server.http.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vlan", "provider:physical_network": "nope"}})
    assert resp.status_code == 400 and "nope" in neutron_error(resp)
    # a segment already in use
    resp = server.http.post("/v2.0/networks", json={"network": {
        "provider:network_type": "vlan", "provider:physical_network": "physnet1",
        "provider:segmentation_id": PROV_VLAN}})
    assert resp.status_code == 409
    assert len(server.http.get("/v2.0/networks").json()["networks"]) == n_networks
    # overlapping subnets on one network
    resp = server.http.post("/v2.0/subnets", json={"subnet": {
        "network_id": net_a["id"], "cidr": "10.66.0.128/25"}})
    assert resp.status_code == 400 and "overlaps" in neutron_error(resp)
    # an IP outside the subnet
    resp = server.http.post("/v2.0/ports", json={"port": {
        "network_id": net_a["id"], "fixed_ips": [{"ip_address": "10.99.0.5"}]}})
    assert resp.status_code == 400 and "not in any subnet" in neutron_error(resp)
    # the same IP twice
    resp = server.http.post("/v2.0/ports", json={"port": {
        "network_id": net_a["id"], "fixed_ips": [{"ip_address": "10.66.0.50"}]}})
    assert resp.status_code == 201
    resp = server.http.post("/v2.0/ports", json={"port": {
        "network_id": net_a["id"], "fixed_ips": [{"ip_address": "10.66.0.50"}]}})
    assert resp.status_code == 409 and "already allocated" in neutron_error(resp)
    # a VIF on another project's network
    other = tenant_network(server, "tenant-other", project="p2")
    vif = server.http.post("/v2.0/ports", json={"port": {"network_id": other["id"],
                                                         "project_id": "p2"}}).json()["port"]
    resp = server.http.post("/v1/nodes/m1/vifs", json={"id": vif["id"]})
    assert resp.status_code == 403 and "p2" in resp.text
    assert server.http.get("/v1/nodes/m1/vifs").json()["vifs"] == []
    # an unknown switch in local_link_connection: refused before anything changes
    host = r.add_host("m2", ["10.66.0.22/24"])
    node = server.create_node(name="m2", owner="p1")
    server.http.post("/v1/ports", json={
        "address": host.macs["eth0"], "node_uuid": node["uuid"],
        "local_link_connection": {"switch_id": "02:00:00:00:00:99", "port_id": "ghost"}})
    drive(server, ["m2"], "manage", "manageable")
    resp = server.provision("m2", "provide")
    assert resp.status_code == 400 and "unknown switch 02:00:00:00:00:99" in resp.text
    assert server.node("m2")["provision_state"] == "manageable"
    # a node port with no local_link_connection cannot use the neutron interface
    server.http.patch("/v1/ports/" + server.http.get("/v1/nodes/m2/ports").json()["ports"][0]
                      ["uuid"], json=[{"op": "replace", "path": "/local_link_connection",
                                       "value": {}}])
    resp = server.provision("m2", "provide")
    assert resp.status_code == 400 and "no local_link_connection" in resp.text
    # an OVSDB endpoint that is down
    resp = server.http.post("/v1/switches", json={
        "name": "dead", "switch_id": "02:00:00:00:00:02", "bridge": "tor",
        "address": f"unix:{r.ovs.rundir}/nothing.sock"})
    assert resp.status_code == 400 and "cannot reach OVSDB" in resp.text
    assert [s["name"] for s in server.http.get("/v1/switches").json()["switches"]] == ["tor"]
    after = r.ovs.tags()
    assert {p: after[p] for p in before} == before  # none of it touched the switch
    # binding fails on a switch that went away: binding_failed, nothing half done
    attach(server, "m1", net_a["id"])
    vif_id = server.http.get("/v1/nodes/m1/vifs").json()["vifs"][0]["id"]
    r.ovs.stop_daemons()
    assert server.provision("m1", "deploy").status_code == 202
    node = server.wait_state("m1", {"deploy failed", "active"}, timeout=90)
    assert node["provision_state"] == "deploy failed"
    assert "OVSDB" in node["last_error"] or "switch" in node["last_error"]
    port = server.http.get(f"/v2.0/ports/{vif_id}").json()["port"]
    assert port["binding:vif_type"] in ("unbound", "binding_failed")


def test_each_switch_gets_its_own_changes(tmp_path: Path) -> None:
    """Two switches on two OVSDB servers in one process: a change meant for one must not
    land on the other (ovsdbapp shares connections per class unless told otherwise)."""
    from metalplane.network.ovs import OVSSwitch, PortConfig

    with rack("tora") as ra, rack("torb") as rb:
        ha, hb = ra.add_host("a", []), rb.add_host("b", [])
        pa, pb = next(iter(ha.nics.values())), next(iter(hb.nics.values()))
        sa, sb = OVSSwitch(ra.ovs.address, "tora"), OVSSwitch(rb.ovs.address, "torb")
        try:
            sa.apply([PortConfig(pa, 111)])
            sb.apply([PortConfig(pb, 222)])
            assert ra.ovs.tag(pa) == 111 and rb.ovs.tag(pb) == 222
            assert sb.observed([pb]) == {pb: {"vlan": 222, "members": [pb]}}
        finally:
            sa.close()
            sb.close()


def test_many_port_changes_commit_in_one_transaction() -> None:
    """100 requests queued while the writer is busy become one OVSDB transaction; one bad
    request among them fails alone."""
    import concurrent.futures

    from metalplane.network.ovs import OVSSwitch, PortConfig, SwitchBatcher, SwitchError

    with rack("torx") as r:
        names = [f"{r.prefix}i{i}" for i in range(100)]
        args: list[str] = []
        for n in names:
            args += ["--", "add-port", "torx", n, "--", "set", "interface", n, "type=internal"]
        r.ovs.vsctl(*args[1:])
        batcher = SwitchBatcher(OVSSwitch(r.ovs.address, "torx"), start=False)
        try:
            futures = [batcher.submit([PortConfig(n, 100 + i % 50)])
                       for i, n in enumerate(names)]
            batcher.start()
            concurrent.futures.wait(futures, timeout=60)
            assert all(f.exception() is None for f in futures)
            assert batcher.transactions == 1
            assert r.ovs.tag(names[7]) == 107 and r.ovs.tag(names[99]) == 149

            batcher2 = SwitchBatcher(batcher.switch, start=False)
            good = batcher2.submit([PortConfig(names[0], 300)])
            bad = batcher2.submit([PortConfig("no-such-port", 301)])
            batcher2.start()
            good.result(timeout=30)
            with pytest.raises(SwitchError, match="no-such-port"):
                bad.result(timeout=30)
            assert r.ovs.tag(names[0]) == 300
            batcher2._queue.put(None)
        finally:
            batcher.close()
