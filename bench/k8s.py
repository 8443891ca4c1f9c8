"""The Kubernetes-style API at scale (issue #19): BareMetalHosts created with kubectl until
available, a MachineSet scaled up and down, ``kubectl get bmh`` with many hosts, and the
latency of watch events.

One ``metalplane server`` process (its own data directory in a temporary directory,
SQLite, its defaults but for the periodic power sync and timeout checks, which are set to
an hour as the functional tests do) serves the real ``kubectl`` through the kubeconfig
``metalplane kubeconfig`` prints. The hosts' BMCs are fake systems of one sushy-tools
emulator process (Redfish over HTTP, no authentication); provisioning uses the fake
deploy that a Redfish node gets when no boot server is reachable, with no added delays.
Measured, as wall time seen by this client:

1. ``kubectl create -f`` of one multi-document file (one Secret and ``--hosts``
   BareMetalHosts labelled ``role: worker``): the command itself, then until every host's
   ``status.provisioning.state`` is ``available`` (the list polled every ``--poll`` s);
2. ``examples/metal3/machineset.yaml`` created and ``kubectl scale machineset workers
   --replicas=<hosts>``: until every host is ``provisioned``; then ``--replicas=0``: until
   every host is ``available`` again with no consumer (skipped with ``--skip-scale``);
3. ``kubectl get bmh`` (the table kubectl prints) and a plain JSON list with httpx, the
   median of ``--samples`` each, with ``--hosts`` hosts;
4. with a watch open (``?watch=true&resourceVersion=<the list's>``): (a) a label merge
   patch until its MODIFIED event (from sending the patch), (b) a node's maintenance set
   or cleared with the Bare Metal API until the MODIFIED event carrying
   ``operationalStatus`` ``detached`` / ``OK`` (from the API's answer), ``--watch-samples``
   each;
5. ``--get-hosts`` hosts in all (the extra ones POSTed concurrently with httpx, their BMCs
   unreachable, so they rest in a registration error): once the list's resourceVersion
   has stopped moving, the gets of 3 again.

The peer, Metal3's fake-node scale study, cannot be run here: its published figure is
printed as a reference column ("published, not run"), with the issue's targets for this
machine and whether each was met. Server and emulator CPU seconds are recorded per phase.

Prints the machine, versions, parameters and figures; writes ``bench/results/k8s.json``.
Run: ``.venv/bin/python bench/k8s.py [--hosts 1000] [--get-hosts 10000] [--skip-scale]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    RESULTS,
    ROOT,
    PeakRSS,
    cpu_seconds,
    elapsed,
    header,
    machine,
    ms_summary,
    write_result,
)
from metalplane import __version__
from metalplane.common.process import spawn, stop
from metalplane.lab.lab import emulator_command, write_emulator_config
from metalplane.lab.rack import free_port, wait_http

BMH = "/apis/metal3.io/v1alpha1/namespaces/default/baremetalhosts"
MACHINESET = ROOT / "examples" / "metal3" / "machineset.yaml"
SERVER_ENV = {"METALPLANE_POWER_SYNC_INTERVAL": "3600",
              "METALPLANE_TIMEOUT_CHECK_INTERVAL": "3600",
              "METALPLANE_BMC_RETRIES": "2", "METALPLANE_BMC_RETRY_WAIT": "0.1",
              "METALPLANE_POWER_STATE_CHANGE_TIMEOUT": "30",
              "METALPLANE_CONDUCTOR_HOSTNAME": "bench-conductor"}
# Issue #19's targets on this (2-core) machine, and Metal3's published study (not run).
TARGETS = {"available_s": 120.0, "provisioned_s": 300.0, "get_table_big_ms": 1000.0}
PUBLISHED = ("Metal3 fake-node scale study, as quoted in issue #19: 1,000 hosts took about "
             "48 hours on a 24-core VM, with the cluster-api machinery")


# provisioning states a host rests in until its spec changes (Metal3's state names)
RESTING = {"available", "provisioned", "externally provisioned", "unmanaged"}


class BenchError(RuntimeError):
    pass


def mac(i: int) -> str:
    """A unique locally administered MAC for host ``i`` (up to 2**24 hosts)."""
    return f"52:54:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:01"


def until(what: str, check: Callable[[], Any], timeout: float, poll: float) -> Any:
    """``check()``'s first true answer, polled every ``poll`` s for at most ``timeout`` s.
    Raises :class:`BenchError` naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(poll)
    raise BenchError(f"not {what} after {timeout} s (last: {answer!r:.300})")


