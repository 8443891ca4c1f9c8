"""dnsmasq answering a real dhclient in a namespace, checked from the client's lease."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from metalplane.dhcp.dnsmasq import DnsmasqServer, format_options
from metalplane.lab.rack import dhclient_once
from tests.helpers.rack import Host, Rack, rack

pytestmark = pytest.mark.functional

PXE_OPTS = [
    {"opt_name": "tag:ipxe,bootfile-name", "opt_value": "http://10.66.0.1/boot/n1.ipxe"},
    {"opt_name": "tag:!ipxe,bootfile-name", "opt_value": "undionly.kpxe"},
    {"opt_name": "tftp-server", "opt_value": "10.66.0.1"},
    {"opt_name": "server-ip-address", "opt_value": "10.66.0.1"},
]


def dhcp(host: Host, tmp: Path, ipxe: bool = False) -> str | None:
    """Run dhclient once in the host's namespace; the lease text, or None if no answer."""
    lease = dhclient_once(host.ns, tmp, f"{host.ns}-{ipxe}", ipxe, timeout=6)
    return lease if "fixed-address" in lease else None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Rack, DnsmasqServer, Host, Host]]:
    with rack() as r:
        r.add_host("svc", ["10.66.0.1/24"], tag=100)
        node = r.add_host("n1", [], tag=100)
        stranger = r.add_host("n2", [], tag=100)
        server = DnsmasqServer("provisioning", "eth0", "10.66.0.0/24", tmp_path / "dnsmasq",
                               netns=r.hosts["svc"].ns, tftp_root="/usr/lib/ipxe")
        try:
            server.start()
            yield r, server, node, stranger
        finally:
            server.stop()


def test_pxe_and_ipxe_answers_and_silence_for_strangers(
        served: tuple[Rack, DnsmasqServer, Host, Host], tmp_path: Path) -> None:
    _r, server, node, stranger = served
    mac = node.macs["eth0"]
    server.add_host("port-1", mac, "10.66.0.50", PXE_OPTS)
    plain = dhcp(node, tmp_path)
    assert plain is not None, server.log_file.read_text()[-2000:]
    assert "fixed-address 10.66.0.50;" in plain
    assert 'filename "undionly.kpxe";' in plain
    assert "option tftp-server-name" in plain and "10.66.0.1" in plain
    ipxe = dhcp(node, tmp_path, ipxe=True)
    assert ipxe is not None and 'filename "http://10.66.0.1/boot/n1.ipxe";' in ipxe
    # a MAC metalplane is not provisioning gets no answer at all
    assert dhcp(stranger, tmp_path) is None
    assert "ignored" in server.log_file.read_text() or "no address" in \
        server.log_file.read_text()
    # the iPXE binary comes over dnsmasq's TFTP
    subprocess.run(["ip", "-n", node.ns, "addr", "add", "10.66.0.50/24", "dev", "eth0"],
                   check=True)
    size = str(Path("/usr/lib/ipxe/undionly.kpxe").stat().st_size)

    def tftp() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", node.ns, "curl", "-s", "-o", "/dev/null",
                               "-w", "%{size_download}", "tftp://10.66.0.1/undionly.kpxe"],
                              capture_output=True, text=True, timeout=60)

    out = tftp()
    assert out.stdout.strip() == size, out.stderr
    # TFTP is its own dnsmasq: restarting the DHCP one (hosts leaving) does not touch it
    tftp_pid, dhcp_pid = (server.dir / "tftp.pid").read_text(), server.pid()
    server.restart()
    assert server.pid() != dhcp_pid and (server.dir / "tftp.pid").read_text() == tftp_pid
    out = tftp()
    assert out.stdout.strip() == size, out.stderr


def restarted(server: DnsmasqServer, pid: int | None, within: float = 15.0) -> int | None:
    """Wait (bounded) until the DHCP dnsmasq's pid is no longer ``pid``; the new one."""
    deadline = time.monotonic() + within
    while server.pid() in (pid, None) and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.pid()


def test_hosts_come_without_a_restart_and_go_for_good(
        served: tuple[Rack, DnsmasqServer, Host, Host], tmp_path: Path) -> None:
    _r, server, node, stranger = served
    pid = server.pid()
    server.add_host("port-2", stranger.macs["eth0"], "10.66.0.60", PXE_OPTS)
    server.add_host("port-3", node.macs["eth0"], "10.66.0.61", PXE_OPTS)
    assert "fixed-address 10.66.0.60;" in (dhcp(stranger, tmp_path) or "")
    assert "fixed-address 10.66.0.61;" in (dhcp(node, tmp_path) or "")
    assert server.pid() == pid  # additions: the same dnsmasq all along
    server.remove_host(stranger.macs["eth0"])
    server.remove_host(node.macs["eth0"])
    assert server.hosts() == []
    assert server.pid() == pid  # the removals wait restart_delay to share one restart
    assert restarted(server, pid) != pid
    assert dhcp(stranger, tmp_path) is None  # both hold leases: still no answer
    # back with their addresses swapped (as when ports rejoin in another order)
    server.add_host("port-4", stranger.macs["eth0"], "10.66.0.61", PXE_OPTS)
    server.add_host("port-5", node.macs["eth0"], "10.66.0.60", PXE_OPTS)
    assert "fixed-address 10.66.0.61;" in (dhcp(stranger, tmp_path) or ""), \
        server.log_file.read_text()[-3000:]
    assert "fixed-address 10.66.0.60;" in (dhcp(node, tmp_path) or "")
    # a changed entry for a known MAC is what dnsmasq serves from then on
    server.add_host("port-6", node.macs["eth0"], "10.66.0.70", PXE_OPTS)
    assert "fixed-address 10.66.0.70;" in (dhcp(node, tmp_path) or "")
    assert server._proc is not None and server._proc.poll() is None


