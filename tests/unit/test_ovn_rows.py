"""The OVN mechanism driver's pure parts: DHCP option mapping and quoting (ovn-nb(5)), and
security group rules as OVN ACL matches (ML2/OVN's shapes)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from metalplane.network.ovn import Northbound, dhcp_options_from_extra, ovn_option_value
from metalplane.network.ovn_mech import acl_match, pg_name

SG = "6b1d0c9e-0000-4000-8000-000000000001"


def test_ironic_pxe_options_map_onto_ovn_boot_files() -> None:
    opts, skipped = dhcp_options_from_extra([
        {"opt_name": "tag:ipxe,bootfile-name", "opt_value": "http://10.0.0.1/n.ipxe"},
        {"opt_name": "tag:!ipxe,bootfile-name", "opt_value": "undionly.kpxe"},
        {"opt_name": "tftp-server", "opt_value": "10.0.0.1"},
        {"opt_name": "server-ip-address", "opt_value": "10.0.0.1"},
        {"opt_name": "dns-server", "opt_value": "10.0.0.2,10.0.0.3"},
        {"opt_name": "bootfile-name", "opt_value": "x", "ip_version": 6},  # v6: not here
        {"opt_name": "nis-domain", "opt_value": "x"}])
    assert opts == {"bootfile_name": '"http://10.0.0.1/n.ipxe"',
                    "bootfile_name_alt": '"undionly.kpxe"', "tftp_server": '"10.0.0.1"',
                    "next_server": "10.0.0.1", "dns_server": "{10.0.0.2,10.0.0.3}"}
    assert skipped == ["nis-domain"]


def test_numeric_codes_and_spaces_in_names() -> None:
    opts, _ = dhcp_options_from_extra([{"opt_name": "67", "opt_value": "a.efi"},
                                       {"opt_name": "tag:ipxe, bootfile-name",
                                        "opt_value": "b"}, {"opt_name": "26",
                                                            "opt_value": "9000"}])
    assert opts == {"bootfile_name": '"b"', "mtu": "9000"}


def test_string_options_are_quoted_and_escaped() -> None:
    assert ovn_option_value("bootfile_name", 'a"b\\c') == '"a\\"b\\\\c"'
    assert ovn_option_value("router", "10.0.0.1") == "10.0.0.1"
    assert ovn_option_value("lease_time", "600") == "600"


def rule(**kw: Any) -> Any:
    base = {"security_group_id": SG, "direction": "ingress", "ethertype": "IPv4",
            "protocol": None, "port_range_min": None, "port_range_max": None,
            "remote_ip_prefix": None, "remote_group_id": None}
    return SimpleNamespace(**{**base, **kw})


PG = pg_name(SG)


@pytest.mark.parametrize(("kw", "match"), [
    ({}, f"outport == @{PG} && ip4"),
    ({"direction": "egress"}, f"inport == @{PG} && ip4"),
    ({"ethertype": "IPv6"}, f"outport == @{PG} && ip6"),
    ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
     f"outport == @{PG} && ip4 && tcp && tcp.dst == 22"),
    ({"protocol": "6", "port_range_min": 80, "port_range_max": 90},
     f"outport == @{PG} && ip4 && tcp && tcp.dst >= 80 && tcp.dst <= 90"),
    ({"protocol": "udp"}, f"outport == @{PG} && ip4 && udp"),
    ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0},
     f"outport == @{PG} && ip4 && icmp4 && icmp4.type == 8 && icmp4.code == 0"),
    ({"protocol": "icmp", "ethertype": "IPv6"}, f"outport == @{PG} && ip6 && icmp6"),
    ({"protocol": "47"}, f"outport == @{PG} && ip4 && ip.proto == 47"),
    ({"remote_ip_prefix": "10.0.0.0/8"}, f"outport == @{PG} && ip4 && ip4.src == 10.0.0.0/8"),
    ({"direction": "egress", "remote_ip_prefix": "10.0.0.0/8"},
     f"inport == @{PG} && ip4 && ip4.dst == 10.0.0.0/8"),
    ({"remote_group_id": "aaaa-bb"}, f"outport == @{PG} && ip4 && ip4.src == $pg_aaaa_bb_ip4"),
])
def test_rules_become_ovn_matches(kw: dict[str, Any], match: str) -> None:
    assert acl_match(rule(**kw)) == match


def test_port_group_names_are_identifiers() -> None:
    assert PG == "pg_6b1d0c9e_0000_4000_8000_000000000001"
    assert PG.replace("_", "").isalnum()


def test_closing_is_bounded_when_the_connections_stop_blocks() -> None:
    """ovsdbapp's stop can block for ever (a full queue, the thread gone): close returns."""
    release = threading.Event()

    class StuckConnection:
        def stop(self, timeout: float | None = None) -> bool:
            release.wait(30)
            return False

    nb = Northbound.__new__(Northbound)
    nb.address, nb.timeout, nb._conn = "unix:/nowhere", 0.1, StuckConnection()
    try:
        started = time.monotonic()
        nb.close()
        assert time.monotonic() - started < 10
    finally:
        release.set()
