"""Allocations and conductors against a real server: over HTTP, through the ``baremetal``
CLI (python-ironicclient) and through openstacksdk's baremetal proxy."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server import RunningServer

BAREMETAL = str(Path(sys.executable).with_name("baremetal"))


def error_of(resp: Any) -> str:
    body = resp.json()
    assert set(body) == {"error_message"}, body
    return str(json.loads(body["error_message"])["faultstring"])


def available_node(server: RunningServer, name: str, resource_class: str = "gold",
                   traits: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A fake-hardware node driven to ``available`` with that resource class and traits."""
    node = server.create_node(name=name, resource_class=resource_class, **extra)
    if traits:
        r = server.http.patch(f"/v1/nodes/{name}", json=[
            {"op": "add", "path": "/traits", "value": traits}])
        assert r.status_code == 200, r.text
    for verb, state in (("manage", "manageable"), ("provide", "available")):
        assert server.provision(name, verb).status_code == 202
        server.wait_state(name, state)
    return node


def allocate(server: RunningServer, **body: Any) -> dict[str, Any]:
    r = server.http.post("/v1/allocations", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


# ----------------------------------------------------------------------------- HTTP

def test_allocation_takes_a_matching_node_and_frees_it(server: RunningServer) -> None:
    available_node(server, "plain")
    gpu = available_node(server, "gpu", traits=["CUSTOM_GPU", "HW_CPU_X86_VMX"])
    available_node(server, "silver", resource_class="silver", traits=["CUSTOM_GPU"])
    alloc = allocate(server, resource_class="gold", traits=["CUSTOM_GPU"], name="job-1",
                     extra={"team": "a"})
    assert alloc["state"] == "active" and alloc["last_error"] is None
    assert alloc["node_uuid"] == gpu["uuid"]
    assert set(alloc) == {"uuid", "name", "node_uuid", "state", "last_error",
                          "resource_class", "traits", "candidate_nodes", "extra", "owner",
                          "created_at", "updated_at", "links"}
    node = server.node("gpu")
    assert node["instance_uuid"] == alloc["uuid"]
    assert node["instance_info"]["traits"] == ["CUSTOM_GPU"]
    # shown by UUID, by name, through the node, and listed with filters
    assert server.http.get(f"/v1/allocations/{alloc['uuid']}").json()["name"] == "job-1"
    assert server.http.get("/v1/allocations/job-1").json()["uuid"] == alloc["uuid"]
    assert server.http.get("/v1/nodes/gpu/allocation").json()["uuid"] == alloc["uuid"]
    listed = server.http.get("/v1/allocations", params={"node": "gpu"}).json()
    assert [a["uuid"] for a in listed["allocations"]] == [alloc["uuid"]]
    assert server.http.get("/v1/allocations",
                           params={"state": "error"}).json()["allocations"] == []
    some = server.http.get("/v1/allocations", params={"fields": "uuid,state"}).json()
    assert some["allocations"] == [{"uuid": alloc["uuid"], "state": "active"}]
    # the node is taken: a second allocation for the same traits fails, Ironic's words
    again = allocate(server, resource_class="gold", traits=["CUSTOM_GPU"])
    assert again["state"] == "error" and again["node_uuid"] is None
    assert again["last_error"] == (f"Failed to process allocation {again['uuid']}: no "
                                   "suitable nodes have the requested traits CUSTOM_GPU.")
    none = allocate(server, resource_class="bronze")
    assert none["last_error"] == (f"Failed to process allocation {none['uuid']}: no "
                                  "available nodes match the resource class bronze.")
    # deleting frees the node
    assert server.http.delete("/v1/allocations/job-1").status_code == 204
    node = server.node("gpu")
    assert node["instance_uuid"] is None and "traits" not in node["instance_info"]
    r = server.http.get("/v1/nodes/gpu/allocation")
    assert r.status_code == 404
    assert error_of(r) == "Allocation for node gpu was not found"
    r = server.http.get("/v1/allocations/job-1")
    assert r.status_code == 404 and error_of(r) == "Allocation job-1 could not be found."


def test_candidates_owner_and_node_subresource_delete(server: RunningServer) -> None:
    a = available_node(server, "a1", owner="team-a")
    b = available_node(server, "b1", lessee="team-b")
    available_node(server, "c1")
    r = allocate(server, resource_class="gold", candidate_nodes=["b1", a["uuid"]],
                 owner="team-b")
    assert r["node_uuid"] == b["uuid"]  # the lessee's node, among the candidates
    assert r["candidate_nodes"] == [b["uuid"], a["uuid"]]  # names stored as UUIDs
    assert r["owner"] == "team-b"
    r2 = allocate(server, resource_class="gold", candidate_nodes=["b1"])
    assert r2["state"] == "error"
    assert "none of the requested nodes are available and match the resource class gold" \
        in r2["last_error"]
    assert server.http.get("/v1/allocations", params={"owner": "team-b"}).json()[
        "allocations"][0]["uuid"] == r["uuid"]
    assert server.http.delete("/v1/nodes/b1/allocation").status_code == 204
    assert server.node("b1")["instance_uuid"] is None
    assert server.http.delete("/v1/nodes/b1/allocation").status_code == 404


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({}, 400, "resource_class field is mandatory"),
    ({"resource_class": "gold", "colour": "blue"}, 400, "colour"),
    ({"resource_class": 5}, 400, "resource_class"),
    ({"resource_class": "gold", "name": "x" * 256}, 400, "name"),
    ({"resource_class": "gold", "name": "has space"}, 400,
     "Cannot create allocation with invalid name 'has space'"),
    ({"resource_class": "gold", "traits": "CUSTOM_GPU"}, 400, "traits"),
    ({"resource_class": "gold", "traits": ["lower"]}, 400, "traits"),
    ({"resource_class": "gold", "candidate_nodes": ["nope"]}, 400,
     "Node nope could not be found."),
    ({"resource_class": "gold", "uuid": "not-a-uuid"}, 400, "Expected a UUID"),
    ({"resource_class": "gold", "extra": []}, 400, "extra"),
])
def test_bad_create_bodies(server: RunningServer, body: dict[str, Any], status: int,
                           fragment: str) -> None:
    r = server.http.post("/v1/allocations", json=body)
    assert r.status_code == status, r.text
    assert fragment in error_of(r)


