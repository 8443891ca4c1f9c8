"""Security groups enforced on a real Open vSwitch top-of-rack switch, checked with real
traffic between two nodes (namespaces) on one tenant VLAN.

Ports are bound through the Networking API (``binding:vnic_type`` baremetal with
``local_link_information``), as Ironic binds a VIF; listeners and clients run in the
nodes' namespaces, every connection attempt bounded by a timeout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalplane.lab.rack import netns_exec, reaches
from metalplane.network.tor_acl import cookie_of
from tests.helpers.nsrack import NsRack, ns_rack
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional

SWITCH_ID = "02:00:00:00:00:0a"
PARKING = 4094
CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()\n"
           "except OSError:\n"
           "    sys.exit(1)\n")


@pytest.fixture
def acl_lab(tmp_path: Path) -> Iterator[tuple[RunningServer, NsRack]]:
    with ns_rack() as r, running_server(tmp_path / "data",
                                        network_vlan_ranges="physnet1:100:199") as server:
        resp = server.http.post("/v1/switches", json={
            "name": "tor", "switch_id": SWITCH_ID, "address": r.switch.address,
            "bridge": r.switch.bridge, "physical_networks": ["physnet1"]})
        assert resp.status_code == 201, resp.text
        yield server, r


def post(server: RunningServer, path: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = server.http.post(f"/v2.0/{path}", json={kind: body})
    assert resp.status_code == 201, resp.text
    return dict(resp.json()[kind])


def rule(server: RunningServer, sg: str, direction: str, **kw: Any) -> str:
    return str(post(server, "security-group-rules", "security_group_rule", {
        "security_group_id": sg, "direction": direction, "ethertype": "IPv4", **kw})["id"])


def connects(r: NsRack, src: str, dst: str, port: int) -> bool:
    """Whether a TCP connection from node ``src`` to node ``dst`` opens (2 s at most)."""
    return subprocess.run(netns_exec(r.nodes[src].ns, sys.executable, "-c", CONNECT,
                                     r.nodes[dst].ip, str(port)),
                          capture_output=True, timeout=15).returncode == 0


def listen(r: NsRack, node: str, port: int) -> None:
    """A tiny HTTP listener in ``node`` (python3 -m http.server), waited for (10 s)."""
    r.spawn(node, sys.executable, "-m", "http.server", str(port), "--bind", "0.0.0.0",
            "--directory", "/var/empty" if Path("/var/empty").is_dir() else "/tmp")
    deadline = time.monotonic() + 10
    while not connects(r, node, node, port):
        assert time.monotonic() < deadline, f"listener on {node}:{port} did not start"
        time.sleep(0.1)


def acl_flows(r: NsRack, switch_port: str) -> list[str]:
    out = r.switch.ofctl("dump-flows", f"cookie={cookie_of(switch_port):#x}/-1",
                         "--no-stats")
    return [line for line in out.splitlines() if "cookie=" in line]


def test_security_groups_filter_traffic_on_the_switch_port(
        acl_lab: tuple[RunningServer, NsRack]) -> None:
    server, r = acl_lab
    net = post(server, "networks", "network", {"name": "tenant", "project_id": "p1"})
    vlan = net["provider:segmentation_id"]
    subnet = post(server, "subnets", "subnet", {"network_id": net["id"], "cidr": "10.77.0.0/24",
                                                "project_id": "p1"})
    n1 = r.add_node("n1", "10.77.0.11/24", PARKING)
    n2 = r.add_node("n2", "10.77.0.12/24", PARKING)
    web = post(server, "security-groups", "security_group", {"name": "web"})["id"]
    client = post(server, "security-groups", "security_group", {"name": "client"})["id"]
    rule(server, web, "ingress", protocol="icmp", remote_ip_prefix="10.77.0.0/24")
    rule(server, web, "egress")
    rule(server, client, "egress")

    def port(node: Any, groups: list[str]) -> dict[str, Any]:
        return post(server, "ports", "port", {
            "network_id": net["id"], "project_id": "p1", "mac_address": node.mac,
            "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": node.ip}],
            "security_groups": groups, "binding:vnic_type": "baremetal",
            "binding:host_id": node.ns, "binding:profile": {"local_link_information": [
                {"switch_id": SWITCH_ID, "port_id": node.port, "switch_info": "tor"}]}})

    p1, p2 = port(n1, [web]), port(n2, [])
    assert p1["binding:vif_type"] == "other" and p2["binding:vif_type"] == "other"
    assert r.switch.vsctl("get", "port", n1.port, "tag") == str(vlan)
    assert acl_flows(r, n1.port) and not acl_flows(r, n2.port)
    listen(r, "n1", 8000)
    listen(r, "n2", 8001)

    # ICMP from the prefix is allowed in; TCP to n1 is not; n1's own connections out get
    # their replies (stateful), though no rule lets TCP in
    assert reaches(n2.ns, n1.ip)
    assert not connects(r, "n2", "n1", 8000)
    assert connects(r, "n1", "n2", 8001)

    # a rule from the "client" group opens TCP 8000, once n2 is a member of that group
    tcp_rule = rule(server, web, "ingress", protocol="tcp", port_range_min=8000,
                    port_range_max=8000, remote_group_id=client)
    assert not connects(r, "n2", "n1", 8000)  # n2 is in no group yet
    resp = server.http.put(f"/v2.0/ports/{p2['id']}", json={"port": {
        "security_groups": [client]}})
    assert resp.status_code == 200, resp.text
    assert acl_flows(r, n2.port)
    assert connects(r, "n2", "n1", 8000)  # through n2's egress and n1's ingress check
    assert reaches(n2.ns, n1.ip)
    assert not reaches(n1.ns, n2.ip, tries=1)  # "client" lets nothing in
    assert not connects(r, "n1", "n2", 8001)

    # removing the rule closes TCP again
    assert server.http.delete(f"/v2.0/security-group-rules/{tcp_rule}").status_code == 204
    assert not connects(r, "n2", "n1", 8000)
    assert reaches(n2.ns, n1.ip)

    # a flow deleted by hand comes back with the drift repair
    before = sorted(acl_flows(r, n1.port))
    r.switch.ofctl("del-flows", f"cookie={cookie_of(n1.port):#x}/-1,table=12")
    assert len(acl_flows(r, n1.port)) < len(before)
    assert not connects(r, "n2", "n1", 8000)  # the default drop of table 12 still holds
    repairs = server.http.post("/v1/switches/sync").json()["repairs"]
    assert any(n1.port in line and "ACL" in line for line in repairs), repairs
    assert sorted(acl_flows(r, n1.port)) == before
    assert server.http.post("/v1/switches/sync").json()["repairs"] == []

    # n2 without groups again: unfiltered, and n1's rule from "client" no longer matches it
    resp = server.http.put(f"/v2.0/ports/{p2['id']}", json={"port": {"security_groups": []}})
    assert resp.status_code == 200, resp.text
    assert not acl_flows(r, n2.port)
    assert reaches(n1.ns, n2.ip)

    # unbinding parks the port and removes its flows
    resp = server.http.put(f"/v2.0/ports/{p1['id']}", json={"port": {"binding:host_id": ""}})
    assert resp.status_code == 200, resp.text
    assert r.switch.vsctl("get", "port", n1.port, "tag") == str(PARKING)
    assert not acl_flows(r, n1.port)
    # with no filtered port left, drift repair takes the shared flows away too
    server.http.post("/v1/switches/sync")
    assert "cookie=" not in r.switch.ofctl("dump-flows", "cookie=0x4d50000000000000/"
                                           "0xffff000000000000")
    assert not reaches(n2.ns, n1.ip, tries=1)  # parked: the VLAN, not the ACL, now
