"""The machine's inventory in ironic-python-agent's shape, read from /proc and /sys.

Shape and sources: IPA's ``hardware.py`` (``GenericHardwareManager.list_hardware_info``:
``cpu``, ``memory``, ``disks``, ``interfaces``, ``system_vendor``, ``boot``,
``bmc_address``, ``bmc_mac``, ``hostname``), documented in
:mod:`metalplane.drivers.inventory`. Where IPA runs tools (lshw, dmidecode, ipmitool) this
reads the kernel's files: ``/proc/cpuinfo``, ``/proc/meminfo``,
``/sys/devices/system/memory``, ``/sys/block``, ``/sys/class/net``, ``/sys/class/dmi/id``,
``/sys/firmware/efi``, ``/proc/cmdline`` (``BOOTIF=``). The BMC address is ``0.0.0.0`` (IPA's
"none") unless the hardware file says otherwise: no ipmitool here.

A *hardware file* (``metalplane-agent --hardware``, JSON) overrides what the machine says,
key by key at the top level and one level down (``{"system_vendor": {"manufacturer":
"Dell Inc."}, "bmc_address": "192.0.2.10"}``): the lab's nodes are namespaces of one host,
and this gives each its own DMI identity and BMC. It must not be used to hide a real
machine's hardware.
"""

from __future__ import annotations

import fcntl
import os
import platform
import socket
import struct
from pathlib import Path
from typing import Any

__all__ = ["collect", "merge"]

SIOCGIFADDR = 0x8915


def _read(path: Path | str, default: str | None = None) -> str | None:
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return default


def _cpu() -> dict[str, Any]:
    model = freq = None
    flags: list[str] = []
    for line in (_read("/proc/cpuinfo", "") or "").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "cpu MHz" and freq is None:
            freq = value
        elif key in ("flags", "Features") and not flags:
            flags = value.split()
    return {"model_name": model, "frequency": freq, "count": os.cpu_count() or 1,
            "architecture": platform.machine(), "flags": flags}


def _memory() -> dict[str, Any]:
    total = 0
    for line in (_read("/proc/meminfo", "") or "").splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    physical_mb = None
    block = _read("/sys/devices/system/memory/block_size_bytes")
    if block:
        online = sum(1 for p in Path("/sys/devices/system/memory").glob("memory*/online")
                     if _read(p) == "1")
        physical_mb = int(block, 16) * online // (1 << 20) or None
    return {"total": total, "physical_mb": physical_mb or total // (1 << 20)}


def _disk(path: str, size: int) -> dict[str, Any]:
    """IPA's BlockDevice fields of ``path`` (a block device, or a file standing for one)."""
    disk: dict[str, Any] = {"name": path, "size": size, "model": None, "rotational": False,
                            "serial": None, "wwn": None, "vendor": None, "by_path": None,
                            "hctl": None}
    real = os.path.realpath(path)
    if real.startswith("/dev/"):
        sys = Path("/sys/block") / os.path.basename(real)
        disk["model"] = _read(sys / "device" / "model")
        disk["vendor"] = _read(sys / "device" / "vendor")
        disk["serial"] = _read(sys / "device" / "serial")
        disk["wwn"] = _read(sys / "device" / "wwid")
        disk["rotational"] = _read(sys / "queue" / "rotational") == "1"
        by_path = Path("/dev/disk/by-path")
        if by_path.is_dir():
            for link in sorted(by_path.iterdir()):
                if os.path.realpath(link) == real:
                    disk["by_path"] = str(link)
                    break
    else:
        disk["model"] = "virtual disk"
    return disk


def _ipv4(name: str) -> str | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        return socket.inet_ntoa(raw[20:24])
    except OSError:
        return None
    finally:
        s.close()


def _interface(name: str, mac: str, lldp: list[list[Any]] | None) -> dict[str, Any]:
    sys = Path("/sys/class/net") / name
    speed = _read(sys / "speed")
    driver = sys / "device" / "driver"
    return {
        "name": name, "mac_address": mac, "ipv4_address": _ipv4(name), "ipv6_address": None,
        "has_carrier": _read(sys / "carrier") == "1", "lldp": lldp,
        "vendor": _read(sys / "device" / "vendor"), "product": _read(sys / "device" / "device"),
        "client_id": None, "biosdevname": None,
        "speed_mbps": int(speed) if speed and speed.lstrip("-").isdigit()
        and int(speed) > 0 else None,
        "pci_address": (os.path.basename(os.path.realpath(sys / "device"))
                        if (sys / "device").exists() else None),
        "driver": os.path.basename(os.path.realpath(driver)) if driver.exists() else None,
    }


def _bootif() -> str | None:
    for arg in (_read("/proc/cmdline", "") or "").split():
        if arg.startswith("BOOTIF="):
            return arg.split("=", 1)[1]
    return None


def merge(inventory: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``inventory`` with ``overrides`` laid over it: a key's object merged one level
    down, anything else replaced."""
    out = dict(inventory)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def collect(nics: dict[str, str], lldp: dict[str, list[list[Any]]], disk: str,
            disk_size: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The inventory (IPA's shape) of this machine: NICs ``{name: mac}`` with their raw
    LLDP TLVs ``{name: [[type, hex], ...]}`` (null where none was heard, as IPA reports),
    the target ``disk`` of ``disk_size`` bytes, and the hardware file's ``overrides``."""
    vendor = {
        "product_name": _read("/sys/class/dmi/id/product_name"),
        "serial_number": _read("/sys/class/dmi/id/product_serial"),
        "manufacturer": _read("/sys/class/dmi/id/sys_vendor"),
        "firmware": {"vendor": _read("/sys/class/dmi/id/bios_vendor"),
                     "version": _read("/sys/class/dmi/id/bios_version"),
                     "build_date": _read("/sys/class/dmi/id/bios_date")},
    }
    inventory = {
        "cpu": _cpu(), "memory": _memory(), "disks": [_disk(disk, disk_size)],
        "interfaces": [_interface(n, m, lldp.get(n)) for n, m in nics.items()],
        "system_vendor": vendor,
        "boot": {"current_boot_mode": "uefi" if Path("/sys/firmware/efi").exists() else "bios",
                 "pxe_interface": _bootif()},
        "bmc_address": "0.0.0.0", "bmc_v6address": "::/0",
        "hostname": socket.gethostname(),
    }
    return merge(inventory, overrides or {})
