"""Type drivers: which segments a network may have, and allocation of tenant segments.

As Neutron ML2's type drivers: ``flat`` (one network per physical network), ``vlan``
(IDs 1-4094 on a physical network, tenant ranges from ``network_vlan_ranges``), ``vxlan``
and ``geneve`` (VNIs, tenant ranges from ``*_vni_ranges``). An allocation is a row in
``segment_allocations`` whose unique key makes two networks getting the same segment
impossible, whatever the concurrency; deleting the network releases it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from metalplane.common.config import Settings
from metalplane.common.exceptions import Conflict, Invalid

__all__ = ["NETWORK_TYPES", "Segment", "TypeManager"]

NETWORK_TYPES = ("flat", "vlan", "vxlan", "geneve")
MAX_ID = {"vlan": 4094, "vxlan": 2**24 - 1, "geneve": 2**24 - 1}


@dataclasses.dataclass(frozen=True)
class Segment:
    network_type: str
    physical_network: str | None
    segmentation_id: int | None

    @property
    def allocation_key(self) -> tuple[str, str, int]:
        return (self.network_type, self.physical_network or "", self.segmentation_id or 0)


def _ranges(spec: str, what: str, with_physnet: bool) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        parts = item.split(":")
        try:
            if with_physnet:
                if len(parts) == 1:
                    out.setdefault(parts[0], [])
                    continue
                physnet, lo, hi = parts[0], int(parts[1]), int(parts[2])
            else:
                physnet, lo, hi = "", int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            raise Invalid(f"{what} entry '{item}' must be "
                          f"{'physnet:min:max' if with_physnet else 'min:max'}") from None
        if lo > hi:
            raise Invalid(f"{what} entry '{item}': min is above max")
        out.setdefault(physnet, []).append((lo, hi))
    return out


class TypeManager:
    """Validates provider segments and picks tenant segments from the configured ranges."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vlan_ranges = _ranges(settings.network_vlan_ranges, "network_vlan_ranges", True)
        self.vni_ranges = {
            "vxlan": _ranges(settings.vxlan_vni_ranges, "vxlan_vni_ranges", False).get("", []),
            "geneve": _ranges(settings.geneve_vni_ranges, "geneve_vni_ranges", False).get("", []),
        }
        self.flat = [p.strip() for p in settings.flat_networks.split(",") if p.strip()]
        self.tenant_types = [t.strip() for t in settings.tenant_network_types.split(",")
                             if t.strip()]
        for vlan_list in self.vlan_ranges.values():
            for lo, hi in vlan_list:
                if lo <= settings.parking_vlan <= hi:
                    raise Invalid(f"parking_vlan {settings.parking_vlan} is inside a tenant "
                                  f"VLAN range {lo}:{hi}")

    def provider_segment(self, body: dict[str, Any]) -> Segment | None:
        """The segment asked for with ``provider:*`` attributes, validated; None if none
        was asked for. Raises :class:`Invalid` naming the attribute."""
        ntype = body.get("provider:network_type")
        physnet = body.get("provider:physical_network")
        seg_id = body.get("provider:segmentation_id")
        if ntype is None and physnet is None and seg_id is None:
            return None
        if ntype not in NETWORK_TYPES:
            raise Invalid(f"provider:network_type '{ntype}' is not one of "
                          f"{', '.join(NETWORK_TYPES)}")
        if ntype == "flat":
            if seg_id is not None:
                raise Invalid("provider:segmentation_id is not allowed for a flat network")
            if not physnet:
                raise Invalid("provider:physical_network is required for a flat network")
            if "*" not in self.flat and physnet not in self.flat:
                raise Invalid(f"physical network '{physnet}' is not in flat_networks "
                              f"({', '.join(self.flat) or 'none'})")
            return Segment("flat", physnet, None)
        if ntype == "vlan":
            if not physnet:
                raise Invalid("provider:physical_network is required for a vlan network")
            if physnet not in self.vlan_ranges:
                raise Invalid(f"physical network '{physnet}' is not configured in "
                              f"network_vlan_ranges ({self.settings.network_vlan_ranges})")
        elif physnet:
            raise Invalid(f"provider:physical_network is not allowed for a {ntype} network")
        if seg_id is None:
            return Segment(ntype, physnet, None)  # the allocator picks one
        try:
            seg_id = int(seg_id)
        except (TypeError, ValueError):
            raise Invalid(f"provider:segmentation_id '{seg_id}' is not a number") from None
        if not 1 <= seg_id <= MAX_ID[ntype]:
            raise Invalid(f"provider:segmentation_id {seg_id} is outside 1-{MAX_ID[ntype]} "
                          f"for {ntype}")
        if ntype == "vlan" and seg_id == self.settings.parking_vlan:
            raise Invalid(f"VLAN {seg_id} is the parking VLAN of unused switch ports")
        return Segment(ntype, physnet, seg_id)

    def check_in_range(self, seg: Segment) -> None:
        """A tenant (non-admin) choice must lie in the configured ranges."""
        if seg.segmentation_id is None or seg.network_type == "flat":
            return
        ranges = (self.vlan_ranges.get(seg.physical_network or "", [])
                  if seg.network_type == "vlan" else self.vni_ranges[seg.network_type])
        if not any(lo <= seg.segmentation_id <= hi for lo, hi in ranges):
            shown = ", ".join(f"{lo}:{hi}" for lo, hi in ranges) or "none configured"
            raise Invalid(f"provider:segmentation_id {seg.segmentation_id} is outside the "
                          f"{seg.network_type} range of "
                          f"{seg.physical_network or 'the tunnel'} ({shown})")

    def candidates(self, seg: Segment | None, taken: set[tuple[str, str, int]]) -> Segment:
        """A free segment: ``seg`` itself if fully given, else the lowest free ID of the
        ranges for its type (or of the tenant types). Raises :class:`Conflict` when the
        given one is taken or the ranges are full."""
        if seg is not None and (seg.network_type == "flat" or seg.segmentation_id is not None):
            if seg.allocation_key in taken:
                what = (f"flat network on {seg.physical_network}" if seg.network_type == "flat"
                        else f"{seg.network_type} {seg.segmentation_id}"
                             f"{' on ' + seg.physical_network if seg.physical_network else ''}")
                raise Conflict(f"{what} is already in use by another network")
            return seg
        types = [seg.network_type] if seg is not None else self.tenant_types
        for ntype in types:
            if ntype == "vlan":
                physnets = ([seg.physical_network] if seg and seg.physical_network
                            else sorted(self.vlan_ranges))
                for physnet in physnets:
                    for lo, hi in self.vlan_ranges.get(physnet or "", []):
                        for vid in range(lo, hi + 1):
                            if ("vlan", physnet or "", vid) not in taken:
                                return Segment("vlan", physnet, vid)
            elif ntype in ("vxlan", "geneve"):
                for lo, hi in self.vni_ranges[ntype]:
                    for vni in range(lo, hi + 1):
                        if (ntype, "", vni) not in taken:
                            return Segment(ntype, None, vni)
        raise Conflict(f"no free segment left for network types {', '.join(types)}; "
                       "widen network_vlan_ranges / *_vni_ranges")
