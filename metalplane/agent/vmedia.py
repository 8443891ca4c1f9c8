"""What the ramdisk reads from the virtual media it was booted from.

A node booted from Redfish virtual media has no DHCP answer to learn anything from; the
media carries it all (Ironic's ``redfish-virtual-media`` boot and "Layer 3 or DHCP-less
ramdisk booting"):

- the agent's parameters: ``parameters.txt`` at the root of the boot ISO (the kernel
  command line its boot loader passes), or of the configuration image labelled
  ``ir-vfd-dev`` inserted beside a prebuilt ISO; ``key=value`` words separated by blanks
  or lines, as ironic-python-agent's ``utils._get_vmedia_params`` reads them;
- for a DHCP-less boot, the node's network configuration: Ironic labels the boot ISO
  ``config-2`` and puts ``openstack/latest/network_data.json`` (the OpenStack
  ``network_data`` format: ``links``, ``networks``, ``services``) on it, so that glean
  (diskimage-builder's ``simple-init`` element) in the ramdisk finds a config drive and
  sets the addresses and routes of its ``networks`` on the NICs of their ``links``, found
  by MAC (:func:`static_networks`).

The ISO is read with pycdlib (:func:`metalplane.agent.configdrive.read_iso` for the
config drive's files). The writer is :mod:`metalplane.drivers.modules.boot_iso`, which
takes its names from here. This module reads bytes; it configures nothing.
"""

from __future__ import annotations

import io
import ipaddress
from dataclasses import dataclass
from typing import Any

import pycdlib

from metalplane.agent import configdrive

__all__ = ["CONFIG_DRIVE_LABEL", "CONFIG_LABEL", "NETWORK_DATA_FILE", "PARAMETERS_FILE",
           "Media", "StaticNetwork", "parse_parameters", "read", "static_networks"]

PARAMETERS_FILE = "parameters.txt"
CONFIG_LABEL = "ir-vfd-dev"  # ironic-python-agent's label of the configuration image
CONFIG_DRIVE_LABEL = configdrive.LABEL  # "config-2": what glean looks for
NETWORK_DATA_FILE = "openstack/latest/network_data.json"


@dataclass(frozen=True)
class Media:
    """One image read from virtual media: its volume ``label``, the agent's
    ``parameters`` (``{key: value}``; a bare word maps to ``""``) and the
    ``network_data`` it carries (None without one)."""

    label: str
    parameters: dict[str, str]
    network_data: dict[str, Any] | None


@dataclass(frozen=True)
class StaticNetwork:
    """An IPv4 address to set on a NIC: ``address`` with ``prefixlen`` (bits), the
    ``gateway`` of its default route (None: no default route), ``routes`` (other
    ``(destination CIDR, gateway)`` pairs)."""

    address: str
    prefixlen: int
    gateway: str | None
    routes: tuple[tuple[str, str], ...] = ()


def parse_parameters(text: str) -> dict[str, str]:
    """``key=value`` words of ``text`` (a kernel command line, or one per line) as a dict;
    a word without ``=`` maps to ``""``; a later word wins."""
    out: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        if key:
            out[key] = value
    return out


def read(data: bytes) -> Media:
    """Read the boot ISO or configuration image ``data``. Raises ValueError when it is
    not an ISO 9660 image, holds no ``parameters.txt``, or its ``network_data.json`` is
    not a JSON object."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(data))
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise ValueError(f"not an ISO 9660 image: {exc}") from None
    try:
        label = iso.pvd.volume_identifier.decode(errors="replace").strip()
        buf = io.BytesIO()
        try:
            iso.get_file_from_iso_fp(buf, rr_path=f"/{PARAMETERS_FILE}")
        except pycdlib.pycdlibexception.PyCdlibException:
            raise ValueError(f"the image labelled {label!r} holds no "
                             f"{PARAMETERS_FILE}") from None
    finally:
        iso.close()
    parameters = parse_parameters(buf.getvalue().decode(errors="replace"))
    network_data = None
    if label == CONFIG_DRIVE_LABEL:
        network_data = configdrive.read_iso(io.BytesIO(data)).get("network_data")
        if network_data is not None and not isinstance(network_data, dict):
            raise ValueError(f"{NETWORK_DATA_FILE} is not a JSON object")
    return Media(label, parameters, network_data)


def static_networks(network_data: dict[str, Any], mac: str) -> list[StaticNetwork]:
    """The static IPv4 networks of ``network_data`` to set on the NIC with MAC ``mac``:
    those (``type`` ``ipv4``) whose ``link`` is a link with that ``ethernet_mac_address``
    (a ``phy``, ``vif`` or ``bond`` link). Routes whose ``network`` is ``0.0.0.0`` give
    the default gateway. Entries without an address are left out (DHCP ones: glean asks
    DHCP for those). Raises ValueError naming the entry for a bad address or netmask."""
    links = {str(link.get("id")) for link in network_data.get("links") or []
             if isinstance(link, dict)
             and str(link.get("ethernet_mac_address") or "").lower() == mac.lower()}
    out = []
    for i, net in enumerate(network_data.get("networks") or []):
        if not isinstance(net, dict) or net.get("type") != "ipv4" \
                or str(net.get("link")) not in links or not net.get("ip_address"):
            continue
        try:
            iface = ipaddress.IPv4Interface(f"{net['ip_address']}/"
                                            f"{net.get('netmask') or '255.255.255.255'}")
            gateway = None
            routes = []
            for route in net.get("routes") or []:
                if not isinstance(route, dict) or not route.get("gateway"):
                    continue
                if route.get("network") in ("0.0.0.0", None):
                    gateway = str(ipaddress.IPv4Address(route["gateway"]))
                    continue
                dest = ipaddress.IPv4Network(
                    f"{route['network']}/{route.get('netmask') or '255.255.255.255'}",
                    strict=False)
                routes.append((str(dest), str(ipaddress.IPv4Address(route["gateway"]))))
        except ValueError as exc:
            raise ValueError(f"network_data networks[{i}]: {exc}") from None
        out.append(StaticNetwork(str(iface.ip), iface.network.prefixlen, gateway,
                                 tuple(routes)))
    return out
