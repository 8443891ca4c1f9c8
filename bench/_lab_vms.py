"""``bench/lab.py --vms N``: N libvirt/QEMU (TCG) nodes from enroll to active and first boot,
the time split into metalplane's share and the VMs' share.

The rack of ``metalplane lab up --vms N --ipmi-vms N//2`` (sushy-tools' libvirt driver for
the first VMs, virtualbmc for the rest), a metalplane server, the ramdisk and the Debian
image from the build cache (``METALPLANE_BUILD_CACHE``, else the tests' cache). Then, timed:
enroll (cabled: ``local_link_connection`` given, so no inspection), manage, provide (the
ramdisk erases the disk on the cleaning network), deploy (the Debian qcow2 with a config
drive; half the VMs on tenant A, half on tenant B) until ``active``, then until each serial
console shows "Cloud-init v. ... finished" (the first boot).

A watcher thread samples, during the whole run: each VM's QEMU process (proc(5): start, end,
CPU time), each VM's serial console (the moment each marker line first appears), and the
nodes through the API once a second (provision state, ``agent_progress``). From these:

- metalplane's share: the server's CPU time and its children's (dnsmasq), and the wall
  time the nodes spent in metalplane's own states versus its wait states (``clean wait``,
  ``wait call-back``: waiting on the machine);
- the VMs' share, per boot: QEMU start -> "Linux version" (firmware, PXE, iPXE and the
  kernel + initramfs download), -> the ramdisk's init -> the agent's "I am node" (kernel,
  modules, DHCP, agent start and lookup), -> "running <command>" (the heartbeat that hands
  the command over), the image's download and write (``agent_progress``), -> QEMU stopped;
  for the disk boot: QEMU start -> "Linux version" (firmware, bootloader) -> cloud-init
  finished; and the CPU time of the QEMU processes. The agent reports its progress with
  its heartbeats (``agent_heartbeat_interval``, 10 s by default), so the download/write
  split is known to that interval only; ``command_to_power_off`` (download, write, config
  drive, the result and the power-off) to the watcher's 0.25 s and the console's ~1 s;
- the rack's own processes (libvirtd, the BMC emulators, the Open vSwitch ToR): CPU time.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import cpu_by_command
from metalplane.build.common import sha256_file
from metalplane.client.http import Client
from metalplane.lab import lab, vm_demo
from metalplane.lab.demo import TENANTS, Demo, DemoError

DEFAULT_CACHE = Path("/var/tmp/metalplane-test-cache")  # the functional tests' cache
WAIT_STATES = {"inspect wait", "clean wait", "wait call-back"}
FIRST_BOOT_TIMEOUT = 420.0  # s: active -> cloud-init finished, under TCG
MARKERS = {  # console marker -> regular expression (first match after each QEMU start)
    "kernel": re.compile(r"Linux version "),
    "ramdisk_cmdline": re.compile(r"Command line:.*metalplane\.node="),
    "init": re.compile(r"metalplane-ramdisk: metalplane ramdisk "),
    "agent_up": re.compile(r"agent INFO I am node "),
    "command": re.compile(r"agent INFO running (\w+)"),
    "login": re.compile(r" login: "),
    "cloud_init_finished": vm_demo.BOOTED,
}
RACK_PROCESSES = {"libvirtd": "libvirtd", "virtlogd": "virtlogd",
                  "ovs-vswitchd": "ToR (ovs-vswitchd)", "ovsdb-server": "ToR (ovsdb-server)",
                  "lldpd": "lldpd"}


TICK = os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


BOOT_TIME = _boot_time()


def processes() -> list[dict[str, Any]]:
    """Every process now: pid, comm, cmdline, start (epoch s), cpu_s (user + system),
    children_cpu_s (of the children it waited for). Source: proc(5)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            head, tail = (d / "stat").read_text().rsplit(")", 1)
            f = tail.split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out.append({"pid": int(d.name), "comm": head.split("(", 1)[1], "cmdline": cmd,
                        "start": BOOT_TIME + int(f[19]) / TICK,
                        "cpu_s": (int(f[11]) + int(f[12])) / TICK,
                        "children_cpu_s": (int(f[13]) + int(f[14])) / TICK})
    return out


def build_cache() -> Path:
    return Path(os.environ.get("METALPLANE_BUILD_CACHE") or DEFAULT_CACHE)


