"""A private OVN: the Northbound and Southbound databases, ovn-northd, and chassis.

:class:`Central` runs two ovsdb-servers (``OVN_Northbound``, ``OVN_Southbound``) and
ovn-northd from its own run directory, each database on a unix socket there. A
:class:`Chassis` is an ovn-controller on one of the lab's private Open vSwitch instances
(:class:`metalplane.lab.rack.Switch`): its ``system-id``, the SB address, geneve
encapsulation on an address of its own, ``br-int`` on the userspace datapath
(``ovn-bridge-datapath-type=netdev``) and, for a gateway chassis, ``ovn-bridge-mappings`` and
``ovn-cms-options=enable-chassis-as-gw``. Two chassis reach each other by geneve once
each has a :func:`tunnel_endpoint` on its encap address. Sources: ovn-northd(8),
ovn-controller(8) (the ``external_ids`` it reads from the Open_vSwitch table),
ovsdb-server(1).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from metalplane.lab.rack import (
    LabError,
    Switch,
    _spawn,
    _wait_for,
    kill_pids,
    netns_exec,
    reap,
    run,
)

__all__ = ["Central", "Chassis", "patch", "tunnel_endpoint"]

SCHEMAS = {"nb": "/usr/share/ovn/ovn-nb.ovsschema", "sb": "/usr/share/ovn/ovn-sb.ovsschema"}


@dataclass
class Central:
    """OVN's central services, run from ``rundir``."""

    rundir: Path

    def address(self, which: str) -> str:
        """The OVSDB address of ``nb`` or ``sb``: ``unix:<rundir>/<which>.sock``."""
        return f"unix:{self.rundir / (which + '.sock')}"

    @property
    def nb(self) -> str:
        return self.address("nb")

    @property
    def sb(self) -> str:
        return self.address("sb")

    def start(self) -> None:
        """Create the databases (once), start both servers and ovn-northd. Raises
        :class:`LabError` naming the log of what did not start."""
        if not Path(SCHEMAS["nb"]).exists() or not shutil.which("ovn-northd"):
            raise LabError("OVN is not installed (run scripts/setup.sh: ovn-central, ovn-host)")
        self.rundir.mkdir(parents=True, exist_ok=True)
        for which in ("nb", "sb"):
            self.start_db(which)
        self.start_northd()

    def start_db(self, which: str) -> None:
        """Start the ``nb`` or ``sb`` ovsdb-server (its database kept across restarts)."""
        d = self.rundir
        db = d / f"{which}.db"
        if not db.exists():
            run("ovsdb-tool", "create", str(db), SCHEMAS[which])
        sock = d / f"{which}.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        _spawn(["ovsdb-server", str(db), f"--remote=punix:{sock}",
                f"--unixctl={d / (which + '.ctl')}", f"--pidfile={d / (which + '.pid')}",
                f"--log-file={d / (which + '.log')}"], None, d / f"{which}.out")
        _wait_for(sock.exists, 15, f"the OVN {which.upper()} database did not start: see "
                  f"{d / (which + '.log')}")

    def start_northd(self) -> None:
        d = self.rundir
        _spawn(["ovn-northd", f"--ovnnb-db={self.nb}", f"--ovnsb-db={self.sb}",
                f"--unixctl={d / 'northd.ctl'}", f"--pidfile={d / 'northd.pid'}",
                f"--log-file={d / 'northd.log'}"],
               {**os.environ, "OVN_RUNDIR": str(d)}, d / "northd.out")
        _wait_for((d / "northd.ctl").exists, 15, f"ovn-northd did not start: see "
                  f"{d / 'northd.log'}")

    def stop_process(self, name: str) -> None:
        """Stop ``nb``, ``sb`` or ``northd`` (its pid file): what a crash looks like."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            kill_pids([int((self.rundir / f"{name}.pid").read_text().strip())])
        reap()

    def nbctl(self, *args: str) -> str:
        return run("ovn-nbctl", f"--db={self.nb}", "--timeout=10", *args)

    def sbctl(self, *args: str) -> str:
        return run("ovn-sbctl", f"--db={self.sb}", "--timeout=10", *args)

    def chassis_names(self) -> list[str]:
        """The chassis registered in the SB database."""
        out = self.sbctl("--format=json", "--columns=name", "list", "Chassis")
        return [row[0] for row in json.loads(out)["data"]]

    def stop(self) -> None:
        """Stop everything and remove the run directory."""
        for name in ("northd", "nb", "sb"):
            self.stop_process(name)
        shutil.rmtree(self.rundir, ignore_errors=True)


@dataclass
class Chassis:
    """An ovn-controller on ``switch`` (its ovsdb and ovs-vswitchd), named ``name``.

    ``bridge_mappings``: ``{physnet: bridge}`` (the bridges are created, netdev);
    ``gateway``: may host external ports and router gateways; ``integration_bridge``: the
    name of its br-int (a netdev bridge is a host network device too: names must not
    clash between labs). ovn-controller runs in the switch's network namespace, if any.
    ``encap_ip``: where other chassis send geneve to; 127.0.0.1 for a chassis alone, else
    the address of a :func:`tunnel_endpoint` of ``switch``."""

    switch: Switch
    name: str
    central: Central
    integration_bridge: str = "br-int"
    encap_ip: str = "127.0.0.1"
    bridge_mappings: dict[str, str] = field(default_factory=dict)
    gateway: bool = False
    # ``{physnet: MAC}``: the source MAC of what this chassis routes onto a VLAN network
    # (ovn-controller(8), ovn-chassis-mac-mappings), for chassis that route distributed
    chassis_macs: dict[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.switch.rundir / f"ovn-controller-{self.name}.pid"

    def start(self, timeout: float = 30) -> None:
        """Configure the switch for OVN and start ovn-controller; wait until the chassis
        shows in the SB database. Raises :class:`LabError`."""
        for bridge in self.bridge_mappings.values():
            self.switch.vsctl("--may-exist", "add-br", bridge, "--", "set", "bridge", bridge,
                              "datapath_type=netdev")
        ids = {"system-id": self.name, "ovn-remote": self.central.sb,
               "ovn-encap-type": "geneve", "ovn-encap-ip": self.encap_ip,
               "ovn-bridge-datapath-type": "netdev", "ovn-bridge": self.integration_bridge,
               "ovn-bridge-mappings": ",".join(f"{p}:{b}"
                                               for p, b in self.bridge_mappings.items()),
               "ovn-cms-options": "enable-chassis-as-gw" if self.gateway else "",
               "ovn-chassis-mac-mappings": ",".join(f"{p}:{m}"
                                                    for p, m in self.chassis_macs.items())}
        self.switch.vsctl("set", "open", ".",
                          *(f'external-ids:{k}="{v}"' for k, v in ids.items()))
        rundir = self.switch.rundir
        log = rundir / f"ovn-controller-{self.name}.log"
        # ovn-controller finds br-int's OpenFlow socket under OVS_RUNDIR. --monitor restarts
        # it after a crash, as ovn-ctl runs it: 23.03.1 was seen to die of SIGSEGV when
        # ovn-northd restarted after external ports had changed while it was away.
        cmd = ["ovn-controller", self.switch.address, f"--pidfile={self.pid_file}",
               f"--log-file={log}", "--monitor"]
        _spawn(netns_exec(self.switch.netns, *cmd) if self.switch.netns else cmd,
               {**os.environ, "OVS_RUNDIR": str(rundir), "OVN_RUNDIR": str(rundir)},
               rundir / f"ovn-controller-{self.name}.out")
        _wait_for(lambda: self.name in self.central.chassis_names(), timeout,
                  f"chassis {self.name} did not register: see {log}")

    def set_encap_ip(self, ip: str) -> None:
        """Move the chassis' tunnel endpoint to ``ip`` (ovn-controller updates its SB Encap
        row, and the other chassis their tunnel ports)."""
        self.encap_ip = ip
        self.switch.vsctl("set", "open", ".", f'external-ids:ovn-encap-ip="{ip}"')

    def stop(self, remove_bridges: bool = True) -> None:
        """Stop ovn-controller (the chassis stays registered, as after a crash) and, with
        ``remove_bridges``, delete its bridges (their devices go with them)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            kill_pids([int(self.pid_file.read_text().strip())])
        reap()
        if remove_bridges and (self.switch.rundir / "db.sock").exists():
            for bridge in (self.integration_bridge, *self.bridge_mappings.values()):
                with contextlib.suppress(LabError):
                    self.switch.vsctl("--if-exists", "del-br", bridge)


def patch(switch: Switch, a: str, b: str) -> None:
    """Join bridges ``a`` and ``b`` of ``switch`` by a pair of patch ports, a trunk
    (untagged: every VLAN crosses). Source: ovs-vswitchd.conf.db(5), Interface type patch."""
    switch.vsctl("--may-exist", "add-port", a, f"{a}-{b}", "--", "set", "interface",
                 f"{a}-{b}", "type=patch", f"options:peer={b}-{a}",
                 "--", "--may-exist", "add-port", b, f"{b}-{a}", "--", "set", "interface",
                 f"{b}-{a}", "type=patch", f"options:peer={a}-{b}")


def tunnel_endpoint(switch: Switch, bridge: str, nic: str, cidr: str) -> None:
    """Make ``switch``'s userspace datapath a tunnel endpoint at ``cidr`` (``ip/len``):
    netdev bridge ``bridge`` holds the underlay NIC ``nic`` (a veth end, in the switch's
    namespace) and the address goes on the bridge's internal port. The userspace datapath
    sends tunnel packets itself (``tnl_push``): it routes the remote address through its
    copy of its namespace's routing table (``ovs-appctl ovs/route/show``), which must
    point at an OVS bridge, and learns the next hop's MAC by sending and snooping ARP on
    that bridge (``tnl/arp/show``); geneve arriving for the address is decapsulated
    (``tnl_pop``) before it would reach the internal port. The underlay needs an MTU
    above the overlay's plus geneve's 58 bytes (ovs-vswitchd logs "error sending Ethernet
    packet on <nic>: Message too long" otherwise); its NIC's tx offload does not matter
    (OVS writes the outer headers and checksums), a workload's does (see
    :func:`metalplane.lab.rack.disable_offload`). Source: Open vSwitch's
    Documentation/howto/userspace-tunneling.rst."""
    switch.vsctl("--may-exist", "add-br", bridge, "--", "set", "bridge", bridge,
                 "datapath_type=netdev", "--", "--may-exist", "add-port", bridge, nic)
    switch.ip("addr", "replace", cidr, "dev", bridge)
    switch.ip("link", "set", bridge, "up")
