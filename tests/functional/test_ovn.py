"""OVN as the network's control plane, with real OVN (Debian's ovn-central and ovn-host) and
real traffic.

A private OVN (NB/SB ovsdb-servers, ovn-northd) runs beside the test rack, and a gateway
chassis (ovn-controller) on the rack's Open vSwitch has ``physnet1`` mapped to a provider
bridge trunked to the top-of-rack bridge. metalplane's server runs with the ``ovn`` backend:
the switch driver sets the nodes' VLANs on the ToR, the OVN driver writes the NB database,
and OVN's native DHCP answers the nodes through the localnet ports.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalplane.lab.rack import dhclient_once, reaches, run
from tests.functional.test_networking import (
    CLEAN_VLAN,
    PROV_VLAN,
    SWITCH_ID,
    attach,
    drive,
    enroll,
    register_tor_and_provider_networks,
    switch_port,
    tenant_network,
    wait_for,
)
from tests.helpers.ovn import (
    OvnRack,
    ovn_rack,
    ovsdb_map,
    ovsdb_set,
    second_chassis,
    tunnel_interface,
    tunnel_packets,
    tunnel_remotes,
)
from tests.helpers.rack import Host
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional

IPXE_URL = "http://10.66.0.254:8080/boot/n.ipxe"
PXE_OPTS = [{"opt_name": "tag:ipxe,bootfile-name", "opt_value": IPXE_URL},
            {"opt_name": "tag:!ipxe,bootfile-name", "opt_value": "undionly.kpxe"},
            {"opt_name": "tftp-server", "opt_value": "10.66.0.254"}]


@contextlib.contextmanager
def ovn_networked(tmp_path: Path, **overrides: Any) -> Iterator[tuple[RunningServer, OvnRack]]:
    """The rack, OVN, a server with the ovn backend, the ToR registered, and the
    provisioning and cleaning networks (VLANs 100 and 101, subnet 10.66.0.0/24 each)."""
    with ovn_rack() as o:
        o.rack.add_host("prov", ["10.66.0.254/24"], tag=PROV_VLAN)
        settings: dict[str, Any] = dict(
            network_vlan_ranges="physnet1:100:199", cleaning_network="cleaning",
            provisioning_network="provisioning", default_network_interface="neutron",
            fake_delays={"deploy": 1.5}, network_backend="ovn",
            ovn_nb_connection=o.central.nb, ovn_gateway_chassis=o.gateway.name)
        settings.update(overrides)
        with running_server(tmp_path / "data", **settings) as server:
            register_tor_and_provider_networks(server, o.rack)
            yield server, o


@pytest.fixture
def olab(tmp_path: Path) -> Iterator[tuple[RunningServer, OvnRack]]:
    with ovn_networked(tmp_path) as pair:
        yield pair


def net_id(server: RunningServer, name: str) -> str:
    return str(server.http.get(f"/v2.0/networks?name={name}").json()["networks"][0]["id"])


def lsps(o: OvnRack) -> dict[str, dict[str, Any]]:
    """Logical switch ports by name, each with the name of its switch as ``_switch`` (two
    reads: a port that comes between them is left out)."""
    ports = {row["_uuid"][1]: row for row in o.nb_rows("Logical_Switch_Port")}
    out = {}
    for ls in o.nb_rows("Logical_Switch"):
        for ref in ovsdb_set(ls["ports"]):
            row = ports.get(ref[1])
            if row is not None:
                out[row["name"]] = {**row, "_switch": ls["name"]}
    return out


def lsp_of_mac(o: OvnRack, mac: str) -> dict[str, Any] | None:
    return next((p for p in lsps(o).values()
                 if any(str(a).startswith(mac) for a in ovsdb_set(p["addresses"]))), None)


def test_nb_follows_the_lifecycle(olab: tuple[RunningServer, OvnRack]) -> None:
    server, o = olab
    prov, clean = net_id(server, "provisioning"), net_id(server, "cleaning")
    switches = {ls["name"]: ls for ls in o.nb_rows("Logical_Switch")}
    assert {f"neutron-{prov}", f"neutron-{clean}"} <= set(switches)
    localnets = {p["_switch"]: p for p in lsps(o).values() if p["type"] == "localnet"}
    assert ovsdb_set(localnets[f"neutron-{prov}"]["tag"]) == [PROV_VLAN]
    assert ovsdb_map(localnets[f"neutron-{clean}"]["options"]) == {"network_name": "physnet1"}
    subnets = {ovsdb_map(d["external_ids"])["subnet_id"]: d for d in o.nb_rows("DHCP_Options")}
    assert {d["cidr"] for d in subnets.values()} == {"10.66.0.0/24"}
    assert ovsdb_map(next(iter(subnets.values()))["options"])["router"] == "10.66.0.1"
    groups = o.nb_rows("HA_Chassis_Group")
    assert [g["name"] for g in groups] == ["default_ha_chassis_group"]

    node = enroll(server, o.rack, "n1", "10.66.0.1/24")
    mac = o.rack.hosts["n1"].macs["eth0"]
    drive(server, ["n1"], "manage", "manageable")
    assert server.provision("n1", "provide").status_code == 202
    # cleaning: an external port on the cleaning network, with DHCP options
    wait_for(lambda: (p := lsp_of_mac(o, mac)) is not None and p["type"] == "external")
    lsp = lsp_of_mac(o, mac)
    assert lsp is not None and lsp["_switch"] == f"neutron-{clean}"
    assert ovsdb_set(lsp["dhcpv4_options"]) and ovsdb_set(lsp["ha_chassis_group"])
    assert o.rack.ovs.tag(switch_port(o.rack, "n1")) == CLEAN_VLAN
    server.wait_state("n1", "available")
    assert lsp_of_mac(o, mac) is None  # off the cleaning network: no LSP, no DHCP answer

    net_a = tenant_network(server, "tenant-a")
    vif = attach(server, "n1", net_a["id"])
    tenant_lsp = lsps(o)[vif]
    assert tenant_lsp["type"] == "" and tenant_lsp["_switch"] == f"neutron-{net_a['id']}"
    drive(server, ["n1"], "deploy", "active")
    tenant_lsp = lsps(o)[vif]
    assert tenant_lsp["type"] == "external"
    assert lsp_of_mac(o, mac) == tenant_lsp or lsp_of_mac(o, mac)["name"] == vif
    assert o.rack.ovs.tag(switch_port(o.rack, "n1")) == net_a["provider:segmentation_id"]

    assert server.provision("n1", "undeploy").status_code == 202
    server.wait_state("n1", "available")
    assert lsps(o)[vif]["type"] == ""  # unbound: no chassis answers for it
    assert server.http.delete(f"/v1/nodes/{node['uuid']}/vifs/{vif}").status_code == 204
    assert server.http.delete(f"/v2.0/ports/{vif}").status_code == 204
    assert vif not in lsps(o)
    assert server.http.delete(f"/v2.0/networks/{net_a['id']}").status_code == 204
    assert f"neutron-{net_a['id']}" not in {ls["name"] for ls in o.nb_rows("Logical_Switch")}
    assert len(o.nb_rows("DHCP_Options")) == 2


def test_pxe_and_ipxe_answers_come_from_ovn(olab: tuple[RunningServer, OvnRack],
                                            tmp_path: Path) -> None:
    server, o = olab
    host = o.rack.add_host("pxe", [])
    outside = host.nics["eth0"]
    r = server.http.post("/v2.0/ports", json={"port": {
        "network_id": net_id(server, "provisioning"), "mac_address": host.macs["eth0"],
        "binding:vnic_type": "baremetal", "binding:host_id": "node-pxe",
        "binding:profile": {"local_link_information": [
            {"switch_id": SWITCH_ID, "port_id": outside, "switch_info": "tor"}]},
        "extra_dhcp_opts": PXE_OPTS}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]
    assert port["binding:vif_type"] == "other", port
    address = port["fixed_ips"][0]["ip_address"]
    assert o.rack.ovs.tag(outside) == PROV_VLAN

    firmware = dhclient_once(host.ns, tmp_path, "fw", ipxe=False, timeout=10)
    assert f"fixed-address {address};" in firmware, firmware
    assert 'bootfile-name "undionly.kpxe"' in firmware
    assert 'tftp-server-name "10.66.0.254"' in firmware
    assert "dhcp-server-identifier 10.66.0.1;" in firmware  # OVN, not a dnsmasq
    ipxe = dhclient_once(host.ns, tmp_path, "ipxe", ipxe=True, timeout=10)
    assert f'bootfile-name "{IPXE_URL}"' in ipxe, ipxe

    # unbound (the node left the provisioning network): nobody answers
    r = server.http.put(f"/v2.0/ports/{port['id']}", json={"port": {"binding:host_id": ""}})
    assert r.status_code == 200, r.text
    assert dhclient_once(host.ns, tmp_path, "gone", timeout=3) == ""
    assert not list((Path(server.service.settings.data_dir) / "dhcp").glob("*/hosts/*"))


def test_drift_is_found_and_repaired(olab: tuple[RunningServer, OvnRack]) -> None:
    server, o = olab
    prov = net_id(server, "provisioning")
    r = server.http.post("/v2.0/ports", json={"port": {"network_id": prov,
                                                       "extra_dhcp_opts": PXE_OPTS}})
    assert r.status_code == 201, r.text
    port = r.json()["port"]["id"]
    assert server.http.post("/v1/network/sync", json={"mode": "log"}).json()[
        "differences"] == []

    o.central.nbctl("lsp-del", port)
    o.central.nbctl("ls-add", "neutron-00000000-0000-0000-0000-00000000dead")
    subnet_dhcp = next(d for d in o.nb_rows("DHCP_Options")
                       if "port_id" not in ovsdb_map(d["external_ids"]))
    o.central.nbctl("dhcp-options-set-options", subnet_dhcp["_uuid"][1], "lease_time=5")

    logged = server.http.post("/v1/network/sync", json={"mode": "log"}).json()["differences"]
    assert any(port in line and "missing" in line for line in logged), logged
    assert any("stale logical switch neutron-00000000" in line for line in logged), logged
    assert any("DHCP options of subnet" in line and "differ" in line for line in logged)
    assert port not in lsps(o)  # log mode repairs nothing

    repaired = server.http.post("/v1/network/sync", json={}).json()
    assert repaired["mode"] == "repair" and len(repaired["differences"]) == len(logged)
    assert lsps(o)[port]["_switch"] == f"neutron-{prov}"
    assert ovsdb_set(lsps(o)[port]["dhcpv4_options"])
    assert "neutron-00000000-0000-0000-0000-00000000dead" not in {
        ls["name"] for ls in o.nb_rows("Logical_Switch")}
    assert server.http.post("/v1/network/sync", json={"mode": "log"}).json()[
        "differences"] == []
    bad = server.http.post("/v1/network/sync", json={"mode": "fix"})
    assert bad.status_code == 400 and "mode" in bad.text


def bindings_consistent(server: RunningServer, o: OvnRack) -> list[str]:
    """Ports whose record, OVN row and switch port disagree: a bound bare-metal port is an
    external LSP and its switch port is on its network's VLAN; an unbound one is neither."""
    problems = []
    nb = lsps(o)
    tags = o.rack.ovs.tags()
    vlans = {n["id"]: n["provider:segmentation_id"]
             for n in server.http.get("/v2.0/networks").json()["networks"]}
    for p in server.http.get("/v2.0/ports").json()["ports"]:
        bound = p["binding:vif_type"] == "other"
        lsp = nb.get(p["id"])
        links = (p["binding:profile"] or {}).get("local_link_information") or []
        if lsp is None:
            problems.append(f"{p['id']}: no LSP")
        elif (lsp["type"] == "external") != bound:
            problems.append(f"{p['id']}: bound={bound} but LSP type {lsp['type']!r}")
        for link in links if bound else []:
            if tags.get(link["port_id"]) != vlans[p["network_id"]]:
                problems.append(f"{p['id']}: switch port {link['port_id']} on VLAN "
                                f"{tags.get(link['port_id'])}")
    return problems


