"""Control-plane throughput: metalplane against OpenStack Ironic, same client, same run.

For each N in ``--sizes`` and each server (metalplane, then Ironic), a fresh server with a
fresh SQLite database takes N ``fake-hardware`` nodes through the REST API:

    create -> manage -> provide -> deploy -> undeploy (target "deleted", back to available)

``--clients`` threads share the nodes; in each phase a client sends its nodes' requests
(a 409/503 "node locked" answer is retried after 50 ms), then polls each of its unfinished
nodes with ``GET /v1/nodes/{name}`` and sleeps ``--poll`` seconds between rounds, until
the node rests in the phase's state (``target_provision_state`` null). The same code drives
both servers; only the base URL differs.

Ironic (``--ironic-spec``, default ``ironic==39.*`` from PyPI) is installed into its own
virtualenv (``--ironic-venv``, created on first use; not a dependency of metalplane) and
runs as the all-in-one ``ironic`` command: SQLite, ``noauth``, ``rpc_transport = none``,
``fake-hardware`` with fake boot/deploy/management/power interfaces, automated cleaning on
(as metalplane). metalplane runs as ``metalplane server`` with its defaults.

Prints per-phase wall time, nodes per minute (N / the whole path's time), peak RSS of each
server's process tree and p50/p99 of the GETs under load; with ``--solo`` also a
metalplane-only run at that N. Writes ``bench/results/lifecycle.json``; ``ratio`` is
metalplane's nodes per minute / Ironic's at the largest N both ran.

Run: ``.venv/bin/python bench/lifecycle.py [--sizes 100,1000] [--solo 10000]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    RESULTS,
    ROOT,
    PeakRSS,
    cpu_seconds,
    elapsed,
    header,
    machine,
    percentile,
    write_result,
)
from metalplane import __version__
from metalplane.common.process import spawn, stop
from metalplane.lab.rack import free_port, wait_http

# (phase, provision verb, resting state); "create" has no verb and no wait.
PHASES = [("create", "", "enroll"), ("manage", "manage", "manageable"),
          ("provide", "provide", "available"), ("deploy", "active", "active"),
          ("undeploy", "deleted", "available")]
HEADERS = {"X-OpenStack-Ironic-API-Version": "latest"}
IRONIC_CONF = """\
[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = ironic-bench
log_file = {work}/ironic.log
enabled_hardware_types = fake-hardware
enabled_bios_interfaces = no-bios
enabled_boot_interfaces = fake
enabled_console_interfaces = no-console
enabled_deploy_interfaces = fake
enabled_firmware_interfaces = no-firmware
enabled_inspect_interfaces = no-inspect
enabled_management_interfaces = fake
enabled_network_interfaces = noop
enabled_power_interfaces = fake
enabled_raid_interfaces = no-raid
enabled_rescue_interfaces = no-rescue
enabled_vendor_interfaces = no-vendor
[api]
host_ip = 127.0.0.1
port = {port}
[conductor]
automated_clean = true
[database]
connection = sqlite:///{work}/ironic.sqlite
[dhcp]
dhcp_provider = none
[oslo_concurrency]
lock_path = {work}/locks
"""


@dataclass
class Tally:
    """What the clients measured in one run."""
    phases: dict[str, float] = field(default_factory=dict)
    get_latency_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class BenchError(RuntimeError):
    pass


def _send(http: httpx.Client, method: str, path: str, body: dict[str, Any],
          ok: int, deadline: float) -> None:
    """One request, retried while the node is locked (409) or the server busy (503)."""
    while True:
        r = http.request(method, path, json=body)
        if r.status_code == ok:
            return
        if r.status_code not in (409, 503) or time.monotonic() > deadline:
            raise BenchError(f"{method} {path} {body}: HTTP {r.status_code} {r.text[:300]}")
        time.sleep(0.05)


def _client_phase(url: str, names: list[str], verb: str, want: str, poll: float,
                  timeout: float, tally: Tally) -> None:
    """One client's share of one phase: send every request, then poll until all rest."""
    deadline = time.monotonic() + timeout
    latencies: list[float] = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as http:
        for name in names:
            if verb:
                _send(http, "PUT", f"/v1/nodes/{name}/states/provision", {"target": verb},
                      202, deadline)
            else:
                _send(http, "POST", "/v1/nodes", {"driver": "fake-hardware", "name": name},
                      201, deadline)
        pending = names if verb else []
        while pending:
            still = []
            for name in pending:
                t0 = time.perf_counter()
                r = http.get(f"/v1/nodes/{name}")
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise BenchError(f"GET {name}: HTTP {r.status_code} {r.text[:300]}")
                node = r.json()
                state = node["provision_state"]
                if state == want and node.get("target_provision_state") is None:
                    continue
                if "fail" in state:
                    raise BenchError(f"{name} went to {state}: {node.get('last_error')}")
                still.append(name)
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    raise BenchError(f"{len(pending)} nodes not {want} after {timeout} s")
                time.sleep(poll)
    with tally.lock:
        tally.get_latency_s += latencies


def drive(url: str, n: int, clients: int, poll: float, timeout: float) -> Tally:
    """Take ``n`` nodes through every phase against the API at ``url``."""
    names = [f"bench-{i:05d}" for i in range(n)]
    shares = [names[i::clients] for i in range(clients) if names[i::clients]]
    tally = Tally()
    with ThreadPoolExecutor(max_workers=len(shares)) as pool:
        for phase, verb, want in PHASES:
            t0 = time.perf_counter()
            futures = [pool.submit(_client_phase, url, share, verb, want, poll, timeout, tally)
                       for share in shares]
            for f in futures:
                f.result()
            tally.phases[phase] = elapsed(t0)
            print(f"  {phase:9s} {tally.phases[phase]:8.2f} s", flush=True)
    return tally


@contextmanager
def process(cmd: list[str], url: str, log: Path, env: dict[str, str]) -> Iterator[int]:
    """Run a server in its own session; stop the whole group afterwards."""
    with open(log, "ab") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(url, proc, log, cmd[0], timeout=120)
        yield proc.pid
    finally:
        stop(proc, grace=20)


@contextmanager
def metalplane_server(work: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "metalplane.cli.main", "server", "--port", str(port),
           "--data-dir", str(work / "metalplane")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with process(cmd, f"{url}/v1", work / "metalplane.log", env) as pid:
        yield url, pid


def ironic_venv(venv: Path, spec: str) -> str:
    """Create the peer's virtualenv on first use; return the installed Ironic version."""
    py = venv / "bin" / "python"
    if not (venv / "bin" / "ironic").exists():
        print(f"installing {spec} into {venv} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", spec],
                           capture_output=True, text=True)
        if r.returncode:
            raise BenchError(f"pip install {spec} failed:\n{r.stderr[-2000:]}")
    return subprocess.run([str(py), "-c", "import importlib.metadata as m; "
                           "print(m.version('ironic'))"], capture_output=True, text=True,
                          check=True).stdout.strip()


@contextmanager
def ironic_server(work: Path, venv: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    conf = work / "ironic.conf"
    conf.write_text(IRONIC_CONF.format(work=work, port=port))
    (work / "locks").mkdir(exist_ok=True)
    r = subprocess.run([str(venv / "bin" / "ironic-dbsync"), "--config-file", str(conf),
                        "create_schema"], capture_output=True, text=True)
    if r.returncode:
        raise BenchError(f"ironic-dbsync failed:\n{r.stderr[-2000:]}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with process([str(venv / "bin" / "ironic"), "--config-file", str(conf)], f"{url}/v1",
                 work / "ironic.out", env) as pid:
        yield url, pid


def one_run(side: str, n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A fresh server of ``side`` in its own directory, driven through every phase."""
    d = work / f"{side}-{n}"
    d.mkdir()
    server = metalplane_server(d) if side == "metalplane" else ironic_server(d, args.ironic_venv)
    print(f"{side}, N={n}:", flush=True)
    with server as (url, pid), PeakRSS(pid) as rss:
        cpu0, own0 = cpu_seconds(pid), time.process_time()
        tally = drive(url, n, args.clients, args.poll, args.timeout)
        cpu, own = cpu_seconds(pid) - cpu0, time.process_time() - own0
    total = sum(tally.phases.values())
    out = {"phases_s": tally.phases, "total_s": round(total, 3),
           "nodes_per_min": round(n * 60 / total, 1), "peak_rss_mib": rss.peak_mib,
           "server_cpu_s": round(cpu, 1), "client_cpu_s": round(own, 1),
           "gets": len(tally.get_latency_s),
           "get_p50_ms": round(percentile(tally.get_latency_s, 50) * 1000, 2),
           "get_p99_ms": round(percentile(tally.get_latency_s, 99) * 1000, 2)}
    print(f"  => {out['nodes_per_min']} nodes/min, peak RSS {out['peak_rss_mib']} MiB, "
          f"GET p50 {out['get_p50_ms']} ms p99 {out['get_p99_ms']} ms "
          f"({out['gets']} GETs); CPU s: server {out['server_cpu_s']}, "
          f"client {out['client_cpu_s']}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000", help="N for both servers, comma separated")
    p.add_argument("--solo", type=int, default=10000, help="N for metalplane alone; 0: none")
    p.add_argument("--clients", type=int, default=10, help="concurrent client threads")
    p.add_argument("--poll", type=float, default=0.2, help="seconds between state polls")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per phase")
    p.add_argument("--peer", choices=["ironic", "none"], default="ironic")
    p.add_argument("--peer-only", action="store_true",
                   help="run only the peer at --sizes (to re-measure it; no ratio)")
    p.add_argument("--ironic-spec", default="ironic==39.*")
    p.add_argument("--ironic-venv", type=Path, default=ROOT / "bench" / ".ironic-venv")
    p.add_argument("--out", type=Path, default=RESULTS / "lifecycle.json")
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if not sizes or min(sizes) < 1 or args.clients < 1 or not 0 < args.poll <= 0.2:
        sys.exit("--sizes needs positive N, --clients >= 1, and 0 < --poll <= 0.2")
    versions = {"metalplane": __version__, "httpx": httpx.__version__}
    if args.peer == "ironic":
        versions["ironic"] = ironic_venv(args.ironic_venv, args.ironic_spec)
    result: dict[str, Any] = {
        "script": "bench/lifecycle.py", "machine": machine(), "versions": versions,
        "parameters": {"sizes": sizes, "solo": args.solo, "clients": args.clients,
                       "poll_s": args.poll, "peer": args.peer, "database": "sqlite",
                       "hardware_type": "fake-hardware"},
        "runs": []}
    header(result)
    work = Path(tempfile.mkdtemp(prefix="mpb-life-"))
    try:
        ratio = None
        for n in sizes:
            row: dict[str, Any] = {"n": n}
            if not args.peer_only:
                row["metalplane"] = one_run("metalplane", n, args, work)
            if args.peer == "ironic":
                row["ironic"] = one_run("ironic", n, args, work)
            if "metalplane" in row and "ironic" in row:
                ratio = round(row["metalplane"]["nodes_per_min"]
                              / row["ironic"]["nodes_per_min"], 1)
                row["ratio"] = ratio
                print(f"N={n}: metalplane / Ironic = {ratio}x nodes per minute", flush=True)
            result["runs"].append(row)
        if args.solo:
            result["solo"] = {"n": args.solo,
                              "metalplane": one_run("metalplane", args.solo, args, work)}
        result["ratio"] = ratio
        print_table(result)
        write_result(args.out, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(result: dict[str, Any]) -> None:
    rows = [(r["n"], side, r[side]) for r in result["runs"]
            for side in ("metalplane", "ironic") if side in r]
    if "solo" in result:
        rows.append((result["solo"]["n"], "metalplane", result["solo"]["metalplane"]))
    names = [ph for ph, _, _ in PHASES]
    print("\n" + f"{'N':>6} {'server':10s} " + " ".join(f"{n:>9s}" for n in names)
          + f" {'nodes/min':>10s} {'RSS MiB':>8s} {'GET p50':>8s} {'GET p99':>8s}")
    for n, side, r in rows:
        print(f"{n:>6} {side:10s} " + " ".join(f"{r['phases_s'][ph]:9.2f}" for ph in names)
              + f" {r['nodes_per_min']:10.1f} {r['peak_rss_mib']:8.1f} "
              f"{r['get_p50_ms']:8.2f} {r['get_p99_ms']:8.2f}")
    if result.get("ratio"):
        print(f"ratio (metalplane / Ironic nodes per minute, largest N): {result['ratio']}x")


if __name__ == "__main__":
    main()
