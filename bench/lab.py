"""Time to active in the virtual rack: ``--nodes`` nodes from enroll to active, in parallel.

The rack of ``metalplane lab up`` (Open vSwitch ToR, nodes as namespaces with disk files,
sushy-tools' Redfish emulator, PXE/iPXE, the agent) and a metalplane server, as
``metalplane demo`` builds them. Then, timed: enroll every node (Redfish address + boot
MAC, the boot port's switch port given as the cabling plan, so no inspection), manage,
provide (the agent cleans each disk on the cleaning network), deploy (as the demo: half
the nodes onto one tenant network with a raw image, half onto another with qcow2; the agent
writes it, the node boots from disk) until every node is ``active``.

Split of the time: the control plane's part is the CPU time of the metalplane server (API
and conductor) and of its children (dnsmasq, helper commands) over the timed run, also
shown by process; the rest is waiting on the nodes: the emulated BMCs
(sushy-tools' fake driver sleeps 1-11 s per power change, as slow BMCs do), PXE and the
agent's boots, erases and image writes. Prints the phases and the split; writes
``bench/results/lab.json`` (no peer, so no ``ratio``). Needs root.
Run: ``sudo .venv/bin/python bench/lab.py [--nodes 20]``.

With ``--vms N``: N libvirt/QEMU nodes instead (real firmware, PXE, the built ramdisk, the
Debian image and its first boot; :mod:`bench._lab_vms` says what is measured), written to
``bench/results/lab-vms.json``. About 5 minutes for 2 VMs under TCG on 2 cores, rack up to down.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, cpu_by_command, header, machine, write_result
from metalplane import __version__
from metalplane.lab.demo import Demo


class TimedDemo(Demo):
    """The demo's rack, server and lifecycle steps, timed from enroll to active."""

    result: dict[str, Any]

    def _run(self) -> int:
        client = self._bring_up()
        with self.phase("images"):
            images = self._images()
        assert self.server is not None
        names = [n["name"] for n in self.spec["nodes"]]
        cpu0, t0, first = cpu_by_command(self.server.pid), time.monotonic(), len(self.phases)
        with self.phase("enroll + manage"):
            self._enroll(client)
            self._provision(client, names, "manage", "manageable")
        with self.phase("provide (clean)"):
            self._provision(client, names, "provide", "available")
        with self.phase("deploy"):
            self._deploy(client, names, images)
        wall = time.monotonic() - t0
        cpu1 = cpu_by_command(self.server.pid)
        by = {k: round(cpu1.get(k, 0.0) - cpu0.get(k, 0.0), 2) for k in {*cpu0, *cpu1}}
        cpu = sum(by.values())
        self.result = {"enroll_to_active_s": round(wall, 1),
                       "phases_s": {k: round(v, 1) for k, v in self.phases[first:]},
                       "control_plane_cpu_s": round(cpu, 2),
                       "control_plane_share": round(cpu / wall, 4),
                       "control_plane_cpu_by_process_s": dict(sorted(by.items())),
                       "waiting_on_nodes_s": round(wall - cpu, 1)}
        return 0 if all(c.ok for c in self.checks) else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--vms", type=int, default=0,
                   help="N libvirt/QEMU nodes (1-8) instead of namespace nodes")
    p.add_argument("--name", default="mpbench", help="lab name (1-8 characters)")
    p.add_argument("--port", type=int, default=6395, help="the server's API port")
    p.add_argument("--out", type=Path, default=None,
                   help="default: bench/results/lab.json (lab-vms.json with --vms)")
    p.add_argument("--keep", action="store_true",
                   help="leave the rack and server up after the run (to look at the logs); "
                        "remove it with: metalplane lab down --name NAME")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/lab.py needs root (it builds the virtual rack)")
    if args.vms:
        vms_main(args)
        return
    args.out = args.out or RESULTS / "lab.json"
    result: dict[str, Any] = {
        "script": "bench/lab.py", "machine": machine(),
        "versions": {"metalplane": __version__},
        "parameters": {"nodes": args.nodes, "image": "ext4, 24 MiB, raw and qcow2",
                       "bmc": "sushy-tools fake driver"}}
    header(result)
    demo = TimedDemo(nodes=args.nodes, name=args.name, port=args.port, timeout=600,
                     cabled=True, keep=args.keep)
    code = demo.run()
    if code or not hasattr(demo, "result"):
        sys.exit(f"bench/lab.py: the run failed (exit {code}); see the output above")
    result["results"] = demo.result
    r = demo.result
    print(f"\n{args.nodes} nodes enroll -> active: {r['enroll_to_active_s']} s "
          f"({', '.join(f'{k} {v} s' for k, v in r['phases_s'].items())})")
    print(f"control plane: {r['control_plane_cpu_s']} CPU s = "
          f"{r['control_plane_share'] * 100:.1f}% of it; waiting on the nodes: "
          f"{r['waiting_on_nodes_s']} s")
    print("  by process: " + ", ".join(
        f"{k} {v} s" for k, v in r["control_plane_cpu_by_process_s"].items()))
    write_result(args.out, result)


def vms_main(args: argparse.Namespace) -> None:
    from bench import _lab_vms

    if not 1 <= args.vms <= 8:
        sys.exit("--vms must be between 1 and 8")
    cache = _lab_vms.build_cache()
    result: dict[str, Any] = {
        "script": "bench/lab.py --vms", "machine": machine(),
        "versions": {"metalplane": __version__},
        "parameters": {"vms": args.vms, "redfish_vms": args.vms - args.vms // 2,
                       "ipmi_vms": args.vms // 2, "accel": "tcg", "vm_memory_mib": 1024,
                       "image": "Debian 12 qcow2 (metalplane image build debian)",
                       "build_cache": str(cache)}}
    header(result)
    demo = _lab_vms.VMBench(nodes=0, name=args.name, port=args.port, timeout=900,
                            cabled=True, keep=args.keep, kubectl=False, vms=True,
                            build_cache=cache)
    demo.vm_count = args.vms
    code = demo.run()
    if code or not hasattr(demo, "result"):
        sys.exit(f"bench/lab.py --vms: the run failed (exit {code}); see the output above")
    result["results"] = demo.result
    _lab_vms.print_tables(demo.result, args.vms)
    write_result(args.out or RESULTS / "lab-vms.json", result)


if __name__ == "__main__":
    main()