@pytest.mark.parametrize(("restart", "outage", "nb_timeout"),
                         [("nb", 1.0, 10.0), ("nb", 5.0, 2.0), ("northd", 5.0, 10.0)])
def test_ovn_restarted_in_the_middle_of_a_deploy(tmp_path: Path, restart: str,
                                                 outage: float, nb_timeout: float) -> None:
    """The NB database (or northd) goes away while the node is on the provisioning network
    and comes back ``outage`` seconds later. Changes wait for the NB database up to
    ovn_nb_timeout (10 s, the default; 2 s for the long outage): a short outage is ridden
    out (the IDL's reconnection backs off up to 8 s) and the deploy completes; one longer
    than the timeout fails the deploy, cleanly. Either way every port's record, OVN row and switch
    port agree, and OVN answers again afterwards."""
    with ovn_networked(tmp_path, fake_delays={"deploy": 2},
                       ovn_nb_timeout=nb_timeout) as (server, o):
        enroll(server, o.rack, "n1", "10.66.0.1/24")
        drive(server, ["n1"], "manage", "manageable")
        drive(server, ["n1"], "provide", "available")
        net_a = tenant_network(server, "tenant-a")
        vif = attach(server, "n1", net_a["id"])
        assert server.provision("n1", "deploy").status_code == 202
        wait_for(lambda: o.rack.ovs.tag(switch_port(o.rack, "n1")) == PROV_VLAN)
        o.central.stop_process(restart)
        time.sleep(outage)
        o.central.start_db(restart) if restart == "nb" else o.central.start_northd()
        node = server.wait_state("n1", {"active", "deploy failed"}, timeout=90)
        if restart == "nb" and outage > nb_timeout:
            assert node["provision_state"] == "deploy failed"
            assert "OVN's Northbound database" in node["last_error"], node["last_error"]
        else:
            assert node["provision_state"] == "active", node["last_error"]
            assert lsps(o)[vif]["type"] == "external"
            # OVN answers the node on its tenant network, once northd (whose reconnection
            # to a restarted database backs off up to 8 s) and the chassis have caught up
            run("ovn-nbctl", f"--db={o.central.nb}", "--wait=hv", "--timeout=60", "sync",
                timeout=70)
            lease = dhclient_once(o.rack.hosts["n1"].ns, tmp_path, "after", timeout=10)
            assert "fixed-address 10.66.0.2;" in lease, lease
        assert bindings_consistent(server, o) == []


