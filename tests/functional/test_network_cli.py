"""The networking walk-through from the CLI, on a real Open vSwitch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.functional.test_cli import assert_one_line_error, run
from tests.helpers.rack import rack
from tests.helpers.server import running_server

pytestmark = pytest.mark.functional


def test_operator_flow_from_the_cli(tmp_path: Path) -> None:
    with rack() as r, running_server(
            tmp_path / "data", network_vlan_ranges="physnet1:100:199",
            cleaning_network="cleaning", provisioning_network="provisioning",
            default_network_interface="neutron") as server:
        url = server.url
        host = r.add_host("c1", ["10.66.0.1/24"])
        outside = host.nics["eth0"]

        def ok(*args: str) -> str:
            res = run(*args, url=url)
            assert res.returncode == 0, res.stderr
            return res.stdout

        ok("switch", "create", "tor", "--switch-id", "02:00:00:00:00:01", "--address",
           r.ovs.address, "--bridge", "tor", "--physical-network", "physnet1")
        for name, vlan in (("provisioning", "100"), ("cleaning", "101")):
            ok("network", "create", name, "--provider-network-type", "vlan",
               "--provider-physical-network", "physnet1", "--provider-segment", vlan,
               "--shared")
        tenant = json.loads(ok("network", "create", "blue", "--project", "acme", "-o", "json"))
        ok("subnet", "create", "blue-v4", "--network", "blue", "--subnet-range",
           "10.66.0.0/24", "--allocation-pool", "start=10.66.0.10,end=10.66.0.20")
        vif = json.loads(ok("network", "port", "create", "c1-blue", "--network", "blue",
                            "--project", "acme", "-o", "json"))
        assert vif["fixed_ips"][0]["ip_address"] == "10.66.0.10"

        ok("node", "create", "--driver", "fake-hardware", "--name", "c1")
        ok("port", "create", host.macs["eth0"], "--node", "c1", "--local-link-connection",
           "switch_id=02:00:00:00:00:01", "--local-link-connection", f"port_id={outside}")
        ok("node", "manage", "c1", "--wait")
        ok("node", "provide", "c1", "--wait")
        ok("node", "vif", "attach", "c1", vif["id"])
        assert vif["id"] in ok("node", "vif", "list", "c1")
        ok("node", "deploy", "c1", "--wait")

        shown = ok("switch", "show", "tor")
        assert outside in shown and str(tenant["provider:segmentation_id"]) in shown
        assert r.ovs.tag(outside) == tenant["provider:segmentation_id"]
        ports = json.loads(ok("switch", "show", "tor", "-o", "json"))["ports"]
        assert [(p["port_name"], p["vlan"], p["observed_vlan"]) for p in ports] == [
            (outside, tenant["provider:segmentation_id"], tenant["provider:segmentation_id"])]

        r.ovs.vsctl("set", "port", outside, "tag=7")
        assert "DRIFT" in ok("switch", "show", "tor")
        assert "1 port(s) repaired" in ok("switch", "sync")
        assert r.ovs.tag(outside) == tenant["provider:segmentation_id"]

        assert_one_line_error(run("network", "create", "x", "--provider-network-type", "vlan",
                                  "--provider-physical-network", "physnet1",
                                  "--provider-segment", "4000", url=url), "outside")
        assert_one_line_error(run("subnet", "create", "y", "--network", "blue",
                                  "--subnet-range", "10.66.0.0/25", url=url), "overlaps")
        ok("node", "vif", "detach", "c1", vif["id"])
        assert r.ovs.tag(outside) == 4094