def test_patch_name_and_extra_only_and_duplicates(server: RunningServer) -> None:
    alloc = allocate(server, resource_class="gold", name="first")
    allocate(server, resource_class="gold", name="second")
    r = server.http.patch("/v1/allocations/first", json=[
        {"op": "add", "path": "/extra/k", "value": "v"},
        {"op": "replace", "path": "/name", "value": "renamed"}])
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "renamed" and r.json()["extra"] == {"k": "v"}
    r = server.http.patch(f"/v1/allocations/{alloc['uuid']}", json=[
        {"op": "replace", "path": "/resource_class", "value": "x"}])
    assert r.status_code == 400
    assert error_of(r) == ("Cannot patch /resource_class. Only the following can be "
                           "updated: name, extra")
    r = server.http.patch("/v1/allocations/renamed", json=[
        {"op": "replace", "path": "/name", "value": "second"}])
    assert r.status_code == 409
    assert error_of(r) == "An allocation with name second already exists."
    r = server.http.post("/v1/allocations", json={"resource_class": "gold",
                                                  "name": "second"})
    assert r.status_code == 409
    assert server.http.patch("/v1/allocations/nope", json=[
        {"op": "replace", "path": "/name", "value": "x"}]).status_code == 404
    r = server.http.get("/v1/allocations", params={"fields": "uuid,colour"})
    assert r.status_code == 400 and error_of(r) == 'Field(s) "colour" are not valid'
    r = server.http.get("/v1/allocations", headers={"X-OpenStack-Ironic-API-Version": "1.51"})
    assert r.status_code == 404
    r = server.http.get("/v1/allocations", headers={"OpenStack-API-Version": "baremetal 1.51"})
    assert r.status_code == 404
    r = server.http.get("/v1/allocations", headers={"OpenStack-API-Version": "baremetal 1.52"})
    assert r.status_code == 200


def test_deleting_a_node_deletes_its_allocation(server: RunningServer) -> None:
    available_node(server, "gone")
    alloc = allocate(server, resource_class="gold")
    assert alloc["state"] == "active"
    assert server.http.delete("/v1/nodes/gone").status_code == 204
    assert server.http.get(f"/v1/allocations/{alloc['uuid']}").status_code == 404


