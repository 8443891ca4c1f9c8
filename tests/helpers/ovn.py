"""A private OVN beside the test rack: NB/SB databases and ovn-northd in a temporary run
directory, and a gateway chassis (ovn-controller) on the rack's Open vSwitch whose provider
bridge is trunked to the top-of-rack bridge, as a gateway node's uplink is cabled to the
ToR. Everything is removed on exit, even after a failure."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metalplane.lab.ovn import Central, Chassis, patch
from metalplane.lab.rack import Switch, add_nic, run
from tests.helpers.rack import Host, Rack, rack


@dataclass
class OvnRack:
    rack: Rack
    central: Central
    gateway: Chassis

    def add_workload(self, name: str, port_id: str, mac: str) -> Host:
        """A namespace plugged into the gateway chassis' integration bridge, its interface
        ``external_ids:iface-id`` = ``port_id`` (what ovn-controller binds), with ``mac``:
        a VM or a pod as OVN sees one."""
        ns = f"{self.rack.prefix}-{name}"
        run("ip", "netns", "add", ns)
        outside = f"{self.rack.prefix}{name}0"
        host = Host(ns=ns, nics={"eth0": outside}, macs={"eth0": mac})
        self.rack.hosts[name] = host
        integration = Switch(self.rack.ovs.rundir, self.gateway.integration_bridge)
        add_nic(integration, ns, "eth0", outside, None)
        run("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        self.rack.ovs.vsctl("set", "interface", outside, f"external_ids:iface-id={port_id}")
        return host

    def nb_rows(self, table: str) -> list[dict[str, Any]]:
        """Rows of an NB table as ovn-nbctl prints them (JSON, OVSDB's encoding)."""
        out = json.loads(self.central.nbctl("--format=json", "list", table))
        return [dict(zip(out["headings"], row, strict=True)) for row in out["data"]]


def ovsdb_map(value: Any) -> dict[str, Any]:
    """An OVSDB map as ovn-nbctl's JSON prints it: ``["map", [[k, v], ...]]``."""
    return dict(value[1])


def ovsdb_set(value: Any) -> list[Any]:
    """An OVSDB set (``["set", [...]]``, or a single value) as a list."""
    if isinstance(value, list) and value and value[0] == "set":
        return list(value[1])
    return [value]


@contextlib.contextmanager
def ovn_rack(bridge: str = "tor") -> Iterator[OvnRack]:
    if shutil.which("ovn-northd") is None:
        pytest.skip("OVN is not installed: run scripts/setup.sh")
    with rack(bridge) as r:
        central = Central(Path(tempfile.mkdtemp(prefix="mp-ovn-")))
        gw = Chassis(r.ovs, f"gw-{r.prefix}", central, integration_bridge=f"{r.prefix}int",
                     bridge_mappings={"physnet1": f"{r.prefix}ex"}, gateway=True)
        try:
            central.start()
            gw.start()
            patch(r.ovs, bridge, f"{r.prefix}ex")
            yield OvnRack(r, central, gw)
        finally:
            gw.stop()
            central.stop()
