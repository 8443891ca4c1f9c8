"""Neutron's L3 API (routers, floating IPs, router:external) on a real server, with a
recording mechanism driver as the datapath: what each change hands the drivers
(:class:`RouterState`), Neutron's shapes, and Neutron's errors for bad requests."""

from __future__ import annotations

from typing import Any

import pytest

from metalplane.common.exceptions import MetalplaneError
from tests.functional.test_network_api import err, make
from tests.helpers.l3 import RecordingL3Driver, enable_l3
from tests.helpers.server import RunningServer


@pytest.fixture
def l3(server: RunningServer) -> RecordingL3Driver:
    return enable_l3(server)


def put(server: RunningServer, path: str, body: dict[str, Any]) -> Any:
    return server.http.put(f"/v2.0/{path}", json=body)


def external(server: RunningServer, cidr: str = "203.0.113.0/24") -> tuple[Any, Any]:
    net = make(server, "network", {"name": "public", "router:external": True})
    return net, make(server, "subnet", {"network_id": net["id"], "cidr": cidr})


def internal(server: RunningServer, name: str, cidr: str) -> tuple[Any, Any]:
    net = make(server, "network", {"name": name, "project_id": "acme"})
    return net, make(server, "subnet", {"network_id": net["id"], "cidr": cidr})


def add_interface(server: RunningServer, router: str, code: int = 200, **body: str) -> Any:
    r = put(server, f"routers/{router}/add_router_interface", body)
    assert r.status_code == code, r.text
    return r.json() if code == 200 else r


def test_without_an_l3_driver_routers_and_floating_ips_are_not_served(
        server: RunningServer) -> None:
    for path in ("/v2.0/routers", "/v2.0/floatingips", "/v2.0/routers/x",
                 "/v2.0/floatingips/x"):
        r = server.http.get(path)
        assert r.status_code == 404 and "NeutronError" in r.json(), (path, r.text)
    r = server.http.post("/v2.0/routers", json={"not": "a router"})
    assert r.status_code == 404  # not a 400: the resource does not exist at all
    r = server.http.put("/v2.0/routers/x/add_router_interface", json={"subnet_id": "s"})
    assert r.status_code == 404
    aliases = {e["alias"] for e in server.http.get("/v2.0/extensions").json()["extensions"]}
    assert "external-net" in aliases and not aliases & {"router", "ext-gw-mode", "extraroute"}
    assert server.http.get("/v2.0/extensions/router").status_code == 404
    collections = {r["collection"] for r in server.http.get("/v2.0").json()["resources"]}
    assert "routers" not in collections
    # router:external is the network's, L3 or not: set, shown, filtered, changed
    net = make(server, "network", {"name": "ext", "router:external": True})
    other = make(server, "network", {"name": "plain"})
    assert net["router:external"] is True and other["router:external"] is False
    listed = server.http.get("/v2.0/networks", params={"router:external": "true"}).json()
    assert [n["id"] for n in listed["networks"]] == [net["id"]]
    r = put(server, f"networks/{other['id']}", {"network": {"router:external": "yes"}})
    assert r.status_code == 200 and r.json()["network"]["router:external"] is True
    r = server.http.get("/v2.0/networks", params={"router:external": "maybe"})
    assert r.status_code == 400 and "router:external" in err(r)


def test_extensions_and_resources_are_listed_once_l3_is_on(
        server: RunningServer, l3: RecordingL3Driver) -> None:
    aliases = {e["alias"] for e in server.http.get("/v2.0/extensions").json()["extensions"]}
    assert {"router", "ext-gw-mode", "extraroute", "external-net"} <= aliases
    assert server.http.get("/v2.0/extensions/extraroute").json()["extension"]["name"] == \
        "Neutron Extra Route"
    collections = {r["collection"] for r in server.http.get("/v2.0").json()["resources"]}
    assert {"routers", "floatingips"} <= collections