def test_active_node_keeps_its_allocation_until_undeployed(server: RunningServer) -> None:
    available_node(server, "dep")
    alloc = allocate(server, resource_class="gold")
    assert server.provision("dep", "deploy").status_code == 202
    server.wait_state("dep", "active")
    r = server.http.delete(f"/v1/allocations/{alloc['uuid']}")
    assert r.status_code == 409
    assert "because the node is active (and maintenance mode is off)" in error_of(r)
    assert server.provision("dep", "undeploy").status_code == 202
    node = server.wait_state("dep", "available")
    assert node["instance_uuid"] is None
    assert server.http.get(f"/v1/allocations/{alloc['uuid']}").status_code == 404
    assert allocate(server, resource_class="gold")["node_uuid"] == node["uuid"]


def test_backfill_records_a_deployed_node(server: RunningServer) -> None:
    available_node(server, "idle")
    node = available_node(server, "deployed")
    assert server.provision("deployed", "deploy").status_code == 202
    server.wait_state("deployed", "active")
    r = server.http.post("/v1/allocations", json={"node": "idle"})
    assert r.status_code == 400
    assert 'Node must be in the "active" state, but the current state is "available"' \
        in error_of(r)
    alloc = allocate(server, node="deployed")  # resource_class from the node
    assert alloc["state"] == "active" and alloc["node_uuid"] == node["uuid"]
    assert alloc["resource_class"] == "gold"
    assert server.node("deployed")["instance_uuid"] == alloc["uuid"]
    # again: the new allocation's UUID defaults to the node's instance_uuid, taken (Ironic)
    r = server.http.post("/v1/allocations", json={"node": "deployed"})
    assert r.status_code == 409
    assert error_of(r) == f"An allocation with UUID {alloc['uuid']} already exists."
    r = server.http.post("/v1/allocations", json={"node": "deployed",
                                                  "uuid": str(uuidlib.uuid4())})
    assert r.status_code == 400 and "is associated with instance" in error_of(r)
    r = server.http.post("/v1/allocations", json={"node": "deployed"},
                         headers={"X-OpenStack-Ironic-API-Version": "1.57"})
    assert r.status_code == 400
    assert error_of(r) == "Cannot set node when creating an allocation in this API version"


def test_concurrent_allocations_never_share_a_node(server: RunningServer) -> None:
    nodes = {available_node(server, f"race-{i}")["uuid"] for i in range(3)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: allocate(server, resource_class="gold",
                                                   name=f"r{i}"), range(8)))
    active = [a for a in results if a["state"] == "active"]
    taken = [a["node_uuid"] for a in active]
    assert len(taken) == len(set(taken)) == 3
    assert set(taken) == nodes
    assert all(a["state"] == "error" and a["last_error"] for a in results
               if a["state"] != "active")
    for a in active:
        assert server.node(a["node_uuid"])["instance_uuid"] == a["uuid"]


def test_conductors(server: RunningServer) -> None:
    listed = server.http.get("/v1/conductors").json()["conductors"]
    assert [c["hostname"] for c in listed] == ["test-conductor"]
    assert set(listed[0]) == {"hostname", "conductor_group", "alive", "links"}
    assert listed[0]["alive"] is True
    detail = server.http.get("/v1/conductors", params={"detail": "true"}).json()
    assert "fake-hardware" in detail["conductors"][0]["drivers"]
    one = server.http.get("/v1/conductors/test-conductor").json()
    assert set(one) == {"hostname", "conductor_group", "alive", "drivers", "created_at",
                        "updated_at", "links"}
    some = server.http.get("/v1/conductors/test-conductor", params={"fields": "alive"})
    assert some.json() == {"alive": True}
    r = server.http.get("/v1/conductors/nope")
    assert r.status_code == 404 and error_of(r) == "Conductor nope could not be found."
    r = server.http.get("/v1/conductors", params={"detail": "true", "fields": "hostname"})
    assert r.status_code == 400


# ----------------------------------------------------------------------------- clients

