"""libvirt for functional tests: a libvirtd to talk to, and small TCG domains in it.

:func:`libvirt_daemon` yields a :class:`Libvirt` whose ``uri`` reaches a libvirtd: its own
private one when none runs on the machine (its own configuration file and socket directory,
``libvirtd --config``, ``unix_sock_dir``, no TCP, no auth on the socket, which only root can
open; and ``virtlogd`` when none runs, which the QEMU driver needs for the domains'
consoles), else the running one, left as it was found. :meth:`Libvirt.domain` defines a
domain (type ``qemu``: TCG, never KVM), 64 MiB and no disk or NIC unless asked, with a
name carrying the test's prefix; every domain and volume made through it is destroyed and
undefined when the daemon's ``with`` block ends, even on failure, and the processes started
are stopped.

What libvirtd allows: as root it runs the QEMU driver "privileged", whose state lives in
fixed places (``/etc/libvirt/qemu``, ``/run/libvirt/qemu``, ``/var/lib/libvirt/qemu``), so
only the socket and the logs are private; two privileged libvirtds must not run at once,
hence "use the one that runs", and the shared lock (``flock /tmp/metalplane-lab.lock``)
around any test that uses this. Needs root, ``libvirt-daemon``,
``libvirt-daemon-driver-qemu``, ``qemu-system-x86``, the ``libvirt-qemu`` user and the
``kvm`` group (scripts/setup.sh makes them) and the ``libvirt`` Python binding.

libvirt checks that its QEMU user may open ``/dev/kvm`` when that exists; where it may not
(root-only ``/dev/kvm``, no udev to apply Debian's ``root:kvm 0660``) it probes QEMU's
capabilities again on every domain definition (~30 s each). setup.sh gives ``/dev/kvm``
Debian's group and mode; the domains are TCG all the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalplane.common import process
from metalplane.lab.lab import emulator_command
from metalplane.lab.rack import LabError, free_port, wait_http
from metalplane.lab.vm import (
    running,
    start_libvirtd,
    virtualbmc_command,
    virtualbmc_config,
)

__all__ = ["Libvirt", "VirtualBmc", "libvirt_daemon", "missing", "sushy_libvirt_emulator",
           "virtual_bmc"]

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
QEMU = "/usr/bin/qemu-system-x86_64"


def missing() -> str | None:
    """Why libvirt cannot be used here (not root, a program or the binding missing), or
    None. A test skips only for ``not root``: CI is root and setup.sh installs the rest."""
    if os.geteuid() != 0:
        return "needs root (a privileged libvirtd runs the QEMU domains)"
    for exe in ("libvirtd", "virtlogd", QEMU):
        if shutil.which(exe) is None:
            return f"{exe} is not installed (scripts/setup.sh installs it)"
    return None


@dataclass
class Libvirt:
    """A reachable libvirtd (``uri``) and what this test made in it."""

    uri: str
    workdir: Path
    prefix: str = field(default_factory=lambda: f"mptest-{uuidlib.uuid4().hex[:6]}")
    _domains: list[str] = field(default_factory=list)
    _files: list[Path] = field(default_factory=list)

    def connect(self) -> Any:
        """A new libvirt connection (the caller closes it)."""
        import libvirt

        return libvirt.open(self.uri)

    def domain(self, name: str, memory_mib: int = 64, disk_mib: int = 0,
               metadata: str = "") -> str:
        """Define (not start) a TCG domain ``<prefix>-<name>``; return its full name.
        ``disk_mib``: a raw disk file of that size in the work directory (0: no disk).
        ``metadata``: XML put in the domain's ``<metadata>``."""
        full = f"{self.prefix}-{name}"
        disk = ""
        if disk_mib:
            # QEMU runs as libvirt-qemu (libvirt chowns the file to it): it must be able to
            # reach the file through the work directory (mkdtemp makes it 0700)
            os.chmod(self.workdir, 0o711)
            path = self.workdir / f"{full}.img"
            with open(path, "wb") as f:
                f.truncate(disk_mib << 20)
            self._files.append(path)
            disk = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                    f"<source file='{path}'/><target dev='vda' bus='virtio'/></disk>")
        xml = f"""<domain type='qemu'>
  <name>{full}</name>
  <uuid>{uuidlib.uuid4()}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <metadata>{metadata}</metadata>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices><emulator>{QEMU}</emulator>{disk}</devices>
</domain>"""
        conn = self.connect()
        try:
            conn.defineXML(xml)
        finally:
            conn.close()
        self._domains.append(full)
        return full

    def uuid(self, name: str) -> str:
        conn = self.connect()
        try:
            return str(conn.lookupByName(name).UUIDString())
        finally:
            conn.close()

    def is_active(self, name: str) -> bool:
        conn = self.connect()
        try:
            return bool(conn.lookupByName(name).isActive())
        finally:
            conn.close()

    def xml(self, name: str, inactive: bool = True) -> ET.Element:
        """The domain's XML (its persistent definition unless ``inactive`` is False)."""
        import libvirt

        conn = self.connect()
        try:
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
            return ET.fromstring(conn.lookupByName(name).XMLDesc(flags))
        finally:
            conn.close()

    def boot_device(self, name: str) -> str | None:
        """The first ``<os><boot dev=...>`` of the domain's definition (``hd``, ``network``,
        ``cdrom``), or None."""
        boot = self.xml(name).find("./os/boot")
        return None if boot is None else boot.get("dev")

    def cleanup(self) -> list[str]:
        """Destroy and undefine every domain made here, remove their disks; return what
        could not be removed (each tried even if another fails)."""
        import libvirt

        problems: list[str] = []
        try:
            conn = self.connect()
        except libvirt.libvirtError as exc:
            return [f"connecting to {self.uri}: {exc}"]
        try:
            for name in self._domains:
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    continue  # already gone
                try:
                    if dom.isActive():
                        dom.destroy()
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                except libvirt.libvirtError as exc:
                    problems.append(f"domain {name}: {exc}")
        finally:
            conn.close()
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return problems


