"""The field's Networking clients against a real metalplane server: openstacksdk's network
proxy and the ``openstack`` CLI (python-openstackclient), as an operator runs them.

Endpoint forms (openstacksdk 4.x, keystoneauth1 5.x; no Keystone, ``auth_type: none``):

* ``http://HOST:PORT/v2.0`` (or ``/v2.0/``) works for both: as the network endpoint
  override, openstacksdk uses it as it is after keystoneauth's discovery of that URL (which
  ``GET /v2.0`` answers, see ``network_api.v2_root``); the CLI's ``--os-endpoint`` does the
  same.
* ``http://HOST:9696`` (unversioned, as a Neutron catalog entry has it) works on the
  Networking listener (``network_port``), whose ``GET /`` is Neutron's version document;
  on the Bare Metal port the same form would discover ``/v1``. Both working forms are
  tested: the fixture is parametrized.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import openstack.exceptions
import pytest

from metalplane.api.auth import hash_password
from tests.helpers.server import RunningServer, running_server

# openstacksdk 4.x warns about its own internals (InfluxDB defaults, _compute_attributes)
pytestmark = [pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:openstack")]
OPENSTACK = str(Path(sys.executable).with_name("openstack"))


@pytest.fixture(params=["network-listener", "v2.0-on-api-port"])
def network_endpoint(server: RunningServer, request: pytest.FixtureRequest) -> str:
    """The Networking API endpoint the clients are given: Neutron's own listener, as a
    clouds.yaml for a real Neutron names it, or ``/v2.0`` on the Bare Metal port."""
    if request.param == "network-listener":
        return server.network_url
    return f"{server.url}/v2.0"


@pytest.fixture
def sdk(network_endpoint: str) -> Iterator[openstack.connection.Connection]:
    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": network_endpoint},
        network_endpoint_override=network_endpoint)
    yield conn
    conn.close()


class CLI:
    """``openstack ...`` against ``endpoint``, with no clouds.yaml or OS_* of the caller."""

    def __init__(self, endpoint: str, home: Path) -> None:
        self.endpoint = endpoint
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        self.env.update(HOME=str(home), OS_CLIENT_CONFIG_FILE=str(home / "none.yaml"))
        (home / "none.yaml").write_text("clouds: {}\n")

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([OPENSTACK, "--os-auth-type", "none", "--os-endpoint",
                            self.endpoint, *args], capture_output=True, text=True,
                           timeout=120, env=self.env, check=False)
        if ok:
            assert r.returncode == 0, f"{args}: {r.stderr[-2000:]}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-f", "json").stdout)


@pytest.fixture
def cli(network_endpoint: str, tmp_path: Path) -> CLI:
    home = tmp_path / "home"
    home.mkdir()
    return CLI(network_endpoint, home)


def shown(server: RunningServer, collection: str, ident: str) -> dict[str, Any]:
    r = server.http.get(f"/v2.0/{collection}/{ident}")
    assert r.status_code == 200, r.text
    return dict(next(iter(r.json().values())))


def gone(server: RunningServer, collection: str, ident: str) -> bool:
    return server.http.get(f"/v2.0/{collection}/{ident}").status_code == 404


def test_openstacksdk_network_proxy(server: RunningServer, sdk: Any) -> None:
    net = sdk.network.create_network(name="sdk-net", mtu=1400, is_shared=False)
    assert shown(server, "networks", net.id)["mtu"] == 1400
    sdk.network.update_network(net, name="sdk-net2", is_shared=True)
    assert (shown(server, "networks", net.id)["name"],
            shown(server, "networks", net.id)["shared"]) == ("sdk-net2", True)
    assert [n.name for n in sdk.network.networks(is_shared=True)] == ["sdk-net2"]
    assert list(sdk.network.networks(is_shared=False)) == []
    assert sdk.network.find_network("sdk-net2").id == net.id

    sub = sdk.network.create_subnet(network_id=net.id, cidr="10.30.0.0/24", ip_version=4,
                                    name="sdk-sub")
    sdk.network.update_subnet(sub, name="sdk-sub2", dns_nameservers=["10.30.0.53"],
                              is_dhcp_enabled=False)
    got = shown(server, "subnets", sub.id)
    assert (got["name"], got["dns_nameservers"], got["enable_dhcp"]) == \
        ("sdk-sub2", ["10.30.0.53"], False)
    assert sdk.network.get_subnet(sub.id).name == "sdk-sub2"

    port = sdk.network.create_port(network_id=net.id, name="sdk-port",
                                   fixed_ips=[{"ip_address": "10.30.0.9"}],
                                   extra_dhcp_opts=[{"opt_name": "bootfile-name",
                                                     "opt_value": "ipxe.efi"}])
    assert port.fixed_ips[0]["ip_address"] == "10.30.0.9"
    sdk.network.update_port(port, name="sdk-port2", binding_vnic_type="baremetal")
    got = shown(server, "ports", port.id)
    assert (got["name"], got["binding:vnic_type"]) == ("sdk-port2", "baremetal")
    assert [p.id for p in sdk.network.ports(network_id=net.id)] == [port.id]

    sg = sdk.network.create_security_group(name="sdk-sg", description="d")
    sdk.network.update_security_group(sg, name="sdk-sg2")
    assert shown(server, "security-groups", sg.id)["name"] == "sdk-sg2"
    rule = sdk.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", protocol="tcp", port_range_min=22,
        port_range_max=22, ether_type="IPv4")
    assert sdk.network.get_security_group_rule(rule.id).port_range_min == 22
    assert {e.alias for e in sdk.network.extensions()} >= {"binding", "provider"}
    assert sdk.network.find_extension("port-security") is None

    sdk.network.delete_security_group_rule(rule)
    sdk.network.delete_security_group(sg)
    sdk.network.delete_port(port)
    sdk.network.delete_subnet(sub)
    sdk.network.delete_network(net)
    assert all(gone(server, c, i) for c, i in (
        ("security-group-rules", rule.id), ("security-groups", sg.id), ("ports", port.id),
        ("subnets", sub.id), ("networks", net.id)))


def test_openstack_cli_networks_subnets_ports(server: RunningServer, cli: CLI) -> None:
    net = cli.json("network", "create", "--mtu", "1400", "cli-net")
    cli.run("network", "set", "--name", "cli-net2", "--description", "lab", "--share",
            net["id"])
    got = shown(server, "networks", net["id"])
    assert (got["name"], got["description"], got["shared"], got["mtu"]) == \
        ("cli-net2", "lab", True, 1400)
    assert [n["Name"] for n in cli.json("network", "list")] == ["cli-net2"]
    assert cli.json("network", "show", "cli-net2")["id"] == net["id"]

    sub = cli.json("subnet", "create", "--network", "cli-net2", "--subnet-range",
                   "10.40.0.0/24", "--allocation-pool", "start=10.40.0.5,end=10.40.0.200",
                   "cli-sub")
    assert sub["gateway_ip"] == "10.40.0.1"
    cli.run("subnet", "set", "--name", "cli-sub2", "--dns-nameserver", "10.40.0.53",
            "--no-dhcp", "--gateway", "10.40.0.254", sub["id"])
    got = shown(server, "subnets", sub["id"])
    assert (got["name"], got["dns_nameservers"], got["enable_dhcp"], got["gateway_ip"]) == \
        ("cli-sub2", ["10.40.0.53"], False, "10.40.0.254")
    r = cli.run("subnet", "set", "--gateway", "10.40.0.100", sub["id"], ok=False)
    assert r.returncode == 1 and "inside allocation pool" in r.stderr  # Neutron refuses too
    assert [s["Name"] for s in cli.json("subnet", "list")] == ["cli-sub2"]

    port = cli.json("port", "create", "--network", "cli-net2", "--fixed-ip",
                    "subnet=cli-sub2,ip-address=10.40.0.7", "--vnic-type", "baremetal",
                    "--extra-dhcp-option", "name=bootfile-name,value=ipxe.efi", "cli-port")
    got = shown(server, "ports", port["id"])
    assert got["fixed_ips"][0]["ip_address"] == "10.40.0.7"
    assert got["binding:vnic_type"] == "baremetal"
    assert got["extra_dhcp_opts"][0]["opt_value"] == "ipxe.efi"
    cli.run("port", "set", "--name", "cli-port2", "--description", "bmc", port["id"])
    got = shown(server, "ports", port["id"])
    assert (got["name"], got["description"]) == ("cli-port2", "bmc")
    assert [p["ID"] for p in cli.json("port", "list", "--network", "cli-net2")] == \
        [port["id"]]
    assert cli.json("port", "show", "cli-port2")["mac_address"] == got["mac_address"]

    cli.run("port", "delete", port["id"])
    cli.run("subnet", "delete", sub["id"])
    cli.run("network", "delete", net["id"])
    assert all(gone(server, c, i) for c, i in (
        ("ports", port["id"]), ("subnets", sub["id"]), ("networks", net["id"])))


def test_openstack_cli_security_groups(server: RunningServer, cli: CLI) -> None:
    sg = cli.json("security", "group", "create", "--description", "d", "cli-sg")
    cli.run("security", "group", "set", "--name", "cli-sg2", "--description", "e", sg["id"])
    got = shown(server, "security-groups", sg["id"])
    assert (got["name"], got["description"]) == ("cli-sg2", "e")
    assert [g["Name"] for g in cli.json("security", "group", "list")] == ["cli-sg2"]
    rule = cli.json("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                    "--dst-port", "22:22", "--remote-ip", "10.0.0.0/8", "cli-sg2")
    got = shown(server, "security-group-rules", rule["id"])
    assert (got["direction"], got["protocol"], got["port_range_min"],
            got["remote_ip_prefix"]) == ("ingress", "tcp", 22, "10.0.0.0/8")
    assert cli.json("security", "group", "rule", "show", rule["id"])["port_range_max"] == 22
    assert rule["id"] in [r["ID"] for r in cli.json("security", "group", "rule", "list")]
    cli.run("security", "group", "rule", "delete", rule["id"])
    assert gone(server, "security-group-rules", rule["id"])
    cli.run("security", "group", "delete", sg["id"])
    assert gone(server, "security-groups", sg["id"])


def test_http_basic_with_the_clients_own_auth_type(tmp_path: Path) -> None:
    """The CLI's and openstacksdk's ``http_basic`` against the Networking listener: the
    right password lists networks, a wrong one is refused (401) before anything is read."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "htpasswd").write_text(f"ops:{hash_password('s3cret')}\n")
    with running_server(data, auth_strategy="http_basic") as srv:
        srv.http.auth = ("ops", "s3cret")
        srv.http.post("/v2.0/networks", json={"network": {"name": "basic-net"}})
        home = tmp_path / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(HOME=str(home), OS_CLIENT_CONFIG_FILE=str(home / "none.yaml"))
        (home / "none.yaml").write_text("clouds: {}\n")

        def openstack_cli(password: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [OPENSTACK, "--os-auth-type", "http_basic", "--os-username", "ops",
                 "--os-password", password, "--os-endpoint", srv.network_url,
                 "network", "list", "-f", "json"],
                capture_output=True, text=True, timeout=120, env=env, check=False)

        good = openstack_cli("s3cret")
        assert good.returncode == 0, good.stderr[-2000:]
        assert [n["Name"] for n in json.loads(good.stdout)] == ["basic-net"]
        bad = openstack_cli("wrong")
        assert bad.returncode != 0 and "401" in bad.stderr, bad.stderr[-2000:]

        conn = openstack.connection.Connection(
            auth_type="http_basic", auth={"username": "ops", "password": "s3cret"},
            network_endpoint_override=srv.network_url)
        try:
            assert [n.name for n in conn.network.networks()] == ["basic-net"]
        finally:
            conn.close()
        wrong = openstack.connection.Connection(
            auth_type="http_basic", auth={"username": "ops", "password": "nope"},
            network_endpoint_override=srv.network_url)
        try:
            with pytest.raises(openstack.exceptions.HttpException) as err:
                list(wrong.network.networks())
            assert err.value.status_code == 401
        finally:
            wrong.close()
