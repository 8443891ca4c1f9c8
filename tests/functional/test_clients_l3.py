"""The field's clients on the L3 API of a real server (a recording mechanism driver as the
datapath): openstacksdk's network proxy, the ``openstack`` CLI, and ``metalplane router`` /
``metalplane floating ip``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.test_cli import assert_one_line_error, run
from tests.functional.test_clients_network import (  # noqa: F401 (fixtures)
    CLI,
    cli,
    network_endpoint,
    pytestmark,
    sdk,
    shown,
)
from tests.helpers.l3 import RecordingL3Driver, enable_l3
from tests.helpers.server import RunningServer


@pytest.fixture
def l3(server: RunningServer) -> RecordingL3Driver:
    return enable_l3(server)


def networks(server: RunningServer) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An external network with a subnet, a tenant subnet and a port on it."""
    def post(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        r = server.http.post(f"/v2.0/{kind}s", json={kind: body})
        assert r.status_code == 201, r.text
        return dict(r.json()[kind])
    pub = post("network", {"name": "public", "router:external": True})
    post("subnet", {"network_id": pub["id"], "cidr": "203.0.113.0/24", "name": "public-v4"})
    net = post("network", {"name": "blue"})
    sub = post("subnet", {"network_id": net["id"], "cidr": "10.5.0.0/24", "name": "blue-v4"})
    vm = post("port", {"network_id": net["id"], "name": "vm"})
    return pub, sub, vm


def test_openstacksdk_routers_and_floating_ips(server: RunningServer, l3: RecordingL3Driver,
                                               sdk: Any) -> None:  # noqa: F811
    pub, sub, vm = networks(server)
    router = sdk.network.create_router(name="sdk-r",
                                       external_gateway_info={"network_id": pub["id"]})
    assert router.external_gateway_info["network_id"] == pub["id"]
    sdk.network.add_interface_to_router(router, subnet=sub["id"])
    state = l3.states[router.id]
    assert [i.ip_address for i in state.interfaces] == ["10.5.0.1"]
    assert state.gateway is not None and state.gateway_next_hop == "203.0.113.1"
    fip = sdk.network.create_ip(floating_network_id=pub["id"])
    assert fip.floating_ip_address == "203.0.113.3" and fip.port_id is None
    sdk.network.update_ip(fip, port_id=vm["id"])
    got = sdk.network.get_ip(fip.id)
    assert (got.port_id, got.fixed_ip_address, got.router_id) == (vm["id"], "10.5.0.2",
                                                                  router.id)
    assert [f.fixed_ip_address for f in l3.states[router.id].floating_ips] == ["10.5.0.2"]
    assert sdk.network.find_ip("203.0.113.3").id == fip.id
    assert [r.name for r in sdk.network.routers()] == ["sdk-r"]
    sdk.network.update_router(router, routes=[{"destination": "172.16.0.0/12",
                                               "nexthop": "10.5.0.254"}])
    assert l3.states[router.id].routes == [{"destination": "172.16.0.0/12",
                                            "nexthop": "10.5.0.254"}]
    sdk.network.update_router(router, routes=[])
    sdk.network.delete_ip(fip)
    sdk.network.remove_interface_from_router(router, subnet=sub["id"])
    assert l3.states[router.id].interfaces == []
    sdk.network.delete_router(router)
    assert l3.deleted == [router.id]


def test_openstack_cli_routers_and_floating_ips(server: RunningServer, l3: RecordingL3Driver,
                                                cli: CLI) -> None:  # noqa: F811
    pub, sub, vm = networks(server)
    router = cli.json("router", "create", "cli-r")
    cli.run("router", "set", "--external-gateway", "public", "cli-r")
    cli.run("router", "add", "subnet", "cli-r", "blue-v4")
    gw = shown(server, "routers", router["id"])["external_gateway_info"]
    assert gw["network_id"] == pub["id"] and gw["enable_snat"] is True
    assert [i.subnet_id for i in l3.states[router["id"]].interfaces] == [sub["id"]]
    fip = cli.json("floating", "ip", "create", "public")
    cli.run("floating", "ip", "set", "--port", vm["id"], fip["floating_ip_address"])
    got = shown(server, "floatingips", fip["id"])
    assert (got["port_id"], got["router_id"]) == (vm["id"], router["id"])
    assert [f.port_id for f in l3.states[router["id"]].floating_ips] == [vm["id"]]
    listed = cli.json("floating", "ip", "list")
    assert [f["Floating IP Address"] for f in listed] == [fip["floating_ip_address"]]
    r = cli.run("router", "delete", "cli-r", ok=False)
    assert r.returncode != 0
    assert shown(server, "routers", router["id"])["name"] == "cli-r"


def test_metalplane_cli_routers_and_floating_ips(server: RunningServer,
                                                 l3: RecordingL3Driver) -> None:
    pub, sub, vm = networks(server)

    def ok(*args: str) -> str:
        res = run(*args, url=server.url)
        assert res.returncode == 0, res.stderr
        return res.stdout

    ok("network", "create", "public2", "--external")
    assert shown(server, "networks", "public2")["router:external"] is True
    router = json.loads(ok("router", "create", "mp-r", "--external-gateway", "public",
                           "-o", "json"))
    assert router["external_gateway_info"]["network_id"] == pub["id"]
    ok("router", "add", "subnet", "mp-r", "blue-v4")
    ok("router", "set", "mp-r", "--disable-snat", "--route",
       "destination=192.168.0.0/16,gateway=10.5.0.9")
    state = l3.states[router["id"]]
    assert state.enable_snat is False and state.routes[0]["nexthop"] == "10.5.0.9"
    assert [i.subnet_id for i in state.interfaces] == [sub["id"]]
    fip = json.loads(ok("floating", "ip", "create", "public", "-o", "json"))
    ok("floating", "ip", "set", fip["floating_ip_address"], "--port", "vm")
    assert [f.port_id for f in l3.states[router["id"]].floating_ips] == [vm["id"]]
    assert fip["floating_ip_address"] in ok("floating", "ip", "list")
    assert "mp-r" in ok("router", "list")
    assert_one_line_error(run("router", "delete", "mp-r", url=server.url),
                          "has ports still attached")
    assert_one_line_error(run("router", "set", "mp-r", url=server.url), "nothing to change")
    ok("floating", "ip", "delete", fip["floating_ip_address"])
    ok("router", "set", "mp-r", "--no-route")
    ok("router", "remove", "subnet", "mp-r", "blue-v4")
    ok("router", "delete", "mp-r")
    assert l3.deleted == [router["id"]]
    for group in (("router",), ("router", "set"), ("router", "add"), ("floating", "ip"),
                  ("floating", "ip", "set")):
        assert ok(*group, "--help").strip()
