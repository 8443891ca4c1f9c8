"""``/openapi.json`` says what the API really does: each answer of a populated server
matches the schema its operation declares, and the error answers are documented."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from metalplane.api import view_schemas
from tests.helpers.l3 import enable_l3
from tests.helpers.server import RunningServer


def check(doc: dict[str, Any], method: str, path: str, resp: Any) -> None:
    """Validate ``resp`` against the schema ``doc`` declares for it."""
    status = str(resp.status_code)
    answer = doc["paths"][path][method]["responses"][status]
    schema = answer["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": doc["components"]})
    errors = sorted(validator.iter_errors(resp.json()), key=str)
    assert not errors, f"{method.upper()} {path}: {errors[0].message} at {errors[0].json_path}"


@pytest.fixture
def populated(server: RunningServer) -> dict[str, str]:
    """A node with a port, a portgroup and traits, an allocation, and a network with a
    subnet, a port and a security group with a rule; L3 on, a router with a gateway and an
    interface, and a floating IP of the port."""
    http = server.http
    enable_l3(server)
    node = server.create_node(name="n1", resource_class="gold", description="d",
                              properties={"cpus": 2}, traits=["CUSTOM_A"])
    port = http.post("/v1/ports", json={"node_uuid": "n1", "address": "52:54:00:aa:00:01",
                                        "local_link_connection": {"switch_id":
                                                                  "0a:0b:0c:0d:0e:0f",
                                                                  "port_id": "p1"}}).json()
    pg = http.post("/v1/portgroups", json={"node_uuid": "n1", "name": "bond0"}).json()
    alloc = http.post("/v1/allocations", json={"resource_class": "silver"}).json()
    net = http.post("/v2.0/networks", json={"network": {"name": "t"}}).json()["network"]
    sub = http.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.9.0.0/24"}}).json()["subnet"]
    nport = http.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    sg = http.post("/v2.0/security-groups", json={"security_group": {"name": "g"}}).json()
    sg = sg["security_group"]
    rule = http.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22}}).json()["security_group_rule"]
    ext = http.post("/v2.0/networks", json={"network": {"name": "ext",
                                                         "router:external": True}}).json()
    http.post("/v2.0/subnets", json={"subnet": {"network_id": ext["network"]["id"],
                                                "cidr": "203.0.113.0/24"}})
    router = http.post("/v2.0/routers", json={"router": {"name": "r", "external_gateway_info": {
        "network_id": ext["network"]["id"]}}}).json()["router"]
    http.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]})
    fip = http.post("/v2.0/floatingips", json={"floatingip": {
        "floating_network_id": ext["network"]["id"], "port_id": nport["id"]}}).json()
    return {"node": node["uuid"], "port": port["uuid"], "portgroup": pg["uuid"],
            "allocation": alloc["uuid"], "network": net["id"], "subnet": sub["id"],
            "nport": nport["id"], "sg": sg["id"], "rule": rule["id"], "router": router["id"],
            "fip": fip["floatingip"]["id"]}


def test_every_documented_answer_matches_what_the_server_sends(
        server: RunningServer, populated: dict[str, str]) -> None:
    doc = server.http.get("/openapi.json").json()
    ids = {"/v1/nodes/{ident}": populated["node"], "/v1/ports/{ident}": populated["port"],
           "/v1/portgroups/{ident}": populated["portgroup"],
           "/v1/allocations/{ident}": populated["allocation"],
           "/v1/conductors/{hostname}": "test-conductor", "/v1/drivers/{name}": "redfish",
           "/v2.0/networks/{ident}": populated["network"],
           "/v2.0/subnets/{ident}": populated["subnet"],
           "/v2.0/ports/{ident}": populated["nport"],
           "/v2.0/security-groups/{ident}": populated["sg"],
           "/v2.0/security-group-rules/{ident}": populated["rule"],
           "/v2.0/routers/{ident}": populated["router"],
           "/v2.0/floatingips/{ident}": populated["fip"]}
    checked = 0
    for (method, path), (status, _) in view_schemas.RESPONSES.items():
        assert method in doc["paths"].get(path, {}), f"{method} {path} is not an operation"
        if method != "get":
            continue
        url = path
        for template, ident in ids.items():
            prefix = template.split("{")[0]
            if path.startswith(prefix) and "{" in path:
                url = prefix + ident + path[len(template):]
        if path == "/v1/nodes/{ident}/allocation":
            continue  # n1 has none: 404, checked below as an error answer
        resp = server.http.get(url, params={"detail": "true"} if "conductors" in path
                               else None)
        assert str(resp.status_code) == status, (url, resp.text)
        check(doc, method, path, resp)
        checked += 1
    assert checked >= 25
    # the Networking listener's root, a node with every field, and error answers
    check(doc, "get", "/", server.http.get(server.network_url + "/"))
    check(doc, "post", "/v1/nodes", server.http.post("/v1/nodes", json={
        "driver": "fake-hardware", "automated_clean": True, "extra": {"a": [1]}}))
    check(doc, "get", "/v1/nodes/{ident}/allocation",
          server.http.get(f"/v1/nodes/{populated['node']}/allocation"))
    check(doc, "post", "/v2.0/networks",
          server.http.post("/v2.0/networks", json={"network": {"shared": "maybe"}}))
    check(doc, "post", "/v1/nodes", server.http.post("/v1/nodes", json={"driver": 1}))
    check(doc, "put", "/v2.0/routers/{ident}/remove_router_interface", server.http.put(
        f"/v2.0/routers/{populated['router']}/remove_router_interface",
        json={"subnet_id": populated["subnet"]}))  # 409: the floating IP needs it


def test_error_answers_are_documented_and_422_is_not(server: RunningServer) -> None:
    doc = server.http.get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "422" not in answers, (method, path)
            for status in ("400", "404", "409", "413"):
                ref = answers[status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("NeutronError" if path.startswith("/v2.0")
                                    else "IronicError"), (method, path, status)
