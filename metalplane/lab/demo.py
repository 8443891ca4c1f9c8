"""``metalplane demo``: the whole life of bare-metal nodes on the virtual rack.

1. the rack (:mod:`metalplane.lab.lab`) and a metalplane server (SQLite) for it;
2. the switch, two provider networks (provisioning, cleaning) and two tenant networks that
   share one IP subnet, so only the switch's VLANs keep them apart;
3. nodes enrolled by their Redfish addresses and boot MACs (Metal3's ``bmc.address`` and
   ``bootMACAddress``), inspected by the agent (LLDP fills ``local_link_connection``),
   provided (cleaned on the cleaning VLAN);
4. half the nodes deployed onto tenant A (raw image), half onto tenant B (qcow2): an ext4
   image the demo builds with ``mkfs.ext4 -d``;
5. checks with real traffic from the nodes' namespaces, then one node undeployed;
6. a Metal3-style table and the time of each phase. Exit status 1 if any check failed.

Both languages: where kubectl is installed (and unless ``kubectl=False``), half the nodes
are enrolled as Metal3 BareMetalHosts with ``kubectl create -f`` (a Secret and a host per
node, labelled ``role: worker``), which metalplane's reconcile registers, inspects and
cleans by itself; they are deployed onto tenant B by scaling a Cluster API MachineSet
(a Metal3MachineTemplate naming the qcow2 image) with ``kubectl scale``, and the report
ends with ``kubectl get baremetalhosts,machines,machinesets``. The other half goes
through the Bare Metal API as before, onto tenant A.

With ``vmedia=True`` (``--vmedia``) node-1 boots its ramdisk from Redfish virtual media
instead of PXE (boot interface ``redfish-virtual-media``): its BMC fetches the ISO
metalplane builds, and with no DHCP at all, since the ISO carries the addresses that the
provider network of each step gave its port (``network_data.json``, Ironic's DHCP-less
boot). A check reads its boot log and dnsmasq's.

With ``backend="ovn"`` the rack has OVN beside its ToR: OVN's native DHCP answers the nodes
on every network (dnsmasq only serves TFTP), tenant A has a gateway and an OVN router to a
public network with SNAT, and the checks add: each node's DHCP answer on its tenant network
comes from OVN; tenant A reaches the outside namespace, which sees the router's address; a
security group that lets in only ICMP from across the router holds, for a floating IP from
outside and for a neighbour on the same VLAN.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from metalplane.client.http import ApiError, Client
from metalplane.client.wait import WaitTimeout, failed, rests, wait_until_rest
from metalplane.common import process
from metalplane.common.bmc_address import parse_bmc_address
from metalplane.common.metal3 import METAL3_STATE
from metalplane.lab import lab
from metalplane.lab.rack import LabError, dhclient_once, free_port, netns_exec, reaches, run

__all__ = ["Demo", "DemoError"]

TENANT_CIDR = "192.168.50.0/24"
TENANT_A_GATEWAY = "192.168.50.1"  # with the ovn backend: tenant A's router interface
TENANTS = (("tenant-a", "192.168.50.10", "192.168.50.99", "raw"),
           ("tenant-b", "192.168.50.100", "192.168.50.199", "qcow2"))


WAIT_FIELDS = ("name,provision_state,target_provision_state,power_state,target_power_state,"
               "last_error")


class DemoError(Exception):
    """A step of the demo could not go on (message says which and where to look);
    ``nodes``: the nodes it concerns, whose logs' last lines are shown with the error."""

    def __init__(self, message: str, nodes: Collection[str] = ()) -> None:
        super().__init__(message)
        self.nodes = list(nodes)


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Demo:
    nodes: int = 4
    name: str = "mplab"
    port: int = 6385
    keep: bool = False
    timeout: float = 240.0  # per phase
    cabled: bool = False  # enroll boot ports with their switch port (no LLDP needed)
    backend: str = "ovs"  # or "ovn": OVN beside the ToR (see the module's note)
    kubectl: bool = True  # half the nodes through kubectl (if installed), see the module
    vmedia: bool = False  # node-1 boots its ramdisk from virtual media, DHCP-less
    discovery: bool = False  # the variant: one node nobody enrolled (lab.discovery_demo)
    vms: bool = False  # the variant: two libvirt/QEMU machines (lab.vm_demo)
    build_cache: Path | None = None  # vms: the builds' cache (vm_demo.BUILD_CACHE if None)
    callback_timeout: float = 0  # s: the server's wait timeouts; 0: 180, 600 with vms
    console: Console = field(default_factory=lambda: Console(
        highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160))
    checks: list[Check] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    uuids: dict[str, str] = field(default_factory=dict)  # node name -> the server's UUID
    server: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    k8s_port: int = 0
    kube: list[str] = field(default_factory=list)  # nodes enrolled with kubectl
    started: float = field(default_factory=time.monotonic)

    # ----------------------------------------------------------------- output
    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/dim] {text}")

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(what, ok, detail))
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        self.say(f"{mark} {what}{f' [dim]({detail})[/dim]' if detail else ''}")
        return ok

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.console.rule(f"[bold]{name}")
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases.append((name, time.monotonic() - t0))

    # ----------------------------------------------------------------- main
    def run(self) -> int:
        """Run the demo; 0 if every check passed. Raises nothing: errors are printed."""
        code = 1
        try:
            code = self._run()
        except (DemoError, LabError, ApiError) as exc:
            self.console.print(f"[red]error:[/red] {exc}")
            if self.spec:
                self._show_logs(getattr(exc, "nodes", []))
                self.console.print(f"logs: {self.spec['state_dir']}/logs/")
        except KeyboardInterrupt:
            self.console.print("[yellow]interrupted[/yellow]")
        finally:
            if self.keep and self.spec:
                self._explain_keep()
            else:
                self._teardown()
        return code

    def _show_logs(self, nodes: list[str], lines: int = 12) -> None:
        """What a failed node did last, before the rack and its logs go: the last ``lines``
        lines of its boot and agent logs, and of the server's and the DHCP servers' logs
        that name it (its UUID or MAC)."""
        state = Path(self.spec["state_dir"])
        logs = state / "logs"
        specs = {n["name"]: n for n in self._specs()}
        for node in nodes:
            spec = specs.get(node, {})
            keys = [k for k in (self.uuids.get(node), spec.get("mac")) if k]
            keys = [str(k).lower() for k in keys]
            sources = [(logs / f"{node}.log", []), (logs / f"{node}-agent.log", []),
                       *([(Path(spec["console"]), [])] if spec.get("console") else []),
                       (logs / "server.log", keys),
                       *((log, keys) for log in sorted((state / "server" / "dhcp").glob(
                           "*/dnsmasq.log")))]
            for log, about in sources:
                if not log.exists():
                    continue
                text = log.read_text(errors="replace").splitlines()
                tail = [t for t in text if not about or any(k in t.lower() for k in about)]
                tail = tail[-lines:]
                if not tail:
                    continue
                where = log.relative_to(state)
                self.console.print(f"── {where} (last {len(tail)} lines"
                                   f"{' about ' + node if about else ''})", highlight=False)
                self.console.print("\n".join(tail), highlight=False, markup=False)

    def _bring_up(self) -> Client:
        """The rack, the server and its switch and networks; the server's client."""
        with self.phase("rack"):
            if self.vms:
                from metalplane.lab.vm_demo import VMS

                self.spec = lab.up(self.name, 0, progress=self.say, vms=VMS, ipmi_vms=1)
            else:
                self.spec = lab.up(self.name, self.nodes, progress=self.say,
                                   backend=self.backend,
                                   undiscovered=1 if self.discovery else 0)
        with self.phase("server"):
            client = self._start_server()
            self._networks(client)
        return client

    def _run(self) -> int:
        client = self._bring_up()
        if self.discovery:
            from metalplane.lab import discovery_demo

            return discovery_demo.run(self, client)
        if self.vms:
            from metalplane.lab import vm_demo

            return vm_demo.run(self, client)
        names = [n["name"] for n in self.spec["nodes"]]
        half = (len(names) + 1) // 2
        if self.kubectl and shutil.which("kubectl") is None:
            self.say("kubectl is not installed: every node goes through the Bare Metal API "
                     "(install Debian's kubernetes-client, or pass --no-kubectl)")
            self.kubectl = False
        self.kube = names[half:] if self.kubectl else []
        api = [n for n in names if n not in self.kube]
        with self.phase("enroll"):
            self._enroll(client, api)
            if self.kube:
                self._enroll_hosts(self.kube)
            self._provision(client, api, "manage", "manageable")
        with self.phase("inspect"):
            self._provision(client, api, "inspect", "manageable")
        with self.phase("clean"):
            self._provision(client, api, "provide", "available")
            if self.kube:  # registered, inspected and cleaned by the reconcile meanwhile
                self._wait(client, self.kube, "available", "the BareMetalHosts' reconcile")
            self._check_wiring(client)
            self._check_cleaning_network()
        with self.phase("deploy"):
            images = self._images()
            tenants = {n: TENANTS[0] if (n in api if self.kube else i < half) else TENANTS[1]
                       for i, n in enumerate(names)}
            plan = self._deploy(client, names, images, tenants)
        with self.phase("checks"):
            self._check_tenants(client, plan)
            if self.kube:
                self._check_machines()
            if self.backend == "ovn":
                self._check_ovn(client, plan)
            if self.vmedia:
                self._check_vmedia()
        with self.phase("undeploy"):
            self._undeploy(client, plan)
        self._report(client)
        return 0 if all(c.ok for c in self.checks) else 1

    # ----------------------------------------------------------------- server
    def _start_server(self) -> Client:
        state = Path(self.spec["state_dir"])
        env = {**os.environ, **lab.server_settings(self.spec),
               "METALPLANE_TIMEOUT_CHECK_INTERVAL": "5",
               "METALPLANE_INSPECT_WAIT_TIMEOUT": "180",
               "METALPLANE_CLEAN_CALLBACK_TIMEOUT": "180",
               "METALPLANE_DEPLOY_CALLBACK_TIMEOUT": "180"}
        # real machines under TCG: firmware, a kernel, an image to write
        wait = self.callback_timeout or (600 if self.vms else 0)
        if wait:
            env.update({k: f"{wait:.0f}" for k in ("METALPLANE_INSPECT_WAIT_TIMEOUT",
                                                   "METALPLANE_CLEAN_CALLBACK_TIMEOUT",
                                                   "METALPLANE_DEPLOY_CALLBACK_TIMEOUT")})
        self.k8s_port = free_port()
        env["METALPLANE_K8S_PORT"] = str(self.k8s_port)
        log = state / "logs" / "server.log"
        if self.vmedia:  # what the ISO carries; the lab's ramdisk is the agent process
            files = state / "server" / "files"
            files.mkdir(parents=True, exist_ok=True)
            for name in ("agent.kernel", "agent.initramfs"):
                (files / name).write_bytes(f"lab {name} stand-in\n".encode() * 64)
        with open(log, "ab") as out:
            self.server = process.spawn(
                [sys.executable, "-m", "metalplane.cli.main", "server", "--port", str(self.port),
                 "--data-dir", str(state / "server"), "--conductor-hostname", "demo"],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.port}"
        client = self.client = Client(url, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/v1")
                break
            except ApiError:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    raise DemoError(f"the server did not start: {log.read_text()[-1500:]}"
                                    ) from None
                time.sleep(0.2)
        self.say(f"metalplane server at {url} (SQLite in {state / 'server'}), "
                 f"reached by the nodes at {self.spec['boot_server']['url']}")
        return client

    def _networks(self, c: Client) -> None:
        sw = self.spec["switch"]
        c.post("/v1/switches", {"name": sw["name"], "switch_id": sw["switch_id"],
                                     "driver": "ovs", "address": sw["address"],
                                     "bridge": sw["bridge"], "physical_networks": ["physnet1"]})
        self.say(f"switch {sw['name']} registered (chassis {sw['switch_id']})")
        for net in self.spec["networks"]:
            self._vlan_network(c, net, 250, shared=True)
            self.say(f"provider network {net['name']}: VLAN {net['vlan']}, {net['cidr']}")
        subnets = {}
        for name, start, end, _fmt in TENANTS:
            n = c.post("/v2.0/networks", {"network": {"name": name}})["network"]
            gateway = TENANT_A_GATEWAY if self.backend == "ovn" and name == "tenant-a" else None
            subnets[name] = c.post("/v2.0/subnets", {"subnet": {
                "network_id": n["id"], "ip_version": 4, "cidr": TENANT_CIDR,
                "gateway_ip": gateway,
                "allocation_pools": [{"start": start, "end": end}]}})["subnet"]
            self.say(f"tenant network {name}: VLAN {n['provider:segmentation_id']}, "
                     f"{TENANT_CIDR} (pool {start}-{end})")
        if self.backend == "ovn":
            self._router(c, subnets["tenant-a"])

    @staticmethod
    def _vlan_network(c: Client, net: dict[str, Any], last: int, shared: bool = False,
                      external: bool = False) -> dict[str, Any]:
        """A VLAN provider network on physnet1 (``net``: name, vlan, cidr, gateway) with one
        subnet whose pool is .10-.``last``; an ``external`` one (a router's gateway side)
        has no DHCP. The network."""
        n: dict[str, Any] = c.post("/v2.0/networks", {"network": {
            "name": net["name"], "shared": shared, "provider:network_type": "vlan",
            "provider:physical_network": "physnet1", "provider:segmentation_id": net["vlan"],
            **({"router:external": True} if external else {})}})["network"]
        base = net["cidr"].rsplit(".", 1)[0]
        c.post("/v2.0/subnets", {"subnet": {
            "network_id": n["id"], "ip_version": 4, "cidr": net["cidr"],
            "gateway_ip": net["gateway"], "enable_dhcp": not external,
            "allocation_pools": [{"start": f"{base}.10", "end": f"{base}.{last}"}]}})
        return n

    def _router(self, c: Client, tenant_a: dict[str, Any]) -> None:
        """The public network (the outside namespace's VLAN) and tenant A's router to it."""
        pub = self.spec["outside"]
        n = self._vlan_network(c, pub, 99, external=True)
        r = c.post("/v2.0/routers", {"router": {
            "name": "router-a", "external_gateway_info": {"network_id": n["id"]}}})["router"]
        c.put(f"/v2.0/routers/{r['id']}/add_router_interface", {"subnet_id": tenant_a["id"]})
        gw = r["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        self.spec["router"] = {"id": r["id"], "gateway_ip": gw, "public_network": n["id"]}
        self.say(f"public network: VLAN {pub['vlan']}, {pub['cidr']}; router-a: tenant-a "
                 f"({TENANT_A_GATEWAY}) to public ({gw}), SNAT")

    # ----------------------------------------------------------------- lifecycle
    def _enroll(self, c: Client, names: list[str] | None = None) -> None:
        """Enroll ``names`` (every node of the rack if None) through the Bare Metal API."""
        sw = self.spec["switch"]
        for n in (self.spec["nodes"] if names is None
                  else [self._node_spec(name) for name in names]):
            driver, info = parse_bmc_address(n["bmc_address"], "admin", "password")
            node = c.post("/v1/nodes", {
                "name": n["name"], "driver": driver, "driver_info": info,
                "boot_interface": "redfish-virtual-media" if self.vmedia and n["name"]
                == self.spec["nodes"][0]["name"] else "ipxe", "deploy_interface": "direct",
                "inspect_interface": "agent", "network_interface": "neutron"})
            self.uuids[n["name"]] = node["uuid"]
            port: dict[str, Any] = {"address": n["mac"], "node_uuid": node["uuid"],
                                    "pxe_enabled": True}
            if self.cabled:
                port["local_link_connection"] = {"switch_id": sw["switch_id"],
                                                 "port_id": n["switch_port"],
                                                 "switch_info": sw["name"]}
            c.post("/v1/ports", port)
            self.say(f"{n['name']} enrolled: {n['bmc_address']}, boot MAC {n['mac']}")

    # ----------------------------------------------------------------- kubectl
    def _kubectl(self, *args: str, stdin: str | None = None) -> str:
        """Run kubectl with the demo's kubeconfig; its output. Raises DemoError."""
        state = Path(self.spec["state_dir"])
        config = state / "kubeconfig"
        if not config.exists():
            r = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "--url",
                                f"http://127.0.0.1:{self.port}", "kubeconfig", "--k8s-port",
                                str(self.k8s_port)], capture_output=True, text=True,
                               timeout=60)
            if r.returncode:
                raise DemoError(f"metalplane kubeconfig failed: {r.stderr.strip()}")
            config.write_text(r.stdout)
        r = subprocess.run(["kubectl", "--kubeconfig", str(config), "--cache-dir",
                            str(state / "kube-cache"), *args], input=stdin,
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            raise DemoError(f"kubectl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def _check_machines(self) -> None:
        """Each host of the MachineSet is provisioned with a Machine as its consumer, and
        each Machine runs on a host of its own (``kubectl get -o json``)."""
        hosts = {h["metadata"]["name"]: h for h in json.loads(
            self._kubectl("get", "baremetalhosts", "-o", "json"))["items"]}
        machines = json.loads(self._kubectl("get", "machines", "-o", "json"))["items"]
        consumers = set()
        for name in self.kube:
            st, ref = hosts[name].get("status") or {}, hosts[name]["spec"].get("consumerRef")
            consumers.add((ref or {}).get("name"))
            self.check(f"{name}: BareMetalHost provisioned for Machine "
                       f"{(ref or {}).get('name', '?')}",
                       (st.get("provisioning") or {}).get("state") == "provisioned"
                       and (ref or {}).get("kind") == "Machine",
                       f"{(st.get('provisioning') or {}).get('state')}, consumer {ref}")
        phases = {m["metadata"]["name"]: (m.get("status") or {}).get("phase")
                  for m in machines}
        self.check(f"MachineSet workers: {len(self.kube)} Machines running, one per host",
                   len(phases) == len(self.kube) and set(phases) == consumers
                   and set(phases.values()) <= {"Running", "Provisioned"}, str(phases))
        self.console.print("$ kubectl get baremetalhosts,machines,machinesets")
        self.console.print(self._kubectl("get", "baremetalhosts,machines,machinesets"),
                           markup=False)

    def _enroll_hosts(self, names: list[str]) -> None:
        """``kubectl create -f``: a BMC Secret and a BareMetalHost per node, shaped as the
        seed's worker_crs.yaml, labelled ``role: worker``."""
        docs = []
        for n in (self._node_spec(name) for name in names):
            docs.append(f"""---
apiVersion: v1
kind: Secret
metadata:
  name: {n['name']}-bmc-secret
type: Opaque
stringData:
  username: admin
  password: password
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: {n['name']}
  labels:
    role: worker
spec:
  online: true
  bmc:
    address: {n['bmc_address']}
    credentialsName: {n['name']}-bmc-secret
  bootMACAddress: {n['mac']}
""")
        path = Path(self.spec["state_dir"]) / "hosts.yaml"
        path.write_text("".join(docs))
        for line in self._kubectl("create", "-f", str(path)).splitlines():
            self.say(f"kubectl: {line}")

    def _scale_machines(self, images: dict[str, tuple[Path, str]], replicas: int) -> None:
        """A Metal3MachineTemplate (the qcow2 image, hosts labelled ``role: worker``) and
        the MachineSet ``workers``, then ``kubectl scale`` to ``replicas``."""
        path, digest = images["qcow2"]
        manifest = Path(self.spec["state_dir"]) / "machineset.yaml"
        manifest.write_text(f"""---
apiVersion: v1
kind: Secret
metadata:
  name: workers-user-data
type: Opaque
stringData:
  userData: |
    #cloud-config
    hostname: worker
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: Metal3MachineTemplate
metadata:
  name: workers
spec:
  template:
    spec:
      image:
        url: file://{path}
        checksum: {digest}
        checksumType: sha256
        format: qcow2
      userData:
        name: workers-user-data
      hostSelector:
        matchLabels:
          role: worker
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: MachineSet
metadata:
  name: workers
spec:
  clusterName: demo
  replicas: 0
  selector:
    matchLabels:
      machineset: workers
  template:
    metadata:
      labels:
        machineset: workers
    spec:
      clusterName: demo
      infrastructureRef:
        apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
        kind: Metal3MachineTemplate
        name: workers
""")
        for line in self._kubectl("apply", "-f", str(manifest)).splitlines():
            self.say(f"kubectl: {line}")
        out = self._kubectl("scale", "machineset", "workers", f"--replicas={replicas}")
        self.say(f"kubectl: {out.strip()}")

    def _provision(self, c: Client, names: list[str], verb: str, want: str,
                   body: Callable[[str], dict[str, Any]] | None = None) -> None:
        for n in names:
            c.put(f"/v1/nodes/{n}/states/provision",
                  body(n) if body else {"target": verb})
        self._wait(c, names, want, verb)

    def _wait(self, c: Client, names: list[str], want: str, what: str) -> None:
        """Poll until every node rests; print each state change. Raises DemoError when
        one fails or the phase times out."""
        seen: dict[str, str] = {}
        wanted = set(names)

        def poll() -> dict[str, dict[str, Any]]:
            # one list call a round, not one GET per node: the server's work stays the
            # same whatever the number of nodes waited on (the demo's server holds only
            # the demo's nodes; the CLI's --wait, often for one node of many, asks per node)
            nodes = {d["name"]: d for d in c.list_all("/v1/nodes", "nodes", fields=WAIT_FIELDS)
                     if d.get("name") in wanted}
            missing = wanted - set(nodes)
            if missing:
                raise DemoError(f"{what}: node(s) {', '.join(sorted(missing))} are gone")
            return nodes

        def show(nodes: dict[str, dict[str, Any]]) -> None:
            for n, d in nodes.items():
                state = d["provision_state"] + (f" → {d['target_provision_state']}"
                                                 if d.get("target_provision_state") else "")
                if seen.get(n) != state:
                    seen[n] = state
                    self.say(f"{n}: {state}")

        try:
            # 1 s: a display; the server need not answer faster
            nodes = wait_until_rest(poll, self.timeout, 1.0, show)
        except WaitTimeout as exc:
            raise DemoError(f"{what} did not finish in {self.timeout:.0f}s: "
                            + ", ".join(f"{n} {s}" for n, s in seen.items()),
                            [n for n, d in exc.nodes.items() if not rests(d)]) from exc
        missed = {n: d for n, d in nodes.items() if failed(d) or d["provision_state"] != want}
        for n, d in missed.items():
            self.check(f"{n} reached {want}", False, str(d.get("last_error") or
                                                        d["provision_state"]))
        if missed:
            raise DemoError(f"{what} failed on {', '.join(missed)}", missed)
        self.check(f"{what}: {len(names)} node(s) {want}", True)

    # ----------------------------------------------------------------- checks
    def _check_wiring(self, c: Client) -> None:
        sw = self.spec["switch"]
        for n in self.spec["nodes"]:
            ports = c.get("/v1/ports", node=n["name"], detail=True)["ports"]
            llc = ports[0].get("local_link_connection") or {} if ports else {}
            self.check(f"{n['name']}: LLDP wired it to {sw['name']} port {n['switch_port']}",
                       llc.get("switch_id") == sw["switch_id"]
                       and llc.get("port_id") == n["switch_port"], str(llc or "no LLDP"))
            hw = n.get("hardware") or {}
            if hw:  # the inventory in IPA's shape, with this node's own DMI identity and BMC
                inv = c.get(f"/v1/nodes/{n['name']}/inventory")["inventory"]
                vendor, want = inv.get("system_vendor") or {}, hw["system_vendor"]
                self.check(f"{n['name']}: its inventory says {want['manufacturer']} "
                           f"{want['product_name']} {want['serial_number']}, BMC "
                           f"{hw['bmc_address']}",
                           all(vendor.get(k) == v for k, v in want.items())
                           and inv.get("bmc_address") == hw["bmc_address"],
                           f"{vendor.get('manufacturer')} {vendor.get('product_name')} "
                           f"{vendor.get('serial_number')}, BMC {inv.get('bmc_address')}")

    def _lease_addresses(self, node: str) -> list[str]:
        """The addresses the node's ramdisk got, from DHCP or its virtual media's
        network_data, oldest first (the supervisor's log)."""
        log = Path(self.spec["state_dir"]) / "logs" / f"{node}.log"
        text = log.read_text() if log.exists() else ""
        return re.findall(r"(?:DHCP|network_data): (\d+\.\d+\.\d+\.\d+)[/ ]", text)

    def _check_vmedia(self) -> None:
        """node-1 booted each ramdisk (inspect, clean, deploy) from virtual media with its
        addresses from the ISO, and never asked DHCP on a provider network."""
        n = self.spec["nodes"][0]
        state = Path(self.spec["state_dir"])
        log = (state / "logs" / f"{n['name']}.log").read_text()
        boots = re.findall(r"booted from virtual media \S+ \(volume config-2\)", log)
        static = re.findall(r"network_data: \S+ \(static, no DHCP\)", log)
        self.check(f"{n['name']}: its ramdisk booted from virtual media {len(boots)} times "
                   "(inspect, clean, deploy), addresses from the ISO's network_data",
                   len(boots) >= 3 and len(static) == len(boots) and " pxe" not in log,
                   f"{len(boots)} boots, {len(static)} static")
        seen = [p.parent.name for p in (state / "server" / "dhcp").rglob("*")
                if p.name in ("dnsmasq.log", "leases")
                and n["mac"] in p.read_text(errors="replace").lower()]
        self.check(f"{n['name']}: no DHCP exchange with dnsmasq on any provider network",
                   not seen, f"its MAC in dnsmasq's files of {', '.join(seen)}" if seen
                   else "")

    def _check_cleaning_network(self) -> None:
        cleaning = next(n for n in self.spec["networks"] if n["name"] == "cleaning")
        prefix = cleaning["cidr"].rsplit(".", 1)[0] + "."
        for n in self.spec["nodes"]:
            got = [a for a in self._lease_addresses(n["name"]) if a.startswith(prefix)]
            self.check(f"{n['name']} was cleaned on the cleaning network (VLAN "
                       f"{cleaning['vlan']})", bool(got),
                       f"it got {got[-1]}" if got else "no address from the cleaning network")

    def _images(self) -> dict[str, tuple[Path, str]]:
        """An ext4 disk image with a small root file system, as raw and qcow2."""
        state = Path(self.spec["state_dir"])
        root = state / "images" / "rootfs"
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "os-release").write_text('NAME="metalplane demo"\nID=mpdemo\n')
        (root / "etc" / "motd").write_text("Deployed by metalplane.\n")
        raw = state / "images" / "demo.raw"
        with open(raw, "wb") as f:
            f.truncate(24 << 20)
        run("mkfs.ext4", "-q", "-F", "-L", "mpdemo", "-d", str(root), str(raw), timeout=60)
        qcow = state / "images" / "demo.qcow2"
        run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow), timeout=60)
        out = {}
        for fmt, path in (("raw", raw), ("qcow2", qcow)):
            out[fmt] = (path, hashlib.sha256(path.read_bytes()).hexdigest())
            self.say(f"image {path.name}: {path.stat().st_size >> 10} KiB, "
                     f"sha256 {out[fmt][1][:12]}…")
        return out

    def _deploy(self, c: Client, names: list[str], images: dict[str, tuple[Path, str]],
                tenants: dict[str, tuple[str, str, str, str]] | None = None
                ) -> dict[str, dict[str, Any]]:
        """Each node's VIF on its tenant network (``tenants``: node -> an entry of
        TENANTS; None: the first half on tenant A, the rest on B); the Bare Metal API's
        nodes deployed with their image, the BareMetalHosts by scaling the MachineSet;
        waits until all are active. The plan: node -> tenant, VLAN, IP, image format."""
        if tenants is None:
            half = (len(names) + 1) // 2
            tenants = {n: TENANTS[0] if i < half else TENANTS[1] for i, n in enumerate(names)}
        nets = {n["name"]: n for n in c.get("/v2.0/networks")["networks"]}
        plan: dict[str, dict[str, Any]] = {}
        for name in names:
            tenant, _s, _e, fmt = tenants[name]
            net = nets[tenant]
            port = c.post("/v2.0/ports", {"port": {"network_id": net["id"],
                                                        "name": f"{name}-vif"}})["port"]
            c.post(f"/v1/nodes/{name}/vifs", {"id": port["id"]})
            plan[name] = {"tenant": tenant, "vlan": net["provider:segmentation_id"],
                          "ip": port["fixed_ips"][0]["ip_address"], "format": fmt}
            how = "by the MachineSet" if name in self.kube else "by the Bare Metal API"
            self.say(f"{name} → {tenant} (VLAN {net['provider:segmentation_id']}, "
                     f"{plan[name]['ip']}), {fmt} image, {how}")
            if name in self.kube:
                continue
            path, digest = images[fmt]
            c.patch(f"/v1/nodes/{name}", [
                {"op": "add", "path": "/instance_info", "value": {
                    "image_source": str(path), "image_checksum": f"sha256:{digest}",
                    "image_disk_format": fmt}},
                {"op": "add", "path": "/extra/consumer", "value": f"{tenant}/{name}"}])
            c.put(f"/v1/nodes/{name}/states/provision", {"target": "active", "configdrive": {
                "user_data": f"#cloud-config\nhostname: {name}\n",
                "meta_data": {"consumer": tenant}}})
        if self.kube:
            self._scale_machines(images, len(self.kube))
        self._wait(c, names, "active", "deploy")
        return plan

    def _specs(self) -> list[dict[str, Any]]:
        """The rack's nodes: namespaces, then undiscovered ones, then VMs."""
        return [*self.spec["nodes"], *self.spec.get("undiscovered", []),
                *self.spec.get("vms", [])]

    def _names(self) -> list[str]:
        """The rack's nodes, the undiscovered ones and the VMs last."""
        return [n["name"] for n in self._specs()]

    def _node_spec(self, name: str) -> dict[str, Any]:
        return next(n for n in self._specs() if n["name"] == name)

    def _reaches(self, name: str, ip: str, tries: int = 3, borrow: str | None = None) -> bool:
        """True if ``ip`` answers a ping from the node's namespace (any of ``tries``).
        ``borrow``: an address/prefix the node holds for the duration of the probe."""
        ns = self._node_spec(name)["namespace"]
        if borrow:
            run("ip", "-n", ns, "addr", "add", borrow, "dev", "eth0")
        try:
            return reaches(ns, ip, tries)
        finally:
            if borrow:
                run("ip", "-n", ns, "addr", "del", borrow, "dev", "eth0", check=False)

    def _wait_os(self, names: list[str], timeout: float = 60) -> None:
        """Wait until each node's installed OS configured its address (the BMC's power-on
        reaches the supervisor a moment after metalplane reports active)."""
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            st = {n["name"]: n for n in lab.status(self.name)["nodes"]}
            pending = {n for n in pending if st[n]["os"] != "os" or not st[n]["ip_addresses"]}
            if pending:
                time.sleep(0.5)

    def _check_tenants(self, c: Client, plan: dict[str, dict[str, Any]]) -> None:
        self._wait_os(list(plan))
        st = {n["name"]: n for n in lab.status(self.name)["nodes"]}
        for name, p in plan.items():
            s = st[name]
            self.check(f"{name}: switch port {s['switch_port']} on {p['tenant']}'s VLAN "
                       f"{p['vlan']}", s["vlan"] == p["vlan"], f"VLAN {s['vlan']}")
            self.check(f"{name}: booted its disk with {p['ip']} from the config drive",
                       s["os"] == "os" and any(a.startswith(p["ip"] + "/")
                                               for a in s["ip_addresses"]),
                       s["detail"] or s["os"])
        # All pings at once (a failed one waits out its timeout), printed in order.
        probes: list[tuple[str, str, str, bool, str | None]] = []  # what, node, ip, want, borrow
        for name, p in plan.items():
            for peer, q in plan.items():
                if peer != name:
                    same = p["tenant"] == q["tenant"]
                    probes.append((f"{name} {'reaches' if same else 'does not reach'} {peer} "
                                   f"({q['tenant']}, {q['ip']})", name, q["ip"], same, None))
        for i, name in enumerate(plan):
            for net in self.spec["networks"]:
                # With an address of its own in that subnet, so only the VLAN can stop it.
                borrow = net["cidr"].rsplit(".", 1)[0] + f".{240 + i}/24"
                probes.append((f"{name} does not reach the {net['name']} network "
                               f"({net['gateway']}, even from {borrow.split('/')[0]})",
                               name, net["gateway"], False, borrow))
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda pr: self._reaches(pr[1], pr[2], 3 if pr[3] else 2,
                                                             borrow=pr[4]), probes))
        for (what, _n, _ip, want, _b), got in zip(probes, results, strict=True):
            self.check(what, got == want)

    # ----------------------------------------------------------------- OVN
    def _serve_http(self, ns: str, tag: str) -> tuple[subprocess.Popen[bytes], Path]:
        """``python3 -m http.server 8000`` in namespace ``ns``; its log names each client."""
        log = Path(self.spec["state_dir"]) / "logs" / f"http-{tag}.log"
        with open(log, "wb") as out:
            proc = process.spawn(netns_exec(ns, sys.executable, "-m", "http.server", "8000",
                                            "--directory", "/nonexistent-mp"),
                                 stdout=subprocess.DEVNULL, stderr=out)
        return proc, log

    @staticmethod
    def get_http(ns: str, url: str, tries: int = 3, seconds: int = 2) -> str | None:
        """The body of the answer to an HTTP GET of ``url`` from namespace ``ns`` (any of
        ``tries``, ``seconds`` each; curl), None if none came."""
        for _ in range(tries):
            r = subprocess.run(netns_exec(ns, "curl", "-s", "--max-time", str(seconds), url),
                               capture_output=True, text=True, errors="replace",
                               timeout=seconds + 8)
            if r.returncode == 0:
                return r.stdout
        return None

    @staticmethod
    def _fetch(ns: str, url: str, tries: int = 3) -> bool:
        """True if an HTTP request from namespace ``ns`` to ``url`` is answered (any of
        ``tries``, 2 s each)."""
        return Demo.get_http(ns, url, tries) is not None

    def _check_ovn(self, c: Client, plan: dict[str, dict[str, Any]]) -> None:
        """The ovn backend's checks: DHCP from OVN on the tenant networks (dnsmasq served no
        DHCP), SNAT through tenant A's router, a security group with traffic."""
        state = Path(self.spec["state_dir"])
        dnsmasq_dhcp = list((state / "server" / "dhcp").glob("*/dnsmasq.log"))
        self.check("no DHCP from dnsmasq: OVN answered every DHCP request (dnsmasq only "
                   "serves TFTP)", not dnsmasq_dhcp, ", ".join(map(str, dnsmasq_dhcp)))
        for name, p in plan.items():
            lease = dhclient_once(self._node_spec(name)["namespace"], state / "logs",
                                  f"{name}-tenant-dhcp", timeout=6)
            server = re.search(r"dhcp-server-identifier (\S+);", lease)
            self.check(f"{name}: OVN's DHCP answers on {p['tenant']} with {p['ip']}",
                       f"fixed-address {p['ip']};" in lease,
                       f"from {server.group(1)}" if server else "no answer")
        router = self.spec["router"]
        outside = self.spec["outside"]
        a_nodes = [n for n, p in plan.items() if p["tenant"] == "tenant-a"]
        first = a_nodes[0]
        ns = self._node_spec(first)["namespace"]
        run("ip", "-n", ns, "route", "replace", "default", "via", TENANT_A_GATEWAY)
        web_out, out_log = self._serve_http(outside["namespace"], "outside")
        web_node, _log = self._serve_http(ns, first)
        try:
            time.sleep(0.5)
            ok = self._fetch(ns, f"http://{outside['gateway']}:8000/")
            seen = re.findall(r"^(\S+) - - ", out_log.read_text(), re.M)
            self.check(f"{first} reaches the outside ({outside['gateway']}) through router-a",
                       ok)
            self.check(f"the outside sees router-a's address {router['gateway_ip']}, not "
                       f"{plan[first]['ip']} (SNAT)", bool(seen) and seen[-1] ==
                       router["gateway_ip"], f"seen {seen[-1] if seen else 'nothing'}")
            self._security_group(c, first, a_nodes, plan, outside)
        finally:
            process.stop(web_out, grace=5)
            process.stop(web_node, grace=5)
            run("ip", "-n", ns, "route", "del", "default", check=False)

    def _security_group(self, c: Client, node: str, a_nodes: list[str],
                        plan: dict[str, dict[str, Any]], outside: dict[str, Any]) -> None:
        """A security group on ``node``'s VIF that lets in only ICMP from across the router
        (the public network), checked from outside (a floating IP) and from a neighbour on
        the same VLAN (the ToR ACL); then taken off again."""
        vif = c.get(f"/v1/nodes/{node}/vifs")["vifs"][0]["id"]
        fip = c.post("/v2.0/floatingips", {"floatingip": {
            "floating_network_id": self.spec["router"]["public_network"],
            "port_id": vif}})["floatingip"]
        addr = fip["floating_ip_address"]
        self.say(f"floating IP {addr} → {node} ({plan[node]['ip']})")
        out_ns = outside["namespace"]
        self.check(f"the outside reaches {node}'s web server at its floating IP {addr}",
                   self._fetch(out_ns, f"http://{addr}:8000/"))
        sg = c.post("/v2.0/security-groups", {"security_group": {
            "name": "icmp-from-router"}})["security_group"]
        for rule in ({"direction": "ingress", "protocol": "icmp",
                      "remote_ip_prefix": outside["cidr"]}, {"direction": "egress"}):
            c.post("/v2.0/security-group-rules", {"security_group_rule": {
                "security_group_id": sg["id"], "ethertype": "IPv4", **rule}})
        c.put(f"/v2.0/ports/{vif}", {"port": {"security_groups": [sg["id"]]}})
        self.say(f"security group icmp-from-router on {node}: ICMP in from {outside['cidr']}")
        self.check(f"the outside pings {node} at {addr} (ICMP through the router is allowed)",
                   reaches(out_ns, addr))
        self.check(f"the outside no longer reaches {node}'s web server (TCP is not allowed)",
                   not self._fetch(out_ns, f"http://{addr}:8000/", tries=1))
        for peer in a_nodes[1:2]:
            self.check(f"{peer} no longer reaches {node} on their VLAN (the ToR ACL)",
                       not self._reaches(peer, plan[node]["ip"], 1))
        c.put(f"/v2.0/ports/{vif}", {"port": {"security_groups": []}})
        self.check(f"without the group the outside reaches {node}'s web server again",
                   self._fetch(out_ns, f"http://{addr}:8000/"))
        c.delete(f"/v2.0/floatingips/{fip['id']}")
        c.delete(f"/v2.0/security-groups/{sg['id']}")

    def _undeploy(self, c: Client, plan: dict[str, dict[str, Any]]) -> None:
        """The last node of the Bare Metal API undeployed through it; the MachineSet's
        hosts released by scaling it to 0 (deprovisioned: available again)."""
        api = [n for n in plan if n not in self.kube]
        gone = api[-1:]
        self._provision(c, gone, "deleted", "available")
        c.patch(f"/v1/nodes/{gone[0]}", [{"op": "remove", "path": "/extra/consumer"}])
        if self.kube:
            out = self._kubectl("scale", "machineset", "workers", "--replicas=0")
            self.say(f"kubectl: {out.strip()}")
            self._wait_hosts(c, self.kube, "available")
            gone += self.kube
        st = {n["name"]: n for n in lab.status(self.name)["nodes"]}
        for name in gone:
            self.check(f"{name}: off its tenant VLAN after undeploy",
                       st[name]["vlan"] != plan[name]["vlan"],
                       f"switch port on VLAN {st[name]['vlan']}")
            peer = next((n for n, p in plan.items() if n not in gone
                         and p["tenant"] == plan[name]["tenant"]), None)
            if peer:
                self.check(f"{peer} no longer reaches {name}",
                           not self._reaches(peer, plan[name]["ip"], 1))

    def _wait_hosts(self, c: Client, names: list[str], want: str) -> None:
        """Wait until the hosts' nodes went through a deprovision and rest in ``want``
        (the reconcile starts it a moment after the scale)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the undeploy has begun on every one
            nodes = {d["name"]: d for d in c.list_all("/v1/nodes", "nodes", fields=WAIT_FIELDS)}
            if all(nodes[n]["provision_state"] != "active" for n in names):
                break
            time.sleep(0.5)
        self._wait(c, names, want, "the MachineSet scaled to 0")

    # ----------------------------------------------------------------- report
    def _report(self, c: Client) -> None:
        t = Table(title="BareMetalHosts")
        for col in ("NAME", "STATUS", "PROVISIONING STATUS", "CONSUMER", "BMC", "ONLINE",
                    "ERROR"):
            t.add_column(col)
        for n in c.get("/v1/nodes/detail")["nodes"]:
            error = n.get("last_error") or ""
            state = n["provision_state"]
            t.add_row(n["name"], "error" if error or failed(n) else "OK",
                      METAL3_STATE.get(state, state), (n.get("extra") or {}).get("consumer", ""),
                      self._node_spec(n["name"])["bmc_address"],
                      "true" if n.get("power_state") == "power on" else "false", error[:60])
        self.console.print(t)
        if self.kube:
            self.console.print("$ kubectl get baremetalhosts,machines,machinesets")
            try:
                self.console.print(self._kubectl("get", "baremetalhosts,machines,machinesets"),
                                   markup=False)
            except DemoError as exc:
                self.check("kubectl get baremetalhosts,machines,machinesets", False, str(exc))
        times = Table(title="phases")
        times.add_column("PHASE")
        times.add_column("SECONDS", justify="right")
        for name, secs in self.phases:
            times.add_row(name, f"{secs:.1f}")
        times.add_row("total", f"{time.monotonic() - self.started:.1f}")
        self.console.print(times)
        unmet = [ch for ch in self.checks if not ch.ok]
        passed = len(self.checks) - len(unmet)
        if unmet:
            self.console.print(f"[red]{len(unmet)} check(s) failed[/red], {passed} passed:")
            for ch in unmet:
                self.console.print(f"  ✗ {ch.what} ({ch.detail})")
        else:
            self.console.print(f"[green]all {passed} checks passed[/green]")

    def _explain_keep(self) -> None:
        env = lab.server_settings(self.spec)
        first = self._node_spec(self._names()[0])
        look = (f"ip netns exec {first['namespace']} ip addr" if "namespace" in first
                else f"tail -f {first['console']}")  # a VM: its serial console
        self.console.print(
            f"\nThe rack is still up (--keep). Look around:\n"
            f"  metalplane lab status --name {self.name}\n"
            f"  METALPLANE_URL=http://127.0.0.1:{self.port} metalplane node list\n"
            f"  {look}\n"
            f"  logs: {self.spec['state_dir']}/logs/\n"
            f"Server settings used: {' '.join(f'{k}={v}' for k, v in env.items())}\n"
            f"Tear down: metalplane lab down --name {self.name}")

    def _teardown(self) -> None:
        t0 = time.monotonic()
        if self.client is not None:
            self.client.close()
        process.stop(self.server, grace=20)
        if self.spec:  # built by this run (a failed `up` removes what it built itself)
            lab.down(self.name, quiet=True)
            self.say(f"rack removed ({time.monotonic() - t0:.1f}s)")