@contextmanager
def process(cmd: list[str], url: str, log: Path, env: dict[str, str]
            ) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own session until ``url`` answers; stop its group afterwards."""
    with open(log, "ab") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(url, proc, log, Path(cmd[0]).name, timeout=120)
        yield proc
    finally:
        stop(proc, grace=20)


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, timeout: float = 1800) -> str:
        r = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                            str(self.kubeconfig.parent / "kube-cache"), *args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args)}: {r.stderr[-1000:]}")
        return r.stdout


def host_doc(name: str, index: int, address: str) -> dict[str, Any]:
    return {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": name, "labels": {"role": "worker"}},
            "spec": {"online": True, "bootMACAddress": mac(index),
                     "bmc": {"address": address, "credentialsName": "bench-bmc"}}}


class Hosts:
    """The BareMetalHost list, read with httpx."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def list(self) -> dict[str, Any]:
        r = self.http.get(BMH)
        if r.status_code != 200:
            raise BenchError(f"GET {BMH}: HTTP {r.status_code} {r.text[:300]}")
        return dict(r.json())

    def wait_all(self, state: str, count: int, timeout: float, poll: float,
                 unclaimed: bool = False) -> float:
        """Seconds until ``count`` hosts are in ``state`` (and without a consumer if
        ``unclaimed``); a host in ``error`` ends the wait with BenchError."""
        t0 = time.perf_counter()
        last: list[Counter[str]] = [Counter()]

        def done() -> bool:
            items = self.list()["items"]
            seen = Counter(((h.get("status") or {}).get("provisioning") or {}).get("state", "")
                           for h in items)
            last[0] = seen
            errors = [h["metadata"]["name"] for h in items
                      if (h.get("status") or {}).get("operationalStatus") == "error"]
            if errors:
                raise BenchError(f"{len(errors)} hosts in error, e.g. {errors[0]}: "
                                 f"{items[0].get('status', {}).get('errorMessage')}")
            if unclaimed and any(h["spec"].get("consumerRef") for h in items):
                return False
            return seen[state] >= count

        try:
            until(f"{count} hosts {state}", done, timeout, poll)
        except BenchError as exc:
            raise BenchError(f"{exc}; states {dict(last[0])}") from None
        return elapsed(t0)

    def summary(self) -> dict[str, int]:
        """How many hosts are in each provisioning state / operationalStatus."""
        return dict(Counter(
            f"{(h.get('status') or {}).get('provisioning', {}).get('state', '')}/"
            f"{(h.get('status') or {}).get('operationalStatus', '')}"
            for h in self.list()["items"]))

    def quiet(self, timeout: float, still: float = 10, poll: float = 2) -> float:
        """Seconds until every host rests (in a state of RESTING, or in error) and the
        list's resourceVersion then stays put for ``still`` s."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        rv, since = "", time.monotonic()
        while time.monotonic() < deadline:
            doc = self.list()
            now = doc["metadata"]["resourceVersion"]
            busy = any((h.get("status") or {}).get("operationalStatus") != "error"
                       and (h.get("status") or {}).get("provisioning", {}).get("state")
                       not in RESTING for h in doc["items"])
            if now != rv or busy:
                rv, since = now, time.monotonic()
            elif time.monotonic() - since >= still:
                return round(elapsed(t0) - still, 3)
            time.sleep(poll)
        raise BenchError(f"the hosts still change after {timeout} s")


class Watch:
    """A watch on the hosts in a thread; each event is queued with its arrival time."""

    def __init__(self, url: str, rv: str) -> None:
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.client = httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=300))
        self.rv = rv
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with self.client.stream("GET", BMH, params={"watch": "true",
                                                        "resourceVersion": self.rv}) as r:
                if r.status_code != 200:
                    raise BenchError(f"watch: HTTP {r.status_code}")
                for line in r.iter_lines():
                    if line.strip():
                        self.events.put((time.perf_counter(), json.loads(line)))
        except httpx.HTTPError:
            pass  # closed at the end
        except BaseException as exc:  # reported by wait_for
            self.error = exc

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.thread.join(timeout=10)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> float:
        """The arrival time of the first queued MODIFIED event ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                at, event = self.events.get(timeout=0.5)
            except queue.Empty:
                if self.error:
                    raise BenchError(f"watch failed: {self.error}") from None
                continue
            if event.get("type") == "MODIFIED" and match(event["object"]):
                return at
        raise BenchError(f"no matching watch event in {timeout} s")