def test_a_router_its_gateway_interfaces_routes_and_floating_ips_reach_the_driver(
        server: RunningServer, l3: RecordingL3Driver) -> None:
    pub, pub_sub = external(server)
    net, sub = internal(server, "blue", "10.0.0.0/24")
    router = make(server, "router", {"name": "r1", "project_id": "acme",
                                     "external_gateway_info": {"network_id": pub["id"]}})
    gw = router["external_gateway_info"]
    assert gw["network_id"] == pub["id"] and gw["enable_snat"] is True
    assert gw["external_fixed_ips"] == [{"subnet_id": pub_sub["id"],
                                         "ip_address": "203.0.113.2"}]
    assert (router["routes"], router["status"], router["tenant_id"]) == ([], "ACTIVE", "acme")
    state = l3.states[router["id"]]
    assert state.gateway is not None and state.gateway.ip_address == "203.0.113.2"
    assert (state.gateway.cidr, state.gateway_next_hop, state.enable_snat) == \
        ("203.0.113.0/24", "203.0.113.1", True)
    assert state.interfaces == [] and state.floating_ips == []

    info = add_interface(server, router["id"], subnet_id=sub["id"])
    assert set(info) == {"id", "tenant_id", "project_id", "port_id", "subnet_id",
                         "subnet_ids", "network_id"}
    assert (info["id"], info["subnet_id"], info["subnet_ids"], info["network_id"],
            info["project_id"]) == (router["id"], sub["id"], [sub["id"]], net["id"], "acme")
    iport = server.http.get(f"/v2.0/ports/{info['port_id']}").json()["port"]
    assert (iport["device_owner"], iport["device_id"]) == ("network:router_interface",
                                                           router["id"])
    assert iport["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.1"}]
    [iface] = l3.states[router["id"]].interfaces
    assert (iface.port_id, iface.mac_address, iface.ip_address, iface.cidr,
            iface.network_id, iface.subnet_id) == (
        iport["id"], iport["mac_address"], "10.0.0.1", "10.0.0.0/24", net["id"], sub["id"])
    gwport = server.http.get("/v2.0/ports", params={
        "device_owner": "network:router_gateway"}).json()["ports"]
    assert [(p["device_id"], p["network_id"]) for p in gwport] == [(router["id"], pub["id"])]

    # a floating IP on the port of a server behind the router
    vm = make(server, "port", {"network_id": net["id"], "project_id": "acme"})
    fip = make(server, "floatingip", {"floating_network_id": pub["id"], "project_id": "acme",
                                      "port_id": vm["id"]})
    assert (fip["floating_ip_address"], fip["fixed_ip_address"], fip["port_id"],
            fip["router_id"], fip["status"]) == ("203.0.113.3", "10.0.0.2", vm["id"],
                                                 router["id"], "ACTIVE")
    [realised] = l3.states[router["id"]].floating_ips
    assert (realised.id, realised.floating_ip_address, realised.fixed_ip_address,
            realised.port_id, realised.port_mac) == (fip["id"], "203.0.113.3", "10.0.0.2",
                                                     vm["id"], vm["mac_address"])
    fport = server.http.get("/v2.0/ports", params={"device_id": fip["id"]}).json()["ports"]
    assert [(p["device_owner"], p["project_id"]) for p in fport] == [("network:floatingip", "")]

    # routes and SNAT
    r = put(server, f"routers/{router['id']}", {"router": {"routes": [
        {"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}],
        "external_gateway_info": {"network_id": pub["id"], "enable_snat": False}}})
    assert r.status_code == 200, r.text
    got = r.json()["router"]
    assert got["routes"] == [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]
    assert got["external_gateway_info"]["enable_snat"] is False
    assert got["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == \
        "203.0.113.2"  # the same network: the same gateway port
    state = l3.states[router["id"]]
    assert state.routes == got["routes"] and state.enable_snat is False
    r = put(server, f"routers/{router['id']}", {"router": {"name": "r2",
                                                           "admin_state_up": False}})
    assert r.json()["router"]["name"] == "r2" and l3.states[router["id"]].name == "r2"
    assert l3.states[router["id"]].admin_state_up is False

    # what the router and the floating IP hold cannot go from under them
    r = server.http.delete(f"/v2.0/ports/{iport['id']}")
    assert r.status_code == 409
    assert err(r) == (f"Port {iport['id']} cannot be deleted directly via the port API: has "
                      "device owner network:router_interface.")
    r = server.http.delete(f"/v2.0/ports/{fport[0]['id']}")
    assert r.status_code == 409 and "network:floatingip" in err(r)
    assert server.http.delete(f"/v2.0/subnets/{sub['id']}").status_code == 409
    assert server.http.delete(f"/v2.0/networks/{net['id']}").status_code == 409
    r = server.http.delete(f"/v2.0/routers/{router['id']}")
    assert r.status_code == 409 and "has ports still attached" in err(r)
    r = put(server, f"routers/{router['id']}", {"router": {"external_gateway_info": {}}})
    assert r.status_code == 409 and "required by one or more floating IPs" in err(r)
    r = put(server, f"routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]})
    assert r.status_code == 409 and "required by one or more floating IPs" in err(r)
    r = put(server, f"networks/{pub['id']}", {"network": {"router:external": False}})
    assert r.status_code == 409 and "existing gateway ports" in err(r)

    # disassociate; associate again; the port goes: the floating IP stays, disassociated
    r = put(server, f"floatingips/{fip['id']}", {"floatingip": {"port_id": None}})
    assert r.status_code == 200, r.text
    assert (r.json()["floatingip"]["port_id"], r.json()["floatingip"]["router_id"],
            r.json()["floatingip"]["status"]) == (None, None, "DOWN")
    assert l3.states[router["id"]].floating_ips == []
    r = put(server, f"floatingips/{fip['id']}", {"floatingip": {"port_id": vm["id"]}})
    assert r.status_code == 200 and len(l3.states[router["id"]].floating_ips) == 1
    assert server.http.delete(f"/v2.0/ports/{vm['id']}").status_code == 204
    left = server.http.get(f"/v2.0/floatingips/{fip['id']}").json()["floatingip"]
    assert (left["port_id"], left["fixed_ip_address"], left["router_id"]) == (None, None, None)
    assert l3.states[router["id"]].floating_ips == []

    # the route's nexthop holds the interface; then it all comes apart
    r = put(server, f"routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]})
    assert r.status_code == 409 and "required by one or more routes" in err(r)
    assert put(server, f"routers/{router['id']}", {"router": {"routes": []}}).status_code == 200
    r = put(server, f"routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]})
    assert r.status_code == 200 and r.json()["port_id"] == iport["id"]
    assert server.http.get(f"/v2.0/ports/{iport['id']}").status_code == 404
    assert l3.states[router["id"]].interfaces == []
    assert server.http.delete(f"/v2.0/floatingips/{fip['id']}").status_code == 204
    assert server.http.get(f"/v2.0/ports/{fport[0]['id']}").status_code == 404
    r = put(server, f"routers/{router['id']}", {"router": {"external_gateway_info": None}})
    assert r.status_code == 200 and r.json()["router"]["external_gateway_info"] is None
    assert l3.states[router["id"]].gateway is None
    assert server.http.delete(f"/v2.0/routers/{router['id']}").status_code == 204
    assert l3.deleted == [router["id"]] and router["id"] not in l3.states
    assert server.http.get(f"/v2.0/routers/{router['id']}").status_code == 404
    assert server.http.delete(f"/v2.0/networks/{pub['id']}").status_code == 204


def test_an_interface_by_port_and_the_router_the_floating_ip_goes_through(
        server: RunningServer, l3: RecordingL3Driver) -> None:
    pub, _ = external(server)
    net, sub = internal(server, "green", "10.1.0.0/24")
    # one router reaches the external network, another sits on the subnet without a gateway
    lonely = make(server, "router", {"name": "lonely"})
    edge = make(server, "router", {"name": "edge",
                                   "external_gateway_info": {"network_id": "public"}})
    vm = make(server, "port", {"network_id": net["id"]})
    add_interface(server, lonely["id"], subnet_id=sub["id"])
    r = make(server, "floatingip", {"floating_network_id": pub["id"], "port_id": vm["id"]},
             code=404)
    assert err(r) == (f"External network {pub['id']} is not reachable from subnet "
                      f"{sub['id']}. Therefore, cannot associate Port {vm['id']} with a "
                      "Floating IP.")
    assert server.http.get("/v2.0/floatingips").json()["floatingips"] == []  # nothing kept
    leg = make(server, "port", {"network_id": net["id"],
                                "fixed_ips": [{"ip_address": "10.1.0.200"}]})
    info = add_interface(server, edge["id"], port_id=leg["id"])
    assert (info["port_id"], info["subnet_ids"]) == (leg["id"], [sub["id"]])
    assert [i.ip_address for i in l3.states[edge["id"]].interfaces] == ["10.1.0.200"]
    fip = make(server, "floatingip", {"floating_network_id": pub["id"], "port_id": vm["id"],
                                      "fixed_ip_address": "10.1.0.3"}, code=400)
    assert "does not have fixed ip 10.1.0.3" in err(fip)
    fip = make(server, "floatingip", {"floating_network_id": pub["id"], "port_id": vm["id"]})
    assert fip["router_id"] == edge["id"]
    assert [f.id for f in l3.states[edge["id"]].floating_ips] == [fip["id"]]
    # one floating IP per fixed IP
    again = make(server, "floatingip", {"floating_network_id": pub["id"]})
    r = put(server, f"floatingips/{again['id']}", {"floatingip": {"port_id": vm["id"]}})
    assert r.status_code == 409 and "already has a floating IP" in err(r)
    # a port already on a device cannot become an interface; nor a subnet twice
    busy = make(server, "port", {"network_id": net["id"], "device_id": "some-server"})
    r = add_interface(server, edge["id"], code=409, port_id=busy["id"])
    assert "Port already has an attached device some-server" in err(r)
    r = add_interface(server, edge["id"], code=400, subnet_id=sub["id"])
    assert err(r) == f"Bad router request: Router already has a port on subnet {sub['id']}."
    r = put(server, f"routers/{edge['id']}/remove_router_interface", {"port_id": leg["id"],
                                                                      "subnet_id": "nope"})
    assert r.status_code == 404  # the subnet named does not exist
    r = put(server, f"routers/{edge['id']}/remove_router_interface", {"port_id": vm["id"]})
    assert r.status_code == 404 and "does not have an interface with id" in err(r)


def test_bad_requests_name_the_field_and_never_fail_the_server(
        server: RunningServer, l3: RecordingL3Driver) -> None:
    pub, pub_sub = external(server)
    plain = make(server, "network", {"name": "plain"})
    _, sub = internal(server, "red", "10.2.0.0/24")
    nogw = make(server, "subnet", {"network_id": make(server, "network", {"name": "x"})["id"],
                                   "cidr": "10.3.0.0/24", "gateway_ip": None})
    overlap = make(server, "subnet", {"network_id": make(server, "network", {"name": "y"})["id"],
                                      "cidr": "10.2.0.0/25"})
    router = make(server, "router", {"name": "r"})
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("post", "routers", {"router": {"external_gateway_info": {"network_id": plain["id"]}}},
         400, f"Network {plain['id']} is not an external network"),
        ("post", "routers", {"router": {"external_gateway_info": {"network_id": "nope"}}},
         404, "Network nope could not be found"),
        ("post", "routers", {"router": {"external_gateway_info": {"enable_snat": False}}},
         400, "external_gateway_info/network_id"),
        ("post", "routers", {"router": {"routes": []}}, 400, "'routes'"),
        ("post", "routers", {"router": {"name": "r", "colour": "blue"}}, 400, "'colour'"),
        ("post", "routers", {"router": {"admin_state_up": "perhaps"}}, 400, "admin_state_up"),
        ("post", "routers", {"router": {"external_gateway_info": {
            "network_id": pub["id"], "external_fixed_ips": [{"ip_address": "198.51.100.9"}]}}},
         400, "198.51.100.9"),
        ("post", "routers", {"router": {"external_gateway_info": {
            "network_id": pub["id"], "external_fixed_ips": [{"ip_address": "203.0.113.1"}]}}},
         400, "gateway"),
        ("put", f"routers/{router['id']}", {"router": {"routes": [
            {"destination": "0.0.0.0/0", "nexthop": "10.9.9.9"}]}},
         400, "the nexthop is not connected with router"),
        ("put", f"routers/{router['id']}", {"router": {"routes": [
            {"destination": "nonsense", "nexthop": "10.9.9.9"}]}}, 400, "routes/destination"),
        ("put", f"routers/{router['id']}", {"router": {"routes": [{"destination": "1.0.0.0/8"}]}},
         400, "nexthop"),
        ("put", f"routers/{router['id']}", {"router": {"status": "DOWN"}}, 400, "'status'"),
        ("put", "routers/nope", {"router": {"name": "x"}}, 404, "Router nope could not be found"),
        ("put", f"routers/{router['id']}/add_router_interface", {}, 400,
         "Either subnet_id or port_id must be specified"),
        ("put", f"routers/{router['id']}/add_router_interface",
         {"subnet_id": sub["id"], "port_id": "p"}, 400, "Cannot specify both"),
        ("put", f"routers/{router['id']}/add_router_interface", {"subnet_id": nogw["id"]},
         400, "Subnet for router interface must have a gateway IP"),
        ("put", f"routers/{router['id']}/add_router_interface", {"subnet_id": "nope"},
         404, "Subnet nope could not be found"),
        ("put", f"routers/{router['id']}/add_router_interface", {"port": "x"},
         400, "'port'"),
        ("put", f"routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]},
         404, f"has no interface on subnet {sub['id']}"),
        ("post", "floatingips", {"floatingip": {}}, 400, "'floating_network_id'"),
        ("post", "floatingips", {"floatingip": {"floating_network_id": plain["id"]}}, 400,
         f"Network {plain['id']} is not a valid external network"),
        ("post", "floatingips", {"floatingip": {"floating_network_id": "nope"}}, 404,
         "Network nope could not be found"),
        ("post", "floatingips", {"floatingip": {"floating_network_id": pub["id"],
                                                "floating_ip_address": "203.0.113.300"}},
         400, "203.0.113.300"),
        ("post", "floatingips", {"floatingip": {"floating_network_id": pub["id"],
                                                "fixed_ip_address": "10.2.0.5"}},
         400, "fixed_ip_address cannot be specified without a port_id"),
        ("post", "floatingips", {"floatingip": {"floating_network_id": pub["id"],
                                                "port_id": "nope"}},
         404, "Port nope could not be found"),
        ("post", "floatingips", {"floatingip": {"floating_network_id": pub["id"],
                                                "router_id": router["id"]}},
         400, "'router_id'"),
        ("put", "floatingips/nope", {"floatingip": {"port_id": None}}, 404,
         "Floating IP nope could not be found"),
    ]
    for method, path, body, code, fragment in cases:
        r = server.http.request(method, f"/v2.0/{path}", json=body)
        assert r.status_code == code, (path, body, r.text)
        assert fragment in err(r), (path, body, err(r))
    # the overlap check sees the interfaces; a router's own address is no nexthop
    add_interface(server, router["id"], subnet_id=sub["id"])
    r = add_interface(server, router["id"], code=400, subnet_id=overlap["id"])
    assert "overlaps with cidr 10.2.0.0/24" in err(r)
    r = put(server, f"routers/{router['id']}", {"router": {"routes": [
        {"destination": "0.0.0.0/0", "nexthop": "10.2.0.1"}]}})
    assert r.status_code == 400 and "the nexthop is used by router" in err(r)
    # a floating IP for a port owned by the network, and an address taken twice
    iport = server.http.get("/v2.0/ports", params={"device_id": router["id"]}).json()["ports"]
    fip = make(server, "floatingip", {"floating_network_id": pub["id"]})
    r = put(server, f"floatingips/{fip['id']}", {"floatingip": {"port_id": iport[0]["id"]}})
    assert r.status_code == 400 and "is unable to be assigned a floating IP" in err(r)
    r = make(server, "floatingip", {"floating_network_id": pub["id"],
                                    "floating_ip_address": fip["floating_ip_address"]},
             code=409)
    assert "already allocated" in err(r)
    r = make(server, "floatingip", {"floating_network_id": pub["id"], "subnet_id": sub["id"]},
             code=400)
    assert f"subnet {sub['id']} is not on network" in err(r)
    assert pub_sub["gateway_ip"] == "203.0.113.1"


def test_a_driver_error_is_the_answer_and_the_change_stays(
        server: RunningServer, l3: RecordingL3Driver) -> None:
    external(server)
    l3.fail = MetalplaneError("OVN northbound database unreachable")
    l3.fail.code = 503
    r = server.http.post("/v2.0/routers", json={"router": {
        "name": "r", "external_gateway_info": {"network_id": "public"}}})
    assert r.status_code == 503 and "unreachable" in err(r)
    [router] = server.http.get("/v2.0/routers").json()["routers"]
    assert router["name"] == "r" and router["external_gateway_info"] is not None
    r = server.http.delete(f"/v2.0/routers/{router['id']}")
    assert r.status_code == 503
    assert server.http.get("/v2.0/routers").json()["routers"] == []
    l3.fail = None


def test_fields_and_filters(server: RunningServer, l3: RecordingL3Driver) -> None:
    pub, _ = external(server)
    a = make(server, "router", {"name": "a", "project_id": "p1"})
    make(server, "router", {"name": "b", "project_id": "p2", "admin_state_up": False})
    r = server.http.get("/v2.0/routers", params={"tenant_id": "p1"}).json()["routers"]
    assert [x["id"] for x in r] == [a["id"]]
    r = server.http.get("/v2.0/routers", params={"admin_state_up": "false"}).json()
    assert [x["name"] for x in r["routers"]] == ["b"]
    r = server.http.get("/v2.0/routers", params=[("fields", "id"), ("fields", "name")])
    assert r.json()["routers"] == [{"id": a["id"], "name": "a"}, {"id": r.json()[
        "routers"][1]["id"], "name": "b"}]
    r = server.http.get(f"/v2.0/routers/{a['id']}", params={"fields": "name,routes"})
    assert r.json() == {"router": {"name": "a", "routes": []}}
    f1 = make(server, "floatingip", {"floating_network_id": pub["id"]})
    make(server, "floatingip", {"floating_network_id": pub["id"]})
    r = server.http.get("/v2.0/floatingips", params={
        "floating_ip_address": f1["floating_ip_address"], "fields": "id"})
    assert r.json() == {"floatingips": [{"id": f1["id"]}]}
    r = server.http.get("/v2.0/floatingips", params={"status": "DOWN"}).json()
    assert len(r["floatingips"]) == 2