class Http:
    """``python3 -m http.server`` in a namespace; its log names each client's address."""

    def __init__(self, ns: str, workdir: Path, port: int = 8000) -> None:
        self.log = workdir / f"http-{ns}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", str(port),
                 "--directory", str(workdir)], stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)

    def clients(self) -> list[str]:
        return [line.split()[0] for line in self.log.read_text().splitlines()
                if '"GET /' in line]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def fetch(ns: str, url: str) -> bool:
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null",
                        "--max-time", "3", url], capture_output=True, timeout=20)
    return r.returncode == 0


def take_lease(o: OvnRack, host: str, workdir: Path) -> str:
    """Ask OVN's DHCP for ``host``'s address and configure it with the default route; the
    address."""
    lease = dhclient_once(o.rack.hosts[host].ns, workdir, host, timeout=10)
    fields = dict(line.strip().rstrip(";").removeprefix("option ").split(" ", 1)
                  for line in lease.splitlines()
                  if line.strip().startswith(("fixed-address", "option routers")))
    assert "fixed-address" in fields, lease
    ns = o.rack.hosts[host].ns
    subprocess.run(["ip", "-n", ns, "addr", "flush", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{fields['fixed-address']}/24", "dev",
                    "eth0"], check=True)
    subprocess.run(["ip", "-n", ns, "route", "add", "default", "via",
                    fields["routers"]], check=True)
    return fields["fixed-address"]


