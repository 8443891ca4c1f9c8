"""The ToR ACL's translation of security group rules into OpenFlow flows (no switch):
every rule shape for both ethertypes, the port-range masks, and that ovs-ofctl parses
every flow produced."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from metalplane.db.models import SecurityGroupRule, Switch
from metalplane.network.ovs import SwitchError
from metalplane.network.tor_acl import (
    COOKIE_BASE,
    COOKIE_MASK,
    ZONE_BASE,
    AclRule,
    Ofctl,
    PortAcl,
    cookie_of,
    openflow_address,
    port_flows,
    port_masks,
    rule_matches,
    shared_flows,
    zone_of,
)


def covered(masks: list[str]) -> set[int]:
    out: set[int] = set()
    for m in masks:
        value, _, mask = m.partition("/")
        v, k = int(value, 0), int(mask, 0) if mask else 0xFFFF
        out |= {p for p in range(v, v + (0xFFFF ^ k) + 1) if p & k == v}
    return out


@pytest.mark.parametrize(("lo", "hi"), [(80, 80), (80, 95), (1, 1023), (1000, 1999),
                                        (0, 65535), (65535, 65535), (8080, 8081)])
def test_port_masks_cover_the_range_exactly(lo: int, hi: int) -> None:
    masks = port_masks(lo, hi)
    assert covered(masks) == set(range(lo, hi + 1))
    assert len(masks) <= 32


def test_port_masks_forms() -> None:
    assert port_masks(22, 22) == ["22"]
    assert port_masks(80, 95) == ["0x50/0xfff0"]


def rule(**kw: Any) -> SecurityGroupRule:
    values: dict[str, Any] = {"direction": "ingress", "ethertype": "IPv4", "protocol": None,
                              "port_range_min": None, "port_range_max": None,
                              "remote_ip_prefix": None, "remote_group_id": None}
    values.update(kw)
    return SecurityGroupRule(id="r", security_group_id="sg", **values)


GROUPS = {"g1": ["10.0.0.5", "10.0.0.6", "fd00::5"]}


def matches(**kw: Any) -> list[str]:
    return rule_matches(AclRule.from_row(rule(**kw), lambda g: GROUPS.get(g, [])))


@pytest.mark.parametrize(("kw", "want"), [
    ({}, ["ip"]),
    ({"ethertype": "IPv6"}, ["ipv6"]),
    ({"protocol": "tcp"}, ["ip,nw_proto=6"]),
    ({"protocol": "6", "ethertype": "IPv6"}, ["ipv6,nw_proto=6"]),
    ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}, ["ip,nw_proto=6,tp_dst=22"]),
    ({"protocol": "udp", "port_range_min": 80, "port_range_max": 95, "ethertype": "IPv6"},
     ["ipv6,nw_proto=17,tp_dst=0x50/0xfff0"]),
    ({"protocol": "sctp", "port_range_min": 1, "port_range_max": 65535}, ["ip,nw_proto=132"]),
    ({"protocol": "icmp"}, ["ip,nw_proto=1"]),
    ({"protocol": "icmp", "port_range_min": 8}, ["ip,nw_proto=1,icmp_type=8"]),
    ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0},
     ["ip,nw_proto=1,icmp_type=8,icmp_code=0"]),
    ({"protocol": "icmp", "ethertype": "IPv6", "port_range_min": 128},  # Neutron: ICMPv6
     ["ipv6,nw_proto=58,icmpv6_type=128"]),
    ({"protocol": "icmpv6", "ethertype": "IPv6", "port_range_min": 1, "port_range_max": 4},
     ["ipv6,nw_proto=58,icmpv6_type=1,icmpv6_code=4"]),
    ({"protocol": "47"}, ["ip,nw_proto=47"]),
    ({"protocol": "0"}, ["ip"]),  # 0: any protocol, as Neutron
    ({"remote_ip_prefix": "10.1.0.0/16"}, ["ip,nw_src=10.1.0.0/16"]),
    ({"remote_ip_prefix": "10.1.0.0/16", "direction": "egress"}, ["ip,nw_dst=10.1.0.0/16"]),
    ({"remote_ip_prefix": "0.0.0.0/0"}, ["ip"]),
    ({"remote_ip_prefix": "fd00::/64", "ethertype": "IPv6"}, ["ipv6,ipv6_src=fd00::/64"]),
    ({"remote_ip_prefix": "fd00::/64", "ethertype": "IPv6", "direction": "egress"},
     ["ipv6,ipv6_dst=fd00::/64"]),
    ({"remote_group_id": "g1", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80},
     ["ip,nw_proto=6,nw_src=10.0.0.5,tp_dst=80", "ip,nw_proto=6,nw_src=10.0.0.6,tp_dst=80"]),
    ({"remote_group_id": "g1", "ethertype": "IPv6", "direction": "egress"},
     ["ipv6,ipv6_dst=fd00::5"]),
    ({"remote_group_id": "empty"}, []),  # a group without addresses allows nothing
])
def test_rule_shapes(kw: dict[str, Any], want: list[str]) -> None:
    assert matches(**kw) == want


def acl(stateful: bool = True, ofports: tuple[int, ...] = (3,)) -> PortAcl:
    rules = tuple(AclRule.from_row(rule(**kw), lambda g: GROUPS.get(g, [])) for kw in (
        {"protocol": "icmp", "remote_ip_prefix": "10.66.0.0/24"},
        {"direction": "egress"},
        {"direction": "egress", "ethertype": "IPv6"},
        {"protocol": "tcp", "port_range_min": 8000, "port_range_max": 8080,
         "remote_group_id": "g1"},
        {"protocol": "icmp", "port_range_min": 8}, {"protocol": "icmp", "port_range_min": 8}))
    return PortAcl(port_name="tor-p1", ofports=ofports, macs=("52:54:00:00:00:01",),
                   zone=ofports[0], stateful=stateful, rules=rules)


def test_stateful_port_flows() -> None:
    flows = port_flows(acl())
    cookie = f"cookie={cookie_of('tor-p1'):#x}"
    assert all(f.startswith(cookie + ",") for f in flows)
    assert (f"{cookie},table=0,priority=100,in_port=3,ip,actions=ct(table=10,zone=3)"
            in flows)
    assert (f"{cookie},table=11,priority=100,dl_dst=52:54:00:00:00:01,ipv6,"
            "actions=ct(table=12,zone=3)" in flows)
    # replies of allowed connections pass both ways; invalid drops
    assert f"{cookie},table=12,priority=70,ct_zone=3,ct_state=+est-rel-inv+trk,actions=NORMAL" \
        in flows
    assert f"{cookie},table=10,priority=60,ct_zone=3,ct_state=+inv+trk,actions=drop" in flows
    # an ingress rule commits and delivers; an egress rule commits and goes on to the
    # destination's ingress check
    assert (f"{cookie},table=12,priority=50,ct_zone=3,ct_state=+new+trk,"
            "ip,nw_proto=1,nw_src=10.66.0.0/24,actions=ct(commit,zone=3),NORMAL" in flows)
    assert (f"{cookie},table=10,priority=50,ct_zone=3,ct_state=+new+trk,ipv6,"
            "actions=ct(commit,zone=3),resubmit(,11)" in flows)
    tcp = [f for f in flows if "nw_proto=6" in f]
    assert len(tcp) == 2 * len(port_masks(8000, 8080))  # two group members
    # DHCP and IPv6 ND pass without a rule
    assert any("udp,tp_src=68,tp_dst=67" in f and "table=10" in f for f in flows)
    assert any("udp,tp_src=67,tp_dst=68" in f and "table=12" in f for f in flows)
    assert any("icmp6,icmp_type=134" in f and "table=12" in f for f in flows)
    assert not any("icmp6,icmp_type=134" in f and "table=10" in f for f in flows)
    assert len(flows) == len(set(flows))  # the duplicate rule gave one flow


def test_stateless_port_flows_and_bonds() -> None:
    flows = port_flows(acl(stateful=False, ofports=(4, 7)))
    assert not any("ct_state" in f or "commit" in f for f in flows)
    assert any("in_port=4,ip," in f for f in flows) and any("in_port=7,ipv6," in f
                                                            for f in flows)
    assert any("ct_zone=4,ip,nw_proto=1,nw_src=10.66.0.0/24,actions=NORMAL" in f for f in flows)


def test_zones_stay_clear_of_those_ovn_hands_out() -> None:
    # ovn-controller on the same datapath allocates zones from 1 upwards
    assert zone_of("tor", 3) == ZONE_BASE + 3 > 60000
    assert zone_of("tor", 0xFFF) == 0xFFFF
    with pytest.raises(SwitchError, match="OpenFlow port 4096"):
        zone_of("tor", 0x1000)


def test_cookies() -> None:
    c = cookie_of("tor-p1")
    assert c & COOKIE_MASK == COOKIE_BASE and c != COOKIE_BASE
    assert c == cookie_of("tor-p1") != cookie_of("tor-p2")
    assert all(f.startswith(f"cookie={COOKIE_BASE:#x},") for f in shared_flows())


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="ovs-ofctl not installed")
def test_ovs_ofctl_parses_every_flow() -> None:
    for flow in [*shared_flows(), *port_flows(acl()), *port_flows(acl(stateful=False))]:
        r = subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "parse-flow", flow],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, (flow, r.stderr)


def switch(address: str) -> Switch:
    return Switch(id="s", name="tor", switch_id="02:00:00:00:00:01", address=address,
                  bridge="br0", physical_networks=[])


def test_openflow_address() -> None:
    assert openflow_address(switch("unix:/run/ovs/db.sock")) == (
        "punix:/run/ovs/br0.mpof", "unix:/run/ovs/br0.mpof")
    assert openflow_address(switch("tcp:192.0.2.1:6640")) == (
        "ptcp:6641:192.0.2.1", "tcp:192.0.2.1:6641")
    with pytest.raises(SwitchError):
        openflow_address(switch("ssl:192.0.2.1:6640"))


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="ovs-ofctl not installed")
def test_drift_is_found_per_cookie_whatever_the_text_form() -> None:
    """``diff-flows`` compares parsed flows: the dump's normalised text of the same flows
    is no drift; a missing or changed flow names its port's cookie."""
    wanted = [*shared_flows(), *port_flows(acl())]
    dumped = [f.replace("ip,nw_proto=1,", "icmp,").replace("table=0,", "")
              for f in wanted]  # how dump-flows prints them
    ofctl = Ofctl("unix:/nonexistent")
    assert ofctl.differing_cookies(dumped, wanted) == set()
    assert ofctl.differing_cookies(dumped[:-1], wanted) == {cookie_of("tor-p1")}
    changed = [f.replace("actions=drop", "actions=NORMAL") for f in dumped]
    assert ofctl.differing_cookies(changed, wanted) == {COOKIE_BASE, cookie_of("tor-p1")}
    stray = [*dumped, f"cookie={cookie_of('gone'):#x},table=10,priority=5,ip,actions=drop"]
    assert ofctl.differing_cookies(stray, wanted) == {cookie_of("gone")}
