"""The Bare Metal API against a real server: shapes, paging, filters and bad input."""

from __future__ import annotations

import json
import logging

import pytest

from metalplane.db import api as db_api
from tests.helpers.server import RunningServer


def error_of(resp) -> str:  # type: ignore[no-untyped-def]
    body = resp.json()
    assert set(body) == {"error_message"}, body
    return str(json.loads(body["error_message"])["faultstring"])


def count_nodes(server: RunningServer) -> int:
    return len(server.http.get("/v1/nodes").json()["nodes"])


def test_root_and_version_headers(server: RunningServer) -> None:
    r = server.http.get("/")
    assert r.status_code == 200
    assert r.json()["default_version"]["id"] == "v1"
    assert r.headers["X-OpenStack-Ironic-API-Version"] == r.json()["default_version"]["version"]
    r = server.http.get("/v1/nodes", headers={"X-OpenStack-Ironic-API-Version": "1.31"})
    assert r.headers["X-OpenStack-Ironic-API-Version"] == "1.31"
    r = server.http.get("/v1/nodes", headers={"X-OpenStack-Ironic-API-Version": "9.99"})
    assert r.status_code == 406
    assert "supported version range" in error_of(r)


def test_openapi_document(server: RunningServer) -> None:
    doc = server.http.get("/openapi.json").json()
    for path in ("/v1/nodes", "/v1/nodes/{ident}/states/provision", "/v1/ports",
                 "/v1/portgroups", "/v1/nodes/{ident}/management/boot_device"):
        assert path in doc["paths"], path


def test_create_show_patch_delete(server: RunningServer) -> None:
    node = server.create_node(name="n-1", properties={"cpus": 4}, owner="team-a",
                              resource_class="baremetal", traits=["CUSTOM_GPU"])
    assert node["provision_state"] == "enroll"
    assert node["power_state"] is None
    assert node["deploy_interface"] == "fake"
    for field in ("uuid", "driver_info", "instance_info", "target_provision_state",
                  "last_error", "maintenance", "maintenance_reason", "conductor_group",
                  "lessee", "extra", "created_at", "updated_at", "reservation"):
        assert field in node, field
    shown = server.node("n-1")
    assert shown["uuid"] == node["uuid"] and shown["traits"] == ["CUSTOM_GPU"]
    r = server.http.patch("/v1/nodes/n-1", json=[
        {"op": "replace", "path": "/properties/cpus", "value": 8},
        {"op": "add", "path": "/extra/rack", "value": "r1"},
        {"op": "replace", "path": "/name", "value": "n-2"}])
    assert r.status_code == 200, r.text
    assert r.json()["properties"] == {"cpus": 8}
    assert r.json()["extra"] == {"rack": "r1"}
    assert server.http.get("/v1/nodes/n-1").status_code == 404
    assert server.http.delete(f"/v1/nodes/{node['uuid']}").status_code == 204
    assert server.http.get(f"/v1/nodes/{node['uuid']}").status_code == 404


def test_list_paging_and_filters(server: RunningServer) -> None:
    uuids = [server.create_node(name=f"p{i}", owner="a" if i % 2 else "b",
                                conductor_group="g1" if i < 3 else "")["uuid"]
             for i in range(7)]
    page = server.http.get("/v1/nodes", params={"limit": 3}).json()
    assert [n["uuid"] for n in page["nodes"]] == uuids[:3]
    assert set(page["nodes"][0]) == {"uuid", "name", "instance_uuid", "power_state",
                                     "provision_state", "maintenance", "links"}
    assert "marker=" in page["next"]
    page2 = server.http.get("/v1/nodes", params={"limit": 3,
                                                 "marker": uuids[2]}).json()
    assert [n["uuid"] for n in page2["nodes"]] == uuids[3:6]
    owned = server.http.get("/v1/nodes", params={"owner": "a"}).json()["nodes"]
    assert [n["name"] for n in owned] == ["p1", "p3", "p5"]
    grouped = server.http.get("/v1/nodes", params={"conductor_group": "g1"}).json()["nodes"]
    assert len(grouped) == 3
    assert server.provision("p0", "manage").status_code == 202
    server.wait_state("p0", "manageable")
    manageable = server.http.get("/v1/nodes",
                                 params={"provision_state": "manageable"}).json()["nodes"]
    assert [n["name"] for n in manageable] == ["p0"]
    detail = server.http.get("/v1/nodes/detail", params={"limit": 1}).json()["nodes"][0]
    assert "driver_info" in detail
    # ?fields= gives just those (and the UUID); defaults and masking as in a whole node
    server.http.patch("/v1/nodes/p1", json=[{"op": "add", "path": "/driver_info/ipmi_password",
                                             "value": "s3cret"}])
    some = server.http.get("/v1/nodes", params={
        "fields": "name,boot_interface,driver_info,provision_updated_at",
        "owner": "a"}).json()["nodes"]
    assert [n["name"] for n in some] == ["p1", "p3", "p5"]
    assert set(some[0]) == {"uuid", "name", "boot_interface", "driver_info",
                            "provision_updated_at"}
    assert some[0]["boot_interface"]  # the driver's default, as GET /v1/nodes/p1 shows it
    assert some[0]["boot_interface"] == server.node("p1")["boot_interface"]
    assert some[0]["driver_info"]["ipmi_password"] == "******"
    r = server.http.get("/v1/nodes", params={"marker": "not-a-node"})
    assert r.status_code == 400


