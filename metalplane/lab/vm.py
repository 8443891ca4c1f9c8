"""VM nodes of the virtual rack (``metalplane lab up --vms N``): libvirt/QEMU machines that
boot from the network first (the NIC's real iPXE ROM), beside the namespace nodes.

Per lab, one private ``libvirtd`` (its own configuration and socket in
``<state_dir>/libvirt``; ``virtlogd`` too when none runs, which the QEMU driver needs for
the serial consoles). Per VM ``<name>-vmI``: a libvirt domain of type ``qemu`` (TCG, never
KVM), 1 GiB, one CPU, SeaBIOS booting the network first (the virtio NIC's iPXE ROM, Debian's
``ipxe-qemu``), then the disk; a 2 GiB qcow2 virtio disk ``<state_dir>/disks/vm-I.qcow2``;
the serial console in ``<state_dir>/logs/vm-I-console.log``. Its NIC is a tap device
``<name>-vI`` made here (``ip tuntap``) and added to the ToR as an ordinary access port on
the provisioning VLAN, as a namespace node's veth is: the ToR runs from a private run
directory, so libvirt's own ``<virtualport type='openvswitch'/>`` (ovs-vsctl on the default
socket) cannot be used; libvirt opens the existing tap (``<interface type='ethernet'>``,
``managed='no'``). On the netdev datapath the tap is an ordinary *system* port (what was
tried and works); not ``type=tap``, with which ovs-vswitchd opens the tap device itself.

The VMs' BMC is sushy-tools' emulator with its libvirt driver
(``SUSHY_EMULATOR_LIBVIRT_URI`` at the private libvirtd, ``SUSHY_EMULATOR_ALLOWED_INSTANCES``
the VMs' UUIDs): a second emulator process of the lab, driven by metalplane's ``redfish``
hardware type unchanged. QEMU runs as root (a static DAC label): the lab's state directory
need not be reachable by libvirt's QEMU user. Sources: libvirt's domain XML format
(formatdomain.html: ``os/boot``, ``interface type='ethernet'``, ``seclabel``),
libvirtd.conf, ip-tuntap(8), sushy-tools' emulator configuration.

``--uefi-vms K``: the last K VMs boot UEFI instead, OVMF from Debian's ``ovmf`` (the build
without secure boot, a read-only pflash) with a variable store of their own in
``<state_dir>/libvirt/nvram`` (removed with the domain); their NIC's ROM is off, so OVMF's
own virtio-net driver and PXE client boot, and load ``snponly.efi`` over TFTP as a server's
UEFI firmware does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from metalplane.common import process
from metalplane.lab.rack import (
    LabError,
    Switch,
    _spawn,
    _wait_for,
    free_port,
    run,
    wait_http,
)

__all__ = ["QEMU", "SHA1_ONLY_BMC", "VM_DISK_SIZE", "VM_MEMORY_MIB", "create_vms",
           "forget_domains", "libvirt_uri", "power", "remove_vms", "running", "socket_uri",
           "start_emulator", "start_libvirtd",
           "start_virtualbmc", "virtualbmc_command", "virtualbmc_config"]

QEMU = "/usr/bin/qemu-system-x86_64"
VM_MEMORY_MIB = 1024
VM_DISK_SIZE = 2 << 30  # bytes
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
# UEFI VMs: Debian's ``ovmf``, the build without secure boot, and its variable store template
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
START_TIMEOUT = 120.0  # s: a fresh libvirtd probes QEMU's capabilities first


def running(program: str) -> bool:
    """Whether a process of ``program`` (its command name, ``/proc/PID/comm``) runs on
    this machine."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == program:
                    return True
    return False


def socket_uri(d: Path) -> str:
    """The URI of the private libvirtd of directory ``d`` (:func:`start_libvirtd`)."""
    return f"qemu:///system?socket={d / 'run' / 'libvirt-sock'}"


def libvirt_uri(state: Path) -> str:
    """The URI of the lab's private libvirtd."""
    return socket_uri(state / "libvirt")