class Watcher(threading.Thread):
    """Samples the VMs' QEMU processes and consoles every ``interval`` s and the nodes'
    API every ``api_every`` samples, until :meth:`stop`. Times are epoch seconds."""

    def __init__(self, url: str, vms: list[dict[str, Any]], interval: float = 0.25,
                 api_every: int = 4) -> None:
        super().__init__(daemon=True)
        self.client = Client(url, timeout=30)
        self.vms = {v["name"]: v for v in vms}
        self.interval, self.api_every = interval, api_every
        self.lock = threading.Lock()
        self._halt = threading.Event()
        self.offsets = {n: 0 for n in self.vms}
        self.partial = {n: b"" for n in self.vms}
        self.marks: dict[str, list[tuple[float, str, str]]] = {n: [] for n in self.vms}
        self.qemu: dict[str, list[dict[str, Any]]] = {n: [] for n in self.vms}
        self.procs: dict[int, str] = {}
        self.states: dict[str, list[tuple[float, str]]] = {n: [] for n in self.vms}
        self.power: dict[str, list[tuple[float, str, str | None]]] = {n: [] for n in self.vms}
        self.progress: dict[str, list[tuple[float, str, int, int]]] = {n: [] for n in self.vms}
        self.api_errors = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self._consoles()

    def run(self) -> None:
        i = 0
        while not self._halt.is_set():
            self._consoles()
            self._qemu()
            if i % self.api_every == 0:
                self._api()
            i += 1
            self._halt.wait(self.interval)

    # ------------------------------------------------------------------ samplers
    def _consoles(self) -> None:
        now = time.time()
        for name, v in self.vms.items():
            path = Path(v["console"])
            with contextlib.suppress(OSError):
                with open(path, "rb") as f:
                    f.seek(self.offsets[name])
                    data = f.read()
                self.offsets[name] += len(data)
                lines = (self.partial[name] + data).split(b"\n")
                self.partial[name] = lines.pop()
                for raw in lines:
                    line = raw.decode(errors="replace")
                    for mark, rx in MARKERS.items():
                        m = rx.search(line)
                        if m:
                            with self.lock:
                                self.marks[name].append(
                                    (now, mark, m.group(1) if m.groups() else ""))

    def _qemu(self) -> None:
        now = time.time()
        alive: set[int] = set()
        for p in processes():
            if not p["comm"].startswith("qemu-system"):
                continue
            for name, v in self.vms.items():
                if f"guest={v['domain']}," in p["cmdline"]:
                    alive.add(p["pid"])
                    with self.lock:
                        if p["pid"] not in self.procs:
                            self.procs[p["pid"]] = name
                            self.qemu[name].append({"pid": p["pid"], "start": p["start"],
                                                    "end": None, "cpu_s": 0.0})
                        rec = next(r for r in self.qemu[name] if r["pid"] == p["pid"])
                        rec["cpu_s"] = p["cpu_s"]
        with self.lock:
            for pid, name in list(self.procs.items()):
                if pid not in alive:
                    rec = next(r for r in self.qemu[name] if r["pid"] == pid)
                    if rec["end"] is None:
                        rec["end"] = now
                    del self.procs[pid]

    def _api(self) -> None:
        now = time.time()
        try:
            nodes = self.client.get("/v1/nodes/detail")["nodes"]
        except Exception:  # a sample lost is a sample lost
            self.api_errors += 1
            return
        with self.lock:
            for n in nodes:
                name = n.get("name")
                if name not in self.vms:
                    continue
                if not self.states[name] or self.states[name][-1][1] != n["provision_state"]:
                    self.states[name].append((now, n["provision_state"]))
                pw = (n.get("power_state") or "", n.get("target_power_state"))
                if not self.power[name] or self.power[name][-1][1:] != pw:
                    self.power[name].append((now, *pw))
                prog = (n.get("driver_internal_info") or {}).get("agent_progress") or {}
                # stage "" once the agent's progress is gone (its command ended)
                s = (str(prog.get("stage") or ""), int(prog.get("bytes") or 0),
                     int(prog.get("total") or 0))
                if (self.progress[name] or s[0]) and (
                        not self.progress[name] or self.progress[name][-1][1:] != s):
                    self.progress[name].append((now, *s))

    # ------------------------------------------------------------------ readers
    def qemu_cpu(self) -> float:
        """CPU seconds of every VM's QEMU processes so far (exited ones as last sampled)."""
        with self.lock:
            return float(sum(r["cpu_s"] for recs in self.qemu.values() for r in recs))

    def booted(self, name: str) -> bool:
        """True once cloud-init finished after the VM's last QEMU start."""
        with self.lock:
            starts = [r["start"] for r in self.qemu[name]]
            last = max(starts) if starts else 0.0
            return any(m == "cloud_init_finished" and t >= last for t, m, _ in self.marks[name])


