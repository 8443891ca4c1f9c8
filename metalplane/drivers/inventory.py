"""Inspection data in ironic-python-agent's shape, processed as Ironic's inspection hooks do.

Pure functions (no I/O). The agent posts ``{"inventory": {...}, ...}`` (IPA's
``inspector.collect_default``: ``inventory`` from ``hardware.list_hardware_info``, plus
``boot_interface``, ``root_disk`` ...); :func:`process` keeps the inventory as it came and
builds the plugin data Ironic keeps beside it (its hooks ``validate-interfaces``:
``all_interfaces``, ``valid_interfaces``, ``macs``; ``parse-lldp``: ``parsed_lldp``), the
node's properties (hooks ``cpus``, ``memory``, ``architecture``, ``root-device``) and each
NIC's ``local_link_connection`` (hook ``local-link-connection``).

Inventory shape (IPA ``hardware.py``)::

    {"cpu": {"model_name", "frequency" (MHz, text), "count", "architecture", "flags": []},
     "memory": {"total" (bytes), "physical_mb"},
     "disks": [{"name", "size" (bytes), "model", "rotational", "serial", "wwn", "vendor",
                "by_path", ...}],
     "interfaces": [{"name", "mac_address", "ipv4_address", "has_carrier", "speed_mbps",
                     "lldp": [[tlv type, "hex of the TLV value"], ...] or null, ...}],
     "system_vendor": {"product_name", "serial_number", "manufacturer", "firmware"?},
     "boot": {"current_boot_mode": "bios"|"uefi", "pxe_interface": MAC or "01-aa-bb-..."},
     "bmc_address": IPv4 ("0.0.0.0": none), "bmc_mac"?, "hostname"}

LLDP TLVs: IEEE 802.1AB-2016 section 8.5 (Chassis ID 1, Port ID 2, Port Description 4,
System Name 5, System Description 6); names of the parsed values: Ironic's
``lldp_parsers.py`` (``switch_chassis_id``, ``switch_port_id``, ...).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ProcessedInventory", "parse_lldp_tlvs", "process", "pxe_mac"]

_MAC = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$")
GIB = 1024 ** 3


@dataclass(frozen=True)
class ProcessedInventory:
    """:func:`process`'s result: the ``inventory`` as stored, the ``plugin_data`` Ironic
    keeps beside it, ``properties`` for the node, the NICs' MACs (lower case) and, from
    LLDP, ``{mac: local_link_connection}``."""

    inventory: dict[str, Any]
    plugin_data: dict[str, Any]
    properties: dict[str, Any]
    macs: list[str]
    wiring: dict[str, dict[str, str]]


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_lldp_tlvs(tlvs: Any) -> dict[str, Any]:
    """``{"switch_chassis_id", "switch_chassis_id_subtype"?, "switch_port_id",
    "switch_port_description", "switch_system_name", "switch_system_description"}`` (those
    present) from IPA's raw TLVs ``[[type, hex], ...]``. A TLV that is not hex, or not a
    pair, is skipped; the first of each kind wins (as Ironic's parser keeps it)."""
    out: dict[str, Any] = {}
    if not isinstance(tlvs, list):
        return out
    for tlv in tlvs:
        if not isinstance(tlv, list | tuple) or len(tlv) != 2:
            continue
        kind, text = tlv
        try:
            value = binascii.unhexlify(str(text))
        except (binascii.Error, ValueError):
            continue
        if kind in (1, 2) and value:
            subtype, body = value[0], value[1:]
            is_mac = (kind == 1 and subtype == 4) or (kind == 2 and subtype == 3)
            parsed = (_mac_text(body) if is_mac and len(body) == 6
                      else body.decode(errors="replace"))
            name = "switch_chassis_id" if kind == 1 else "switch_port_id"
            if name not in out:
                out[name] = parsed
                out[f"{name}_is_mac"] = is_mac
        elif kind in (4, 5, 6):
            name = {4: "switch_port_description", 5: "switch_system_name",
                    6: "switch_system_description"}[kind]
            out.setdefault(name, value.decode(errors="replace"))
    return out


def pxe_mac(inventory: dict[str, Any]) -> str | None:
    """The MAC the node PXE-booted from (``boot.pxe_interface``, also in pxelinux's
    ``01-aa-bb-...`` form), lower case, or None."""
    boot = inventory.get("boot")
    mac = boot.get("pxe_interface") if isinstance(boot, dict) else None
    if not isinstance(mac, str) or not mac:
        return None
    mac = mac.lower()
    if mac.count("-") == 6:
        mac = mac.split("-", 1)[1]
    mac = mac.replace("-", ":")
    return mac if _MAC.match(mac) else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def process(data: dict[str, Any]) -> ProcessedInventory:
    """Process what the agent posted (see the module's docstring). ``data`` without an
    ``inventory`` object gives an empty result. Properties: ``cpus`` (``cpu.count``),
    ``cpu_arch`` (``cpu.architecture``), ``memory_mb`` (``memory.physical_mb``, else
    ``memory.total`` in MiB) and ``local_gb`` (the largest disk less 1 GiB, as metalplane
    reported it before; Ironic's root device hook takes the root disk); a value absent
    from the inventory is left out."""
    inventory = data.get("inventory") if isinstance(data, dict) else None
    if not isinstance(inventory, dict):
        return ProcessedInventory({}, {}, {}, [], {})
    plugin_data = {k: v for k, v in data.items() if k != "inventory"}
    props: dict[str, Any] = {}
    cpu: dict[str, Any] = inventory["cpu"] if isinstance(inventory.get("cpu"), dict) else {}
    if _int(cpu.get("count")):
        props["cpus"] = _int(cpu["count"])
    if cpu.get("architecture"):
        props["cpu_arch"] = str(cpu["architecture"])
    mem: dict[str, Any] = (inventory["memory"] if isinstance(inventory.get("memory"), dict)
                           else {})
    memory_mb = _int(mem.get("physical_mb")) or ((_int(mem.get("total")) or 0) // (1 << 20))
    if memory_mb:
        props["memory_mb"] = memory_mb
    sizes = [_int(d.get("size")) or 0 for d in inventory.get("disks") or []
             if isinstance(d, dict)]
    if sizes:
        props["local_gb"] = max(0, max(sizes) // GIB - 1)
    boot_mac = pxe_mac(inventory)
    all_interfaces: dict[str, Any] = {}
    parsed_lldp: dict[str, Any] = {}
    macs: list[str] = []
    wiring: dict[str, dict[str, str]] = {}
    for nic in inventory.get("interfaces") or []:
        if not isinstance(nic, dict) or not nic.get("name"):
            continue
        mac = str(nic.get("mac_address") or "").lower()
        if not _MAC.match(mac):
            continue
        name = str(nic["name"])
        all_interfaces[name] = {**nic, "mac_address": mac, "pxe_enabled": mac == boot_mac}
        if name != "lo":
            macs.append(mac)
        lldp = parse_lldp_tlvs(nic.get("lldp"))
        if not lldp:
            continue
        is_mac = lldp.pop("switch_chassis_id_is_mac", False)
        lldp.pop("switch_port_id_is_mac", None)
        parsed_lldp[name] = lldp
        # Ironic's local-link-connection hook: a switch_id only from a MAC chassis ID
        if is_mac and lldp.get("switch_port_id"):
            llc = {"switch_id": lldp["switch_chassis_id"], "port_id": lldp["switch_port_id"]}
            if lldp.get("switch_system_name"):
                llc["switch_info"] = lldp["switch_system_name"]
            wiring[mac] = llc
    plugin_data["all_interfaces"] = all_interfaces
    plugin_data["valid_interfaces"] = {k: v for k, v in all_interfaces.items() if k != "lo"}
    plugin_data["macs"] = macs
    if parsed_lldp:
        plugin_data["parsed_lldp"] = parsed_lldp
    return ProcessedInventory(inventory, plugin_data, props, macs, wiring)