@pytest.mark.parametrize(("body", "fragment"), [
    ({"driver": "no-such-driver"}, "Cannot find the hardware type 'no-such-driver'"),
    ({"driver": "redfish", "driver_info": {"redfish_address": "ftp://bmc"}},
     "redfish_address"),
    ({"driver": "redfish", "driver_info": {"redfish_address": "https://10.0.0.1:99999"}},
     "invalid port"),
    ({"driver": "redfish", "driver_info": {"redfish_address": "https://bmc",
                                           "redfish_username": "admin"}},
     "redfish_password is required"),
    ({"driver": "ipmi", "driver_info": {"ipmi_address": "10.0.0.1",
                                        "ipmi_username": "admin"}},
     "ipmi_password is required"),
    ({"driver": "fake-hardware", "colour": "blue"}, "Unknown attribute colour"),
    ({"driver": "fake-hardware", "deploy_interface": "magic"}, "deploy_interface 'magic'"),
    ({"driver": "fake-hardware", "name": "has space"}, "name 'has space'"),
])
def test_create_bad_input_is_400_and_writes_nothing(server: RunningServer, body: dict,
                                                   fragment: str) -> None:
    r = server.http.post("/v1/nodes", json=body)
    assert r.status_code == 400, r.text
    assert fragment in error_of(r)
    assert count_nodes(server) == 0


def test_duplicate_name_is_409(server: RunningServer) -> None:
    server.create_node(name="dup")
    r = server.http.post("/v1/nodes", json={"driver": "fake-hardware", "name": "dup"})
    assert r.status_code == 409
    assert "dup" in error_of(r)
    assert count_nodes(server) == 1


@pytest.mark.parametrize(("patch", "fragment"), [
    ([{"op": "add", "path": "/colour", "value": "x"}], "/colour"),
    ([{"op": "replace", "path": "/provision_state", "value": "active"}],
     "internal attribute"),
    ([{"op": "replace", "path": "/driver", "value": "nope"}], "hardware type 'nope'"),
    ([{"op": "add", "path": "/driver_info/redfish_address", "value": "bmc:1:2"}], "redfish"),
    ([{"op": "remove", "path": "/properties/absent"}], "patch does not apply"),
    ([], "non-empty"),
])
def test_bad_patch_is_400_and_changes_nothing(server: RunningServer, patch: list,
                                              fragment: str) -> None:
    node = server.create_node(name="pn", driver="redfish",
                              driver_info={"redfish_address": "https://bmc.example"})
    r = server.http.patch("/v1/nodes/pn", json=patch)
    assert r.status_code == 400, r.text
    assert fragment in error_of(r)
    after = server.node("pn")
    assert after["driver_info"] == node["driver_info"]
    assert after["provision_state"] == "enroll" and after["reservation"] is None


def test_wrong_state_for_verb_names_allowed_verbs(server: RunningServer) -> None:
    server.create_node(name="w")
    r = server.provision("w", "deploy")
    assert r.status_code == 400  # Ironic's InvalidStateRequested; 409 means "locked"
    msg = error_of(r)
    assert "'deploy'" in msg and "'enroll'" in msg and "manage" in msg
    r = server.provision("w", "fly")
    assert r.status_code == 400 and "not a provision verb" in error_of(r)
    assert server.node("w")["provision_state"] == "enroll"


def test_verify_fails_back_to_enroll_with_last_error(server: RunningServer) -> None:
    server.create_node(name="nobmc", driver="redfish")
    r = server.provision("nobmc", "manage")
    assert r.status_code == 400
    assert "redfish_address" in error_of(r)
    node = server.node("nobmc")
    assert node["provision_state"] == "enroll" and node["reservation"] is None