def test_router_snat_floating_ip_and_security_group_with_traffic(
        olab: tuple[RunningServer, OvnRack], tmp_path: Path) -> None:
    """A bare-metal node on a VLAN tenant network reaches an outside host through an OVN
    router with SNAT (the outside sees the router's address, not the node's); a floating
    IP brings the outside to the node (DNAT), the node seeing the outside's own address; a
    security group on the node's port becomes a port group with ACLs in OVN, and its rules
    (ICMP only) hold for the routed traffic: on the ToR switch port, since an external
    port's traffic crosses OVN through the localnet port, not the port's own pipeline (so
    OVN's ACLs of the port do not see it; see docs/networking.md)."""
    server, o = olab
    out = o.rack.add_host("outside", ["172.24.4.1/24"], tag=150)
    public = public_network(server, dhcp=False)
    net_a = tenant_network(server, "tenant-a")
    sub_a = server.http.get(f"/v2.0/subnets?network_id={net_a['id']}").json()["subnets"][0]
    router = server.http.post("/v2.0/routers", json={"router": {
        "name": "r1", "external_gateway_info": {"network_id": public}}}).json()["router"]
    gw_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    r = server.http.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                        json={"subnet_id": sub_a["id"]})
    assert r.status_code == 200, r.text

    lr = next(x for x in o.nb_rows("Logical_Router") if x["name"] == f"neutron-{router['id']}")
    nat = {(n["type"], n["external_ip"], n["logical_ip"]) for n in o.nb_rows("NAT")}
    assert ("snat", gw_ip, sub_a["cidr"]) in nat
    assert len(ovsdb_set(lr["ports"])) == 2
    lrps = {p["name"]: p for p in o.nb_rows("Logical_Router_Port")}
    inside = next(p for p in lrps.values()
                  if ovsdb_set(p["networks"]) == [f"{sub_a['gateway_ip']}/24"])
    assert ovsdb_map(inside["options"]) == {"reside-on-redirect-chassis": "true"}

    host, port = bare_metal_host(server, o, net_a["id"])
    assert port["binding:vif_type"] == "other"
    node_ip = take_lease(o, "bm", tmp_path)
    assert node_ip == port["fixed_ips"][0]["ip_address"]

    web_out, web_node = Http(out.ns, tmp_path), Http(host.ns, tmp_path)
    try:
        assert wait_until(lambda: fetch(host.ns, "http://172.24.4.1:8000/"))
        assert web_out.clients()[-1] == gw_ip  # SNAT: the router's address, not the node's
        assert not fetch(out.ns, f"http://{node_ip}:8000/")  # no route in without a FIP

        fip = server.http.post("/v2.0/floatingips", json={"floatingip": {
            "floating_network_id": public, "port_id": port["id"]}})
        assert fip.status_code == 201, fip.text
        fip_ip = fip.json()["floatingip"]["floating_ip_address"]
        assert ("dnat_and_snat", fip_ip, node_ip) in {
            (n["type"], n["external_ip"], n["logical_ip"]) for n in o.nb_rows("NAT")}
        assert wait_until(lambda: fetch(out.ns, f"http://{fip_ip}:8000/"))
        assert web_node.clients()[-1] == "172.24.4.1"  # DNAT: the outside's own address
        assert wait_until(lambda: fetch(host.ns, "http://172.24.4.1:8000/"))
        assert web_out.clients()[-1] == fip_ip  # with a FIP the node leaves as its FIP

        # a security group that lets in ICMP only
        sg = icmp_only_group(server, port["id"])
        pg = next(g for g in o.nb_rows("Port_Group") if g["name"] == "pg_" + sg["id"].replace(
            "-", "_"))
        assert [lsps(o)[port["id"]]["_uuid"]] == ovsdb_set(pg["ports"])
        matches = {a["match"] for a in o.nb_rows("ACL")}
        assert f"outport == @{pg['name']} && ip4 && icmp4" in matches
        assert "outport == @neutron_pg_drop && ip" in matches
        assert wait_until(lambda: not fetch(out.ns, f"http://{fip_ip}:8000/"))
        assert reaches(out.ns, fip_ip)  # ICMP is let in
        # egress allowed, replies related (tracked by the ToR ACL and by OVN's SNAT, each
        # in zones of its own: a shared zone once made SNAT skip the connection)
        assert wait_until(lambda: fetch(host.ns, "http://172.24.4.1:8000/"))
        r = server.http.put(f"/v2.0/ports/{port['id']}", json={"port": {"security_groups": []}})
        assert r.status_code == 200, r.text
        assert wait_until(lambda: fetch(out.ns, f"http://{fip_ip}:8000/"))

        assert server.http.delete(f"/v2.0/floatingips/{fip.json()['floatingip']['id']}"
                                  ).status_code == 204
        assert wait_until(lambda: not fetch(out.ns, f"http://{fip_ip}:8000/"))
    finally:
        web_out.stop()
        web_node.stop()
    r = server.http.put(f"/v2.0/routers/{router['id']}/remove_router_interface",
                        json={"subnet_id": sub_a["id"]})
    assert r.status_code == 200, r.text
    assert server.http.put(f"/v2.0/routers/{router['id']}", json={"router": {
        "external_gateway_info": {}}}).status_code == 200
    assert server.http.delete(f"/v2.0/routers/{router['id']}").status_code == 204
    assert not o.nb_rows("Logical_Router") and not o.nb_rows("NAT")
    assert not [p for p in lsps(o).values() if p["type"] == "router"]
    assert server.http.post("/v1/network/sync", json={"mode": "log"}).json()[
        "differences"] == []