def median_s(fn: Callable[[], Any], samples: int) -> dict[str, float]:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {**ms_summary(times), "samples": samples}


def gets(kubectl: Kubectl, http: httpx.Client, count: int, samples: int) -> dict[str, Any]:
    """``kubectl get bmh`` and a JSON list, ``samples`` each, with ``count`` hosts."""
    rows = len(kubectl("get", "bmh").splitlines()) - 1
    if rows != count:
        raise BenchError(f"kubectl get bmh printed {rows} rows, not {count}")
    table = median_s(lambda: kubectl("get", "bmh"), samples)
    plain = median_s(lambda: http.get(BMH).raise_for_status(), samples)
    print(f"  get with {count} hosts: kubectl get bmh {table['median_ms']} ms, JSON list "
          f"{plain['median_ms']} ms", flush=True)
    return {"kubectl_get_bmh": table, "httpx_json_list": plain,
            "json_list_bytes": len(http.get(BMH).content)}


def labelled(name: str, value: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a watched object is host ``name`` with label ``bench: value``."""
    return lambda o: bool(o["metadata"]["name"] == name
                          and o["metadata"].get("labels", {}).get("bench") == value)


def operational(name: str, want: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a watched object is host ``name`` with ``operationalStatus`` ``want``."""
    return lambda o: bool(o["metadata"]["name"] == name
                          and (o.get("status") or {}).get("operationalStatus") == want)


def watch_latency(url: str, http: httpx.Client, api: httpx.Client, hosts: Hosts,
                  samples: int) -> dict[str, Any]:
    """(a) label patch -> MODIFIED; (b) maintenance set/cleared -> MODIFIED with it."""
    target = sorted(h["metadata"]["name"] for h in hosts.list()["items"])[0]
    label_s, state_s, patch_s = [], [], []
    with Watch(url, hosts.list()["metadata"]["resourceVersion"]) as watch:
        time.sleep(0.5)
        for i in range(samples):
            value = f"v{i}"
            t0 = time.perf_counter()
            r = http.patch(f"{BMH}/{target}", content=json.dumps(
                {"metadata": {"labels": {"bench": value}}}),
                headers={"Content-Type": "application/merge-patch+json"})
            patch_s.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise BenchError(f"PATCH {target}: HTTP {r.status_code} {r.text[:300]}")
            at = watch.wait_for(labelled(target, value))
            label_s.append(at - t0)
            time.sleep(0.05)
        for i in range(samples):
            on = i % 2 == 0
            want = "detached" if on else "OK"
            r = (api.put(f"/v1/nodes/{target}/maintenance", json={"reason": "bench"}) if on
                 else api.delete(f"/v1/nodes/{target}/maintenance"))
            answered = time.perf_counter()
            if r.status_code != 202:
                raise BenchError(f"maintenance {target}: HTTP {r.status_code} {r.text[:300]}")
            at = watch.wait_for(operational(target, want))
            state_s.append(at - answered)
            time.sleep(0.05)
    out = {"host": target, "label_patch_to_event": ms_summary(label_s),
           "patch_round_trip": ms_summary(patch_s),
           "maintenance_answer_to_event": ms_summary(state_s), "samples": samples}
    print(f"  watch: label patch -> event {out['label_patch_to_event']}, maintenance -> "
          f"event {out['maintenance_answer_to_event']}", flush=True)
    return out


def post_extra(url: str, first: int, last: int, workers: int = 8) -> float:
    """POST hosts ``first`` .. ``last - 1`` (BMCs unreachable) concurrently; seconds."""
    t0 = time.perf_counter()
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, timeout=120)
        doc = host_doc(f"extra-{i:05d}", i,
                       f"redfish+http://127.0.0.1:9/redfish/v1/Systems/extra-{i}")
        r = local.http.post(BMH, json=doc)
        if r.status_code != 201:
            raise BenchError(f"POST extra-{i}: HTTP {r.status_code} {r.text[:300]}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(one, i) for i in range(first, last)]:
            f.result()
    return elapsed(t0)


class Cpu:
    """CPU seconds of the server and the emulator, per phase."""

    def __init__(self, server: int, emulator: int) -> None:
        self.pids = {"server": server, "emulator": emulator}
        self.last = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.phases: dict[str, dict[str, float]] = {}

    def mark(self, phase: str) -> None:
        now = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.phases[phase] = {k: round(now[k] - self.last[k], 1) for k in now}
        self.last = now


def run(args: argparse.Namespace, work: Path, result: dict[str, Any]) -> None:
    n = args.hosts
    figures: dict[str, Any] = {}
    result["figures"] = figures
    systems = [{"uuid": str(uuidlib.uuid4()), "name": f"fake-{i}", "power_state": "Off",
                "external_notifier": False, "nics": [{"mac": mac(i)}]} for i in range(n)]
    emu_port, api_port, net_port, k8s_port = free_port(), free_port(), free_port(), free_port()
    write_emulator_config(work / "emulator.conf", emu_port, work / "emulator-state", systems,
                          "http://127.0.0.1:9")
    emu_url = f"http://127.0.0.1:{emu_port}"
    api_url, k8s_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{k8s_port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **SERVER_ENV}
    server_cmd = [sys.executable, "-m", "metalplane.cli.main", "server", "--port",
                  str(api_port), "--network-port", str(net_port), "--k8s-port", str(k8s_port),
                  "--data-dir", str(work / "data")]
    with ExitStack() as stack:
        emulator = stack.enter_context(process(
            emulator_command(work / "emulator.conf"), f"{emu_url}/redfish/v1/Systems",
            work / "emulator.log", dict(os.environ)))
        server = stack.enter_context(process(server_cmd, f"{api_url}/v1",
                                             work / "server.log", env))
        wait_http(f"{k8s_url}/version", server, work / "server.log", "k8s API")
        peak = stack.enter_context(PeakRSS(server.pid, interval=0.5))
        http = stack.enter_context(httpx.Client(base_url=k8s_url, timeout=120))
        api = stack.enter_context(httpx.Client(
            base_url=api_url, timeout=120,
            headers={"X-OpenStack-Ironic-API-Version": "latest"}))
        hosts = Hosts(http)
        r = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "--url", api_url,
                            "kubeconfig", "--k8s-port", str(k8s_port)],
                           capture_output=True, text=True, timeout=60, env=env)
        if r.returncode != 0:
            raise BenchError(f"metalplane kubeconfig: {r.stderr[-1000:]}")
        (work / "kubeconfig").write_text(r.stdout)
        kubectl = Kubectl(work / "kubeconfig")
        figures["kubectl_startup"] = median_s(lambda: kubectl("version", "--client"), 3)
        cpu = Cpu(server.pid, emulator.pid)

        # 1. create N hosts with kubectl, until all are available
        docs: list[dict[str, Any]] = [{
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-bmc"},
            "type": "Opaque", "stringData": {"username": "admin", "password": "password"}}]
        docs += [host_doc(f"worker-{i:05d}", i, f"redfish+http://127.0.0.1:{emu_port}"
                          f"/redfish/v1/Systems/{s['uuid']}") for i, s in enumerate(systems)]
        manifest = work / "hosts.yaml"
        manifest.write_text(yaml.safe_dump_all(docs))
        t0 = time.perf_counter()
        created = kubectl("create", "-f", str(manifest), timeout=args.timeout)
        create_s = elapsed(t0)
        if created.count(" created") != n + 1:
            raise BenchError(f"kubectl create said: {created[-500:]}")
        available_s = create_s + hosts.wait_all("available", n, args.timeout, args.poll)
        cpu.mark("create_to_available")
        figures["create"] = {"kubectl_create_s": create_s, "until_all_available_s": available_s}
        print(f"  kubectl create of {n} hosts {create_s} s; all available after "
              f"{available_s} s", flush=True)

        # 2. a MachineSet scaled 0 -> N -> 0
        if not args.skip_scale:
            kubectl("create", "-f", str(MACHINESET))
            t0 = time.perf_counter()
            kubectl("scale", "machineset", "workers", f"--replicas={n}")
            up_s = hosts.wait_all("provisioned", n, args.timeout, args.poll)
            cpu.mark("scale_up")
            machines = json.loads(kubectl("get", "machines", "-o", "json"))["items"]
            if len(machines) != n:
                raise BenchError(f"{len(machines)} Machines, not {n}")
            t0 = time.perf_counter()
            kubectl("scale", "machineset", "workers", "--replicas=0")
            down_s = hosts.wait_all("available", n, args.timeout, args.poll, unclaimed=True)
            cpu.mark("scale_down")
            figures["scale"] = {"up_until_all_provisioned_s": up_s,
                                "down_until_all_available_s": down_s}
            print(f"  scale 0 -> {n}: all provisioned after {up_s} s; -> 0: all available "
                  f"after {down_s} s", flush=True)

        # 3. and 4. at N hosts
        figures["get_at_hosts"] = {"hosts": n, **gets(kubectl, http, n, args.samples)}
        figures["watch"] = watch_latency(k8s_url, http, api, hosts, args.watch_samples)
        cpu.mark("gets_and_watch")

        # 3. again at --get-hosts hosts
        if args.get_hosts > n:
            post_s = post_extra(k8s_url, n, args.get_hosts)
            quiet_s = hosts.quiet(args.timeout)
            cpu.mark("extra_hosts")
            print(f"  {args.get_hosts - n} more hosts POSTed in {post_s} s, quiet after "
                  f"{quiet_s} s more: {hosts.summary()}", flush=True)
            figures["extra_hosts"] = {"posted": args.get_hosts - n, "post_s": post_s,
                                      "then_quiet_s": quiet_s,
                                      "states": hosts.summary()}
            figures["get_at_get_hosts"] = {"hosts": args.get_hosts,
                                           **gets(kubectl, http, args.get_hosts, args.samples)}
            cpu.mark("gets_big")
        figures["server_cpu_s_by_phase"] = cpu.phases
    figures["server_peak_rss_mib"] = peak.peak_mib