def baremetal(server: RunningServer, *args: str) -> Any:
    """Run the ``baremetal`` CLI against the server; the parsed JSON output (or None)."""
    cmd = [BAREMETAL, "--os-endpoint", server.url, "--os-auth-type", "none", *args]
    if args[1] in ("create", "list", "show"):
        cmd += ["-f", "json"]
    env = {**os.environ, "OS_CLOUD": "", "HOME": os.environ.get("HOME", "/tmp")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout) if "-f" in cmd else proc.stdout


def test_baremetal_cli(server: RunningServer) -> None:
    node = available_node(server, "cli-1", traits=["CUSTOM_X"])
    created = baremetal(server, "allocation", "create", "--resource-class", "gold",
                        "--trait", "CUSTOM_X", "--name", "cli-alloc", "--wait", "30")
    assert created["state"] == "active" and created["node_uuid"] == node["uuid"]
    listed = baremetal(server, "allocation", "list")
    assert [a["uuid"] for a in listed] == [created["uuid"]]
    shown = baremetal(server, "allocation", "show", "cli-alloc")
    assert shown["node_uuid"] == node["uuid"]
    baremetal(server, "allocation", "set", "cli-alloc", "--extra", "k=v")
    assert baremetal(server, "allocation", "show", "cli-alloc")["extra"] == {"k": "v"}
    baremetal(server, "allocation", "unset", "cli-alloc", "--extra", "k")
    assert baremetal(server, "allocation", "show", "cli-alloc")["extra"] == {}
    failed = subprocess.run(
        [BAREMETAL, "--os-endpoint", server.url, "--os-auth-type", "none", "allocation",
         "create", "--resource-class", "none-such", "--wait", "30"],
        capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode != 0
    assert "no available nodes match the resource class none-such" in failed.stderr
    assert "Deleted allocation cli-alloc" in baremetal(server, "allocation", "delete",
                                                       "cli-alloc")
    assert server.node("cli-1")["instance_uuid"] is None
    conductors = baremetal(server, "conductor", "list")
    assert conductors[0]["hostname"] == "test-conductor"
    assert conductors[0]["alive"] is True
    shown_c = baremetal(server, "conductor", "show", "test-conductor")
    assert "fake-hardware" in shown_c["drivers"]


# openstacksdk warns about its own internals (InfluxDB on every Connection, as its loader
# always hands CloudRegion a non-empty influxdb_config; _compute_attributes), which
# filterwarnings=error would fail: its pending-removal warnings are not ours.
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack.*")
# keystoneauth's discovery reads GET /v1's "version" as a version object and fails on the
# string this server still answers (being fixed in app.py on main); passing
# baremetal_api_version does not skip discovery. Non-strict: passes once the fix lands.
def test_openstacksdk(server: RunningServer) -> None:
    import openstack.connection
    import openstack.exceptions

    node = available_node(server, "sdk-1", traits=["CUSTOM_Y"])
    conn = openstack.connection.Connection(auth_type="none",
                                           baremetal_endpoint_override=server.url)
    try:
        alloc = conn.baremetal.create_allocation(resource_class="gold", traits=["CUSTOM_Y"])
        alloc = conn.baremetal.wait_for_allocation(alloc, timeout=30)
        assert alloc.state == "active" and alloc.node_id == node["uuid"]
        assert [a.id for a in conn.baremetal.allocations()] == [alloc.id]
        conn.baremetal.update_allocation(alloc, name="sdk-alloc")
        assert conn.baremetal.get_allocation("sdk-alloc").id == alloc.id
        conn.baremetal.delete_allocation(alloc)
        assert list(conn.baremetal.allocations()) == []
        assert server.node("sdk-1")["instance_uuid"] is None
        bad = conn.baremetal.create_allocation(resource_class="nothing")
        with pytest.raises(openstack.exceptions.ResourceFailure,
                           match="no available nodes match the resource class nothing"):
            conn.baremetal.wait_for_allocation(bad, timeout=30)
        listed = [(c.hostname, c.alive) for c in conn.baremetal.conductors(details=True)]
        assert listed == [("test-conductor", True)]
        assert "fake-hardware" in conn.baremetal.get_conductor("test-conductor").drivers
    finally:
        conn.close()