def test_locked_node_answers_409_with_holder_and_purpose(server: RunningServer) -> None:
    node = server.create_node(name="busy")
    with server.conductor.acquire("busy", "a long firmware update"):
        r = server.provision("busy", "manage")
        assert r.status_code == 409
        assert r.headers["Retry-After"] == "1"  # retryable: what the agent decides on
        msg = error_of(r)
        assert "locked by host test-conductor for a long firmware update" in msg
        r = server.http.patch("/v1/nodes/busy", json=[{"op": "add", "path": "/extra/a",
                                                       "value": 1}])
        assert r.status_code == 409
    assert server.node(node["uuid"])["reservation"] is None
    assert server.provision("busy", "manage").status_code == 202


def test_delete_refused_while_active(server: RunningServer) -> None:
    server.create_node(name="act")
    for verb, state in (("manage", "manageable"), ("provide", "available"),
                        ("deploy", "active")):
        assert server.provision("act", verb).status_code == 202
        server.wait_state("act", state)
    r = server.http.delete("/v1/nodes/act")
    assert r.status_code == 409 and "active" in error_of(r)
    assert "Retry-After" not in r.headers  # trying again will not help
    assert server.node("act")["provision_state"] == "active"


def test_secrets_never_shown_or_logged(server: RunningServer,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sup3r-Secret-Pw"
    node = server.create_node(name="s", driver="redfish", driver_info={
        "redfish_address": "http://127.0.0.1:9", "redfish_username": "admin",
        "redfish_password": secret})
    assert node["driver_info"]["redfish_password"] == "******"
    assert node["driver_info"]["redfish_username"] == "admin"
    # patching another key, or sending the mask back, keeps the stored password
    r = server.http.patch("/v1/nodes/s", json=[
        {"op": "replace", "path": "/driver_info", "value": {
            **node["driver_info"], "redfish_address": "http://127.0.0.1:10"}}])
    assert r.status_code == 200
    assert secret not in r.text
    # a BMC that is down: the error is recorded, the password is not in it or in logs
    server.provision("s", "manage")
    failed = server.wait_state("s", "enroll")
    assert "127.0.0.1:10" in failed["last_error"]
    raw = server.service.db.engine.raw_connection()
    try:
        stored = raw.cursor().execute("select driver_info from nodes").fetchone()[0]
    finally:
        raw.close()
    assert secret not in stored and "fernet:" in stored
    task_info = server.conductor.secrets.decrypt_driver_info(json.loads(stored))
    assert task_info["redfish_password"] == secret
    logging.getLogger("probe").info("driver password is %s", secret)
    assert "driver password is ******" in caplog.text
    assert secret not in caplog.text
    for listing in (server.http.get("/v1/nodes/detail").text, server.http.get("/v1/nodes/s").text):
        assert secret not in listing


def test_ports_and_portgroups(server: RunningServer) -> None:
    node = server.create_node(name="pn")
    r = server.http.post("/v1/portgroups", json={"node_uuid": node["uuid"], "name": "bond0",
                                                 "mode": "802.3ad"})
    assert r.status_code == 201, r.text
    pg = r.json()
    r = server.http.post("/v1/ports", json={
        "address": "52:54:00:12:34:56", "node_uuid": node["uuid"],
        "portgroup_uuid": pg["uuid"], "physical_network": "physnet1",
        "local_link_connection": {"switch_id": "aa:bb:cc:dd:ee:ff", "port_id": "tor-p1",
                                  "switch_info": "tor"}})
    assert r.status_code == 201, r.text
    port = r.json()
    assert port["portgroup_uuid"] == pg["uuid"] and port["pxe_enabled"] is True
    assert server.http.get(f"/v1/nodes/{node['uuid']}/ports").json()["ports"][0]["uuid"] \
        == port["uuid"]
    assert server.http.get("/v1/portgroups/bond0/ports").json()["ports"][0]["address"] \
        == "52:54:00:12:34:56"
    by_mac = server.http.get("/v1/ports", params={"address": "52:54:00:12:34:56"}).json()
    assert len(by_mac["ports"]) == 1
    r = server.http.patch(f"/v1/ports/{port['uuid']}", json=[
        {"op": "replace", "path": "/pxe_enabled", "value": False}])
    assert r.status_code == 200 and r.json()["pxe_enabled"] is False
    # bad input: malformed MAC, duplicate MAC, half a local_link_connection, bad mode
    for body, code, fragment in (
        ({"address": "52:54:00:12:34", "node_uuid": node["uuid"]}, 400, "not a valid MAC"),
        ({"address": "52:54:00:12:34:56", "node_uuid": node["uuid"]}, 409, "already exists"),
        ({"address": "52:54:00:12:34:57", "node_uuid": node["uuid"],
          "local_link_connection": {"switch_id": "aa:bb:cc:dd:ee:ff"}}, 400, "port_id"),
        ({"address": "52:54:00:12:34:58", "node_uuid": "missing-node"}, 400, "not a known node"),
    ):
        r = server.http.post("/v1/ports", json=body)
        assert r.status_code == code, (body, r.text)
        assert fragment in error_of(r)
    assert len(server.http.get("/v1/ports").json()["ports"]) == 1
    r = server.http.post("/v1/portgroups", json={"node_uuid": node["uuid"], "mode": "fast"})
    assert r.status_code == 400 and "bonding mode" in error_of(r)
    assert server.http.delete(f"/v1/portgroups/{pg['uuid']}").status_code == 204
    assert server.http.get(f"/v1/ports/{port['uuid']}").json()["portgroup_uuid"] is None
    assert server.http.delete(f"/v1/ports/{port['uuid']}").status_code == 204
    assert server.http.get("/v1/ports").json()["ports"] == []


def test_power_and_boot_device_on_fake(server: RunningServer) -> None:
    server.create_node(name="pw")
    assert server.http.put("/v1/nodes/pw/states/power",
                           json={"target": "power on"}).status_code == 202
    assert server.wait_state("pw", "enroll")["power_state"] == "power on"
    r = server.http.put("/v1/nodes/pw/states/power", json={"target": "sideways"})
    assert r.status_code == 400 and "power on" in error_of(r)
    assert server.http.put("/v1/nodes/pw/management/boot_device",
                           json={"boot_device": "pxe", "persistent": True}).status_code == 204
    assert server.http.get("/v1/nodes/pw/management/boot_device").json() == {
        "boot_device": "pxe", "persistent": True}
    r = server.http.put("/v1/nodes/pw/management/boot_device", json={"boot_device": "floppy"})
    assert r.status_code == 400


def test_unknown_path_uses_error_format(server: RunningServer) -> None:
    r = server.http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert error_of(r)


def test_generated_config_drive_leaves_the_users_instance_info_alone(
        server: RunningServer) -> None:
    """Spec and status apart (issue #16 item 4): the config drive the conductor generates
    lives in driver_internal_info; instance_info stays exactly what the user gave, a
    rebuild regenerates the drive from that, and the API shows no config drive contents."""
    db = server.service.db
    server.create_node(name="cd", instance_info={"image_source": "file:///img"})
    for verb, state in (("manage", "manageable"), ("provide", "available")):
        assert server.provision("cd", verb).status_code == 202
        server.wait_state("cd", state)
    secret = "Cl0ud-Init-Pw"
    user = {"meta_data": {"role": "web"},
            "user_data": f"#cloud-config\npassword: {secret}\n"}
    r = server.http.put("/v1/nodes/cd/states/provision",
                        json={"target": "deploy", "configdrive": user})
    assert r.status_code == 202, r.text
    server.wait_state("cd", "active")
    node = db_api.get_node(db, "cd")
    assert node.instance_info == {"image_source": "file:///img", "configdrive": user}
    drive = node.driver_internal_info["configdrive"]
    assert drive["meta_data"]["role"] == "web"
    assert drive["meta_data"]["hostname"] == "cd"
    assert drive["user_data"] == user["user_data"]
    shown = server.http.get("/v1/nodes/cd")
    assert secret not in shown.text
    assert shown.json()["instance_info"]["configdrive"] == "******"
    assert shown.json()["driver_internal_info"]["configdrive"] == "******"

    # a rebuild starts from the user's input: the generated hostname follows the new name
    # (a drive regenerated from the previous generated one would keep "cd")
    r = server.http.patch("/v1/nodes/cd", json=[{"op": "replace", "path": "/name",
                                                 "value": "cd2"}])
    assert r.status_code == 200, r.text
    assert server.provision("cd2", "rebuild").status_code == 202
    server.wait_state("cd2", "active")
    node = db_api.get_node(db, "cd2")
    assert node.instance_info == {"image_source": "file:///img", "configdrive": user}
    drive = node.driver_internal_info["configdrive"]
    assert drive["meta_data"]["hostname"] == "cd2"
    assert drive["meta_data"]["role"] == "web"

    # tear down: the generated drive goes with the instance
    assert server.provision("cd2", "undeploy").status_code == 202
    server.wait_state("cd2", "available")
    assert "configdrive" not in db_api.get_node(db, "cd2").driver_internal_info