def rack_cpu() -> dict[str, float]:
    """CPU seconds so far of the rack's own processes (libvirtd, virtlogd, the ToR, lldpd,
    the BMC emulators: sushy-tools and virtualbmc, the forwarders from the service
    namespaces to the server's sockets, which carry the images), by kind. Under the lab
    lock only this rack's exist."""
    out: dict[str, float] = {}
    for p in processes():
        kind = RACK_PROCESSES.get(p["comm"])
        if kind is None and ("sushy-emulator" in p["cmdline"] or "sushy_tools" in p["cmdline"]):
            kind = "BMC (sushy-tools)"
        elif kind is None and "vbmcd" in p["cmdline"]:
            kind = "BMC (virtualbmc)"
        elif kind is None and "metalplane.lab.forward" in p["cmdline"]:
            kind = "lab forwarders (namespace -> server)"
        if kind is not None:
            out[kind] = out.get(kind, 0.0) + p["cpu_s"] + p["children_cpu_s"]
    return out


def _first(marks: list[tuple[float, str, str]], mark: str, t0: float, t1: float
           ) -> tuple[float, str] | None:
    return next(((t, v) for t, m, v in marks if m == mark and t0 <= t < t1), None)


def _d(a: float | None, b: float | None) -> float | None:
    return round(b - a, 1) if a is not None and b is not None else None


def boots(w: Watcher, name: str) -> list[dict[str, Any]]:
    """One VM's boots (one per QEMU process): kind (ramdisk, disk), the seconds of each
    segment, and what the ramdisk's agent ran."""
    out = []
    recs = sorted(w.qemu[name], key=lambda r: r["start"])
    for i, r in enumerate(recs):
        start = r["start"]
        nxt = recs[i + 1]["start"] if i + 1 < len(recs) else float("inf")
        end = r["end"]
        marks = w.marks[name]
        k = _first(marks, "kernel", start, nxt)
        ramdisk = _first(marks, "ramdisk_cmdline", start, nxt) is not None
        boot: dict[str, Any] = {"kind": "ramdisk" if ramdisk else "disk",
                                "qemu_cpu_s": round(r["cpu_s"], 1),
                                "powered_s": _d(start, end)}
        kt = k[0] if k else None
        if ramdisk:
            init = _first(marks, "init", start, nxt)
            agent = _first(marks, "agent_up", start, nxt)
            cmd = _first(marks, "command", start, nxt)
            it, at, ct = (init[0] if init else None, agent[0] if agent else None,
                          cmd[0] if cmd else None)
            boot["command"] = cmd[1] if cmd else None
            seg = {"power_on_to_kernel": _d(start, kt), "kernel_to_init": _d(kt, it),
                   "init_to_agent_up": _d(it, at), "agent_up_to_command": _d(at, ct)}
            prog = [p for p in w.progress[name] if start <= p[0] < (end or nxt)]
            dl = next((p[0] for p in prog if p[1] == "download"), None)
            wr = next((p[0] for p in prog if p[1] == "write"), None)
            # written: the write at 100 %, or its progress gone (the command's result)
            done = next((p[0] for p in prog if wr is not None and p[0] >= wr and (
                p[1] not in ("download", "write") or (p[1] == "write" and p[3]
                                                      and p[2] >= p[3]))), None)
            if dl or wr:
                total = max((p[3] for p in prog if p[1] == "download"), default=0)
                # first heartbeat showing each stage: +- the agent's heartbeat interval
                seg.update({"command_to_download": _d(ct, dl), "download": _d(dl, wr),
                            "write": _d(wr, done), "written_to_power_off": _d(done, end),
                            "command_to_power_off": _d(ct, end)})
                boot["image_bytes"] = total
                boot["virtual_bytes"] = max((p[3] for p in prog if p[1] == "write"), default=0)
            else:
                seg["command_to_power_off"] = _d(ct, end)
        else:
            b = _first(marks, "cloud_init_finished", start, nxt)
            seg = {"power_on_to_kernel": _d(start, kt),
                   "kernel_to_cloud_init_finished": _d(kt, b[0] if b else None)}
        boot["segments_s"] = seg
        boot["off_before_s"] = _d(recs[i - 1]["end"], start) if i else None
        out.append(boot)
    return out