@contextlib.contextmanager
def libvirt_daemon(workdir: Path) -> Iterator[Libvirt]:
    """A libvirtd to use (see the module's docstring), and everything made in it removed on
    exit. ``workdir``: a private directory for the socket, configuration, logs and disks
    (short enough for a unix socket path). Raises RuntimeError if libvirtd does not start."""
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[Any]] = []
    try:
        if running("libvirtd") and SYSTEM_SOCKET.exists():
            uri = "qemu:///system"
        else:
            try:
                uri, started = start_libvirtd(workdir)
            except LabError as exc:
                raise RuntimeError(str(exc)) from None
        lv = Libvirt(uri=uri, workdir=workdir)
        try:
            yield lv
        finally:
            problems = lv.cleanup()
            if problems:
                raise RuntimeError("libvirt clean-up left: " + "; ".join(problems))
    finally:
        for proc in reversed(started):  # libvirtd before its virtlogd
            process.stop(proc)


@contextlib.contextmanager
def sushy_libvirt_emulator(lv: Libvirt, workdir: Path, domains: list[str]) -> Iterator[str]:
    """sushy-tools' emulator with its libvirt driver (``SUSHY_EMULATOR_LIBVIRT_URI``) on a
    free 127.0.0.1 port, serving only ``domains`` (``SUSHY_EMULATOR_ALLOWED_INSTANCES``, by
    UUID: the Systems' ids); yields its URL. Stopped on exit."""
    port = free_port()
    cfg = workdir / "emulator-libvirt.conf"
    allowed = [lv.uuid(d) for d in domains]
    cfg.write_text(f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
                   f"SUSHY_EMULATOR_LISTEN_PORT = {port}\n"
                   f"SUSHY_EMULATOR_LIBVIRT_URI = {lv.uri!r}\n"
                   f"SUSHY_EMULATOR_ALLOWED_INSTANCES = {allowed!r}\n")
    log_path = workdir / "emulator-libvirt.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = process.spawn(emulator_command(cfg), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/redfish/v1/Systems", proc, log_path, "sushy-emulator (libvirt)")
        yield url
    finally:
        process.stop(proc)
        log.close()


@dataclass
class VirtualBmc:
    """One virtualbmc BMC: IPMI 2.0 on UDP ``127.0.0.1:port`` for a libvirt domain."""

    port: int
    username: str
    password: str




@contextlib.contextmanager
def virtual_bmc(lv: Libvirt, workdir: Path, domain: str, username: str = "admin",
                password: str = "vbmc-secret", sha1_only: bool = True
                ) -> Iterator[VirtualBmc]:
    """virtualbmc (``vbmcd`` and ``vbmc add``/``start``) in front of ``domain``, with its
    own configuration directory (``VIRTUALBMC_CONFIG``), its control port and its IPMI port
    on 127.0.0.1; yields the BMC. ``sha1_only``: refuse SHA-256 session proposals as a real
    SHA-1-only BMC does (see ``metalplane.lab.vm.SHA1_ONLY_BMC``). ``vbmcd`` (and the BMC
    process it forks) is stopped on exit. Raises RuntimeError when vbmc refuses a command."""
    import sys

    bindir = Path(sys.executable).parent
    vdir = workdir / "vbmc"
    cmd, env = virtualbmc_command(virtualbmc_config(vdir), sha1_only=sha1_only)
    log = open(vdir / "vbmcd.out", "w")  # noqa: SIM115 - closed below
    daemon = process.spawn(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def vbmc(*args: str) -> str:
        r = subprocess.run([str(bindir / "vbmc"), *args], env=env, capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"vbmc {' '.join(args)}: {r.stderr or r.stdout}")
        return r.stdout

    import socket

    port = free_port(socket.SOCK_DGRAM)
    try:
        deadline = time.monotonic() + 30
        while True:  # vbmcd answers once its control socket is up
            try:
                vbmc("list")
                break
            except RuntimeError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("vbmcd did not start: " + (vdir / "vbmcd.out")
                                       .read_text(errors="replace")[-2000:]) from None
                time.sleep(0.5)
        vbmc("add", domain, "--port", str(port), "--address", "127.0.0.1",
             "--username", username, "--password", password, "--libvirt-uri", lv.uri)
        vbmc("start", domain)
        yield VirtualBmc(port=port, username=username, password=password)
    finally:
        with contextlib.suppress(Exception):
            vbmc("stop", domain)
        process.stop(daemon)
        log.close()
