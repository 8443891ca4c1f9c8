"""Flipping the access VLAN of many switch ports: metalplane against one ovs-vsctl per port.

A private Open vSwitch (userspace datapath, own run directory) gets ``--ports`` ports with
internal interfaces. Then, on the same switch in the same run:

- metalplane: ``NetworkPlugin.bind_many`` of that many network ports (the conductor's path:
  database reads and writes, the mechanism driver, one OVSDB transaction per switch),
  then ``unbind_many`` (back to the parking VLAN);
- the peer: ``ovs-vsctl set port P tag=V``, one call per port, as networking-generic-switch
  configures an OVS device (each call waits for ovs-vswitchd, ovs-vsctl's default).

Prints the machine, versions, parameters and times; writes ``bench/results/switch.json``
with ``ratio`` = metalplane's ports per second / the peer's, at ``--ports``. Needs root.
Run: ``sudo .venv/bin/python bench/switch.py [--ports 500]``; ``MP_PROFILE=bind`` (or
``unbind``) prints a cProfile of ``bind_many`` (or ``unbind_many``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ovs.json

from bench._common import RESULTS, header, machine, write_result
from metalplane import __version__
from metalplane.common.config import Settings
from metalplane.db.engine import Database
from metalplane.lab.rack import Switch, run
from metalplane.network.plugin import NetworkPlugin


def timed(what: str, fn: Callable[[list[Any]], None], ports: list[Any]) -> float:
    """Seconds ``fn(ports)`` took; with ``MP_PROFILE=<what>``, also print its cProfile
    (slower, so the figure is only for comparing within that run)."""
    t0 = time.perf_counter()
    if os.environ.get("MP_PROFILE") == what:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.runcall(fn, ports)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    else:
        fn(ports)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ports", type=int, default=500)
    p.add_argument("--out", type=Path, default=RESULTS / "switch.json")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/switch.py needs root (it runs a private Open vSwitch)")
    ovs_version = run("ovs-vsctl", "--version").splitlines()[0]
    work = Path(tempfile.mkdtemp(prefix="mpb-"))
    sw = Switch(rundir=work / "ovs", bridge="mpb-tor")
    names = [f"mpb{i}" for i in range(args.ports)]
    result: dict[str, Any] = {"script": "bench/switch.py", "machine": machine(),
                              "versions": {"metalplane": __version__, "openvswitch": ovs_version,
                                           "ovs_python_json_parser": ovs.json.PARSER},
                              "parameters": {"ports": args.ports, "datapath": "netdev"}}
    header(result)
    try:
        sw.start()
        cmd: list[str] = []
        for n in names:
            cmd += ["--", "add-port", sw.bridge, n, "tag=4094", "--", "set", "interface", n,
                    "type=internal"]
        sw.vsctl(*cmd[1:])
        settings = Settings(data_dir=work / "data", parking_vlan=4094)
        db = Database(settings.effective_database_url)
        db.upgrade()
        plugin = NetworkPlugin(settings, db)
        chassis = "02:00:00:00:be:01"
        plugin.switches.create({"name": "mpb-tor", "switch_id": chassis, "driver": "ovs",
                                "address": sw.address, "bridge": sw.bridge,
                                "physical_networks": ["physnet1"]})
        net = plugin.create_network({"name": "bench", "provider:network_type": "vlan",
                                     "provider:physical_network": "physnet1",
                                     "provider:segmentation_id": 1500})
        ports = []
        for i, n in enumerate(names):
            port = plugin.create_port({
                "network_id": net.id, "mac_address": f"02:00:00:{i >> 16 & 255:02x}:"
                f"{i >> 8 & 255:02x}:{i & 255:02x}", "binding:vnic_type": "baremetal",
                "binding:profile": {"local_link_information": [
                    {"switch_id": chassis, "port_id": n, "switch_info": "mpb-tor"}]},
                "fixed_ips": []})
            plugin.set_binding_host(port.id, f"node-{i}")
            ports.append(plugin.get_port(port.id))
        # The server keeps its OVSDB connection open: open it before timing (one port
        # bound and unbound), as the per-call way pays its connection on every call.
        plugin.bind_many([ports[0]])
        plugin.unbind_many([plugin.get_port(ports[0].id)])
        ports[0] = plugin.get_port(ports[0].id)
        # metalplane: bind (flip to 1500), then unbind (flip back to parking)
        bind_s = timed("bind", plugin.bind_many, ports)
        tags = sw.tags()
        assert all(tags[n] == 1500 for n in names), "bind did not reach the switch"
        ports = [plugin.get_port(p.id) for p in ports]
        unbind_s = timed("unbind", plugin.unbind_many, ports)
        tags = sw.tags()
        assert all(tags[n] == 4094 for n in names), "unbind did not reach the switch"
        ours = min(bind_s, unbind_s)
        # the peer: one ovs-vsctl per port, to VLAN 1500
        t0 = time.perf_counter()
        for n in names:
            subprocess.run(["ovs-vsctl", f"--db={sw.address}", "--timeout=30", "set", "port",
                            n, "tag=1500"], check=True, capture_output=True)
        peer_s = time.perf_counter() - t0
        assert all(t == 1500 for n, t in sw.tags().items() if n in names)
        result["results"] = {
            "metalplane_bind_s": round(bind_s, 4), "metalplane_unbind_s": round(unbind_s, 4),
            "per_call_ovs_vsctl_s": round(peer_s, 3),
            "metalplane_ports_per_s": round(args.ports / ours, 1),
            "per_call_ports_per_s": round(args.ports / peer_s, 1)}
        result["ratio"] = round(peer_s / ours, 1)
        print(f"metalplane bind_many:   {bind_s:8.3f} s for {args.ports} ports")
        print(f"metalplane unbind_many: {unbind_s:8.3f} s")
        print(f"ovs-vsctl per port:     {peer_s:8.3f} s")
        print(f"ratio (metalplane / per-call, ports per second): {result['ratio']}x")
        write_result(args.out, result)
    finally:
        sw.stop()
        shutil.rmtree(work, ignore_errors=True)
        for n in names:  # internal ports vanish with ovs-vswitchd; this is belt and braces
            if Path(f"/sys/class/net/{n}").exists():
                run("ip", "link", "del", n, check=False)


if __name__ == "__main__":
    main()
