"""The Networking v2.0 API without a switch: shapes, IPAM, segments, security groups."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.server import RunningServer


def err(resp: Any) -> str:
    return str(resp.json()["NeutronError"]["message"])


def make(server: RunningServer, kind: str, body: dict[str, Any], code: int = 201) -> Any:
    plural = "security-groups" if kind == "security_group" else (
        "security-group-rules" if kind == "security_group_rule" else f"{kind}s")
    r = server.http.post(f"/v2.0/{plural}", json={kind: body})
    assert r.status_code == code, r.text
    return r.json().get(kind) if code == 201 else r


def test_network_subnet_port_shapes_and_ipam(server: RunningServer) -> None:
    net = make(server, "network", {"name": "t1", "project_id": "p"})
    assert net["provider:network_type"] == "vlan"
    assert 1000 <= net["provider:segmentation_id"] <= 1999
    assert net["tenant_id"] == "p" and net["subnets"] == []
    vx = make(server, "network", {"name": "vx", "provider:network_type": "vxlan"})
    assert vx["provider:segmentation_id"] == 10000 and vx["provider:physical_network"] is None
    sub = make(server, "subnet", {"network_id": net["id"], "cidr": "10.1.0.0/29"})
    assert sub["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.6"}]
    assert server.http.get(f"/v2.0/networks/{net['id']}").json()["network"]["subnets"] == \
        [sub["id"]]
    ports = [make(server, "port", {"network_id": net["id"]}) for _ in range(5)]
    assert [p["fixed_ips"][0]["ip_address"] for p in ports] == [
        f"10.1.0.{i}" for i in range(2, 7)]
    assert all(p["mac_address"].startswith("fa:16:3e:") for p in ports)
    assert ports[0]["binding:vif_type"] == "unbound" and ports[0]["status"] == "DOWN"
    full = make(server, "port", {"network_id": net["id"]}, code=409)
    assert "No more IP addresses" in err(full)
    assert server.http.delete(f"/v2.0/ports/{ports[2]['id']}").status_code == 204
    again = make(server, "port", {"network_id": net["id"], "extra_dhcp_opts": [
        {"opt_name": "bootfile-name", "opt_value": "ipxe.efi"}]})
    assert again["fixed_ips"][0]["ip_address"] == "10.1.0.4"  # released and reused
    assert again["extra_dhcp_opts"] == [{"opt_name": "bootfile-name", "opt_value": "ipxe.efi",
                                         "ip_version": 4}]
    dup = make(server, "port", {"network_id": net["id"], "mac_address": ports[0]["mac_address"],
                                "fixed_ips": []}, code=409)
    assert "already in use" in err(dup)
    listed = server.http.get("/v2.0/ports", params={"network_id": net["id"]}).json()["ports"]
    assert len(listed) == 5
    # a network with ports cannot go; a subnet with addresses in use cannot either
    r = server.http.delete(f"/v2.0/networks/{net['id']}")
    assert r.status_code == 409 and "ports still in use" in err(r)
    r = server.http.delete(f"/v2.0/subnets/{sub['id']}")
    assert r.status_code == 409
    for p in listed:
        server.http.delete(f"/v2.0/ports/{p['id']}")
    assert server.http.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    # its VLAN is free again
    again_net = make(server, "network", {"name": "t2"})
    assert again_net["provider:segmentation_id"] == net["provider:segmentation_id"]


def test_a_port_changes_its_fixed_ips(server: RunningServer) -> None:
    net = make(server, "network", {"name": "ips"})
    make(server, "subnet", {"network_id": net["id"], "cidr": "10.2.0.0/29"})
    port = make(server, "port", {"network_id": net["id"]})
    other = make(server, "port", {"network_id": net["id"]})
    assert port["fixed_ips"][0]["ip_address"] == "10.2.0.2"
    r = server.http.put(f"/v2.0/ports/{port['id']}",
                        json={"port": {"fixed_ips": [{"ip_address": "10.2.0.5"}]}})
    assert r.status_code == 200, r.text
    assert [ip["ip_address"] for ip in r.json()["port"]["fixed_ips"]] == ["10.2.0.5"]
    taken = server.http.put(f"/v2.0/ports/{other['id']}",
                            json={"port": {"fixed_ips": [{"ip_address": "10.2.0.5"}]}})
    assert taken.status_code == 409 and "already allocated" in err(taken)
    assert make(server, "port", {"network_id": net["id"]})["fixed_ips"][0]["ip_address"] \
        == "10.2.0.2"  # given up by the change, handed out again


@pytest.mark.parametrize(("kind", "body", "fragment"), [
    ("network", {"colour": "red"}, "Unrecognized attribute"),
    ("subnet", {"cidr": "10.0.0.0/24"}, "Required attribute(s) 'network_id'"),
    ("port", {"network_id": "nope"}, "could not be found"),
])
def test_bad_bodies(server: RunningServer, kind: str, body: dict, fragment: str) -> None:
    r = server.http.post(f"/v2.0/{kind}s", json={kind: body})
    assert r.status_code in (400, 404), r.text
    assert fragment in err(r)
    r = server.http.post(f"/v2.0/{kind}s", json=body)
    assert r.status_code == 400 and f'"{kind}"' in err(r)


def test_security_groups_are_validated_and_stored(server: RunningServer) -> None:
    sg = make(server, "security_group", {"name": "web", "project_id": "p"})
    rule = make(server, "security_group_rule", {
        "security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp",
        "port_range_min": 80, "port_range_max": 443, "remote_ip_prefix": "10.0.0.0/8"})
    assert rule["ethertype"] == "IPv4" and rule["remote_ip_prefix"] == "10.0.0.0/8"
    make(server, "security_group_rule", {"security_group_id": sg["id"], "direction": "egress",
                                         "protocol": "icmp", "port_range_min": 8})
    for body, fragment in (
        ({"direction": "sideways"}, "direction"),
        ({"direction": "ingress", "protocol": "tcp", "port_range_min": 90,
          "port_range_max": 80}, "port_range"),
        ({"direction": "ingress", "protocol": "bogus"}, "protocol"),
        ({"direction": "ingress", "port_range_min": 1, "port_range_max": 2}, "need a protocol"),
        ({"direction": "ingress", "remote_ip_prefix": "fd00::/8"}, "does not match ethertype"),
        ({"direction": "ingress", "remote_ip_prefix": "nonsense"}, "not a CIDR"),
    ):
        r = make(server, "security_group_rule", {"security_group_id": sg["id"], **body},
                 code=400)
        assert fragment in err(r), body
    shown = server.http.get(f"/v2.0/security-groups/{sg['id']}").json()["security_group"]
    assert len(shown["security_group_rules"]) == 2
    net = make(server, "network", {"name": "sgnet"})
    port = make(server, "port", {"network_id": net["id"], "security_groups": [sg["id"]]})
    assert port["security_groups"] == [sg["id"]]
    r = server.http.delete(f"/v2.0/security-groups/{sg['id']}")
    assert r.status_code == 409
    r = make(server, "port", {"network_id": net["id"], "security_groups": ["missing"]}, code=400)
    assert "does not exist" in err(r)
    # a port's groups change through PUT, checked as at creation
    r = server.http.put(f"/v2.0/ports/{port['id']}",
                        json={"port": {"security_groups": ["missing"]}})
    assert r.status_code == 400 and "does not exist" in err(r)
    r = server.http.put(f"/v2.0/ports/{port['id']}", json={"port": {"security_groups": []}})
    assert r.status_code == 200 and r.json()["port"]["security_groups"] == []
    assert server.http.delete(f"/v2.0/security-groups/{sg['id']}").status_code == 204


def test_a_port_binding_that_cannot_be_realised_is_binding_failed(server: RunningServer) -> None:
    net = make(server, "network", {"name": "bf"})
    port = make(server, "port", {
        "network_id": net["id"], "binding:host_id": "some-node",
        "binding:vnic_type": "baremetal",
        "binding:profile": {"local_link_information": [
            {"switch_id": "02:00:00:00:00:77", "port_id": "p9"}]}})
    assert port["binding:vif_type"] == "binding_failed" and port["status"] == "DOWN"
    r = server.http.put(f"/v2.0/ports/{port['id']}", json={"port": {"binding:profile": {}}})
    assert r.status_code == 200
    assert r.json()["port"]["binding:vif_type"] == "binding_failed"
