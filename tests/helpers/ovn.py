"""A private OVN beside the test rack: NB/SB databases and ovn-northd in a temporary run
directory, and a gateway chassis (ovn-controller) on the rack's Open vSwitch whose provider
bridge is trunked to the top-of-rack bridge, as a gateway node's uplink is cabled to the
ToR. :func:`second_chassis` adds a chassis in a network namespace of its own, joined to the
gateway chassis by geneve over a veth underlay. Everything is removed on exit, even after a
failure."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metalplane.lab.ovn import Central, Chassis, patch, tunnel_endpoint
from metalplane.lab.rack import Switch, add_nic, netns_exec, remove_prefixed, run
from tests.helpers.rack import Host, Rack, rack


@dataclass
class OvnRack:
    rack: Rack
    central: Central
    gateway: Chassis

    def add_workload(self, name: str, port_id: str, mac: str,
                     chassis: Chassis | None = None) -> Host:
        """A namespace plugged into the integration bridge of ``chassis`` (the gateway
        chassis by default), its interface ``external_ids:iface-id`` = ``port_id`` (what
        ovn-controller binds), with ``mac``: a VM or a pod as OVN sees one."""
        chassis = chassis or self.gateway
        ns = f"{self.rack.prefix}-{name}"
        run("ip", "netns", "add", ns)
        outside = f"{self.rack.prefix}{name}0"
        host = Host(ns=ns, nics={"eth0": outside}, macs={"eth0": mac})
        self.rack.hosts[name] = host
        switch = chassis.switch
        integration = Switch(switch.rundir, chassis.integration_bridge, switch.netns)
        if switch.netns is None:
            add_nic(integration, ns, "eth0", outside, None)
        else:  # the outer end in the chassis' namespace, where its datapath reads it
            run("ip", "link", "add", outside, "netns", switch.netns, "type", "veth", "peer",
                "name", "eth0", "netns", ns)
            switch.ip("link", "set", outside, "up")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run(*netns_exec(ns, "ethtool", "-K", "eth0", "tx", "off"), check=False)
            run(*netns_exec(switch.netns, "ethtool", "-K", outside, "tx", "off"), check=False)
            switch.vsctl("--may-exist", "add-port", chassis.integration_bridge, outside)
        run("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        switch.vsctl("set", "interface", outside, f"external_ids:iface-id={port_id}")
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


def tunnel_interface(chassis: Chassis) -> str:
    """The name of ``chassis``' (first) geneve tunnel port, which ovn-controller made."""
    names = chassis.switch.vsctl("--bare", "--columns=name", "find", "interface",
                                 "type=geneve").split()
    assert names, f"no tunnel port on {chassis.name}"
    return names[0]


def tunnel_remotes(chassis: Chassis) -> list[str]:
    """The remote addresses of ``chassis``' geneve tunnel ports."""
    out = chassis.switch.vsctl("--bare", "--columns=options", "find", "interface",
                               "type=geneve")
    return sorted(item.split("=", 1)[1].strip('"') for item in out.split()
                  if item.startswith("remote_ip="))


def tunnel_packets(chassis: Chassis) -> tuple[int, int]:
    """(rx, tx) packets of ``chassis``' tunnel port, read live from its datapath over
    OpenFlow (the Interface table's statistics lag by up to 5 s)."""
    out = run("ovs-ofctl", "dump-ports",
              f"unix:{chassis.switch.rundir / (chassis.integration_bridge + '.mgmt')}",
              tunnel_interface(chassis))
    rx = out.split("rx pkts=", 1)[1].split(",", 1)[0]
    tx = out.split("tx pkts=", 1)[1].split(",", 1)[0]
    return int(rx), int(tx)


def _free_underlay() -> str:
    """A 10.251.N /24 (its first three octets) that no route of this namespace covers."""
    used = {r.get("dst", "") for r in json.loads(run("ip", "-j", "-4", "route", "show"))}
    for _ in range(50):
        net = f"10.251.{random.randint(1, 254)}"
        if f"{net}.0/24" not in used:
            return net
    raise AssertionError("no free 10.251.N.0/24 for the underlay")


@contextlib.contextmanager
def second_chassis(o: OvnRack, name: str = "chassis-2", physnet: bool = False
                   ) -> Iterator[Chassis]:
    """A second chassis: ovsdb-server, ovs-vswitchd and ovn-controller (``system-id``
    ``name``) in namespace ``<prefix>-c2``, its integration bridge ``<prefix>in2``. A veth
    pair with MTU 9000 is the underlay: one end on netdev bridge ``<prefix>ph1`` of the
    gateway's switch, the other on ``<prefix>ph2`` (chassis-2's switch's own bridge),
    each bridge with the chassis' encap address on a random 10.251.N.0/24 (the gateway's
    in the host's namespace; it was 127.0.0.1). OVN's tunnel ports then carry geneve
    between the two userspace datapaths (see :func:`metalplane.lab.ovn.tunnel_endpoint`).
    With ``physnet``, chassis-2 is a compute node cabled to the ToR too: ``physnet1`` mapped
    to its bridge ``<prefix>ex2``, trunked to the ToR by a veth pair, and both chassis get an
    ``ovn-chassis-mac-mappings`` MAC (what they route onto a VLAN leaves with it).
    Removed on exit, even after a failure; the gateway keeps its new address."""
    p = o.rack.prefix
    ns, phy1, veth1, veth2 = f"{p}-c2", f"{p}ph1", f"{p}u1", f"{p}u2"
    net = _free_underlay()
    switch = Switch(Path(tempfile.mkdtemp(prefix="mp-c2-")), f"{p}ph2", netns=ns)
    chassis = Chassis(switch, name, o.central, integration_bridge=f"{p}in2",
                      encap_ip=f"{net}.2",
                      bridge_mappings={"physnet1": f"{p}ex2"} if physnet else {},
                      chassis_macs={"physnet1": "0e:00:00:00:c2:02"} if physnet else {})
    trunk1, trunk2 = f"{p}t1", f"{p}t2"
    try:
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        switch.start()
        run("ip", "link", "add", veth1, "mtu", "9000", "type", "veth", "peer", "name", veth2,
            "mtu", "9000", "netns", ns)
        run("ip", "link", "set", veth1, "up")
        switch.ip("link", "set", veth2, "up")
        tunnel_endpoint(o.rack.ovs, phy1, veth1, f"{net}.1/24")
        tunnel_endpoint(switch, switch.bridge, veth2, f"{net}.2/24")
        o.gateway.set_encap_ip(f"{net}.1")
        if physnet:
            o.gateway.chassis_macs = {"physnet1": "0e:00:00:00:c2:01"}
            o.gateway.switch.vsctl("set", "open", ".",
                                   'external-ids:ovn-chassis-mac-mappings="physnet1:'
                                   '0e:00:00:00:c2:01"')
        chassis.start()
        if physnet:
            run("ip", "link", "add", trunk1, "type", "veth", "peer", "name", trunk2, "netns", ns)
            run("ip", "link", "set", trunk1, "up")
            switch.ip("link", "set", trunk2, "up")
            run("ethtool", "-K", trunk1, "tx", "off", check=False)
            run(*netns_exec(ns, "ethtool", "-K", trunk2, "tx", "off"), check=False)
            o.rack.ovs.vsctl("add-port", o.rack.ovs.bridge, trunk1)
            switch.vsctl("add-port", f"{p}ex2", trunk2)
        yield chassis
    finally:
        chassis.stop()
        switch.stop()
        with contextlib.suppress(Exception):
            o.rack.ovs.vsctl("--if-exists", "del-br", phy1)
        remove_prefixed(ns)  # whatever still runs there, then the namespace
        for link in (veth1, phy1, trunk1):
            run("ip", "link", "del", link, check=False)
