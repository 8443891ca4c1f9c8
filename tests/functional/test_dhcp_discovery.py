"""dnsmasq in discovery mode, answering a real dhclient in a namespace: a MAC with no host
file gets a lease from the discovery range and the discovery script (iPXE) or, by its client
architecture (option 93), snponly.efi (x86-64 UEFI) or undionly.kpxe (BIOS); a known MAC
keeps its own address and options; discovery off, unknown MACs get no answer again. Needs
the lab lock (namespaces, Open vSwitch)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid
from metalplane.conductor.discovery import discovery_dhcp_options
from metalplane.dhcp.dnsmasq import DnsmasqServer
from metalplane.lab.rack import dhclient_once
from tests.functional.test_dhcp import PXE_OPTS, dhcp
from tests.helpers.rack import Host, Rack, rack

pytestmark = pytest.mark.functional
DISCOVERY = discovery_dhcp_options(Settings(), "http://10.66.0.1")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Rack, DnsmasqServer, Host, Host]]:
    with rack() as r:
        r.add_host("svc", ["10.66.0.1/24"], tag=100)
        known = r.add_host("n1", [], tag=100)
        stranger = r.add_host("n2", [], tag=100)
        server = DnsmasqServer("provisioning", "eth0", "10.66.0.0/24", tmp_path / "dnsmasq",
                               netns=r.hosts["svc"].ns, tftp_root="/usr/lib/ipxe")
        try:
            server.start()
            yield r, server, known, stranger
        finally:
            server.stop()


def test_unknown_macs_boot_the_discovery_script_only_while_discovery_is_on(
        served: tuple[Rack, DnsmasqServer, Host, Host], tmp_path: Path) -> None:
    _r, server, known, stranger = served
    server.add_host("port-1", known.macs["eth0"], "10.66.0.50", PXE_OPTS)
    assert dhcp(stranger, tmp_path) is None  # off: no answer at all
    pid = server.pid()
    server.set_discovery("10.66.0.2", "10.66.0.9", DISCOVERY)
    assert server.pid() != pid  # restarted with the range
    plain = dhcp(stranger, tmp_path)
    assert plain is not None, server.log_file.read_text()[-2000:]
    leased = plain.split("fixed-address ")[1].split(";")[0]
    assert ipaddress.ip_address("10.66.0.2") <= ipaddress.ip_address(leased) <= \
        ipaddress.ip_address("10.66.0.9")
    assert 'filename "undionly.kpxe";' in plain and "10.66.0.1" in plain
    # PXE firmware that says it is x86-64 UEFI (option 93 = 7 or 9) gets the EFI iPXE;
    # one that says BIOS (0) the BIOS one
    for arch, first_stage in ((7, "snponly.efi"), (9, "snponly.efi"), (0, "undionly.kpxe")):
        lease = dhclient_once(stranger.ns, tmp_path, f"arch{arch}", timeout=6, arch=arch)
        assert f'filename "{first_stage}";' in lease, (arch, lease)
    ipxe = dhcp(stranger, tmp_path, ipxe=True)
    assert ipxe is not None and "http://10.66.0.1/boot/discovery.ipxe" in ipxe
    # the known MAC keeps its address and its own script, not the discovery one
    mine = dhcp(known, tmp_path, ipxe=True)
    assert mine is not None and "fixed-address 10.66.0.50;" in mine
    assert "http://10.66.0.1/boot/n1.ipxe" in mine and "discovery" not in mine
    pid = server.pid()
    server.set_discovery("10.66.0.2", "10.66.0.9", DISCOVERY)  # unchanged: no restart
    assert server.pid() == pid
    server.set_discovery(None)
    assert dhcp(stranger, tmp_path) is None  # off again
    with pytest.raises(Invalid, match=r"not in 10\.66\.0\.0/24"):
        server.set_discovery("10.67.0.2", "10.67.0.9", DISCOVERY)
