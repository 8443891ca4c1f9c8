"""Building blocks of the virtual rack: a private Open vSwitch and namespaces on it.

The switch is ovsdb-server + ovs-vswitchd with their own run directory and database
(``datapath_type=netdev``, the userspace datapath: no kernel module needed). A host is a
network namespace whose NICs are veth pairs, the outer end an access port of the switch.
Everything runs as root. Sources: ovs-vswitchd(8), ovsdb-server(1), ovs-vsctl(8),
ip-netns(8), veth(4).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from metalplane.common import process

__all__ = ["LabError", "Switch", "add_nic", "dhclient_once", "disable_offload", "free_port",
           "kill_mentioning", "netns_exec", "reaches", "remove_prefixed", "run", "wait_http"]

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class LabError(Exception):
    """Something the lab needs is missing or a command failed (message says which)."""


def run(*cmd: str, check: bool = True, timeout: float = 30) -> str:
    """Run ``cmd``; its stdout, stripped. Raises :class:`LabError` with stderr if it fails
    and ``check``."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} is not installed (run scripts/setup.sh)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)} did not finish in {timeout:g}s") from None
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed: {r.stderr.strip() or r.returncode}")
    return r.stdout.strip()


def netns_exec(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def disable_offload(ns: str, inside: str, outside: str) -> None:
    """Checksums computed in software: OVS's userspace datapath forwards veth frames with
    the partial checksums of tx offload, and raw-socket receivers (dhclient) drop them."""
    run(*netns_exec(ns, "ethtool", "-K", inside, "tx", "off"), check=False)
    run("ethtool", "-K", outside, "tx", "off", check=False)


@dataclass
class Switch:
    """A private Open vSwitch with one netdev bridge, run from ``rundir``; with ``netns``,
    both daemons run in that (existing) network namespace: the userspace datapath's
    ``ovs-netdev`` device and the bridges' internal ports live there, so a second switch
    can run beside one in the host's namespace ("datapath ovs-netdev already exists"
    otherwise). Its sockets are files, reachable from any namespace."""

    rundir: Path
    bridge: str
    netns: str | None = None

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip`` in the switch's namespace."""
        return run("ip", *(("-n", self.netns) if self.netns else ()), *args, check=check)

    def _in_ns(self, cmd: list[str]) -> list[str]:
        return netns_exec(self.netns, *cmd) if self.netns else cmd

    @property
    def address(self) -> str:
        """The OVSDB address (``unix:<rundir>/db.sock``), as metalplane's switch driver takes."""
        return f"unix:{self.rundir / 'db.sock'}"

    def vsctl(self, *args: str) -> str:
        return run("ovs-vsctl", f"--db={self.address}", "--timeout=10", *args)

    def appctl(self, *args: str) -> str:
        """``ovs-appctl`` to this switch's ovs-vswitchd (e.g. ``bond/show NAME``,
        ``lacp/show NAME``; ovs-vswitchd(8))."""
        return run("ovs-appctl", "-t", str(self.rundir / "vswitchd.ctl"), *args)

    def start(self) -> None:
        """Create the database, start both daemons and the bridge. Raises :class:`LabError`."""
        if not Path(OVS_SCHEMA).exists():
            raise LabError("Open vSwitch is not installed (run scripts/setup.sh)")
        self.rundir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OVS_RUNDIR": str(self.rundir), "OVS_LOGDIR": str(self.rundir),
               "OVS_DBDIR": str(self.rundir)}
        db = self.rundir / "conf.db"
        if not db.exists():
            run("ovsdb-tool", "create", str(db), OVS_SCHEMA)
        d = self.rundir
        _spawn(self._in_ns(["ovsdb-server", str(db), f"--remote=punix:{d / 'db.sock'}",
                            f"--unixctl={d / 'ovsdb.ctl'}", f"--log-file={d / 'ovsdb.log'}",
                            f"--pidfile={d / 'ovsdb.pid'}"]), env, d / "ovsdb.out")
        _wait_for(lambda: (d / "db.sock").exists(), 15, "ovsdb-server did not start: "
                  f"see {d / 'ovsdb.log'}")
        self.vsctl("--no-wait", "init")
        _spawn(self._in_ns(["ovs-vswitchd", self.address, f"--unixctl={d / 'vswitchd.ctl'}",
                            f"--log-file={d / 'vswitchd.log'}",
                            f"--pidfile={d / 'vswitchd.pid'}"]), env, d / "vswitchd.out")
        self.vsctl("--may-exist", "add-br", self.bridge, "--", "set", "bridge", self.bridge,
                   "datapath_type=netdev")
        self.ip("link", "set", self.bridge, "up", check=False)

    def stop(self) -> None:
        """Delete the bridge (so ovs-vswitchd removes its internal ports' tap devices and the
        datapath's), stop both daemons and remove the run directory."""
        if (self.rundir / "db.sock").exists():
            with contextlib.suppress(LabError):  # the daemons may be gone already
                self.vsctl("--if-exists", "del-br", self.bridge)
        self.stop_daemons()
        if self.netns:  # the daemons died before del-br: the tap device stays
            self.ip("link", "del", self.bridge, check=False)
        elif Path(f"/sys/class/net/{self.bridge}").exists():
            run("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.rundir, ignore_errors=True)

    def stop_daemons(self) -> None:
        """Stop ovs-vswitchd and ovsdb-server (their pid files), leaving everything else:
        what a switch that goes away looks like."""
        for name in ("vswitchd.pid", "ovsdb.pid"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                kill_pids([int((self.rundir / name).read_text().strip())])
        reap()

    def tag(self, port: str) -> int | None:
        """The access VLAN of ``port``; None when it has none (or does not exist)."""
        try:
            out = self.vsctl("get", "port", port, "tag")
        except LabError:
            return None
        return None if out in ("[]", "") else int(out)

    def tags(self) -> dict[str, int | None]:
        """``{port: access VLAN}`` for every port of the bridge, in one call."""
        out = self.vsctl("--format=json", "--columns=name,tag", "list", "port")
        rows = json.loads(out)["data"]
        return {name: (tag if isinstance(tag, int) else None) for name, tag in rows
                if name != self.bridge}


# Daemons this process started; they outlive `lab up` on purpose. Kept so that `down`, when
# run by the same process (the demo, tests), reaps them instead of leaving zombies.
_CHILDREN: list[subprocess.Popen[bytes]] = []


def _spawn(cmd: list[str], env: dict[str, str] | None, log: Path) -> subprocess.Popen[bytes]:
    """Start a lab daemon in its own session, output appended to ``log``."""
    with open(log, "ab") as out:
        try:
            proc = process.spawn(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise LabError(f"{cmd[0]} is not installed (run scripts/setup.sh)") from None
    _CHILDREN.append(proc)
    return proc


def reap() -> None:
    """Collect the exit status of daemons this process started that have ended."""
    for proc in list(_CHILDREN):
        if proc.poll() is not None:
            _CHILDREN.remove(proc)


def _wait_for(ready: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(message)
        time.sleep(0.05)


def wait_http(url: str, proc: subprocess.Popen[Any], log: Path, what: str,
              timeout: float = 30) -> None:
    """Poll ``url`` until it answers 200. Raises :class:`LabError` with the tail of ``log``
    if ``proc`` exits, or naming ``log`` after ``timeout`` seconds."""
    def ready() -> bool:
        if proc.poll() is not None:
            raise LabError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    _wait_for(ready, timeout, f"{what} did not answer at {url}: see {log}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port on 127.0.0.1 (TCP, or UDP with ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reaches(ns: str, ip: str, tries: int = 3) -> bool:
    """True if any of ``tries`` pings (1 s timeout each) from namespace ``ns`` answers
    (ARP may need a moment after a switch port changed VLAN)."""
    for _ in range(tries):
        r = subprocess.run(netns_exec(ns, "ping", "-c", "1", "-W", "1", ip),
                           capture_output=True, timeout=10)
        if r.returncode == 0:
            return True
    return False


def dhclient_once(ns: str, workdir: Path, name: str, ipxe: bool = False,
                  timeout: int = 8, arch: int | None = None) -> str:
    """One DHCP exchange by a real dhclient on ``eth0`` of namespace ``ns``, which
    configures nothing (``-sf /bin/true``); the lease file's text, empty without an answer.
    ``ipxe`` asks as iPXE does: user class ``iPXE`` (what dnsmasq's ``--dhcp-userclass``
    matches) and option 175, iPXE's encapsulated options (what OVN's native DHCP looks for).
    ``arch``: the client architecture (option 93, RFC 4578: 0 BIOS, 7 x86-64 UEFI) that PXE
    firmware sends. Files go to ``workdir/name.*``. Source: dhclient(8), dhclient.conf(5),
    dhcp-options(5) (pxe-system-type), iPXE's include/ipxe/dhcp.h (DHCP_EB_ENCAP 175)."""
    conf = workdir / f"{name}.conf"
    ipxe_conf = ('option ipxe-encap code 175 = string;\nsend user-class "iPXE";\n'
                 "send ipxe-encap 01:01:01;\n")  # 175 carrying "priority" (1) = 1
    conf.write_text(f"timeout {timeout};\nretry 1;\nalso request tftp-server-name;\n"
                    + (ipxe_conf if ipxe else "")
                    + (f"send pxe-system-type {arch};\n" if arch is not None else ""))
    lease = workdir / f"{name}.lease"
    lease.unlink(missing_ok=True)
    pid = workdir / f"{name}.pid"
    run(*netns_exec(ns, "dhclient", "-1", "-sf", "/bin/true", "-cf", str(conf), "-lf",
                    str(lease), "-pf", str(pid), "eth0"), check=False, timeout=timeout * 4)
    run(*netns_exec(ns, "dhclient", "-x", "-pf", str(pid)), check=False)
    return lease.read_text() if lease.exists() else ""


def add_nic(switch: Switch, ns: str, inside: str, outside: str, tag: int | None) -> str:
    """A veth pair: ``inside`` in namespace ``ns``, ``outside`` an access port of
    ``switch`` on VLAN ``tag``. Returns the MAC of ``inside``."""
    run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
    run("ip", "link", "set", outside, "up")
    run("ip", "-n", ns, "link", "set", inside, "up")
    disable_offload(ns, inside, outside)
    args = ["--may-exist", "add-port", switch.bridge, outside]
    if tag is not None:
        args.append(f"tag={tag}")
    switch.vsctl(*args)
    link = json.loads(run("ip", "-j", "-n", ns, "link", "show", inside))
    return str(link[0]["address"])


def kill_pids(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM ``pids``, then SIGKILL what is left after ``grace`` seconds."""
    live = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            live.append(pid)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        live = [p for p in live if _alive(p)]
        if live:
            time.sleep(0.05)
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _unix_socket_inodes(path: str) -> set[str]:
    """Inodes of the unix sockets bound to ``path`` or below (this network namespace's
    /proc/net/unix: Num RefCount Protocol Flags Type St Inode Path)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and (parts[7] == path or parts[7].startswith(path + "/")):
                inodes.add(parts[6])
    return inodes


def kill_mentioning(path: str) -> int:
    """Kill every process that names ``path`` or a file under it on its command line, or
    holds a unix socket bound there (lldpd renames itself, so its command line says
    nothing), and their children. Returns how many."""
    path = path.rstrip("/")
    pattern = re.compile(re.escape(path) + r"(?=/|\s|$)")
    sockets = {f"socket:[{i}]" for i in _unix_socket_inodes(path)}
    me = os.getpid()
    pids: set[int] = set()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[pid] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if pattern.search(cmdline):
            pids.add(pid)
        elif sockets:
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir()):
                    pids.add(pid)
    for _ in range(5):  # children (bounded depth)
        pids |= {p for p, parent in parents.items() if parent in pids and p != me}
    kill_pids(sorted(pids))
    return len(pids)


def remove_prefixed(prefix: str) -> list[str]:
    """Delete every namespace (after killing what runs in it) and link whose name starts
    with ``prefix``. Returns what was removed."""
    removed = []
    for line in run("ip", "netns", "list", check=False).splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(prefix):
            pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).split()]
            kill_pids(pids)
            run("ip", "netns", "del", ns, check=False)
            removed.append(f"netns {ns}")
    links = json.loads(run("ip", "-j", "link", "show", check=False) or "[]")
    for link in links:
        name = str(link.get("ifname", ""))
        if name.startswith(prefix):
            run("ip", "link", "del", name, check=False)
            removed.append(f"link {name}")
    return removed
