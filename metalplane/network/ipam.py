"""IP address management for subnets: validation and allocation.

Pure functions on the standard library's :mod:`ipaddress` (no netaddr needed for these
few operations). Allocation picks the lowest free address of the allocation pools; the
store's unique ``(subnet_id, ip_address)`` key is what guarantees no address is handed out
twice when two requests race. Shapes follow Neutron: ``allocation_pools`` is
``[{"start": ip, "end": ip}]``, ``host_routes`` ``[{"destination": cidr, "nexthop": ip}]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from metalplane.common.exceptions import Invalid

__all__ = ["address_in_pools", "default_pools", "first_free", "validate_subnet"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_cidr(cidr: Any, field: str = "cidr") -> IPNetwork:
    try:
        return ipaddress.ip_network(str(cidr), strict=True)
    except ValueError as exc:
        raise Invalid(f"{field} '{cidr}' is not a valid network address: {exc}") from None


def parse_ip(value: Any, field: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise Invalid(f"{field} '{value}' is not a valid IP address") from None


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[dict[str, str]]:
    """All usable hosts of ``net`` except the gateway, as Neutron's default pools."""
    first = net.network_address + 1
    last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
    if net.prefixlen >= (31 if net.version == 4 else 127):
        first, last = net.network_address, net.broadcast_address
    lo, hi = int(first), int(last)
    gw = int(gateway) if gateway is not None and gateway.version == net.version else None
    pools: list[tuple[int, int]] = []
    if gw is not None and lo <= gw <= hi:
        if gw > lo:
            pools.append((lo, gw - 1))
        if gw < hi:
            pools.append((gw + 1, hi))
    else:
        pools.append((lo, hi))
    make = ipaddress.ip_address
    return [{"start": str(make(a) if net.version == 4 else ipaddress.IPv6Address(a)),
             "end": str(make(b) if net.version == 4 else ipaddress.IPv6Address(b))}
            for a, b in pools]


def validate_subnet(body: dict[str, Any], others: Iterable[str]) -> dict[str, Any]:
    """Check a subnet and fill Neutron's defaults.

    ``others`` are the CIDRs of the network's other subnets; an overlap is refused.
    Returns the values to store. Raises :class:`Invalid` naming the field.
    """
    net = parse_cidr(body.get("cidr"))
    version = int(body.get("ip_version") or net.version)
    if version != net.version:
        raise Invalid(f"ip_version {version} does not match cidr {net}")
    for other in others:
        o = ipaddress.ip_network(other)
        if o.version == net.version and net.overlaps(o):
            raise Invalid(f"cidr {net} overlaps subnet {o} on the same network")
    gateway: IPAddress | None
    if "gateway_ip" in body and body["gateway_ip"] is None:
        gateway = None
    elif body.get("gateway_ip"):
        gateway = parse_ip(body["gateway_ip"], "gateway_ip")
        if gateway not in net:
            raise Invalid(f"gateway_ip {gateway} is not in subnet {net}")
    else:
        gateway = net.network_address + 1
    pools_in = body.get("allocation_pools")
    if pools_in:
        pools = []
        ranges: list[tuple[int, int, str]] = []
        for pool in pools_in:
            if not isinstance(pool, dict) or "start" not in pool or "end" not in pool:
                raise Invalid("allocation_pools entries need start and end")
            a = parse_ip(pool["start"], "allocation_pools/start")
            b = parse_ip(pool["end"], "allocation_pools/end")
            if a not in net or b not in net:
                raise Invalid(f"allocation pool {a}-{b} is not inside subnet {net}")
            ia, ib = int(a), int(b)
            if ib < ia:
                raise Invalid(f"allocation pool {a}-{b} ends before it starts")
            if gateway is not None and ia <= int(gateway) <= ib:
                raise Invalid(f"gateway_ip {gateway} is inside allocation pool {a}-{b}")
            for c, d, label in ranges:
                if ia <= d and c <= ib:
                    raise Invalid(f"allocation pools {a}-{b} and {label} overlap")
            ranges.append((ia, ib, f"{a}-{b}"))
            pools.append({"start": str(a), "end": str(b)})
    else:
        pools = default_pools(net, gateway)
    dns = [str(parse_ip(d, "dns_nameservers")) for d in body.get("dns_nameservers") or []]
    routes = []
    for r in body.get("host_routes") or []:
        if not isinstance(r, dict) or "destination" not in r or "nexthop" not in r:
            raise Invalid("host_routes entries need destination and nexthop")
        routes.append({"destination": str(parse_cidr(r["destination"])),
                       "nexthop": str(parse_ip(r["nexthop"], "host_routes/nexthop"))})
    return {"cidr": str(net), "ip_version": version,
            "gateway_ip": str(gateway) if gateway is not None else None,
            "allocation_pools": pools, "dns_nameservers": dns, "host_routes": routes}


def _pool_addresses(pools: list[dict[str, str]]) -> Iterator[IPAddress]:
    for pool in pools:
        a, b = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        for n in range(int(b) - int(a) + 1):
            yield a + n


def address_in_pools(address: str, pools: list[dict[str, str]]) -> bool:
    ip = int(ipaddress.ip_address(address))
    return any(int(ipaddress.ip_address(p["start"])) <= ip <= int(ipaddress.ip_address(p["end"]))
               for p in pools)


def first_free(pools: list[dict[str, str]], used: set[str], limit: int = 1 << 20) -> str | None:
    """The lowest pool address not in ``used``; None when the pools are full. Looks at
    most ``limit`` addresses (bounded for huge IPv6 pools)."""
    for n, ip in enumerate(_pool_addresses(pools)):
        if n >= limit:
            return None
        if str(ip) not in used:
            return str(ip)
    return None
