"""Bad input to the Bare Metal API: 400 (or 413) naming the field, and nothing written.

Each case is one that reached the store or crashed the server before the bodies were
typed; booleans follow Ironic's reading (``oslo_utils.strutils.bool_from_string``).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.helpers.server import RunningServer


def error_of(resp: Any) -> str:
    return str(json.loads(resp.json()["error_message"])["faultstring"])


def post_raw(server: RunningServer, path: str, raw: bytes) -> Any:
    return server.http.post(path, content=raw, headers={"Content-Type": "application/json"})


def node_count(server: RunningServer) -> int:
    return len(server.http.get("/v1/nodes").json()["nodes"])


@pytest.mark.parametrize(("raw", "fragment"), [
    (b'{"driver": "fake-hardware", "owner": {"a": 1}}', "owner: Input should be a valid string"),
    (b'{"driver": "fake-hardware", "maintenance": "maybe"}', "maintenance"),
    (b'{"driver": "fake-hardware", "maintenance": null, "automated_clean": [1]}',
     "automated_clean"),
    (b'{"driver": "fake-hardware", "extra": {"k": "\\ud800"}}',
     "extra/k: a lone UTF-16 surrogate"),
    (b'{"driver": "fake-hardware", "name": "x\\udfff"}', "name: a lone UTF-16 surrogate"),
    (b'{"driver": "fake-hardware", "properties": {"cpus": NaN}}',
     "properties/cpus: NaN is not a JSON number"),
    (b'{"driver": "fake-hardware", "properties": {"cpus": -Infinity}}', "cpus: -Infinity"),
    (b'{"driver": "fake-hardware", "name": "' + b"n" * 300 + b'"}',
     "name: String should have at most 255 characters"),
    (b'{"driver": "fake-hardware", "resource_class": "' + b"r" * 81 + b'"}', "resource_class"),
    (b'{"driver": "fake-hardware", "traits": ["lower_case"]}', "Invalid trait"),
    (b'{"driver": "fake-hardware", "colour": "red"}', "Unknown attribute colour"),
    (b'{"driver": 7}', "driver: Input should be a valid string"),
    (b'{"driver": "fake-hardware"', "not valid JSON"),
    (b'[1, 2]', "Input should be a valid dictionary"),
])
def test_bad_node_body_is_400_naming_the_field(server: RunningServer, raw: bytes,
                                               fragment: str) -> None:
    r = post_raw(server, "/v1/nodes", raw)
    assert r.status_code == 400, r.text
    assert fragment in error_of(r)
    assert node_count(server) == 0
    assert server.http.get("/v1/nodes/detail").status_code == 200


def test_string_booleans_read_as_ironic_reads_them(server: RunningServer) -> None:
    node = server.create_node(name="b", maintenance="yes", automated_clean="off")
    assert node["maintenance"] is True and node["automated_clean"] is False
    port = server.http.post("/v1/ports", json={"node_uuid": "b", "pxe_enabled": "false",
                                               "address": "52:54:00:00:00:0b"})
    assert port.status_code == 201 and port.json()["pxe_enabled"] is False
    pg = server.http.post("/v1/portgroups", json={"node_uuid": "b",
                                                  "standalone_ports_supported": "False"})
    assert pg.status_code == 201 and pg.json()["standalone_ports_supported"] is False


@pytest.mark.parametrize(("patch", "fragment"), [
    ([{"op": "replace", "path": "/maintenance", "value": "maybe"}], "maintenance"),
    ([{"op": "add", "path": "/owner", "value": {"a": 1}}], "owner"),
    ([{"op": "add", "path": "/description", "value": "d" * 5000}], "description"),
    ([{"op": "add", "path": "/traits", "value": ["CUSTOM_A", 3]}], "traits"),
    ([{"op": "fly", "path": "/name", "value": "x"}], "op"),
    ([{"op": "add", "path": "name", "value": "x"}], "path"),
])
def test_bad_node_patch_is_400_and_changes_nothing(server: RunningServer,
                                                   patch: list[dict[str, Any]],
                                                   fragment: str) -> None:
    before = server.create_node(name="p", owner="o1")
    r = server.http.patch("/v1/nodes/p", json=patch)
    assert r.status_code == 400, r.text
    assert fragment in error_of(r)
    after = server.node("p")
    assert {k: after[k] for k in ("owner", "maintenance", "description", "traits", "name")} \
        == {k: before[k] for k in ("owner", "maintenance", "description", "traits", "name")}


def test_patch_coerces_string_booleans(server: RunningServer) -> None:
    server.create_node(name="c")
    r = server.http.patch("/v1/nodes/c", json=[
        {"op": "replace", "path": "/automated_clean", "value": "true"}])
    assert r.status_code == 200 and r.json()["automated_clean"] is True
    port = server.http.post("/v1/ports", json={"node_uuid": "c", "address": "52:54:00:00:00:0c"})
    r = server.http.patch(f"/v1/ports/{port.json()['uuid']}", json=[
        {"op": "replace", "path": "/pxe_enabled", "value": "no"}])
    assert r.status_code == 200 and r.json()["pxe_enabled"] is False


def test_port_and_portgroup_bodies_are_typed(server: RunningServer) -> None:
    server.create_node(name="t")
    for body, fragment in (
            ({"node_uuid": "t", "address": "52:54:00:00:00:01", "pxe_enabled": "maybe"},
             "pxe_enabled"),
            ({"node_uuid": "t", "address": "52:54:00:00:00:01",
              "local_link_connection": {"switch_id": {"x": 1}}}, "local_link_connection"),
            ({"node_uuid": "t", "address": ["52:54:00:00:00:01"]}, "address"),
            ({"node_uuid": "t", "address": "52:54:00:00:00:01", "mystery": 1}, "mystery")):
        r = server.http.post("/v1/ports", json=body)
        assert r.status_code == 400 and fragment in error_of(r), r.text
    assert server.http.get("/v1/ports").json()["ports"] == []
    r = server.http.post("/v1/portgroups", json={"node_uuid": "t",
                                                 "standalone_ports_supported": 2})
    assert r.status_code == 400 and "standalone_ports_supported" in error_of(r)
    assert server.http.get("/v1/portgroups").json()["portgroups"] == []


def test_verb_bodies_are_typed(server: RunningServer) -> None:
    server.create_node(name="v")
    for path, body, fragment in (
            ("/v1/nodes/v/states/provision", {"target": 5}, "target"),
            ("/v1/nodes/v/states/provision", {"target": "manage", "x": 1}, "Unknown attribute x"),
            ("/v1/nodes/v/states/power", {"target": "power on", "timeout": 0}, "timeout"),
            ("/v1/nodes/v/management/boot_device", {"boot_device": "pxe",
                                                    "persistent": "maybe"}, "persistent"),
            ("/v1/nodes/v/traits", {"traits": "CUSTOM_A"}, "traits")):
        r = server.http.put(path, json=body)
        assert r.status_code == 400 and fragment in error_of(r), (path, r.text)
    node = server.node("v")
    assert node["provision_state"] == "enroll" and node["traits"] == []


def test_body_over_the_limit_is_413_before_it_is_read(server: RunningServer) -> None:
    limit = server.service.settings.max_request_body_size
    big = b'{"driver": "fake-hardware", "extra": {"x": "' + b"x" * limit + b'"}}'
    r = post_raw(server, "/v1/nodes", big)
    assert r.status_code == 413 and "max_request_body_size" in error_of(r)
    # the agent's unauthenticated paths too
    r = post_raw(server, "/v1/heartbeat/some-node", big)
    assert r.status_code == 413
    assert node_count(server) == 0


def test_streamed_body_over_the_limit_is_413(server: RunningServer) -> None:
    """A chunked body with no Content-Length is counted as it arrives."""
    limit = server.service.settings.max_request_body_size

    def chunks() -> Any:
        yield b'{"driver": "fake-hardware", "extra": {"x": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}}'

    r = server.http.post("/v1/nodes", content=chunks(),
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert node_count(server) == 0


def test_keepalive_connection_survives_4xx_and_405(server: RunningServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock, \
            sock.makefile("rb") as reader:
        for method, path in (("GET", "/v1/nodes/nope"), ("DELETE", "/v1/nodes"),
                             ("GET", "/v1")):
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status = reader.readline().split()[1]
            length = 0
            allow = None
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                if name.lower() == "allow":
                    allow = value.strip()
            reader.read(length)
            expected = {"/v1/nodes/nope": b"404", "/v1/nodes": b"405", "/v1": b"200"}[path]
            assert status == expected
            if status == b"405":
                assert allow is not None and "GET" in allow and "POST" in allow


def test_ovn_vtep_keys_of_1_90_go_together(server: RunningServer) -> None:
    server.create_node(name="vt")
    llc = {"port_id": "p1", "vtep-logical-switch": "ls1", "vtep-physical-switch": "ps1"}
    r = server.http.post("/v1/ports", json={"node_uuid": "vt", "address": "52:54:00:00:00:a1",
                                            "local_link_connection": llc})
    assert r.status_code == 201 and r.json()["local_link_connection"] == llc
    r = server.http.post("/v1/ports", json={
        "node_uuid": "vt", "address": "52:54:00:00:00:a2",
        "local_link_connection": {"port_id": "p1", "vtep-logical-switch": "ls1"}})
    assert r.status_code == 400 and "vtep-physical-switch" in error_of(r)
    assert len(server.http.get("/v1/ports").json()["ports"]) == 1


def test_removing_or_nulling_a_field_resets_it_to_its_default(server: RunningServer) -> None:
    server.create_node(name="rm", maintenance=True, maintenance_reason="x", extra={"a": 1},
                       conductor_group="g1", traits=["CUSTOM_A"], description="d")
    for path in ("/maintenance", "/extra", "/conductor_group", "/traits", "/description"):
        r = server.http.patch("/v1/nodes/rm", json=[{"op": "remove", "path": path}])
        assert r.status_code == 200, (path, r.text)
    r = server.http.patch("/v1/nodes/rm", json=[{"op": "replace", "path": "/properties",
                                                 "value": None}])
    assert r.status_code == 200, r.text
    node = server.node("rm")
    assert (node["maintenance"], node["extra"], node["conductor_group"], node["traits"],
            node["description"], node["properties"]) == (False, {}, "", [], None, {})


def test_a_body_nested_too_deeply_is_400(server: RunningServer) -> None:
    for path in ("/v1/nodes", "/v1/heartbeat/x", "/v2.0/networks"):
        r = post_raw(server, path, b"[" * 100000)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert "nested too deeply" in r.text
    assert node_count(server) == 0


def test_list_filters_read_booleans_strictly(server: RunningServer) -> None:
    server.create_node(name="m1", maintenance=True)
    server.create_node(name="m2")
    r = server.http.get("/v1/nodes", params={"maintenance": "on"})
    assert [n["name"] for n in r.json()["nodes"]] == ["m1"]
    r = server.http.get("/v1/nodes", params={"maintenance": "maybe"})
    assert r.status_code == 400 and "maintenance" in error_of(r)


def test_portgroup_address_filter_is_exact_and_paged(server: RunningServer) -> None:
    server.create_node(name="pgn")
    for i in range(3):
        r = server.http.post("/v1/portgroups", json={
            "node_uuid": "pgn", "address": f"52:54:00:00:01:0{i}"})
        assert r.status_code == 201
    r = server.http.get("/v1/portgroups/detail", params={"address": "52:54:00:00:01:02",
                                                         "limit": 1})
    assert [p["address"] for p in r.json()["portgroups"]] == ["52:54:00:00:01:02"]
    page = server.http.get("/v1/portgroups", params={"limit": 2}).json()
    assert len(page["portgroups"]) == 2 and "marker=" in page["next"]
