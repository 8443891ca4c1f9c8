"""A rack whose switch runs in a network namespace of its own.

ovs-vswitchd's userspace datapath creates an ``ovs-netdev`` tap device in its network
namespace: a second private switch in the same namespace fails to create its bridge
("datapath ovs-netdev already exists"). Running the switch daemons in their own namespace
lets this test's switch live beside any other (another test, the lab). Its OVSDB and
OpenFlow unix sockets are files, reachable from the test's namespace as usual. Nodes are
namespaces whose eth0 is a veth whose other end is a port of that switch. Everything
carries a random prefix and is removed on exit, even after a failure; traffic stays inside
these namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from metalplane.common import process
from metalplane.lab.rack import OVS_SCHEMA, netns_exec, run
from tests.helpers.rack import need_root_and_ovs


@dataclass
class NsSwitch:
    """ovsdb-server + ovs-vswitchd (netdev bridge ``bridge``) inside namespace ``ns``."""

    ns: str
    rundir: Path
    bridge: str = "tor"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"unix:{self.rundir / 'db.sock'}"

    def vsctl(self, *args: str) -> str:
        return run("ovs-vsctl", f"--db={self.address}", "--timeout=10", *args)

    def ofctl(self, command: str, *args: str) -> str:
        """ovs-ofctl ``command`` against the bridge's own management socket (not
        metalplane's listener)."""
        return run("ovs-ofctl", "-O", "OpenFlow14", command,
                   f"unix:{self.rundir / (self.bridge + '.mgmt')}", *args)

    def start(self) -> None:
        run("ip", "netns", "add", self.ns)
        env = {**os.environ, "OVS_RUNDIR": str(self.rundir), "OVS_LOGDIR": str(self.rundir),
               "OVS_DBDIR": str(self.rundir)}
        d = self.rundir
        run("ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA)
        for cmd, ready in (
                (["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d / 'db.sock'}",
                  f"--unixctl={d / 'ovsdb.ctl'}", f"--log-file={d / 'ovsdb.log'}"],
                 d / "db.sock"),
                (["ovs-vswitchd", self.address, f"--unixctl={d / 'vswitchd.ctl'}",
                  f"--log-file={d / 'vswitchd.log'}"], d / "vswitchd.ctl")):
            with open(d / "daemons.out", "ab") as out:
                self.procs.append(process.spawn(netns_exec(self.ns, *cmd), env=env,
                                                stdout=out, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 15
            while not ready.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not start: see {d}")
                time.sleep(0.05)
            if cmd[0] == "ovsdb-server":
                self.vsctl("--no-wait", "init")
        self.vsctl("add-br", self.bridge, "--", "set", "bridge", self.bridge,
                   "datapath_type=netdev")
        run("ip", "-n", self.ns, "link", "set", self.bridge, "up", check=False)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.vsctl("--if-exists", "del-br", self.bridge)
        for proc in self.procs:
            process.stop(proc)
        run("ip", "netns", "del", self.ns, check=False)


@dataclass
class Node:
    ns: str
    port: str  # its switch port
    mac: str
    ip: str


class NsRack:
    """A namespaced switch and node namespaces on it; :meth:`close` removes them."""

    def __init__(self, switch: NsSwitch, prefix: str) -> None:
        self.switch = switch
        self.prefix = prefix
        self.nodes: dict[str, Node] = {}
        self.children: list[subprocess.Popen[bytes]] = []

    def add_node(self, name: str, cidr: str, tag: int) -> Node:
        ns, port = f"{self.prefix}-{name}", f"{self.prefix}{name}"
        run("ip", "netns", "add", ns)
        self.nodes[name] = node = Node(ns, port, "", cidr.split("/")[0])
        run("ip", "link", "add", port, "netns", self.switch.ns, "type", "veth", "peer",
            "name", "eth0", "netns", ns)
        run("ip", "-n", self.switch.ns, "link", "set", port, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "addr", "add", cidr, "dev", "eth0")
        # software checksums: the userspace datapath forwards partial ones (see lab.rack)
        run(*netns_exec(ns, "ethtool", "-K", "eth0", "tx", "off"), check=False)
        run(*netns_exec(self.switch.ns, "ethtool", "-K", port, "tx", "off"), check=False)
        self.switch.vsctl("add-port", self.switch.bridge, port, f"tag={tag}")
        node.mac = str(json.loads(run("ip", "-j", "-n", ns, "link", "show", "eth0"))[0]
                       ["address"])
        return node

    def spawn(self, node: str, *cmd: str) -> subprocess.Popen[bytes]:
        """Run ``cmd`` in the node's namespace until :meth:`close`."""
        proc = process.spawn(netns_exec(self.nodes[node].ns, *cmd),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.children.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.children:
            process.stop(proc)
        for node in self.nodes.values():
            run("ip", "netns", "del", node.ns, check=False)


@contextlib.contextmanager
def ns_rack() -> Iterator[NsRack]:
    need_root_and_ovs()
    prefix = "ma" + secrets.token_hex(2)
    switch = NsSwitch(ns=f"{prefix}-sw", rundir=Path(tempfile.mkdtemp(prefix="mp-acl-")))
    rack = NsRack(switch, prefix)
    try:
        switch.start()
        yield rack
    finally:
        rack.close()
        switch.stop()
        shutil.rmtree(switch.rundir, ignore_errors=True)
