"""Bad input to the Networking v2.0 API: 400 naming the attribute, and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.server import RunningServer


def err(resp: Any) -> str:
    return str(resp.json()["NeutronError"]["message"])


def names(server: RunningServer, collection: str) -> list[str]:
    r = server.http.get(f"/v2.0/{collection}")
    assert r.status_code == 200, r.text
    return [x["name"] for x in r.json()[collection.replace("-", "_")]]


RAW = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("body", "fragment"), [
    ('{"network": {"name": "n", "shared": null}}', "network/shared"),
    ('{"network": {"name": "n", "shared": "maybe"}}', "network/shared"),
    ('{"network": {"name": "n", "shared": 2}}', "network/shared"),
    ('{"network": {"name": {"a": 1}}}', "network/name"),
    ('{"network": {"name": "' + "x" * 300 + '"}}', "network/name"),
    ('{"network": {"name": "n", "mtu": NaN}}', "network/mtu"),
    ('{"network": {"name": "n", "mtu": Infinity}}', "network/mtu"),
    ('{"network": {"name": "n", "mtu": "big"}}', "network/mtu"),
    ('{"network": {"name": "n", "mtu": 250550872588136074849298677760}}', "network/mtu"),
    ('{"network": {"name": "n", "provider:segmentation_id": 99999999999}}',
     "network/provider:segmentation_id"),
    ('{"network": {"name": "\\ud800"}}', "network/name"),
    ('{"network": {"name": "n", "colour": "red"}}', "Unrecognized attribute(s) 'colour'"),
    ('{"network": {"name": "n", "\\ud800": 1}}', "network/\\ud800: a lone UTF-16 surrogate"),
    ('{"network": {"name": "n", "provider:segmentation_id": "x"}}',
     "network/provider:segmentation_id"),
    ('{"network": {"name": "n"}, "extra": 1}', '"network"'),
])
def test_a_bad_network_is_refused_and_not_written(server: RunningServer, body: str,
                                                  fragment: str) -> None:
    r = server.http.post("/v2.0/networks", content=body.encode("utf-8"), headers=RAW)
    assert r.status_code == 400, r.text
    assert r.json()["NeutronError"]["type"] == "HTTPBadRequest"
    assert fragment in err(r)
    assert names(server, "networks") == []


@pytest.mark.parametrize(("value", "expected"), [
    ("yes", True), ("no", False), ("TRUE", True), ("off", False), ("1", True), (0, False),
    (True, True),
])
def test_booleans_read_as_neutron_reads_them(server: RunningServer, value: Any,
                                             expected: bool) -> None:
    r = server.http.post("/v2.0/networks", json={"network": {"name": "b", "shared": value}})
    assert r.status_code == 201, r.text
    assert r.json()["network"]["shared"] is expected
    listed = server.http.get("/v2.0/networks", params={"shared": "yes" if expected else "f"})
    assert [n["name"] for n in listed.json()["networks"]] == ["b"]
    other = server.http.get("/v2.0/networks", params={"shared": "no" if expected else "on"})
    assert other.json()["networks"] == []


def test_a_bad_boolean_filter_is_400(server: RunningServer) -> None:
    r = server.http.get("/v2.0/networks", params={"shared": "maybe"})
    assert r.status_code == 400 and "shared" in err(r)


def test_an_update_with_null_changes_nothing(server: RunningServer) -> None:
    net = server.http.post("/v2.0/networks", json={"network": {"name": "u"}}).json()["network"]
    for body in ({"shared": None}, {"admin_state_up": "perhaps"}, {"mtu": None},
                 {"provider:network_type": "flat"}, {"name": "x" * 256}):
        r = server.http.put(f"/v2.0/networks/{net['id']}", json={"network": body})
        assert r.status_code == 400, (body, r.text)
        assert next(iter(body)) in err(r)
    shown = server.http.get(f"/v2.0/networks/{net['id']}").json()["network"]
    assert (shown["name"], shown["shared"], shown["mtu"]) == ("u", False, net["mtu"])


@pytest.mark.parametrize(("collection", "body", "fragment"), [
    ("ports", {"port": {"network_id": "NET", "binding:profile": {"k": float("nan")}}},
     "port/binding:profile"),
    ("ports", {"port": {"network_id": "NET", "binding:profile": {"\ud800": 1}}},
     "port/binding:profile"),
    ("ports", {"port": {"network_id": "NET", "extra_dhcp_opts": [{"opt_name": "x"}]}},
     "'opt_value'"),
    ("ports", {"port": {"network_id": "NET", "admin_state_up": None}}, "port/admin_state_up"),
    ("ports", {"port": {"network_id": "NET", "fixed_ips": [{"subnet": "x"}]}},
     "Unrecognized attribute(s) 'subnet'"),
    ("subnets", {"subnet": {"network_id": "NET", "cidr": "10.9.0.0/24", "ip_version": 5}},
     "subnet/ip_version"),
    ("subnets", {"subnet": {"network_id": "NET", "cidr": "10.9.0.0/24",
                            "enable_dhcp": "sometimes"}}, "subnet/enable_dhcp"),
    ("security-groups", {"security_group": {"name": "g", "stateful": None}},
     "security_group/stateful"),
])
def test_bad_subresources_are_refused_and_not_written(server: RunningServer, collection: str,
                                                      body: dict[str, Any],
                                                      fragment: str) -> None:
    import json

    net = server.http.post("/v2.0/networks", json={"network": {"name": "host"}}).json()
    text = json.dumps(body).replace("NET", net["network"]["id"])  # NaN/surrogates: raw text
    r = server.http.post(f"/v2.0/{collection}", content=text.encode("utf-8"), headers=RAW)
    assert r.status_code == 400, r.text
    assert fragment in err(r)
    key = collection.replace("-", "_")
    assert server.http.get(f"/v2.0/{collection}").json()[key] == []


def test_subnet_update(server: RunningServer) -> None:
    net = server.http.post("/v2.0/networks", json={"network": {"name": "s"}}).json()["network"]
    sub = server.http.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.5.0.0/24", "name": "a"}}).json()["subnet"]
    r = server.http.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {
        "name": "b", "dns_nameservers": ["10.5.0.53"], "enable_dhcp": "false",
        "allocation_pools": [{"start": "10.5.0.10", "end": "10.5.0.20"}],
        "host_routes": [{"destination": "10.6.0.0/24", "nexthop": "10.5.0.254"}]}})
    assert r.status_code == 200, r.text
    shown = server.http.get(f"/v2.0/subnets/{sub['id']}").json()["subnet"]
    assert shown["name"] == "b" and shown["dns_nameservers"] == ["10.5.0.53"]
    assert shown["enable_dhcp"] is False
    assert shown["allocation_pools"] == [{"start": "10.5.0.10", "end": "10.5.0.20"}]
    assert shown["host_routes"] == [{"destination": "10.6.0.0/24", "nexthop": "10.5.0.254"}]
    port = server.http.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).json()
    assert port["port"]["fixed_ips"][0]["ip_address"] == "10.5.0.10"  # the new pool
    for body, code, fragment in (
        ({"cidr": "10.7.0.0/24"}, 400, "read-only attribute(s) 'cidr'"),
        ({"ip_version": 6}, 400, "read-only attribute(s) 'ip_version'"),
        ({"network_id": "x"}, 400, "read-only attribute(s) 'network_id'"),
        ({"gateway_ip": "10.9.9.9"}, 400, "not in subnet"),
        ({"gateway_ip": "10.5.0.15"}, 400, "inside allocation pool"),
        ({"gateway_ip": "10.5.0.10"}, 400, "inside allocation pool"),
    ):
        r = server.http.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": body})
        assert r.status_code == code, (body, r.text)
        assert fragment in err(r), body
    r = server.http.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {
        "gateway_ip": "10.5.0.10", "allocation_pools": [
            {"start": "10.5.0.100", "end": "10.5.0.110"}]}})
    assert r.status_code == 409 and "conflicts" in err(r)  # the port holds 10.5.0.10
    r = server.http.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"gateway_ip": None}})
    assert r.status_code == 200 and r.json()["subnet"]["gateway_ip"] is None
    assert server.http.put("/v2.0/subnets/nope", json={"subnet": {"name": "c"}}
                           ).status_code == 404


def test_security_group_update(server: RunningServer) -> None:
    sg = server.http.post("/v2.0/security-groups",
                          json={"security_group": {"name": "g"}}).json()["security_group"]
    r = server.http.put(f"/v2.0/security-groups/{sg['id']}",
                        json={"security_group": {"name": "h", "description": "d"}})
    assert r.status_code == 200, r.text
    shown = server.http.get(f"/v2.0/security-groups/{sg['id']}").json()["security_group"]
    assert (shown["name"], shown["description"]) == ("h", "d")
    r = server.http.put(f"/v2.0/security-groups/{sg['id']}",
                        json={"security_group": {"stateful": False}})
    assert r.status_code == 400 and "stateful" in err(r)


def test_discovery_documents(server: RunningServer) -> None:
    from metalplane.api.network_api import neutron_versions_document

    for path in ("/v2.0", "/v2.0/"):
        r = server.http.get(path)
        assert r.status_code == 200, r.text
        colls = {x["collection"]: x["links"][0]["href"] for x in r.json()["resources"]}
        assert colls["networks"] == f"{server.url}/v2.0/networks"
        assert set(colls) >= {"subnets", "ports", "security-groups", "security-group-rules"}
    exts = server.http.get("/v2.0/extensions").json()["extensions"]
    aliases = {e["alias"] for e in exts}
    assert {"provider", "binding", "extra_dhcp_opt", "security-group", "net-mtu"} <= aliases
    assert "external-net" in aliases  # router:external is settable
    assert not {"port-security", "multi-provider", "router"} & aliases  # no L3 driver here
    assert all(set(e) == {"alias", "name", "description", "updated", "links"} for e in exts)
    assert server.http.get("/v2.0/extensions/binding").json()["extension"]["alias"] == \
        "binding"
    r = server.http.get("/v2.0/extensions/port-security")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "HTTPNotFound"
    schemas = server.http.get("/openapi.json").json()["components"]["schemas"]
    assert "provider:network_type" in schemas["NetworkCreate"]["properties"]
    assert neutron_versions_document("http://h:9696/") == {"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"href": "http://h:9696/v2.0/", "rel": "self"}]}]}