def overlay_network(server: RunningServer) -> tuple[dict[str, Any], dict[str, Any]]:
    """A geneve network "overlay" of project p1 with subnet 10.77.0.0/24."""
    r = server.http.post("/v2.0/networks", json={"network": {
        "name": "overlay", "project_id": "p1", "provider:network_type": "geneve"}})
    assert r.status_code == 201, r.text
    overlay = dict(r.json()["network"])
    r = server.http.post("/v2.0/subnets", json={"subnet": {
        "network_id": overlay["id"], "cidr": "10.77.0.0/24", "project_id": "p1"}})
    assert r.status_code == 201, r.text
    return overlay, dict(r.json()["subnet"])


def public_network(server: RunningServer, dhcp: bool) -> str:
    """An external VLAN network "public" (VLAN 150, 172.24.4.0/24, gateway .1, pool
    .10-.99) for routers' gateways and floating IPs; its id."""
    r = server.http.post("/v2.0/networks", json={"network": {
        "name": "public", "router:external": True, "provider:network_type": "vlan",
        "provider:physical_network": "physnet1", "provider:segmentation_id": 150}})
    assert r.status_code == 201, r.text
    public = str(r.json()["network"]["id"])
    r = server.http.post("/v2.0/subnets", json={"subnet": {
        "network_id": public, "cidr": "172.24.4.0/24", "gateway_ip": "172.24.4.1",
        "enable_dhcp": dhcp,
        "allocation_pools": [{"start": "172.24.4.10", "end": "172.24.4.99"}]}})
    assert r.status_code == 201, r.text
    return public