def samples(w: Watcher, t0: float) -> dict[str, dict[str, list[Any]]]:
    """The watcher's raw samples per VM, times in seconds from ``t0`` (the enroll): QEMU
    processes, console markers, provision states, power states, agent progress."""
    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 2)

    return {n: {"qemu": [{"start": rel(r["start"]), "end": rel(r["end"]),
                          "cpu_s": round(r["cpu_s"], 2)} for r in w.qemu[n]],
                "console": [[rel(t), m, v] for t, m, v in w.marks[n]],
                "states": [[rel(t), st] for t, st in w.states[n]],
                "power": [[rel(t), st, tgt] for t, st, tgt in w.power[n]],
                "agent_progress": [[rel(t), st, b, tot] for t, st, b, tot in w.progress[n]]}
            for n in w.vms}


def state_times(w: Watcher, name: str, t0: float, t1: float) -> dict[str, float]:
    """Seconds the node spent in each provision state between ``t0`` and ``t1`` (from the
    API samples, one a second)."""
    out: dict[str, float] = {}
    seq = w.states[name]
    for i, (t, st) in enumerate(seq):
        end = seq[i + 1][0] if i + 1 < len(seq) else t1
        a, b = max(t, t0), min(end, t1)
        if b > a:
            out[st] = out.get(st, 0.0) + b - a
    return out


