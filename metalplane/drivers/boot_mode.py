"""A node's boot mode (``bios`` or ``uefi``) and the first-stage iPXE binary it is given.

Ironic's rule (``ironic/drivers/modules/boot_mode_utils.py``, ``get_boot_mode_for_deploy``
and ``get_boot_mode``), in order: secure boot asked in ``instance_info.capabilities`` means
``uefi`` (no further check); else ``instance_info.capabilities`` ``boot_mode``,
``instance_info`` ``deploy_boot_mode`` (deprecated in Ironic, still read),
``properties.capabilities`` ``boot_mode`` (``"key:value,key:value"``),
``driver_internal_info`` ``deploy_boot_mode``; else the ``default_boot_mode`` setting. A
boot mode that disagrees with the one in ``properties.capabilities`` is refused, as Ironic
refuses it.

The PXE first stage follows the boot mode, per node (Ironic's ``get_ipxe_boot_file``):
``uefi_ipxe_bootfile_name`` (``snponly.efi``) for UEFI, ``ipxe_bootfile_name``
(``undionly.kpxe``) for BIOS. Only hosts nobody enrolled (auto-discovery) are told apart by
their DHCP client architecture instead, as ironic-inspector's dnsmasq does
(:mod:`metalplane.dhcp.dnsmasq`). This module reads nodes; it never changes them.
"""

from __future__ import annotations

import json
from typing import Any

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid

__all__ = ["BOOT_MODES", "boot_mode", "ipxe_bootfile", "node_capability"]

BOOT_MODES = ("bios", "uefi")


def node_capability(node: Any, key: str) -> str | None:
    """``key``'s value in ``node.properties["capabilities"]`` (``"k:v,k:v"``, Ironic's
    format; a dict is taken too), or None. Malformed entries are skipped, as Ironic's
    ``get_node_capability`` skips them."""
    caps = (node.properties or {}).get("capabilities")
    if isinstance(caps, dict):
        value = caps.get(key)
        return None if value is None else str(value).strip()
    for item in str(caps or "").split(","):
        k, sep, v = item.partition(":")
        if sep and k.strip() == key and v.strip() and ":" not in v:
            return v.strip()
    return None


def _instance_capabilities(node: Any) -> dict[str, Any]:
    caps = (node.instance_info or {}).get("capabilities") or {}
    if isinstance(caps, str):  # Nova sends it as JSON text
        try:
            caps = json.loads(caps)
        except ValueError:
            caps = None
    if not isinstance(caps, dict):
        raise Invalid("instance_info.capabilities must be a dictionary or a JSON "
                      "dictionary")
    return caps


def _checked(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    mode = str(value).strip().lower()
    if mode not in BOOT_MODES:
        raise Invalid(f"{field} must be bios or uefi, not {value!r}")
    return mode


def boot_mode(node: Any, settings: Settings) -> str:
    """``"bios"`` or ``"uefi"``: the boot mode ``node`` is deployed and PXE-booted in (see
    the module's note for the order). Raises :class:`Invalid` (HTTP 400) naming the field
    for a value other than bios/uefi, malformed ``instance_info.capabilities``, or a boot
    mode that disagrees with ``properties.capabilities``."""
    inst = _instance_capabilities(node)
    if str(inst.get("secure_boot", "")).lower() == "true":
        return "uefi"
    cap = _checked(node_capability(node, "boot_mode"), "properties.capabilities boot_mode")
    mode = (_checked(inst.get("boot_mode"), "instance_info.capabilities boot_mode")
            or _checked((node.instance_info or {}).get("deploy_boot_mode"),
                        "instance_info.deploy_boot_mode")
            or cap
            or _checked((node.driver_internal_info or {}).get("deploy_boot_mode"),
                        "driver_internal_info.deploy_boot_mode"))
    if mode and cap and mode != cap:
        raise Invalid(f"node {node.uuid} boot mode {mode} violates properties.capabilities "
                      f"boot_mode:{cap}")
    return mode or settings.default_boot_mode


def ipxe_bootfile(node: Any, settings: Settings) -> str:
    """The file PXE firmware loads over TFTP to start iPXE: ``uefi_ipxe_bootfile_name``
    for a UEFI node, else ``ipxe_bootfile_name``. Raises :class:`Invalid` as
    :func:`boot_mode`."""
    if boot_mode(node, settings) == "uefi":
        return settings.uefi_ipxe_bootfile_name
    return settings.ipxe_bootfile_name