def bare_metal_host(server: RunningServer, o: OvnRack, network_id: str
                    ) -> tuple[Host, dict[str, Any]]:
    """A namespace "bm" on the ToR and a bare-metal port of project p1 on ``network_id``
    bound to its switch port (its MAC, ``binding:host_id`` node-bm)."""
    host = o.rack.add_host("bm", [])
    r = server.http.post("/v2.0/ports", json={"port": {
        "network_id": network_id, "mac_address": host.macs["eth0"], "project_id": "p1",
        "binding:vnic_type": "baremetal", "binding:host_id": "node-bm",
        "binding:profile": {"local_link_information": [
            {"switch_id": SWITCH_ID, "port_id": host.nics["eth0"], "switch_info": "tor"}]}}})
    assert r.status_code == 201, r.text
    return host, dict(r.json()["port"])


def icmp_only_group(server: RunningServer, port_id: str) -> dict[str, Any]:
    """A security group of project p1 letting in ICMP and out anything, put on ``port_id``."""
    sg: dict[str, Any] = server.http.post("/v2.0/security-groups", json={"security_group": {
        "name": "icmp-only", "project_id": "p1"}}).json()["security_group"]
    for rule in ({"direction": "ingress", "protocol": "icmp"}, {"direction": "egress"}):
        r = server.http.post("/v2.0/security-group-rules", json={"security_group_rule": {
            "security_group_id": sg["id"], "ethertype": "IPv4", **rule}})
        assert r.status_code == 201, r.text
    r = server.http.put(f"/v2.0/ports/{port_id}", json={"port": {"security_groups": [sg["id"]]}})
    assert r.status_code == 200, r.text
    return sg


