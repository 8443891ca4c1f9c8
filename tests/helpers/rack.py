"""A small real datapath for networking tests: a private Open vSwitch (userspace datapath,
its own ovsdb-server and run directory) and network namespaces whose veth NICs plug into
it. Everything carries a random prefix and is removed on exit, even after a failure.
Traffic stays inside the namespaces created here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def need_root_and_ovs() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces and Open vSwitch (CI runs as root)")
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} missing: run scripts/setup.sh")


def run(*cmd: str, check: bool = True, timeout: float = 30) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout.strip()


@dataclass
class OVS:
    rundir: Path
    bridge: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"unix:{self.rundir / 'db.sock'}"

    def vsctl(self, *args: str) -> str:
        return run("ovs-vsctl", f"--db={self.address}", "--timeout=10", *args)

    def tag(self, port: str) -> int | None:
        out = self.vsctl("get", "port", port, "tag")
        return None if out in ("[]", "") else int(out)

    def tags(self) -> dict[str, int | None]:
        return {p: self.tag(p) for p in self.vsctl("list-ports", self.bridge).split()}

    def port_field(self, port: str, column: str) -> str:
        return self.vsctl("get", "port", port, column)

    def interfaces(self, port: str) -> list[str]:
        uuids = self.vsctl("get", "port", port, "interfaces").strip("[]").split(", ")
        return sorted(self.vsctl("get", "interface", u, "name").strip('"') for u in uuids if u)


@contextlib.contextmanager
def ovs_bridge(bridge: str) -> Iterator[OVS]:
    """ovsdb-server + ovs-vswitchd in a private run directory, one netdev bridge."""
    rundir = Path(tempfile.mkdtemp(prefix="mp-ovs-"))  # short: unix socket paths are limited
    env = {**os.environ, "OVS_RUNDIR": str(rundir), "OVS_LOGDIR": str(rundir),
           "OVS_DBDIR": str(rundir)}
    ovs = OVS(rundir=rundir, bridge=bridge)
    try:
        run("ovsdb-tool", "create", str(rundir / "conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema")
        ovs.procs.append(subprocess.Popen(
            ["ovsdb-server", str(rundir / "conf.db"), f"--remote=punix:{rundir / 'db.sock'}",
             f"--unixctl={rundir / 'ovsdb.ctl'}", f"--log-file={rundir / 'ovsdb.log'}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        deadline = time.monotonic() + 15
        while not (rundir / "db.sock").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("ovsdb-server did not start")
            time.sleep(0.05)
        ovs.vsctl("--no-wait", "init")
        ovs.procs.append(subprocess.Popen(
            ["ovs-vswitchd", ovs.address, f"--unixctl={rundir / 'vswitchd.ctl'}",
             f"--log-file={rundir / 'vswitchd.log'}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        ovs.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
        yield ovs
    finally:
        # ovs-vswitchd removes the tap devices of the bridge and its internal ports only
        # when the bridge goes, not when it is stopped
        run("ovs-vsctl", f"--db={ovs.address}", "--timeout=10", "--if-exists", "del-br",
            bridge, check=False)
        for p in reversed(ovs.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        if Path(f"/sys/class/net/{bridge}").exists():  # a test that stopped ovsdb-server
            run("ip", "link", "del", bridge, check=False)
        shutil.rmtree(rundir, ignore_errors=True)


def disable_offload(ns: str, inside: str, outside: str) -> None:
    """Checksums computed in software: OVS's userspace datapath forwards veth frames with
    the partial checksums of tx offload, and raw-socket receivers (dhclient) drop them."""
    run("ip", "netns", "exec", ns, "ethtool", "-K", inside, "tx", "off", check=False)
    run("ethtool", "-K", outside, "tx", "off", check=False)


@dataclass
class Host:
    """A namespace with NICs whose peers are ports of the switch."""

    ns: str
    nics: dict[str, str]  # NIC name in the namespace -> switch port name
    macs: dict[str, str]

    def ping(self, ip: str) -> bool:
        r = subprocess.run(["ip", "netns", "exec", self.ns, "ping", "-c", "1", "-W", "1", ip],
                           capture_output=True, timeout=10)
        return r.returncode == 0

    def reaches(self, ip: str, tries: int = 3) -> bool:
        """True if any of ``tries`` pings answers (ARP may need a moment after a flip)."""
        return any(self.ping(ip) for _ in range(tries))


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
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside,
                "netns", ns)
            run("ip", "link", "set", outside, "up")
            run("ip", "-n", ns, "link", "set", inside, "up")
            disable_offload(ns, inside, outside)
            host.nics[inside] = outside
            host.macs[inside] = run("ip", "-n", ns, "-br", "link", "show", inside).split()[2]
            args = ["add-port", self.ovs.bridge, outside]
            if tag is not None:
                args.append(f"tag={tag}")
            self.ovs.vsctl(*args)
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
