"""dnsmasq as the DHCP and TFTP server of the provider networks.

One dnsmasq per provider network interface, optionally inside a network namespace. Each
served port is a file in ``--dhcp-hostsdir`` (``MAC,set:TAG,IP``) and one in
``--dhcp-optsdir`` (its ``extra_dhcp_opts`` as ``tag:TAG,...`` lines). dnsmasq reads new
files by itself (inotify), so adding a host costs no restart. Changing one restarts
dnsmasq (a few ms; that host's lease is dropped, other leases stay): dnsmasq 2.90 keeps the
old entry of a deleted or rewritten file next to the new one until SIGHUP, and SIGHUP made it
crash once a client held a lease of a ``set:``-tagged host (both seen here). Removing hosts
restarts it too, but once for all the hosts removed within ``restart_delay`` seconds (nodes
leave a network in bursts: 20 restarts for 20 nodes were 6% of the 20-node lab's control
plane CPU): until then dnsmasq may still answer a removed MAC (its node's switch port has
left the network by then), and adding a host with the MAC or address of one removed restarts
at once, so no host is refused for a lease still held. Every restart forgets the leases of
MACs that have no file any more.
``--dhcp-ignore=tag:!known`` means a MAC with no file gets no answer at all: a node that is
not being inspected, cleaned or deployed is not PXE-booted. With auto-discovery
(:meth:`DnsmasqServer.set_discovery`) the inspection network's dnsmasq instead has a
dynamic range for MACs with no file, and options tagged ``!known`` that boot them into the
agent in discovery mode (as ironic-inspector's dnsmasq with unknown hosts allowed).
TFTP is a second dnsmasq on the same interface (``--port=0``, no DHCP range), started once:
a restart of the DHCP one would cut every transfer in flight, and a PXE ROM whose TFTP read
fails gives up on the network boot (seen in the 20-node lab while nodes left the networks).
``--dhcp-userclass=set:ipxe,iPXE`` tags iPXE clients, so an option named
``tag:ipxe,bootfile-name`` goes to iPXE only and ``tag:!ipxe,bootfile-name`` to plain PXE
firmware. Replies are broadcast (``--dhcp-broadcast``): a unicast reply to a client without
an address depends on an ARP cache entry dnsmasq injects, which did not reach clients across
Open vSwitch's userspace datapath; PXE firmware asks for broadcast replies anyway. Source:
dnsmasq(8), on --dhcp-hostsdir, --dhcp-optsdir, --dhcp-userclass, --dhcp-ignore, --enable-tftp.
A PXE client whose option 93 (client-arch, RFC 4578) is 7 or 9, x86-64 UEFI, is tagged
``efi`` (``--dhcp-match``, as in Ironic's dnsmasq example); only the options of hosts nobody
enrolled (discovery) use the tag: an enrolled node's first stage follows its boot mode, as
Ironic's does (:mod:`metalplane.drivers.boot_mode`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from metalplane.common import process
from metalplane.common.exceptions import Invalid, MetalplaneError

__all__ = ["EFI_ARCHES", "DhcpError", "DnsmasqServer", "format_options"]

LOG = logging.getLogger(__name__)
# DHCP option 93 (client system architecture, RFC 4578 2.1 and its IANA registry): 7 and 9
# are x86-64 UEFI; such clients are tagged ``efi`` (as in Ironic's dnsmasq example)
EFI_ARCHES = (7, 9)
EFI_MATCH = tuple(f"--dhcp-match=set:efi,option:client-arch,{a}" for a in EFI_ARCHES)
_NAME = re.compile(r"^[A-Za-z0-9\-]+$")


class DhcpError(MetalplaneError):
    """dnsmasq could not be started or told about a host (HTTP 503)."""

    code = 503


def _tag(port_id: str) -> str:
    return "p" + port_id.replace("-", "")[:12]


def format_options(tag: str, opts: list[dict[str, Any]]) -> list[str]:
    """``extra_dhcp_opts`` as dnsmasq --dhcp-optsfile lines for hosts tagged ``tag``.

    ``opt_name`` may carry conditions before the option, as Neutron allows:
    ``tag:ipxe,bootfile-name``. A numeric name is an option number. Raises
    :class:`Invalid` for a malformed name.
    """
    lines = []
    for opt in opts:
        if int(opt.get("ip_version") or 4) != 4:
            continue
        parts = [p.strip() for p in str(opt["opt_name"]).split(",") if p.strip()]
        if not parts:
            raise Invalid("extra_dhcp_opts entry with an empty opt_name")
        *conditions, name = parts
        for c in conditions:
            if not re.match(r"^tag:!?[A-Za-z0-9_\-]+$", c):
                raise Invalid(f"extra_dhcp_opts condition '{c}' must be tag:NAME or tag:!NAME")
        if name.isdigit():
            option = name
        elif _NAME.match(name):
            option = f"option:{name}"
        else:
            raise Invalid(f"extra_dhcp_opts option name '{name}' is not valid")
        value = str(opt["opt_value"])
        if "\n" in value:
            raise Invalid("extra_dhcp_opts values must be one line")
        lines.append(",".join([f"tag:{tag}", *conditions, option, value]))
    return lines


class DnsmasqServer:
    """One dnsmasq serving ``cidr`` on ``interface`` (inside ``netns`` if given).

    ``state_dir`` holds its hosts/opts directories, lease file, logs and pid files.
    ``tftp_root`` is served over TFTP by a second dnsmasq (e.g. Debian's /usr/lib/ipxe).
    ``restart_delay`` (seconds) is how long a host removal waits for others to share its
    restart (0: restart at each removal).
    """

    def __init__(self, name: str, interface: str, cidr: str, state_dir: Path,
                 netns: str | None = None, tftp_root: str | None = None,
                 restart_delay: float = 2.0) -> None:
        self.name = name
        self.interface = interface
        self.netns = netns
        self.net = ipaddress.ip_network(cidr)
        self.dir = Path(state_dir)
        self.hosts_dir = self.dir / "hosts"
        self.opts_dir = self.dir / "opts"
        self.tmp_dir = self.dir / "tmp"
        self.tftp_root = tftp_root
        self._proc: subprocess.Popen[bytes] | None = None
        self._tftp: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.restart_delay = restart_delay
        self._removed: set[str] = set()  # MACs and addresses dnsmasq may still hold
        self._timer: threading.Timer | None = None
        # auto-discovery: (first, last address of the dynamic range, options for unknown MACs)
        self.discovery: tuple[str, str, tuple[tuple[str, str], ...]] | None = None

    @property
    def log_file(self) -> Path:
        return self.dir / "dnsmasq.log"

    def _common(self, log: Path, pid_file: Path) -> list[str]:
        return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
                f"--interface={self.interface}", "--bind-interfaces", "--except-interface=lo",
                f"--log-facility={log}", f"--pid-file={pid_file}", "--user=root",
                "--group=root"]

    def _in_netns(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    def command(self) -> list[str]:
        """The DHCP dnsmasq's command line (no DNS, no TFTP)."""
        return self._in_netns([
            *self._common(self.log_file, self.dir / "pid"),
            f"--dhcp-range=set:{self.name},{self.net.network_address},static,"
            f"{self.net.netmask},600",
            f"--dhcp-hostsdir={self.hosts_dir}", f"--dhcp-optsdir={self.opts_dir}",
            "--dhcp-userclass=set:ipxe,iPXE", *EFI_MATCH, *self._unknown_hosts(),
            "--dhcp-no-override", "--dhcp-broadcast", "--log-dhcp",
            f"--dhcp-leasefile={self.dir / 'leases'}",
        ])

    def _unknown_hosts(self) -> list[str]:
        """What MACs with no host file get: nothing, or with discovery a lease from the
        dynamic range and the discovery options (``--dhcp-option=tag:!known,...``)."""
        if self.discovery is None:
            return ["--dhcp-ignore=tag:!known"]
        first, last, opts = self.discovery
        lines = format_options("!known", [{"opt_name": n, "opt_value": v} for n, v in opts])
        return [f"--dhcp-range=set:{self.name}-discovery,{first},{last},{self.net.netmask},600",
                *(f"--dhcp-option={line}" for line in lines)]

    def set_discovery(self, first: str | None, last: str | None = None,
                      opts: list[tuple[str, str]] | None = None) -> None:
        """Answer MACs with no host file from ``first``-``last`` (addresses of the served
        network) with ``opts`` (``(opt_name, value)`` as in ``extra_dhcp_opts``); ``first``
        None: ignore them again. Starts or restarts dnsmasq when this changes. Raises
        :class:`Invalid` for a range outside the network, :class:`DhcpError`."""
        want = None
        if first is not None:
            if last is None or not all(ipaddress.ip_address(a) in self.net for a in (first, last)):
                raise Invalid(f"discovery range {first}-{last} is not in {self.net} served by "
                              f"dnsmasq {self.name}")
            format_options("!known", [{"opt_name": n, "opt_value": v} for n, v in opts or []])
            want = (first, last, tuple(opts or ()))
        with self._lock:
            if want == self.discovery and self._proc is not None and self._proc.poll() is None:
                return
            self.discovery = want
            self._restart_locked(())

    def tftp_command(self) -> list[str] | None:
        """The TFTP dnsmasq's command line (no DNS, no DHCP), or None without a root."""
        if not self.tftp_root:
            return None
        return self._in_netns([*self._common(self.dir / "tftp.log", self.dir / "tftp.pid"),
                               "--enable-tftp", f"--tftp-root={self.tftp_root}"])

    def _spawn(self, cmd: list[str], log: Path, what: str) -> subprocess.Popen[bytes]:
        errors = self.dir / f"{what}.stderr"
        offset = log.stat().st_size if log.exists() else 0
        with open(errors, "wb") as err_file:
            proc = process.spawn(cmd, stdout=subprocess.DEVNULL, stderr=err_file)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = errors.read_text()
                raise DhcpError(f"dnsmasq ({what}) for {self.name} on {self.interface} "
                                f"exited: {err.strip() or proc.returncode}")
            if log.exists() and "started" in _read_from(log, offset):
                break
            time.sleep(0.05)
        return proc

    def start(self) -> None:
        """Start the DHCP dnsmasq and, with a TFTP root, the TFTP one (idempotent).
        Raises :class:`DhcpError` if one exits at once."""
        with self._lock:
            self._start_locked()

    def start_tftp(self) -> None:
        """Start only the TFTP dnsmasq (idempotent): DHCP comes from elsewhere (OVN).
        Raises :class:`DhcpError` if it exits at once."""
        with self._lock:
            self._start_tftp_locked()

    def _start_tftp_locked(self) -> None:
        tftp = self.tftp_command()
        if tftp and (self._tftp is None or self._tftp.poll() is not None):
            self.dir.mkdir(parents=True, exist_ok=True)
            self._tftp = self._spawn(tftp, self.dir / "tftp.log", "tftp")

    def _start_locked(self) -> None:
        self._start_tftp_locked()
        if self._proc is not None and self._proc.poll() is None:
            return
        for d in (self.hosts_dir, self.opts_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._proc = self._spawn(self.command(), self.log_file, "dhcp")
        LOG.info("dnsmasq for %s serving %s on %s%s", self.name, self.net, self.interface,
                 f" in {self.netns}" if self.netns else "")

    def _write(self, directory: Path, name: str, text: str) -> None:
        tmp = self.tmp_dir / name
        tmp.write_text(text)
        os.replace(tmp, directory / name)  # appears whole, so dnsmasq never reads half

    def add_host(self, port_id: str, mac: str, ip: str | None,
                 opts: list[dict[str, Any]]) -> None:
        """Serve ``mac`` (address ``ip``, options ``opts``). A new MAC takes effect without a
        restart; changing a MAC's entry, or taking the MAC or address of a host removed since
        the last restart, restarts dnsmasq at once (see the module's note). Raises
        :class:`Invalid` for an address outside the served network."""
        if ip is not None and ipaddress.ip_address(ip) not in self.net:
            raise Invalid(f"{ip} is not in {self.net} served by dnsmasq {self.name}")
        self.start()
        tag = _tag(port_id)
        name = mac.replace(":", "")
        host = f"{mac},set:{tag}" + (f",{ip}" if ip else "") + "\n"
        try:
            before: str | None = (self.hosts_dir / name).read_text()
        except FileNotFoundError:
            before = None
        self._write(self.opts_dir, name, "\n".join(format_options(tag, opts)) + "\n")
        self._write(self.hosts_dir, name, host)
        with self._lock:
            stale = bool(self._removed & {mac.lower(), ip})
        if before is not None and before != host:
            self.restart(drop={mac.lower(), *([ip] if ip else [])})
        elif stale:
            self.restart()

    def remove_host(self, mac: str) -> None:
        """Stop serving ``mac``: its files go at once; dnsmasq restarts within
        ``restart_delay`` seconds, once for every host removed meanwhile (see the module's
        note). A failed delayed restart is logged; the next change restarts again."""
        name = mac.replace(":", "")
        gone: set[str] = set()
        with contextlib.suppress(FileNotFoundError):  # MAC,set:TAG[,IP]
            gone.update((self.hosts_dir / name).read_text().strip().split(",")[2:])
        for d in (self.hosts_dir, self.opts_dir):
            with contextlib.suppress(FileNotFoundError):
                (d / name).unlink()
                gone.add(mac.lower())
        if not gone:
            return
        if self.restart_delay <= 0:
            self.restart()
            return
        with self._lock:
            self._removed |= gone
            if self._timer is None:
                self._timer = threading.Timer(self.restart_delay, self._delayed_restart)
                self._timer.args = (self._timer,)
                self._timer.daemon = True
                self._timer.start()

    def _delayed_restart(self, timer: threading.Timer) -> None:
        try:
            with self._lock:
                if self._timer is timer:  # else a restart or a stop came first
                    self._restart_locked(())
        except Exception:  # a thread of its own: nobody else would see it
            LOG.exception("dnsmasq for %s: restart after host removals failed", self.name)

    def restart(self, drop: Collection[str] = ()) -> None:
        """Stop and start the DHCP dnsmasq: it reads the directories afresh (TFTP goes on).
        Leases of MACs with no host file, and those whose MAC or address is in ``drop``, are
        forgotten (a powered-off node never releases its lease, and dnsmasq will not offer a
        leased address to another MAC). A restart due after removals is this one. Raises
        :class:`DhcpError`.

        The whole restart holds the lock: the lease file is rewritten only while no dnsmasq
        runs, and restarts from several threads (nodes leaving a network at once) go one
        after the other. Interleaved, two rewrites lost each other's drops, and a dnsmasq
        started in between kept the leases in memory; the node whose address was still
        leased to another MAC got no answer ("not using configured address ... because it
        is leased to ...", seen in the demo)."""
        with self._lock:
            self._restart_locked(drop)

    def _restart_locked(self, drop: Collection[str]) -> None:
        self._cancel_locked()
        self._stop(self._proc, self.dir / "pid")
        self._proc = None
        leases = self.dir / "leases"
        if leases.exists():
            known = {p.name.lower() for p in self.hosts_dir.glob("*")}
            gone = {d.lower() for d in drop}
            kept = [line for line in leases.read_text().splitlines()
                    if _lease_kept(line, known, gone)]
            leases.write_text("".join(f"{line}\n" for line in kept))
        self._start_locked()

    def _cancel_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._removed.clear()

    def pid(self) -> int | None:
        """The DHCP dnsmasq's pid, from its pid file (None if it has none)."""
        return _read_pid(self.dir / "pid")

    def hosts(self) -> list[str]:
        """The host lines dnsmasq serves (``MAC,set:TAG[,IP]``), sorted."""
        return sorted(p.read_text().strip() for p in self.hosts_dir.glob("*"))

    def stop(self) -> None:
        """Stop both dnsmasq processes (idempotent)."""
        with self._lock:
            self._cancel_locked()
            self._stop(self._proc, self.dir / "pid")
            self._stop(self._tftp, self.dir / "tftp.pid")
            self._proc = self._tftp = None

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None, pid_file: Path) -> None:
        if proc is None or proc.poll() is not None:
            return
        pid = _read_pid(pid_file)
        # under `ip netns exec` the pid file names dnsmasq itself
        process.stop(proc, grace=10, also=[pid] if pid else [])


def _lease_kept(line: str, known: set[str], gone: set[str]) -> bool:
    """Whether a lease file line (``expiry MAC IP hostname client-id``) stays: its MAC
    still has a host file (named by the MAC without colons) and neither its MAC nor its
    address is in ``gone``. Lines of another shape are kept."""
    fields = line.lower().split()
    if len(fields) < 3:
        return True
    return fields[1].replace(":", "") in known and not gone.intersection(fields[1:3])


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
