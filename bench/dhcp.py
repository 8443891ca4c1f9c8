"""DHCP at scale: from a node port joining a network to its first DHCP answer.

A dnsmasq already knows ``--hosts`` hosts (10,000 by default) of a /16. Then, for
``--samples`` new ports, one at a time: the port joins (its host entry is given to dnsmasq)
and a real ``dhclient`` in a network namespace, with the port's MAC, asks at once; the time
from the join to dhclient's lease is measured. Two ways of joining, same dnsmasq binary,
same client:

- metalplane: ``DnsmasqServer.add_host`` writes one file into ``--dhcp-hostsdir``;
  dnsmasq reads it by inotify, no signal, no restart;
- the peer, the Neutron DHCP agent's way: rewrite the whole ``--dhcp-hostsfile`` (every
  known host plus the new one, ``MAC,IP`` lines) and send dnsmasq SIGHUP to reload it.
  (With ``set:TAG`` in the lines, as Neutron writes for ports with DHCP options, dnsmasq
  2.90 died on the first SIGHUP once a tagged host held a lease.)

Also measured: the client alone (a host dnsmasq already knows), the floor of both.
Prints the machine, versions, parameters, median/p90/max per way; writes
``bench/results/dhcp.json`` with ``ratio`` = the peer's median join-to-answer time /
metalplane's. Needs root (namespaces). Run: ``sudo .venv/bin/python bench/dhcp.py``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, header, machine, ms_summary, write_result
from metalplane import __version__
from metalplane.dhcp.dnsmasq import DnsmasqServer
from metalplane.lab.rack import netns_exec, run

NS_SERVER, NS_CLIENT = "mpbd-s", "mpbd-c"
CIDR = "10.80.0.0/16"


class HostsFileDnsmasq(DnsmasqServer):
    """The same dnsmasq, fed Neutron's way: one ``--dhcp-hostsfile`` reloaded on SIGHUP."""

    def command(self) -> list[str]:
        return [f"--dhcp-hostsfile={self.dir / 'hostsfile'}" if a.startswith("--dhcp-hostsdir")
                else a for a in super().command()]

    def join(self, lines: list[str]) -> None:
        tmp = self.dir / "hostsfile.tmp"
        tmp.write_text("".join(lines))
        os.replace(tmp, self.dir / "hostsfile")
        pid = self.pid()
        if pid is None:
            raise RuntimeError("dnsmasq has no pid file")
        os.kill(pid, signal.SIGHUP)


def mac_of(i: int) -> str:
    return f"02:bd:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


def ip_of(i: int) -> str:
    return str(ipaddress.ip_network(CIDR).network_address + 10 + i)


def dhclient(work: Path, mac: str, timeout: int) -> float:
    """Set the client's MAC, then time one dhclient exchange to a lease. Raises if none."""
    run("ip", "-n", NS_CLIENT, "link", "set", "eth0", "down")
    run("ip", "-n", NS_CLIENT, "link", "set", "eth0", "address", mac)
    run("ip", "-n", NS_CLIENT, "link", "set", "eth0", "up")
    lease, pid = work / "client.lease", work / "client.pid"
    lease.unlink(missing_ok=True)
    conf = work / "client.conf"
    conf.write_text(f"timeout {timeout};\nretry 1;\n")
    t0 = time.perf_counter()
    subprocess.run(netns_exec(NS_CLIENT, "dhclient", "-1", "-sf", "/bin/true", "-cf",
                              str(conf), "-lf", str(lease), "-pf", str(pid), "eth0"),
                   capture_output=True, timeout=timeout * 3)
    took = time.perf_counter() - t0
    subprocess.run(netns_exec(NS_CLIENT, "dhclient", "-x", "-pf", str(pid)),
                   capture_output=True)
    if not lease.exists() or "fixed-address" not in lease.read_text():
        raise RuntimeError(f"no DHCP answer for {mac} within {timeout} s")
    return took