def _need() -> None:
    for exe in ("libvirtd", "virtlogd", QEMU, "qemu-img"):
        if shutil.which(exe) is None:
            raise LabError(f"{exe} is not installed (run scripts/setup.sh)")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        raise LabError("the libvirt Python binding is missing: pip install "
                       "'metalplane[lab]' (scripts/setup.sh does)") from None


def start_libvirtd(d: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A private libvirtd whose configuration, socket (``d/run/libvirt-sock``: only root
    opens it, no auth, no TCP) and logs are in directory ``d``, and virtlogd when none runs
    (the QEMU driver's consoles need it). Returns its URI once it answers, and the
    processes started (libvirtd last). Source: libvirtd.conf, libvirtd(8). Raises
    :class:`LabError`, after stopping what it started."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        return _start_libvirtd(d, started), started
    except BaseException:
        for proc in reversed(started):  # libvirtd before its virtlogd
            process.stop(proc)
        raise


def _start_libvirtd(d: Path, started: list[subprocess.Popen[bytes]]) -> str:
    import libvirt

    (d / "run").mkdir(parents=True, exist_ok=True)
    if not running("virtlogd"):
        started.append(_spawn(["virtlogd", "--pid-file", str(d / "virtlogd.pid")], None,
                              d / "virtlogd.out"))
        deadline = time.monotonic() + 10
        while not VIRTLOGD_SOCKET.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    log = d / "libvirtd.log"
    conf = d / "libvirtd.conf"
    conf.write_text(f'unix_sock_dir = "{d / "run"}"\nunix_sock_rw_perms = "0700"\n'
                    'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    f'listen_tls = 0\nlisten_tcp = 0\nlog_outputs = "3:file:{log}"\n')
    proc = _spawn(["libvirtd", "--config", str(conf), "--pid-file", str(d / "libvirtd.pid")],
                  None, d / "libvirtd.out")
    started.append(proc)
    uri = socket_uri(d)
    # libvirt prints every error to stderr besides raising it; the exception is enough
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise LabError(f"libvirtd exited: see {d / 'libvirtd.out'} and {log}")
        try:
            conn = libvirt.open(uri)
            try:
                conn.getCapabilities()  # the QEMU driver is up (its probing done)
            finally:
                conn.close()
            return uri
        except libvirt.libvirtError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"libvirtd did not answer in {START_TIMEOUT:.0f} s: {exc}") \
                    from None
            time.sleep(0.5)


def _os_xml(firmware: str, nvram: Path | None) -> str:
    """``<os>``: SeaBIOS (libvirt's default), or for ``uefi`` OVMF as a read-only pflash
    with a per-VM variable store ``nvram`` copied from OVMF's template; secure boot off."""
    boot = "<boot dev='network'/><boot dev='hd'/>"
    if firmware != "uefi":
        return f"<os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>"
    return (f"<os><type arch='x86_64' machine='pc'>hvm</type>"
            f"<loader readonly='yes' secure='no' type='pflash'>{OVMF_CODE}</loader>"
            f"<nvram template='{OVMF_VARS}'>{nvram}</nvram>{boot}</os>"
            "<features><acpi/><apic/></features>")  # libvirt: UEFI requires ACPI


NIC_SPEED_MBPS = 10000  # what each VM NIC reports (full duplex), as a server's 10 GbE port


def _nic_xml(k: int, mac: str, tap: str, rom: str) -> str:
    return f"""<interface type='ethernet'><mac address='{mac}'/><target dev='{tap}' managed='no'/>
      <alias name='ua-nic{k}'/><model type='virtio'/>
      <driver name='qemu'><host csum='off' tso4='off' tso6='off' ecn='off' ufo='off'/>
      <guest csum='off' tso4='off' tso6='off' ecn='off' ufo='off'/></driver>{rom}</interface>"""


def domain_xml(name: str, uuid: str, nics: list[tuple[str, str]], disk: Path, console: Path,
               firmware: str = "bios", nvram: Path | None = None) -> str:
    """The domain: TCG, 1 GiB, network then disk, each ``(mac, tap)`` of ``nics`` a virtio
    NIC in that order (checksums done by the guest: the userspace datapath forwards frames
    as they come; each reports 10 Gb/s full duplex), serial to a file. ``firmware``
    ``bios``: SeaBIOS, the first NIC's iPXE ROM boots; ``uefi``: OVMF, whose own
    virtio-net driver and PXE client boot (the NICs' ROMs are off, as on a server whose
    UEFI network stack PXE-boots), ``nvram`` its variable store. Source: libvirt's
    formatdomain.html, and its QEMU namespace (``qemu:override``, drvqemu.html)."""
    rom = "<rom enabled='no'/>" if firmware == "uefi" else ""
    interfaces = "\n    ".join(_nic_xml(k, mac, tap, rom) for k, (mac, tap) in enumerate(nics))
    # QEMU's virtio-net reports no speed or duplex unless given; Linux's 802.3ad bonding
    # then leaves the port out of LACP (an aggregatable port is full duplex: IEEE 802.1AX).
    # libvirt has no element for them: its QEMU namespace sets the device's properties.
    link = "".join(
        f"<qemu:device alias='ua-nic{k}'><qemu:frontend>"
        f"<qemu:property name='speed' type='signed' value='{NIC_SPEED_MBPS}'/>"
        "<qemu:property name='duplex' type='string' value='full'/>"
        "</qemu:frontend></qemu:device>" for k in range(len(nics)))
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{VM_MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  {_os_xml(firmware, nvram)}
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{QEMU}</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
    {interfaces}
    <serial type='file'><source path='{console}' append='on'/><target port='0'/></serial>
    <console type='file'><source path='{console}'/><target type='serial' port='0'/></console>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <qemu:override>{link}</qemu:override>
</domain>"""


def _mac(lab: str, i: int) -> str:
    """``52:54:00`` (QEMU's prefix), then two bytes of the lab name's hash and ``i``."""
    h = uuidlib.uuid5(uuidlib.NAMESPACE_DNS, lab).bytes
    return f"52:54:00:{h[0]:02x}:{h[1]:02x}:{i:02x}"


def create_vms(name: str, state: Path, switch: Switch, vlan: int, count: int,
               uefi: int = 0, nics: int = 1) -> list[dict[str, Any]]:
    """The lab's libvirtd, ``count`` VMs with ``nics`` NICs each (each NIC a tap on its own
    port of ``switch``, access VLAN ``vlan``: ``<name>-vI`` for the first, the boot NIC,
    ``<name>-vInK`` for the K-th), defined and off; the last ``uefi`` of them boot OVMF
    (UEFI), the others SeaBIOS. Returns their specs (name, uuid, domain, mac and
    switch_port of the first NIC, ``nics``: ``[{"mac", "switch_port"}]`` of all, disk,
    console, firmware ``bios``/``uefi``, nvram for UEFI, ...); ``bmc_address`` is filled in
    by :func:`start_emulator`. Raises :class:`LabError`."""
    import libvirt

    _need()
    if uefi and not (OVMF_CODE.exists() and OVMF_VARS.exists()):
        raise LabError(f"{OVMF_CODE} is missing: UEFI VMs need Debian's ovmf (run "
                       "scripts/setup.sh)")
    uri, _started = start_libvirtd(state / "libvirt")  # lab down stops them
    vms = []
    conn = libvirt.open(uri)
    try:
        for i in range(1, count + 1):
            dom = f"{name}-vm{i}"
            wires = [{"mac": _mac(name, i + 0x10 * k),
                      "switch_port": f"{name}-v{i}" + (f"n{k + 1}" if k else "")}
                     for k in range(nics)]
            for w in wires:
                run("ip", "tuntap", "add", "dev", w["switch_port"], "mode", "tap")
                run("ip", "link", "set", w["switch_port"], "up")
                switch.vsctl("--may-exist", "add-port", switch.bridge, w["switch_port"],
                             f"tag={vlan}")
            disk = state / "disks" / f"vm-{i}.qcow2"
            run("qemu-img", "create", "-q", "-f", "qcow2", str(disk), str(VM_DISK_SIZE))
            console = state / "logs" / f"vm-{i}-console.log"
            uuid = str(uuidlib.uuid4())
            firmware = "uefi" if i > count - uefi else "bios"
            nvram = state / "libvirt" / "nvram" / f"vm-{i}_VARS.fd"
            if firmware == "uefi":
                nvram.parent.mkdir(parents=True, exist_ok=True)
            conn.defineXML(domain_xml(dom, uuid, [(w["mac"], w["switch_port"]) for w in wires],
                                      disk, console, firmware, nvram))
            vms.append({"name": f"vm-{i}", "uuid": uuid, "domain": dom, **wires[0],
                        "nics": wires, "disk": str(disk), "disk_size": VM_DISK_SIZE,
                        "console": str(console), "firmware": firmware,
                        **({"nvram": str(nvram)} if firmware == "uefi" else {})})
    finally:
        conn.close()
    return vms


def start_emulator(state: Path, vms: list[dict[str, Any]]) -> str:
    """sushy-tools' emulator, libvirt driver, for ``vms`` on a free loopback port; sets each
    VM's ``bmc_address``; returns the emulator's URL. Raises :class:`LabError`."""
    from metalplane.lab.lab import emulator_command

    port = free_port()
    cfg = state / "emulator-libvirt.conf"
    cfg.write_text(f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
                   f"SUSHY_EMULATOR_LISTEN_PORT = {port}\n"
                   f"SUSHY_EMULATOR_LIBVIRT_URI = {libvirt_uri(state)!r}\n"
                   f"SUSHY_EMULATOR_ALLOWED_INSTANCES = {[v['uuid'] for v in vms]!r}\n")
    log = state / "logs" / "emulator-libvirt.log"
    proc = _spawn(emulator_command(cfg), None, log)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/redfish/v1/Systems", proc, log, "sushy-emulator (libvirt)", timeout=60)
    for v in vms:
        v["bmc"] = "sushy-tools"
        v["bmc_address"] = f"redfish+http://127.0.0.1:{port}/redfish/v1/Systems/{v['uuid']}"
    return url


# virtualbmc is pyghmi's BMC class, which speaks only cipher suite 3 (HMAC-SHA1) but
# accepts a SHA-256 proposal (suite 17) and then answers in SHA-1, which pyghmi's client
# (metalplane's ipmi driver) cannot follow. A real BMC without SHA-256 refuses the proposal
# (RMCP+ Open Session Response status 0x11, "invalid authentication algorithm", IPMI 2.0
# table 13-15) and the client falls back to suite 3. Run in the BMC's process (never in
# metalplane's), this makes virtualbmc behave as such a BMC. (With Ironic's ipmitool driver,
# operators pin the suite instead: driver_info ``ipmi_cipher_suite``.)
SHA1_ONLY_BMC = """
from pyghmi.ipmi.private import serversession

_open = serversession.ServerSession.create_open_session_response


def _open_sha1_only(self, request):
    if request[12] != 1:
        return bytearray([request[0], 0x11, 0, 0]) + request[4:8]
    return _open(self, request)


serversession.ServerSession.create_open_session_response = _open_sha1_only
"""


def virtualbmc_config(directory: Path) -> Path:
    """A virtualbmc configuration of its own in ``directory``: its domains' directory, pid
    file and log there, its control port a free one on 127.0.0.1. Returns its path."""
    (directory / "domains").mkdir(parents=True, exist_ok=True)
    conf = directory / "virtualbmc.conf"
    conf.write_text(f"[default]\nconfig_dir = {directory / 'domains'}\n"
                    f"pid_file = {directory / 'vbmcd.pid'}\nserver_port = {free_port()}\n"
                    f"[log]\nlogfile = {directory / 'vbmcd.log'}\n")
    return conf


def virtualbmc_command(config: Path, sha1_only: bool = True) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``vbmcd`` in the foreground with ``config``
    (``VIRTUALBMC_CONFIG``); its command line names ``config``, so that the lab's teardown
    finds it and the BMC processes it forks. ``sha1_only``: see :data:`SHA1_ONLY_BMC`.
    Raises :class:`LabError` when virtualbmc is not installed."""
    import importlib.util

    if importlib.util.find_spec("virtualbmc") is None:
        raise LabError("virtualbmc is not installed: pip install 'metalplane[lab]' "
                       "(scripts/setup.sh does)")
    code = (SHA1_ONLY_BMC if sha1_only else "") + (
        "\nimport sys\nfrom virtualbmc.cmd import vbmcd\n"
        "sys.exit(vbmcd.main(['--foreground']))\n")
    env = {**os.environ, "VIRTUALBMC_CONFIG": str(config)}
    return [sys.executable, "-c", code, str(config)], env


def start_virtualbmc(state: Path, vms: list[dict[str, Any]], username: str = "admin",
                     password: str = "password") -> None:
    """virtualbmc in front of each of ``vms`` (IPMI 2.0 on UDP 127.0.0.1, a free port each):
    one ``vbmcd`` for the lab, configured in ``<state>/vbmc``; sets each VM's
    ``bmc_address`` (``ipmi://127.0.0.1:PORT``) and ``bmc`` (``virtualbmc``). Raises
    :class:`LabError` when vbmcd does not start or ``vbmc`` refuses a command. Source:
    virtualbmc's documentation (vbmc add/start, VIRTUALBMC_CONFIG)."""
    cmd, env = virtualbmc_command(virtualbmc_config(state / "vbmc"))
    proc = _spawn(cmd, env, state / "logs" / "vbmcd.log")
    vbmc = Path(sys.executable).parent / "vbmc"

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(vbmc), *args], env=env, capture_output=True, text=True,
                              timeout=60)

    def ready() -> bool:
        if proc.poll() is not None:
            raise LabError(f"vbmcd exited: see {state / 'logs' / 'vbmcd.log'}")
        return call("list").returncode == 0

    _wait_for(ready, 30, f"vbmcd did not answer: see {state / 'logs' / 'vbmcd.log'}")
    import socket

    for v in vms:
        port = free_port(socket.SOCK_DGRAM)
        for args in (("add", v["domain"], "--port", str(port), "--address", "127.0.0.1",
                      "--username", username, "--password", password,
                      "--libvirt-uri", libvirt_uri(state)), ("start", v["domain"])):
            r = call(*args)
            if r.returncode != 0:
                raise LabError(f"vbmc {args[0]} {v['domain']}: {(r.stderr or r.stdout).strip()}")
        v["bmc"], v["bmc_address"] = "virtualbmc", f"ipmi://127.0.0.1:{port}"


def remove_vms(name: str, state: Path) -> list[str]:
    """Destroy and undefine the lab's domains (``<name>-vm*``) in its libvirtd, if it
    answers; the caller then kills the processes and removes the taps and files. Returns
    what it removed."""
    sock = state / "libvirt" / "run" / "libvirt-sock"
    if not sock.exists():
        return forget_domains(name)
    try:
        import libvirt
    except ImportError:
        return []
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    removed = []
    try:
        conn = libvirt.open(libvirt_uri(state))
    except libvirt.libvirtError:
        return forget_domains(name)
    try:
        for dom in conn.listAllDomains():
            if not dom.name().startswith(f"{name}-vm"):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                # a UEFI domain's variable store goes with it (plain undefine refuses one)
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                removed.append(f"domain {dom.name()}")
    finally:
        conn.close()
    return removed


def forget_domains(name: str) -> list[str]:
    """When the lab's libvirtd is gone (a crash): the definitions of its domains that the
    privileged QEMU driver keeps in ``/etc/libvirt/qemu``, removed."""
    removed = []
    for f in Path("/etc/libvirt/qemu").glob(f"{name}-vm*.xml"):
        f.unlink(missing_ok=True)
        removed.append(f"domain definition {f}")
    return removed


def power(uri: str, domain: str) -> str:
    """``On`` or ``Off``: whether ``domain`` runs (libvirt), ``unknown`` if it cannot say."""
    try:
        import libvirt

        conn = libvirt.open(uri)
        try:
            return "On" if conn.lookupByName(domain).isActive() else "Off"
        finally:
            conn.close()
    except Exception:  # status is best effort
        return "unknown"

