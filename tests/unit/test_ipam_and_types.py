from __future__ import annotations

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import Conflict, Invalid
from metalplane.network import ipam
from metalplane.network.types import Segment, TypeManager


def test_subnet_defaults() -> None:
    v = ipam.validate_subnet({"cidr": "10.0.0.0/24"}, [])
    assert v["gateway_ip"] == "10.0.0.1"
    assert v["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    v = ipam.validate_subnet({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.100"}, [])
    assert v["allocation_pools"] == [{"start": "10.0.0.1", "end": "10.0.0.99"},
                                     {"start": "10.0.0.101", "end": "10.0.0.254"}]
    v = ipam.validate_subnet({"cidr": "10.0.0.0/24", "gateway_ip": None}, [])
    assert v["gateway_ip"] is None and v["allocation_pools"][0]["start"] == "10.0.0.1"
    v6 = ipam.validate_subnet({"cidr": "fd00::/64"}, ["10.0.0.0/24"])
    assert v6["ip_version"] == 6 and v6["gateway_ip"] == "fd00::1"


@pytest.mark.parametrize(("body", "others", "fragment"), [
    ({"cidr": "10.0.0.0/33"}, [], "not a valid network"),
    ({"cidr": "10.0.0.1/24"}, [], "not a valid network"),  # host bits set
    ({"cidr": "10.0.1.0/24"}, ["10.0.0.0/16"], "overlaps"),
    ({"cidr": "10.0.0.0/24", "gateway_ip": "10.9.9.9"}, [], "not in subnet"),
    ({"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.10",
                                                   "end": "10.0.1.5"}]}, [], "not inside"),
    ({"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.10", "end": "10.0.0.5"}]},
     [], "ends before"),
    ({"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.1", "end": "10.0.0.5"}]},
     [], "inside allocation pool"),
    ({"cidr": "10.0.0.0/24", "allocation_pools": [
        {"start": "10.0.0.10", "end": "10.0.0.20"}, {"start": "10.0.0.15", "end": "10.0.0.30"}]},
     [], "overlap"),
    ({"cidr": "10.0.0.0/24", "dns_nameservers": ["dns.example"]}, [], "dns_nameservers"),
])
def test_subnet_refusals(body: dict, others: list, fragment: str) -> None:
    with pytest.raises(Invalid, match=fragment):
        ipam.validate_subnet(body, others)


def test_first_free_skips_used_and_ends() -> None:
    pools = [{"start": "10.0.0.2", "end": "10.0.0.3"}, {"start": "10.0.0.8", "end": "10.0.0.8"}]
    assert ipam.first_free(pools, set()) == "10.0.0.2"
    assert ipam.first_free(pools, {"10.0.0.2", "10.0.0.3"}) == "10.0.0.8"
    assert ipam.first_free(pools, {"10.0.0.2", "10.0.0.3", "10.0.0.8"}) is None
    assert ipam.address_in_pools("10.0.0.8", pools)
    assert not ipam.address_in_pools("10.0.0.5", pools)


def manager(**kw: str) -> TypeManager:
    return TypeManager(Settings(**{"network_vlan_ranges": "physnet1:100:102,physnet2",
                                   "vxlan_vni_ranges": "5:6", **kw}))  # type: ignore[arg-type]


def test_provider_segments_are_checked() -> None:
    tm = manager()
    seg = tm.provider_segment({"provider:network_type": "vlan",
                               "provider:physical_network": "physnet1",
                               "provider:segmentation_id": 101})
    assert seg == Segment("vlan", "physnet1", 101)
    tm.check_in_range(seg)
    with pytest.raises(Invalid, match="outside the vlan range"):
        tm.check_in_range(Segment("vlan", "physnet1", 150))
    with pytest.raises(Invalid, match="outside the vlan range"):
        tm.check_in_range(Segment("vlan", "physnet2", 7))  # no range on physnet2
    for body, fragment in (
        ({"provider:network_type": "gre"}, "not one of"),
        ({"provider:network_type": "vlan"}, "physical_network is required"),
        ({"provider:network_type": "vlan", "provider:physical_network": "other"},
         "not configured"),
        ({"provider:network_type": "vlan", "provider:physical_network": "physnet1",
          "provider:segmentation_id": 5000}, "outside 1-4094"),
        ({"provider:network_type": "vlan", "provider:physical_network": "physnet1",
          "provider:segmentation_id": 4094}, "parking"),
        ({"provider:network_type": "flat", "provider:physical_network": "p",
          "provider:segmentation_id": 3}, "not allowed for a flat"),
        ({"provider:network_type": "vxlan", "provider:physical_network": "p"},
         "not allowed for a vxlan"),
    ):
        with pytest.raises(Invalid, match=fragment):
            tm.provider_segment(body)
    assert tm.provider_segment({}) is None


def test_allocation_picks_the_lowest_free_and_refuses_when_full() -> None:
    tm = manager()
    assert tm.candidates(None, set()) == Segment("vlan", "physnet1", 100)
    taken = {("vlan", "physnet1", 100), ("vlan", "physnet1", 101)}
    assert tm.candidates(None, taken) == Segment("vlan", "physnet1", 102)
    taken.add(("vlan", "physnet1", 102))
    with pytest.raises(Conflict, match="no free segment"):
        tm.candidates(None, taken)
    with pytest.raises(Conflict, match="already in use"):
        tm.candidates(Segment("vlan", "physnet1", 101), taken)
    assert tm.candidates(Segment("vxlan", None, None), set()) == Segment("vxlan", None, 5)
    assert tm.candidates(Segment("vxlan", None, None), {("vxlan", "", 5)}).segmentation_id == 6
    flat = Segment("flat", "physnet9", None)
    with pytest.raises(Conflict, match="flat network on physnet9"):
        tm.candidates(flat, {flat.allocation_key})


def test_bad_ranges_and_parking_inside_a_range() -> None:
    with pytest.raises(Invalid, match="network_vlan_ranges"):
        manager(network_vlan_ranges="physnet1:x:5")
    with pytest.raises(Invalid, match="parking_vlan"):
        TypeManager(Settings(network_vlan_ranges="physnet1:4000:4094"))