def timed_joins(work: Path, first: int, samples: int, join: Callable[[int], None],
                timeout: int) -> list[float]:
    """For each new host: join, then dhclient; seconds from join start to the lease."""
    out = []
    for k in range(samples):
        i = first + k
        t0 = time.perf_counter()
        join(i)
        t_join = time.perf_counter() - t0
        out.append(t_join + dhclient(work, mac_of(i), timeout))
    return out



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=10000, help="hosts dnsmasq knows already")
    p.add_argument("--samples", type=int, default=20, help="ports that join, per way")
    p.add_argument("--timeout", type=int, default=10, help="dhclient timeout, seconds")
    p.add_argument("--out", type=Path, default=RESULTS / "dhcp.json")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/dhcp.py needs root (it makes network namespaces)")
    if not 0 < args.hosts + 3 * args.samples < 60000:
        sys.exit("--hosts + 3 * --samples must fit the /16")
    dnsmasq_version = run("dnsmasq", "--version").splitlines()[0]
    dhclient_version = subprocess.run(["dhclient", "--version"], capture_output=True,
                                      text=True).stderr.strip()
    result: dict[str, Any] = {
        "script": "bench/dhcp.py", "machine": machine(),
        "versions": {"metalplane": __version__, "dnsmasq": dnsmasq_version,
                     "dhclient": dhclient_version},
        "parameters": {"hosts": args.hosts, "samples": args.samples, "cidr": CIDR}}
    header(result)
    work = Path(tempfile.mkdtemp(prefix="mpb-dhcp-"))
    servers: list[DnsmasqServer] = []
    try:
        for ns in (NS_SERVER, NS_CLIENT):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", NS_SERVER, "link", "add", "eth0", "type", "veth", "peer", "name",
            "eth0", "netns", NS_CLIENT)
        run("ip", "-n", NS_SERVER, "addr", "add", "10.80.0.1/16", "dev", "eth0")
        run("ip", "-n", NS_SERVER, "link", "set", "eth0", "up")
        run("ip", "-n", NS_CLIENT, "link", "set", "eth0", "up")
        known = range(args.hosts)

        # metalplane: one file per host, read by inotify
        ours = DnsmasqServer("bench", "eth0", CIDR, work / "ours", netns=NS_SERVER)
        servers.append(ours)
        t0 = time.perf_counter()
        for i in known:
            ours.add_host(f"port-{i}", mac_of(i), ip_of(i), [])
        load_s = time.perf_counter() - t0
        print(f"metalplane: {args.hosts} hosts given in {load_s:.2f} s", flush=True)
        # a burst of 20,000 inotify events may overflow the kernel's queue; a restart makes
        # dnsmasq read the directories whole, as after a reboot of the server
        ours.restart()
        dhclient(work, mac_of(args.hosts - 1), args.timeout)  # all known; warm
        floor = [dhclient(work, mac_of(k), args.timeout) for k in range(1, args.samples + 1)]
        ours_s = timed_joins(work, args.hosts, args.samples,
                             lambda i: ours.add_host(f"port-{i}", mac_of(i), ip_of(i), []),
                             args.timeout)
        ours.stop()

        # the peer: the whole hosts file rewritten and SIGHUP, per join
        peer = HostsFileDnsmasq("bench", "eth0", CIDR, work / "peer", netns=NS_SERVER)
        servers.append(peer)
        base = args.hosts + args.samples
        # MAC,IP lines: with Neutron's set:TAG in them, dnsmasq 2.90 died on the first SIGHUP
        # once a tagged host held a lease (seen here; see metalplane/dhcp/dnsmasq.py)
        lines = [f"{mac_of(i)},{ip_of(i)}\n" for i in known]
        peer.dir.mkdir(parents=True)
        (peer.dir / "hostsfile").write_text("".join(lines))
        peer.start()
        dhclient(work, mac_of(0), args.timeout)

        def peer_join(i: int) -> None:
            lines.append(f"{mac_of(i)},{ip_of(i)}\n")
            peer.join(lines)

        try:
            peer_s = timed_joins(work, base, args.samples, peer_join, args.timeout)
        except RuntimeError:
            print(peer.log_file.read_text()[-1500:], file=sys.stderr)
            raise
        if peer.pid() is None or subprocess.run(["kill", "-0", str(peer.pid())]).returncode:
            raise RuntimeError("the peer's dnsmasq died under SIGHUP")
        result["results"] = {"client_alone": ms_summary(floor), "metalplane": ms_summary(ours_s),
                             "hostsfile_sighup": ms_summary(peer_s),
                             "metalplane_load_s": round(load_s, 2)}
        result["ratio"] = round(statistics.median(peer_s) / statistics.median(ours_s), 2)
        for name, s in result["results"].items():
            if isinstance(s, dict):
                print(f"{name:18s} median {s['median_ms']:7.1f} ms  p90 {s['p90_ms']:7.1f} ms"
                      f"  max {s['max_ms']:7.1f} ms")
        print(f"ratio (hosts file + SIGHUP / metalplane, median join-to-answer): "
              f"{result['ratio']}x")
        write_result(args.out, result)
    finally:
        for s in servers:
            s.stop()
        for ns in (NS_SERVER, NS_CLIENT):
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
