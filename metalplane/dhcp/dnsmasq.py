"""dnsmasq as the DHCP and TFTP server of the provider networks.

One dnsmasq per provider network interface, optionally inside a network namespace. Each
served port is a file in ``--dhcp-hostsdir`` (``MAC,set:TAG,IP``) and one in
``--dhcp-optsdir`` (its ``extra_dhcp_opts`` as ``tag:TAG,...`` lines). dnsmasq reads new
files by itself (inotify), so adding a host costs no restart. Removing or changing one
restarts dnsmasq (a few ms; that host's lease is dropped, other leases stay): dnsmasq 2.90
keeps the old entry of a deleted or rewritten file next to the new one until SIGHUP, and
SIGHUP made it crash once a client held a lease of a ``set:``-tagged host (both seen here).
``--dhcp-ignore=tag:!known`` means a MAC with no file gets no answer at all: a node that is
not being inspected, cleaned or deployed is not PXE-booted.
``--dhcp-userclass=set:ipxe,iPXE`` tags iPXE clients, so an option named
``tag:ipxe,bootfile-name`` goes to iPXE only and ``tag:!ipxe,bootfile-name`` to plain PXE
firmware. Replies are broadcast (``--dhcp-broadcast``): a unicast reply to a client without
an address depends on an ARP cache entry dnsmasq injects, which did not reach clients across
Open vSwitch's userspace datapath; PXE firmware asks for broadcast replies anyway. Source:
dnsmasq(8), on --dhcp-hostsdir, --dhcp-optsdir, --dhcp-userclass, --dhcp-ignore, --enable-tftp.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from metalplane.common.exceptions import Invalid, MetalplaneError

__all__ = ["DhcpError", "DnsmasqServer", "format_options"]

LOG = logging.getLogger(__name__)
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

    ``state_dir`` holds its hosts/opts directories, lease file, log and pid file.
    ``tftp_root`` is served over TFTP (e.g. Debian's /usr/lib/ipxe).
    """

    def __init__(self, name: str, interface: str, cidr: str, state_dir: Path,
                 netns: str | None = None, tftp_root: str | None = None) -> None:
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
        self._lock = threading.Lock()

    @property
    def log_file(self) -> Path:
        return self.dir / "dnsmasq.log"

    def command(self) -> list[str]:
        cmd = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
            f"--interface={self.interface}", "--bind-interfaces", "--except-interface=lo",
            f"--dhcp-range=set:{self.name},{self.net.network_address},static,"
            f"{self.net.netmask},600",
            f"--dhcp-hostsdir={self.hosts_dir}", f"--dhcp-optsdir={self.opts_dir}",
            "--dhcp-userclass=set:ipxe,iPXE", "--dhcp-ignore=tag:!known",
            "--dhcp-no-override", "--dhcp-broadcast", "--log-dhcp",
            f"--log-facility={self.log_file}",
            f"--dhcp-leasefile={self.dir / 'leases'}", f"--pid-file={self.dir / 'pid'}",
            "--user=root", "--group=root",
        ]
        if self.tftp_root:
            cmd += ["--enable-tftp", f"--tftp-root={self.tftp_root}"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return cmd

    def start(self) -> None:
        """Start dnsmasq (idempotent). Raises :class:`DhcpError` if it exits at once."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            for d in (self.hosts_dir, self.opts_dir, self.tmp_dir):
                d.mkdir(parents=True, exist_ok=True)
            errors = self.dir / "stderr"
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with open(errors, "wb") as err_file:
                self._proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                              stderr=err_file, start_new_session=True)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    err = errors.read_text()
                    raise DhcpError(f"dnsmasq for {self.name} on {self.interface} exited: "
                                    f"{err.strip() or self._proc.returncode}")
                if self.log_file.exists() and "started" in self._log_since(offset):
                    break
                time.sleep(0.05)
            LOG.info("dnsmasq for %s serving %s on %s%s", self.name, self.net, self.interface,
                     f" in {self.netns}" if self.netns else "")

    def _log_since(self, offset: int) -> str:
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def _write(self, directory: Path, name: str, text: str) -> None:
        tmp = self.tmp_dir / name
        tmp.write_text(text)
        os.replace(tmp, directory / name)  # appears whole, so dnsmasq never reads half

    def add_host(self, port_id: str, mac: str, ip: str | None,
                 opts: list[dict[str, Any]]) -> None:
        """Serve ``mac`` (address ``ip``, options ``opts``). A new MAC takes effect without a
        restart; changing a MAC's entry restarts dnsmasq (see the module's note). Raises
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
        if before is not None and before != host:
            self.restart(drop={mac.lower(), *([ip] if ip else [])})

    def remove_host(self, mac: str) -> None:
        """Stop serving ``mac``: its files go and dnsmasq restarts (see the module's note)."""
        name = mac.replace(":", "")
        removed = False
        for d in (self.hosts_dir, self.opts_dir):
            with contextlib.suppress(FileNotFoundError):
                (d / name).unlink()
                removed = True
        if removed:
            self.restart(drop={mac.lower()})

    def restart(self, drop: Collection[str] = ()) -> None:
        """Stop and start dnsmasq: it reads the directories afresh. Leases whose MAC or
        address is in ``drop`` are forgotten (a powered-off node never releases its lease,
        and dnsmasq will not offer a leased address to another MAC). Raises
        :class:`DhcpError`."""
        self.stop()
        leases = self.dir / "leases"
        if drop and leases.exists():  # lines: expiry MAC IP hostname client-id
            gone = set(drop)
            kept = [line for line in leases.read_text().splitlines()
                    if not gone.intersection(line.lower().split()[1:3])]
            leases.write_text("".join(f"{line}\n" for line in kept))
        self.start()

    def pid(self) -> int | None:
        try:
            return int((self.dir / "pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def hosts(self) -> list[str]:
        """The host lines dnsmasq serves (``MAC,set:TAG[,IP]``), sorted."""
        return sorted(p.read_text().strip() for p in self.hosts_dir.glob("*"))

    def stop(self) -> None:
        with self._lock:
            if self._proc is None:
                return
            pid = self.pid()
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGTERM)
                if pid:  # under `ip netns exec` the pid file names dnsmasq itself
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait(timeout=10)
            self._proc = None