def compare(args: argparse.Namespace, figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows: what, ours, the issue's target (met?), the published peer figure."""
    big = figures.get("get_at_get_hosts") or figures["get_at_hosts"]
    rows = [
        {"what": f"{args.hosts} hosts: kubectl create, until all available (s)",
         "metalplane": figures["create"]["until_all_available_s"],
         "target": TARGETS["available_s"] if args.hosts == 1000 else None,
         "published_not_run": None},
        {"what": f"MachineSet 0 -> {args.hosts}, until all provisioned (s)",
         "metalplane": (figures.get("scale") or {}).get("up_until_all_provisioned_s"),
         "target": TARGETS["provisioned_s"] if args.hosts == 1000 else None,
         "published_not_run": "~48 h for 1,000 hosts (24-core VM, cluster-api)"},
        {"what": f"MachineSet {args.hosts} -> 0, until all available (s)",
         "metalplane": (figures.get("scale") or {}).get("down_until_all_available_s"),
         "target": None, "published_not_run": None},
        {"what": f"kubectl get bmh, {big['hosts']} hosts (median ms)",
         "metalplane": big["kubectl_get_bmh"]["median_ms"],
         "target": TARGETS["get_table_big_ms"] if big["hosts"] == 10_000 else None,
         "published_not_run": None},
        {"what": "watch: label patch -> MODIFIED (median ms)",
         "metalplane": figures["watch"]["label_patch_to_event"]["median_ms"],
         "target": None, "published_not_run": None},
        {"what": "watch: maintenance answer -> MODIFIED (median ms)",
         "metalplane": figures["watch"]["maintenance_answer_to_event"]["median_ms"],
         "target": None, "published_not_run": None},
    ]
    for row in rows:
        row["met"] = (None if row["target"] is None or row["metalplane"] is None
                      else row["metalplane"] < row["target"])
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'':52s} {'metalplane':>11s} {'target':>8s} {'met':>5s}  published, not run")
    for row in rows:
        ours = "-" if row["metalplane"] is None else f"{row['metalplane']:g}"
        target = "-" if row["target"] is None else f"< {row['target']:g}"
        met = {None: "-", True: "yes", False: "NO"}[row["met"]]
        print(f"{row['what']:52s} {ours:>11s} {target:>8s} {met:>5s}  "
              f"{row['published_not_run'] or '-'}")
    print(f"published: {PUBLISHED}")


