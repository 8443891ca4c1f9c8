"""The lab's boot supervisor: it "boots" a node when its BMC powers it on.

sushy-tools' fake driver calls ``EXTERNAL_NOTIFICATION_URL`` with the whole system
(``power_state``, ``boot_device``, …) whenever one changes. The supervisor turns those
notifications into what a machine would do, in the node's namespace:

- power on, boot device ``Pxe``: what PXE firmware then iPXE do. DHCP without and then
  with the ``iPXE`` user class (a real ``dhclient``); the first answer's bootfile comes
  over TFTP from dnsmasq, the second's is the node's iPXE script, fetched over HTTP. The
  script's ``metalplane.api_url`` starts ``metalplane-agent`` (its first lookup is issued
  the token) in the namespace, on the node's disk file. No answer: the node stays dark, as
  a real one would.
- power on, boot device ``Cd``: what firmware booting Redfish virtual media, then the
  ramdisk, do. The image inserted in the BMC's CD/DVD device (its ``VirtualMedia``
  resource's ``Image``, read over Redfish: the fake driver's notification holds only its
  own local copy of it) is fetched from its URL, as the BMC does, from the lab's host
  side; the agent's parameters come from its ``parameters.txt`` (or from a configuration
  image ``ir-vfd-dev`` inserted in a Floppy/USBStick device). An ISO labelled
  ``config-2`` with ``network_data.json`` is a DHCP-less boot: the NIC gets the static
  addresses and routes of its MAC's link, as glean sets them, and no DHCP is asked; without
  it the ramdisk asks DHCP (no PXE). Then ``metalplane-agent`` starts as after PXE. No
  media, or one that cannot be fetched or read: the node stays dark, logged.
- power on, boot device ``Hdd``: the installed OS comes up. The config drive at the end
  of the disk gives the tenant addresses (``network_data.json``), set on the NIC.
- power off: the agent is killed and the NIC loses its addresses.

The fake driver takes 1-11 s to change power, as slow BMCs do, but it applies a change only
when the system is next read: left alone, a node would power on when someone polls its BMC,
not when its BMC is done. So the supervisor is also the BMCs' clock: a notification with a
``pending_power`` makes it read that system once at the change's ``apply_time``, and the
change happens then, whoever polls.

Each node's state is in ``<state_dir>/nodes/<name>.json`` (``lab status`` shows it) and its
boot log in ``<state_dir>/logs/<name>.log``. Run by ``metalplane lab up``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import ipaddress
import json
import logging
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from metalplane.agent import configdrive, vmedia
from metalplane.common import process
from metalplane.lab import idrac
from metalplane.lab.rack import dhclient_once, netns_exec, run

LOG = logging.getLogger("metalplane.lab.supervisor")
EXT4_MAGIC_OFFSET = 1080  # s_magic in the superblock at 1024 (ext4(5))
MAX_MEDIA_BYTES = 1 << 30  # a virtual media image larger than this is not fetched
CD_TYPES = ("CD", "DVD")
REMOVABLE_TYPES = ("USBStick", "Floppy")


class Node:
    """One node of the lab: its namespace, NIC, disk and what runs on it."""

    def __init__(self, spec: dict[str, Any], state_dir: Path) -> None:
        self.spec = spec
        self.name = str(spec["name"])
        self.ns = str(spec["namespace"])
        self.mac = str(spec["mac"])
        self.disk = str(spec["disk"])
        self.disk_size = int(spec["disk_size"])
        self.state_dir = state_dir
        self.power = "Off"
        self.generation = 0
        self.agent: subprocess.Popen[bytes] | None = None
        self.jobs: queue.Queue[tuple[str, int]] = queue.Queue()
        self.log_path = state_dir / "logs" / f"{self.name}.log"

    def log(self, message: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def set_state(self, state: str, detail: str = "") -> None:
        path = self.state_dir / "nodes" / f"{self.name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"os": state, "detail": detail, "since": time.time(),
                                   "agent_pid": self.agent.pid if self.agent else None}))
        tmp.replace(path)
        self.log(f"{state}{': ' + detail if detail else ''}")


def parse_lease(text: str) -> dict[str, str]:
    """The last lease of a dhclient lease file: ``fixed-address``, ``filename``,
    ``subnet-mask``, ``routers``, ``tftp-server-name``, ``next-server``. ``filename`` is
    the boot file as firmware takes it: option 67 (``bootfile-name``; OVN's DHCP sends only
    that), else the BOOTP header's file field (dnsmasq's). Source: dhclient.leases(5),
    RFC 2132 section 9.5."""
    leases = text.split("lease {")
    if len(leases) < 2:
        return {}
    out: dict[str, str] = {}
    for line in leases[-1].splitlines():
        line = line.strip().rstrip(";")
        m = re.match(r'^(?:option\s+)?([\w-]+)\s+"?([^"]*)"?$', line)
        if m:
            out[m.group(1)] = m.group(2)
    if out.get("bootfile-name"):
        out["filename"] = out["bootfile-name"]
    return out


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        spec = json.loads((state_dir / "lab.json").read_text())
        self.spec = spec
        self.nodes = {str(n["uuid"]): Node(n, state_dir)
                      for n in [*spec["nodes"], *spec.get("undiscovered", [])]}
        self.lock = threading.Lock()
        for sub in ("nodes", "logs", "dhcp"):
            (state_dir / sub).mkdir(exist_ok=True)
        for node in self.nodes.values():
            node.set_state("off")
            threading.Thread(target=self._worker, args=(node,), daemon=True,
                             name=f"boot-{node.name}").start()

    # ----------------------------------------------------------------- notifications
    def notify(self, system: dict[str, Any]) -> bool:
        """Take a system as sushy-tools sends it; queue a boot or a shutdown when its
        power state changed, and the BMC's clock tick for a change still pending. False for
        a system the lab does not know."""
        node = self.nodes.get(str(system.get("uuid")))
        if node is None:
            return False
        pending = system.get("pending_power")
        if isinstance(pending, dict) and isinstance(pending.get("apply_time"), (int, float)):
            self._tick_at(node, float(pending["apply_time"]))
        power = str(system.get("power_state") or "Off")
        boot = str(system.get("boot_device") or "Hdd")
        with self.lock:
            previous, node.power = node.power, power
            if power == previous:
                return True
            node.generation += 1
            job = ("boot-" + boot.lower()) if power == "On" else "off"
            node.jobs.put((job, node.generation))
        return True

    def _tick_at(self, node: Node, apply_time: float) -> None:
        """Read the node's system from the emulator just after ``apply_time`` (epoch s), so
        the fake driver applies its pending power change then."""
        url = f"{self.spec['emulator']['url']}/redfish/v1/Systems/{node.spec['uuid']}"

        def tick() -> None:
            try:
                if "idrac" in node.spec:  # its own BMC, over TLS with credentials
                    idrac.tick(node.spec["idrac"])
                    return
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
            except (OSError, httpx.HTTPError) as exc:  # URLError and timeouts: OSErrors
                LOG.warning("node %s: BMC clock tick failed: %s", node.name, exc)

        delay = max(0.0, apply_time - time.time()) + 0.05  # the driver compares with >=
        timer = threading.Timer(delay, tick)
        timer.daemon = True
        timer.start()

    def _worker(self, node: Node) -> None:
        while True:
            job, generation = node.jobs.get()
            try:
                self._shutdown(node)
                if job == "off":
                    node.set_state("off")
                elif job == "boot-pxe":
                    self._boot_pxe(node, generation)
                elif job == "boot-hdd":
                    self._boot_disk(node)
                elif job == "boot-cd":
                    self._boot_vmedia(node, generation)
                else:
                    node.set_state("halted", f"cannot boot from {job[5:]}")
            except Exception as exc:  # a node's failure must not stop the lab
                LOG.exception("node %s: %s failed", node.name, job)
                node.set_state("error", f"{job}: {exc}")

    def _current(self, node: Node, generation: int) -> bool:
        with self.lock:
            return node.generation == generation

    # ----------------------------------------------------------------- power off
    def _shutdown(self, node: Node) -> None:
        if node.agent is not None:
            process.stop(node.agent, grace=5)  # with its group: a qemu-img it started too
            node.agent = None
        run("ip", "-n", node.ns, "addr", "flush", "dev", "eth0", check=False)
        run("ip", "-n", node.ns, "route", "flush", "table", "main", check=False)

    # ----------------------------------------------------------------- PXE
    def _dhcp(self, node: Node, ipxe: bool) -> dict[str, str]:
        """One DHCP exchange from the node (no address configured by it); the lease."""
        return parse_lease(dhclient_once(node.ns, self.state_dir / "dhcp", node.name, ipxe))

    def _configure(self, node: Node, ip: str, netmask: str, gateway: str | None) -> None:
        prefix = ipaddress.ip_network(f"0.0.0.0/{netmask}").prefixlen
        run("ip", "-n", node.ns, "addr", "replace", f"{ip}/{prefix}", "dev", "eth0")
        if gateway:
            run("ip", "-n", node.ns, "route", "replace", "default", "via", gateway, check=False)

    def _boot_pxe(self, node: Node, generation: int) -> None:
        node.set_state("pxe", "DHCP")
        lease: dict[str, str] = {}
        for _ in range(3):  # firmware retries a few DISCOVERs, then gives up
            lease = self._dhcp(node, ipxe=False)
            if lease.get("fixed-address") or not self._current(node, generation):
                break
        if not self._current(node, generation):
            return
        if not lease.get("fixed-address"):
            node.set_state("halted", "PXE: no DHCP answer (is the node on a provisioning "
                           "network?)")
            return
        self._configure(node, lease["fixed-address"], lease.get("subnet-mask", "255.255.255.0"),
                        lease.get("routers"))
        node.set_state("pxe", f"DHCP: {lease['fixed-address']} from "
                       f"{lease.get('dhcp-server-identifier', '?')}")
        tftp = lease.get("tftp-server-name") or lease.get("next-server")
        firmware = lease.get("filename", "")
        if tftp and firmware and not firmware.startswith("http"):
            node.set_state("pxe", f"TFTP {firmware} from {tftp}")
            size = run(*netns_exec(node.ns, "curl", "-sf", "--max-time", "20", "-o", "/dev/null",
                                   "-w", "%{size_download}", f"tftp://{tftp}/{firmware}"),
                       check=False)
            if not size.isdigit() or int(size) == 0:
                node.set_state("halted", f"PXE: TFTP of {firmware} from {tftp} failed")
                return
        node.set_state("ipxe", "DHCP")
        for _ in range(3):  # iPXE retries too; an exchange can meet a dnsmasq restart
            lease = self._dhcp(node, ipxe=True)
            if lease.get("filename") or not self._current(node, generation):
                break
        if not self._current(node, generation):
            return
        script_url = lease.get("filename", "")
        if not script_url.startswith("http"):
            node.set_state("halted", f"iPXE: no script URL in the DHCP answer ({script_url!r})")
            return
        node.set_state("ipxe", f"chain {script_url}")
        script = run(*netns_exec(node.ns, "curl", "-sf", "--max-time", "20", script_url),
                     check=False)
        api = re.search(r"metalplane\.api_url=(\S+)", script)
        if not (script.startswith("#!ipxe") and api):
            node.set_state("halted", f"iPXE: {script_url} is not an agent script")
            return
        if not self._current(node, generation):
            return
        # the discovery script's: where the inventory goes if no node has this MAC
        callback = re.search(r"metalplane\.inspection_callback_url=(\S+)", script)
        self._start_agent(node, api.group(1), callback.group(1) if callback else None)

    def _start_agent(self, node: Node, api_url: str, callback_url: str | None = None) -> None:
        """``metalplane-agent`` in the node's namespace, on its disk, talking to ``api_url``
        (posting its inventory to ``callback_url`` if no node has its MAC)."""
        work = self.state_dir / "agent" / node.name
        work.mkdir(parents=True, exist_ok=True)
        hardware = work / "hardware.json"  # the node's own DMI identity and BMC
        hardware.write_text(json.dumps(node.spec.get("hardware") or {}))
        with open(self.state_dir / "logs" / f"{node.name}-agent.log", "ab") as out:
            node.agent = process.spawn(
                netns_exec(node.ns, sys.executable, "-m", "metalplane.agent.main",
                           f"--api-url={api_url}",
                           f"--disk={node.disk}", f"--work-dir={work}", "--lldp-wait=10",
                           f"--hardware={hardware}",
                           *([f"--inspection-callback-url={callback_url}"]
                             if callback_url else [])),
                stdout=out, stderr=subprocess.STDOUT)
        node.set_state("agent", f"metalplane-agent (pid {node.agent.pid}) talking to "
                       f"{api_url}")

    # ----------------------------------------------------------------- virtual media
    def _redfish(self, path: str) -> dict[str, Any]:
        """GET ``path`` of the emulator (the BMC); its JSON. Raises OSError, ValueError."""
        with urllib.request.urlopen(f"{self.spec['emulator']['url']}{path}",
                                    timeout=10) as r:
            data = json.loads(r.read())
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a Redfish resource")
        return data

    def _inserted_media(self, node: Node) -> list[tuple[set[str], str]]:
        """``(MediaTypes, Image URL)`` of each VirtualMedia device of the node's system
        holding an inserted image. Raises OSError, ValueError."""
        collection = self._redfish(f"/redfish/v1/Systems/{node.spec['uuid']}/VirtualMedia")
        out = []
        for member in collection.get("Members") or []:
            device = self._redfish(str(member.get("@odata.id")))
            if device.get("Inserted") and device.get("Image"):
                out.append((set(device.get("MediaTypes") or ()), str(device["Image"])))
        return out

    @staticmethod
    def _fetch(url: str) -> bytes:
        """The image at ``url``, as the BMC fetches it. Raises OSError, ValueError."""
        with urllib.request.urlopen(url, timeout=30) as r:
            data: bytes = r.read(MAX_MEDIA_BYTES + 1)
        if len(data) > MAX_MEDIA_BYTES:
            raise ValueError(f"larger than {MAX_MEDIA_BYTES >> 20} MiB")
        return data

    def _boot_vmedia(self, node: Node, generation: int) -> None:
        node.set_state("vmedia", "boot from the virtual CD")
        try:
            media = self._inserted_media(node)
        except (OSError, ValueError) as exc:
            LOG.warning("node %s: cannot read its VirtualMedia: %s", node.name, exc)
            node.set_state("halted", f"virtual media: the BMC's VirtualMedia cannot be read: "
                           f"{exc}")
            return
        cd = next((url for types, url in media if types & set(CD_TYPES)), None)
        if cd is None:
            node.set_state("halted", "virtual media: no image inserted in a CD/DVD device")
            return
        try:
            boot = vmedia.read(self._fetch(cd))
            params = dict(boot.parameters)
            if "metalplane.api_url" not in params:  # a prebuilt ISO: the config image
                for types, url in media:
                    if types & set(REMOVABLE_TYPES):
                        params.update(vmedia.read(self._fetch(url)).parameters)
            nets = (vmedia.static_networks(boot.network_data, node.mac)
                    if boot.network_data else [])
        except (OSError, ValueError) as exc:
            LOG.warning("node %s: cannot boot virtual media %s: %s", node.name, cd, exc)
            node.set_state("halted", f"virtual media: cannot boot {cd}: {exc}")
            return
        api = params.get("metalplane.api_url")
        if not api:
            node.set_state("halted", f"virtual media: {cd} has no metalplane.api_url")
            return
        node.set_state("vmedia", f"booted from virtual media {cd} (volume {boot.label})")
        if not self._current(node, generation):
            return
        if boot.network_data is not None:
            if not nets:
                node.set_state("halted", f"virtual media: network_data has no static IPv4 "
                               f"network for {node.mac}")
                return
            for net in nets:
                run("ip", "-n", node.ns, "addr", "replace", f"{net.address}/{net.prefixlen}",
                    "dev", "eth0")
                for dest, via in net.routes:
                    run("ip", "-n", node.ns, "route", "replace", dest, "via", via, check=False)
                if net.gateway:
                    run("ip", "-n", node.ns, "route", "replace", "default", "via", net.gateway,
                        check=False)
            node.set_state("vmedia", "network_data: " + ", ".join(
                f"{n.address}/{n.prefixlen}" for n in nets) + " (static, no DHCP)")
        else:
            lease = self._dhcp(node, ipxe=False)  # the ramdisk's own DHCP, no PXE
            if not lease.get("fixed-address"):
                node.set_state("halted", "virtual media: no network_data and no DHCP answer")
                return
            self._configure(node, lease["fixed-address"],
                            lease.get("subnet-mask", "255.255.255.0"), lease.get("routers"))
            node.set_state("vmedia", f"DHCP: {lease['fixed-address']} from "
                           f"{lease.get('dhcp-server-identifier', '?')}")
        if self._current(node, generation):
            self._start_agent(node, api)

    # ----------------------------------------------------------------- local disk
    def _boot_disk(self, node: Node) -> None:
        with open(node.disk, "rb") as f:
            f.seek(EXT4_MAGIC_OFFSET)
            magic = f.read(2)
        try:
            drive = configdrive.read(node.disk, node.disk_size)
        except ValueError:
            drive = {}
        if magic != b"\x53\xef" and not drive:
            node.set_state("halted", "no bootable disk")
            return
        meta = drive.get("meta_data") or {}
        addresses = []
        for net in (drive.get("network_data") or {}).get("networks", []):
            if net.get("type") != "ipv4" or not net.get("ip_address"):
                continue
            gateway = next((r.get("gateway") for r in net.get("routes", [])
                            if r.get("network") == "0.0.0.0"), None)
            self._configure(node, str(net["ip_address"]),
                            str(net.get("netmask") or "255.255.255.0"), gateway)
            addresses.append(str(net["ip_address"]))
        node.set_state("os", f"{meta.get('hostname') or node.name} up"
                       f"{' on ' + ', '.join(addresses) if addresses else ' (no address)'}")


class _Handler(http.server.BaseHTTPRequestHandler):
    supervisor: Supervisor

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def do_PUT(self) -> None:
        known = self.supervisor.notify(self._body())
        self.send_response(204 if known else 404)
        self.end_headers()

    do_POST = do_PUT

    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug(format, *args)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="metalplane-lab-supervisor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", type=Path, required=True, help="the lab's state directory")
    p.add_argument("--port", type=int, required=True, help="loopback port for notifications")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(message)s")
    _Handler.supervisor = Supervisor(args.state_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