def wait_until(predicate: Any, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_overlay_workload_reaches_bare_metal_through_a_router(
        olab: tuple[RunningServer, OvnRack], tmp_path: Path) -> None:
    """The hybrid case: a geneve tenant network with a port bound on the chassis to a
    namespace (a VM or a pod stand-in: a veth on br-int with ``iface-id``) reaches a
    bare-metal node on a VLAN tenant network through an OVN router; both take their
    addresses from OVN's DHCP. A security group on the workload's port (an ordinary
    logical switch port) is enforced by OVN's ACLs: ICMP in, TCP not."""
    server, o = olab
    net_a = tenant_network(server, "tenant-a")
    sub_a = server.http.get(f"/v2.0/subnets?network_id={net_a['id']}").json()["subnets"][0]
    overlay, sub_o = overlay_network(server)
    assert overlay["provider:network_type"] == "geneve"
    router = server.http.post("/v2.0/routers", json={"router": {"name": "r"}}).json()["router"]
    for sub in (sub_a, sub_o):
        r = server.http.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                            json={"subnet_id": sub["id"]})
        assert r.status_code == 200, r.text
    assert not [p for p in lsps(o).values()
                if p["_switch"] == f"neutron-{overlay['id']}" and p["type"] == "localnet"]

    bm, _port = bare_metal_host(server, o, net_a["id"])
    bm_ip = take_lease(o, "bm", tmp_path)

    # the workload: a namespace plugged into the chassis' integration bridge
    r = server.http.post("/v2.0/ports", json={"port": {
        "network_id": overlay["id"], "project_id": "p1",
        "binding:host_id": o.gateway.name}})
    assert r.status_code == 201, r.text
    wport = r.json()["port"]
    assert wport["binding:vif_type"] == "ovs", wport
    pod = o.add_workload("pod", wport["id"], wport["mac_address"])
    pod_ip = take_lease(o, "pod", tmp_path)
    assert pod_ip == wport["fixed_ips"][0]["ip_address"]
    assert wait_until(lambda: o.central.sbctl(  # claimed by the chassis
        "--bare", "--columns=up", "find", "Port_Binding", f"logical_port={wport['id']}"
    ) == "true")

    web_bm, web_pod = Http(bm.ns, tmp_path), Http(pod.ns, tmp_path)
    try:
        assert wait_until(lambda: fetch(pod.ns, f"http://{bm_ip}:8000/"))
        assert web_bm.clients()[-1] == pod_ip  # routed, not NATed
        assert wait_until(lambda: fetch(bm.ns, f"http://{pod_ip}:8000/"))

        icmp_only_group(server, wport["id"])
        assert wait_until(lambda: not fetch(bm.ns, f"http://{pod_ip}:8000/"))
        assert reaches(bm.ns, pod_ip)
        assert wait_until(lambda: fetch(pod.ns, f"http://{bm_ip}:8000/"))  # its egress
    finally:
        web_bm.stop()
        web_pod.stop()