def versions() -> dict[str, str]:
    kubectl = json.loads(subprocess.run(["kubectl", "version", "--client", "-o", "json"],
                                        capture_output=True, text=True, timeout=30).stdout)
    sushy = subprocess.run([sys.executable, "-m", "pip", "show", "sushy-tools"],
                           capture_output=True, text=True, timeout=60).stdout
    return {"metalplane": __version__, "python": sys.version.split()[0],
            "kubectl": kubectl["clientVersion"]["gitVersion"], "httpx": httpx.__version__,
            "sushy-tools": next((line.split()[1] for line in sushy.splitlines()
                                 if line.startswith("Version:")), "?")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--get-hosts", type=int, default=10_000)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--watch-samples", type=int, default=20)
    parser.add_argument("--poll", type=float, default=2.0, help="list poll interval (s)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="bound on each wait (s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "k8s.json")
    args = parser.parse_args()
    if shutil.which("kubectl") is None:
        raise SystemExit("kubectl is not installed")
    result: dict[str, Any] = {
        "script": "bench/k8s.py", "machine": machine(), "versions": versions(),
        "parameters": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in vars(args).items()},
        "published_not_run": PUBLISHED}
    header(result)
    work = Path(tempfile.mkdtemp(prefix="mp-bench-k8s-"))
    try:
        run(args, work, result)
    except BaseException:
        for log in ("server.log", "emulator.log"):
            with_tail = work / log
            if with_tail.exists():
                print(f"--- {log} (tail)\n{with_tail.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["comparison"] = compare(args, result["figures"])
    print_table(result["comparison"])
    print(f"server CPU s by phase: {result['figures']['server_cpu_s_by_phase']}; "
          f"peak RSS {result['figures']['server_peak_rss_mib']} MiB")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
