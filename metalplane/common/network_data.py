"""Checking a node's ``network_data`` (Ironic's node field of API 1.66): the OpenStack
``network_data.json`` a virtual media boot gives the ramdisk for a DHCP-less boot.

The format is Nova's network metadata (the "metadata service network info" spec, as
cloud-init and glean read it): ``links`` (``id``, ``type`` such as ``phy``, ``bond``,
``vlan``, ``vif``; ``ethernet_mac_address``), ``networks`` (``id``, ``type`` ``ipv4``,
``ipv6``, ``ipv4_dhcp``, ``ipv6_dhcp``, ``ipv6_slaac``, ``ipv6_dhcpv6-stateful`` or
``ipv6_dhcpv6-stateless``; the ``link`` it is on; for static types ``ip_address``,
``netmask`` and ``routes`` of ``network``, ``netmask``, ``gateway``) and ``services``
(``type``, ``address``), as Ironic's ``network-data-schema.json`` has them. This module
only checks shapes; it raises :class:`Invalid` naming the first bad path.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from metalplane.common.exceptions import Invalid

__all__ = ["NETWORK_TYPES", "check_network_data"]

NETWORK_TYPES = frozenset({"ipv4", "ipv6", "ipv4_dhcp", "ipv6_dhcp", "ipv6_slaac",
                           "ipv6_dhcpv6-stateful", "ipv6_dhcpv6-stateless"})
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def _ip(value: Any, where: str) -> None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise Invalid(f"{where} {value!r} is not an IP address") from None


def _list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Invalid(f"network_data/{key} must be a list of objects")
    return items


def check_network_data(value: Any) -> dict[str, Any]:
    """``value`` if it is a network_data document (``{}`` clears it); raises
    :class:`Invalid` naming the bad path, e.g. ``network_data/networks/0/link``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("network_data must be an object (network_data.json)")
    if not value:
        return value
    unknown = sorted(set(value) - {"links", "networks", "services"})
    if unknown:
        raise Invalid(f"network_data: unknown key(s) {', '.join(unknown)} (links, networks, "
                      "services)")
    for key in ("links", "networks"):
        if key not in value:
            raise Invalid(f"network_data/{key} is required")
    link_ids = set()
    for i, link in enumerate(_list(value, "links")):
        where = f"network_data/links/{i}"
        if not isinstance(link.get("id"), str) or not link["id"]:
            raise Invalid(f"{where}/id is required (a string)")
        if not isinstance(link.get("type"), str) or not link["type"]:
            raise Invalid(f"{where}/type is required (phy, bond, vlan, vif, ...)")
        mac = link.get("ethernet_mac_address")
        if link["type"] == "phy" and not (isinstance(mac, str) and _MAC.match(mac)):
            raise Invalid(f"{where}/ethernet_mac_address {mac!r} is not a MAC address")
        link_ids.add(link["id"])
    for i, net in enumerate(_list(value, "networks")):
        where = f"network_data/networks/{i}"
        if net.get("type") not in NETWORK_TYPES:
            raise Invalid(f"{where}/type {net.get('type')!r} is not one of "
                          f"{', '.join(sorted(NETWORK_TYPES))}")
        if net.get("link") not in link_ids:
            raise Invalid(f"{where}/link {net.get('link')!r} names no link of "
                          "network_data/links")
        if net["type"] in ("ipv4", "ipv6"):
            _ip(net.get("ip_address"), f"{where}/ip_address")
            if net["type"] == "ipv4":
                try:
                    ipaddress.IPv4Network(f"0.0.0.0/{net.get('netmask')}")
                except ValueError:
                    raise Invalid(f"{where}/netmask {net.get('netmask')!r} is not an IPv4 "
                                  "netmask") from None
            routes = net.get("routes", [])
            if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
                raise Invalid(f"{where}/routes must be a list of objects")
            for j, route in enumerate(routes):
                for key in ("network", "netmask", "gateway"):
                    _ip(route.get(key), f"{where}/routes/{j}/{key}")
    for i, service in enumerate(_list(value, "services")):
        if not isinstance(service.get("type"), str):
            raise Invalid(f"network_data/services/{i}/type is required (e.g. dns)")
    return value