def test_overlay_across_two_chassis(olab: tuple[RunningServer, OvnRack],
                                    tmp_path: Path) -> None:
    """The hybrid case across two chassis: a workload bound on chassis-2 (its own
    ovsdb-server, ovs-vswitchd and ovn-controller in a namespace of its own, no physical
    network) to a port of a geneve network takes its address from OVN's DHCP and reaches a
    bare-metal node on a VLAN network served by the gateway chassis, through an OVN router:
    the traffic crosses geneve between the two userspace datapaths (tnl_push / tnl_pop
    over a veth underlay; docs/networking.md, "Overlays on this machine").

    The node is on the router's gateway network: chassis-2 hands what it routes there to
    the distributed gateway port, on the gateway chassis, through the tunnel (where SNAT
    applies). A node on a VLAN network that is one of the router's interfaces is out of
    reach from a chassis without that physical network: OVN 23.03 routes on chassis-2 and
    sends the packet to the network's localnet port there, which has no bridge (the
    datapath drops it; reside-on-redirect-chassis concerns packets from the VLAN side)."""
    server, o = olab
    public = public_network(server, dhcp=True)
    overlay, overlay_subnet = overlay_network(server)
    router = server.http.post("/v2.0/routers", json={"router": {
        "name": "r", "project_id": "p1", "external_gateway_info": {"network_id": public}}}
    ).json()["router"]
    gw_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    r = server.http.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                        json={"subnet_id": overlay_subnet["id"]})
    assert r.status_code == 200, r.text

    bm = o.rack.add_host("bm", [])
    r = server.http.post("/v2.0/ports", json={"port": {
        "network_id": public, "mac_address": bm.macs["eth0"],
        "binding:vnic_type": "baremetal", "binding:host_id": "node-bm",
        "binding:profile": {"local_link_information": [
            {"switch_id": SWITCH_ID, "port_id": bm.nics["eth0"], "switch_info": "tor"}]}}})
    assert r.status_code == 201, r.text
    bm_ip = take_lease(o, "bm", tmp_path)  # from OVN's DHCP, on the gateway chassis

    with second_chassis(o) as c2:
        assert sorted(o.central.chassis_names()) == sorted([o.gateway.name, c2.name])
        encaps = o.central.sbctl("--bare", "--columns=ip", "list", "Encap").split()
        assert sorted(encaps) == sorted([o.gateway.encap_ip, c2.encap_ip])
        # ovn-controller made a tunnel port on each side, pointing at the other
        assert wait_until(lambda: tunnel_remotes(o.gateway) == [c2.encap_ip])
        assert wait_until(lambda: tunnel_remotes(c2) == [o.gateway.encap_ip])

        r = server.http.post("/v2.0/ports", json={"port": {
            "network_id": overlay["id"], "project_id": "p1", "binding:host_id": c2.name}})
        assert r.status_code == 201, r.text
        wport = r.json()["port"]
        assert wport["binding:vif_type"] == "ovs", wport
        pod = o.add_workload("pod", wport["id"], wport["mac_address"], chassis=c2)
        pod_ip = take_lease(o, "pod", tmp_path)  # answered by chassis-2's ovn-controller
        assert pod_ip == wport["fixed_ips"][0]["ip_address"]
        c2_uuid = o.central.sbctl("--bare", "--columns=_uuid", "find", "Chassis",
                                  f"name={c2.name}")
        assert wait_until(lambda: o.central.sbctl(  # claimed by chassis-2
            "--bare", "--columns=chassis,up", "find", "Port_Binding",
            f"logical_port={wport['id']}").split() == [c2_uuid, "true"])

        before = tunnel_packets(c2)
        web_bm = Http(bm.ns, tmp_path)
        try:
            assert reaches(pod.ns, bm_ip)
            assert wait_until(lambda: fetch(pod.ns, f"http://{bm_ip}:8000/"))
            assert web_bm.clients()[-1] == gw_ip  # SNAT on the gateway chassis
        finally:
            web_bm.stop()
        # the ping, the TCP handshake, request and answer: both ways through the tunnel (the
        # userspace datapath adds a cached flow's packets to the port's counters when it
        # revalidates the flow, up to a second or so later)
        def crossed() -> bool:
            after = tunnel_packets(c2)
            return after[0] - before[0] >= 4 and after[1] - before[1] >= 4
        assert wait_until(crossed, timeout=10), (tunnel_interface(c2), before,
                                                 tunnel_packets(c2))


def test_overlay_workload_on_a_compute_chassis_reaches_a_vlan_tenant_network(
        olab: tuple[RunningServer, OvnRack], tmp_path: Path) -> None:
    """The hybrid case as a cloud cables it: chassis-2 is a compute node with the physical
    network too (``physnet1`` bridged to the ToR, ``ovn-chassis-mac-mappings``). A workload
    on a geneve network there reaches a bare-metal node on a VLAN tenant network (one of the
    router's interfaces) through the OVN router: chassis-2 routes and sends onto the VLAN
    itself; the node's replies are routed on the gateway chassis and come back by geneve."""
    server, o = olab
    net_a = tenant_network(server, "tenant-a")
    sub_a = server.http.get(f"/v2.0/subnets?network_id={net_a['id']}").json()["subnets"][0]
    overlay, overlay_subnet = overlay_network(server)
    router = server.http.post("/v2.0/routers", json={"router": {"name": "r"}}).json()["router"]
    for sub in (sub_a["id"], overlay_subnet["id"]):
        assert server.http.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                               json={"subnet_id": sub}).status_code == 200
    bm, _port = bare_metal_host(server, o, net_a["id"])
    bm_ip = take_lease(o, "bm", tmp_path)

    with second_chassis(o, physnet=True) as c2:
        r = server.http.post("/v2.0/ports", json={"port": {
            "network_id": overlay["id"], "project_id": "p1", "binding:host_id": c2.name}})
        assert r.status_code == 201, r.text
        wport = r.json()["port"]
        pod = o.add_workload("pod", wport["id"], wport["mac_address"], chassis=c2)
        pod_ip = take_lease(o, "pod", tmp_path)
        web_bm = Http(bm.ns, tmp_path)
        try:
            assert wait_until(lambda: reaches(pod.ns, bm_ip, tries=1))
            assert wait_until(lambda: fetch(pod.ns, f"http://{bm_ip}:8000/"))
            assert web_bm.clients()[-1] == pod_ip  # routed, not NATed
        finally:
            web_bm.stop()