class VMBench(Demo):
    """The VM rack, the server and the lifecycle, timed and watched."""

    vm_count: int = 2
    result: dict[str, Any]

    def _bring_up(self) -> Client:
        with self.phase("rack"):
            self.spec = lab.up(self.name, 0, progress=self.say, vms=self.vm_count,
                               ipmi_vms=self.vm_count // 2)
        with self.phase("server"):
            client = self._start_server()
            self._networks(client)
        return client

    def _deploy_vms(self, c: Client, names: list[str], qcow2: Path, digest: str) -> None:
        nets = {n["name"]: n for n in c.get("/v2.0/networks")["networks"]}
        for i, name in enumerate(names):
            tenant = TENANTS[i % 2][0]
            port = c.post("/v2.0/ports", {"port": {"network_id": nets[tenant]["id"],
                                                   "name": f"{name}-vif"}})["port"]
            c.post(f"/v1/nodes/{name}/vifs", {"id": port["id"]})
            vm_demo.deploy(c, name, qcow2, digest, {
                "user_data": f"#cloud-config\nhostname: {name}\n",
                "meta_data": {"consumer": tenant}})
        self._wait(c, names, "active", "deploy")

    def _run(self) -> int:
        client = self._bring_up()
        with self.phase("build (cache)"):
            qcow2 = vm_demo._builds(self)
            digest = sha256_file(qcow2)
        assert self.server is not None and self.client is not None
        names = [v["name"] for v in self.spec["vms"]]
        w = Watcher(f"http://127.0.0.1:{self.port}", self.spec["vms"])
        w.start()
        marks: list[tuple[str, float, dict[str, float], float, dict[str, float]]] = []

        def mark(label: str) -> None:
            marks.append((label, time.time(), cpu_by_command(self.server.pid),  # type: ignore[union-attr]
                          w.qemu_cpu(), rack_cpu()))

        try:
            mark("enroll")
            with self.phase("enroll + manage"):
                self._enroll(client, names)
                self._provision(client, names, "manage", "manageable")
            mark("provide")
            with self.phase("provide (clean)"):
                self._provision(client, names, "provide", "available")
            mark("deploy")
            with self.phase("deploy"):
                self._deploy_vms(client, names, qcow2, digest)
            mark("active")
            with self.phase("first boot"):
                deadline = time.monotonic() + FIRST_BOOT_TIMEOUT
                while time.monotonic() < deadline and not all(w.booted(n) for n in names):
                    time.sleep(1)
                missing = [n for n in names if not w.booted(n)]
                if missing:
                    raise DemoError(f"no \"Cloud-init ... finished\" on {', '.join(missing)} "
                                    f"in {FIRST_BOOT_TIMEOUT:.0f}s", missing)
            mark("booted")
        finally:
            w.stop()
        self.result = analyse(w, names, marks)
        return 0


def analyse(w: Watcher, names: list[str],
            marks: list[tuple[str, float, dict[str, float], float, dict[str, float]]]
            ) -> dict[str, Any]:
    """The figures of the run (see the module's note) from the watcher's samples and the
    phase marks (label, epoch time, server CPU by process, QEMU CPU, rack CPU by kind)."""
    labels = {"enroll": "enroll + manage", "provide": "provide (clean)", "deploy": "deploy",
              "active": "first boot"}
    phases: list[dict[str, Any]] = []
    for (lab0, t0, s0, q0, r0), (_l1, t1, s1, q1, r1) in itertools.pairwise(marks):
        by = {k: round(s1.get(k, 0.0) - s0.get(k, 0.0), 2) for k in {*s0, *s1}}
        states: dict[str, float] = {}
        for n in names:
            for st, secs in state_times(w, n, t0, t1).items():
                states[st] = states.get(st, 0.0) + secs / len(names)
        own = sum(v for k, v in states.items() if k not in WAIT_STATES and k != "active")
        wait = sum(v for k, v in states.items() if k in WAIT_STATES)
        phases.append({
            "phase": labels[lab0], "wall_s": round(t1 - t0, 1),
            "metalplane_cpu_s": round(sum(by.values()), 2),
            "metalplane_cpu_by_process_s": dict(sorted(by.items())),
            "node_states_s": {k: round(v, 1) for k, v in sorted(states.items())},
            "metalplane_states_s": round(own, 1), "wait_states_s": round(wait, 1),
            "qemu_cpu_s": round(q1 - q0, 1),
            "rack_cpu_s": {k: round(r1.get(k, 0.0) - r0.get(k, 0.0), 2)
                           for k in sorted({*r0, *r1})}})
    per_vm = {n: boots(w, n) for n in names}
    # the mean of each segment over the VMs, per boot (clean, deploy, disk)
    summary: dict[str, dict[str, float]] = {}
    for bs in per_vm.values():
        for b in bs:
            key = "disk" if b["kind"] == "disk" else (b.get("command") or "ramdisk")
            for seg, v in b["segments_s"].items():
                if v is not None:
                    summary.setdefault(key, {}).setdefault(seg, 0.0)
                    summary[key][seg] += v / len(names)
            if b.get("off_before_s") is not None:
                summary.setdefault(key, {}).setdefault("off_before", 0.0)
                summary[key]["off_before"] += b["off_before_s"] / len(names)
    total = marks[-1][1] - marks[0][1]
    to_active = next(t for lab0, t, *_ in marks if lab0 == "active") - marks[0][1]
    mp_cpu = sum(p["metalplane_cpu_s"] for p in phases)
    return {
        "enroll_to_active_s": round(to_active, 1),
        "enroll_to_first_boot_s": round(total, 1),
        "phases": phases,
        "metalplane_cpu_s": round(mp_cpu, 2),
        "metalplane_cpu_share": round(mp_cpu / total, 4),
        "metalplane_states_s": round(sum(p["metalplane_states_s"] for p in phases), 1),
        "wait_states_s": round(sum(p["wait_states_s"] for p in phases), 1),
        "qemu_cpu_s": round(sum(p["qemu_cpu_s"] for p in phases), 1),
        "vm_segments_mean_s": {k: {s: round(v, 1) for s, v in segs.items()}
                               for k, segs in summary.items()},
        "vms": per_vm,
        "api_samples_lost": w.api_errors,
        "samples": samples(w, marks[0][1]),
    }


def print_tables(r: dict[str, Any], n: int) -> None:
    print(f"\n{n} VMs enroll -> active: {r['enroll_to_active_s']} s; -> cloud-init finished "
          f"on all: {r['enroll_to_first_boot_s']} s")
    head = (f"{'phase':<17}{'wall s':>8} | {'metalplane CPU s':>16}{'own states s':>14}"
            f" | {'wait states s':>14}{'QEMU CPU s':>12}{'rack CPU s':>12}")
    print(head + "\n" + "-" * len(head))
    for p in r["phases"]:
        print(f"{p['phase']:<17}{p['wall_s']:>8} | {p['metalplane_cpu_s']:>16}"
              f"{p['metalplane_states_s']:>14} | {p['wait_states_s']:>14}{p['qemu_cpu_s']:>12}"
              f"{round(sum(p['rack_cpu_s'].values()), 1):>12}")
    print(f"{'total':<17}{r['enroll_to_first_boot_s']:>8} | {r['metalplane_cpu_s']:>16}"
          f"{r['metalplane_states_s']:>14} | {r['wait_states_s']:>14}{r['qemu_cpu_s']:>12}")
    print("(states: mean seconds per node, from the API each second; CPU: all VMs / the "
          "whole server)")
    print("\nthe VMs' time, mean per VM, by boot (s):")
    for boot, segs in r["vm_segments_mean_s"].items():
        print(f"  {boot}: " + ", ".join(f"{k} {v}" for k, v in segs.items()))
    rack: dict[str, float] = {}
    for p in r["phases"]:
        for k, v in p["rack_cpu_s"].items():
            rack[k] = rack.get(k, 0.0) + v
    print("rack CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(rack.items())))