def test_hosts_leaving_together_all_lose_their_leases(
        served: tuple[Rack, DnsmasqServer, Host, Host], tmp_path: Path) -> None:
    """Nodes leave a network at the same moment (their agents report at once): every
    removal's restart must drop its lease, or a node that comes back with another's old
    address gets no answer. The 4-node demo met this when removals interleaved."""
    r, server, node, stranger = served
    hosts = [node, stranger, r.add_host("n3", [], tag=100), r.add_host("n4", [], tag=100)]
    macs = [h.macs["eth0"] for h in hosts]
    ips = [f"10.66.0.{80 + i}" for i in range(len(hosts))]
    for i, (h, mac, ip) in enumerate(zip(hosts, macs, ips, strict=True)):
        server.add_host(f"port-a{i}", mac, ip, PXE_OPTS)
        assert f"fixed-address {ip};" in (dhcp(h, tmp_path) or ""), \
            server.log_file.read_text()[-2000:]
    start = threading.Barrier(len(macs))

    def leave(mac: str) -> None:
        start.wait(timeout=30)
        server.remove_host(mac)

    started = server.log_file.read_text().count(": started,")
    with ThreadPoolExecutor(max_workers=len(macs)) as pool:
        list(pool.map(leave, macs))
    assert server.hosts() == []
    restarted(server, server.pid())
    leases = (server.dir / "leases").read_text().lower()
    assert not [m for m in macs if m.lower() in leases], leases
    time.sleep(server.restart_delay + 0.5)
    assert server.log_file.read_text().count(": started,") == started + 1  # one for all four
    # back, each with the address its neighbour held
    for i, mac in enumerate(macs):
        server.add_host(f"port-b{i}", mac, ips[(i + 1) % len(ips)], PXE_OPTS)
    for i, h in enumerate(hosts):
        ip = ips[(i + 1) % len(ips)]
        assert f"fixed-address {ip};" in (dhcp(h, tmp_path) or ""), \
            server.log_file.read_text()[-3000:]


def test_a_host_taking_a_removed_address_restarts_at_once(
        served: tuple[Rack, DnsmasqServer, Host, Host], tmp_path: Path) -> None:
    """While the restart after a removal waits, the removed node's lease still holds its
    address in dnsmasq: a new host given that address must not wait to be answered."""
    _r, server, node, stranger = served
    server.add_host("port-c1", node.macs["eth0"], "10.66.0.90", PXE_OPTS)
    assert "fixed-address 10.66.0.90;" in (dhcp(node, tmp_path) or "")
    pid = server.pid()
    server.restart_delay = 600.0  # the delayed restart would come after the test
    server.remove_host(node.macs["eth0"])
    assert server.pid() == pid
    server.add_host("port-c2", stranger.macs["eth0"], "10.66.0.90", PXE_OPTS)
    assert server.pid() != pid
    assert "fixed-address 10.66.0.90;" in (dhcp(stranger, tmp_path) or ""), \
        server.log_file.read_text()[-3000:]


def test_option_lines() -> None:
    lines = format_options("pabc", [*PXE_OPTS, {"opt_name": "67", "opt_value": "x"}])
    assert lines[0] == "tag:pabc,tag:ipxe,option:bootfile-name,http://10.66.0.1/boot/n1.ipxe"
    assert lines[1] == "tag:pabc,tag:!ipxe,option:bootfile-name,undionly.kpxe"
    assert lines[-1] == "tag:pabc,67,x"
    from metalplane.common.exceptions import Invalid
    with pytest.raises(Invalid):
        format_options("t", [{"opt_name": "tag:a b,x", "opt_value": "1"}])


def test_a_stop_cancels_the_restart_due_after_removals(
        served: tuple[Rack, DnsmasqServer, Host, Host]) -> None:
    """A server stopping (the conductor's shutdown) must not have dnsmasq started again by
    a removal's delayed restart: that dnsmasq would outlive it."""
    _r, server, node, _stranger = served
    server.add_host("port-d1", node.macs["eth0"], "10.66.0.95", PXE_OPTS)
    server.restart_delay = 0.5
    server.remove_host(node.macs["eth0"])
    server.stop()
    time.sleep(1.5)
    assert server._proc is None
    left = subprocess.run(["pgrep", "-f", f"--pid-file={server.dir}/pid"],
                          capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout
