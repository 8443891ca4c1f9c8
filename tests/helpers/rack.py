"""A small real datapath for networking tests: the lab's private Open vSwitch (userspace
datapath, its own ovsdb-server and run directory) and network namespaces whose veth NICs
plug into it. Everything carries a random prefix and is removed on exit, even after a failure.
Traffic stays inside the namespaces created here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalplane.lab.rack import Switch, add_nic, reaches, run


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces (CI runs as root)")


def need_root_and_ovs() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces and Open vSwitch (CI runs as root)")
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} missing: run scripts/setup.sh")


class OVS(Switch):
    """The lab's switch, plus what tests read of it."""

    def port_field(self, port: str, column: str) -> str:
        return self.vsctl("get", "port", port, column)

    def interfaces(self, port: str) -> list[str]:
        uuids = self.vsctl("get", "port", port, "interfaces").strip("[]").split(", ")
        return sorted(self.vsctl("get", "interface", u, "name").strip('"') for u in uuids if u)


@contextlib.contextmanager
def ovs_bridge(bridge: str) -> Iterator[OVS]:
    """ovsdb-server + ovs-vswitchd in a private run directory, one netdev bridge."""
    ovs = OVS(rundir=Path(tempfile.mkdtemp(prefix="mp-ovs-")), bridge=bridge)  # short: sockets
    try:
        ovs.start()
        yield ovs
    finally:
        ovs.stop()


@dataclass
class Host:
    """A namespace with NICs whose peers are ports of the switch."""

    ns: str
    nics: dict[str, str]  # NIC name in the namespace -> switch port name
    macs: dict[str, str]

    def reaches(self, ip: str, tries: int = 3) -> bool:
        """True if any of ``tries`` pings answers (ARP may need a moment after a flip)."""
        return reaches(self.ns, ip, tries)


class Rack:
    """Namespaces on one OVS bridge; ``close()`` removes them all."""

    def __init__(self, ovs: OVS) -> None:
        self.ovs = ovs
        self.prefix = "mt" + secrets.token_hex(2)
        self.hosts: dict[str, Host] = {}

    def add_host(self, name: str, ips: list[str], nics: int = 1,
                 tag: int | None = None) -> Host:
        ns = f"{self.prefix}-{name}"
        run("ip", "netns", "add", ns)
        host = Host(ns=ns, nics={}, macs={})
        self.hosts[name] = host
        run("ip", "-n", ns, "link", "set", "lo", "up")
        for i in range(nics):
            inside, outside = f"eth{i}", f"{self.prefix}{name}{i}"
            host.nics[inside] = outside
            host.macs[inside] = add_nic(self.ovs, ns, inside, outside, tag)
        if nics == 1:
            for ip in ips:
                run("ip", "-n", ns, "addr", "add", ip, "dev", "eth0")
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            for outside in host.nics.values():
                run("ip", "link", "del", outside, check=False)
            run("ip", "netns", "del", host.ns, check=False)
        self.hosts.clear()


@contextlib.contextmanager
def rack(bridge: str = "tor") -> Iterator[Rack]:
    need_root_and_ovs()
    with ovs_bridge(bridge) as ovs:
        r = Rack(ovs)
        try:
            yield r
        finally:
            r.close()
