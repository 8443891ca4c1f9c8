"""``metalplane-agent``: the ramdisk agent.

It finds its node by the MACs of its NICs, is issued the token of this boot by that first
lookup (as ironic-python-agent is), proves itself with it on every heartbeat, and runs the
commands the conductor leaves for it: ``inspect`` (the inventory in ironic-python-agent's
shape: CPUs, memory, disks, NICs with their raw LLDP TLVs, DMI identity, boot mode, BMC
address; :mod:`metalplane.agent.inventory`), ``erase`` (the disk's metadata) and ``deploy``
(image and config drive). In discovery mode (``--inspection-callback-url``, which the
discovery iPXE script passes as ``metalplane.inspection_callback_url``), a lookup that finds
no node makes it inspect and post the inventory there once, then look up again, as
ironic-python-agent does for auto-discovery. Every loop is bounded by ``--max-runtime``.
It talks to the API over HTTP only and imports nothing of the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from metalplane.agent import configdrive, image, inventory, lldp

__all__ = ["Agent", "main"]

LOG = logging.getLogger("metalplane.agent")
VERSION = "1"


class Stop(Exception):
    """The node no longer expects this agent."""


class Busy(Exception):
    """The conductor holds the node for a moment (409 with ``Retry-After``, which the API
    sets on retryable errors such as a locked node): try again soon."""


def local_interfaces() -> dict[str, str]:
    """``{name: mac}`` of the machine's NICs (loopback and zero MACs left out)."""
    out = {}
    for p in sorted(Path("/sys/class/net").iterdir()):
        try:
            mac = (p / "address").read_text().strip().lower()
        except OSError:
            continue
        if p.name != "lo" and mac and mac != "00:00:00:00:00:00":
            out[p.name] = mac
    return out


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


class Agent:
    def __init__(self, api_url: str, token: str | None, disk: str, work_dir: Path,
                 lldp_wait: float = 5.0, max_runtime: float = 3600.0,
                 hardware: dict[str, Any] | None = None,
                 inspection_callback_url: str | None = None,
                 token_file: Path | None = None) -> None:
        self.api = api_url.rstrip("/")
        # discovery mode: where the inventory goes when no node has our MACs
        self.callback = inspection_callback_url
        self.discovered = False
        # a token kept by an earlier run of this boot (the ramdisk's init restarts an agent
        # that died): the first lookup was issued it, a later one only gets "******"
        self.token_file = token_file
        if token is None and token_file is not None and token_file.is_file():
            token = token_file.read_text().strip() or None
        self.token = token
        self.disk = disk
        self.work_dir = work_dir
        self.lldp_wait = lldp_wait
        self.hardware = hardware or {}  # the hardware file's overrides of the inventory
        self.deadline = time.monotonic() + max_runtime
        self.http = httpx.Client(timeout=30,
                                 headers={"X-Agent-Token": token} if token else {})
        self.node: str | None = None
        self.interval = 2.0
        self.progress: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self.running: str | None = None  # id of the command in progress
        self.done: set[str] = set()
        self._lock = threading.Lock()
        self._finished = threading.Event()  # a command ended: report it now, not next beat

    # ---------------------------------------------------------------- talking to the API
    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, f"{self.api}{path}", **kw)
        if r.status_code == 401:
            raise SystemExit(f"metalplane-agent: refused: {r.text}")
        if r.status_code in (404, 409) and path.startswith("/v1/heartbeat"):
            # the status and the API's retry mark decide, not the wording of the message:
            # a 409 without Retry-After (the node expects no agent now) is final
            if r.status_code == 409 and "Retry-After" in r.headers:
                raise Busy(r.text)
            raise Stop(r.text)
        r.raise_for_status()
        return r.json()

    def lookup(self) -> None:
        macs = ",".join(local_interfaces().values())
        while time.monotonic() < self.deadline:
            try:
                found = self._call("GET", "/v1/lookup", params={"addresses": macs})
                if not self.token:
                    issued = found["config"].get("agent_token")
                    if not issued or issued == "******":
                        raise SystemExit("metalplane-agent: refused: this boot's agent token "
                                         "was already issued to another lookup")
                    self.token = str(issued)
                    self.http.headers["X-Agent-Token"] = self.token
                    self._keep_token()
                self.node = found["node"]["uuid"]
                self.interval = float(found["config"].get("heartbeat_interval", 2))
                LOG.info("I am node %s", self.node)
                return
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 404 and self.callback and not self.discovered:
                    self.discover()
                else:
                    LOG.warning("lookup failed, retrying: %s", exc)
                    time.sleep(1)
            except (httpx.HTTPError, KeyError) as exc:
                LOG.warning("lookup failed, retrying: %s", exc)
                time.sleep(1)
        raise SystemExit("metalplane-agent: no node found before --max-runtime")

    def discover(self) -> None:
        """No node has our MACs: inspect and post the inventory to the inspection callback
        (``POST /v1/continue_inspection``, as ironic-python-agent does with
        ``ipa-inspection-callback-url``), then go on looking up. A refusal is logged and
        the post is tried again at the next lookup that finds nothing (a 429 after its
        ``Retry-After``)."""
        assert self.callback is not None
        data = self.do_inspect({})
        try:
            r = self.http.post(self.callback, json=data)
        except httpx.HTTPError as exc:
            LOG.warning("posting the inventory to %s failed, retrying: %s", self.callback, exc)
            time.sleep(2)
            return
        if r.status_code == 202:
            self.discovered = True
            LOG.info("inventory posted to %s: %s", self.callback, r.text[:200])
            return
        LOG.warning("the inspection callback answered %s: %s", r.status_code, r.text[:300])
        wait = r.headers.get("Retry-After", "2")
        time.sleep(min(60.0, float(wait)) if wait.isdigit() else 2.0)

    def _keep_token(self) -> None:
        """Write the issued token to ``token_file`` (mode 0600), for a restarted agent."""
        if self.token_file is None or not self.token:
            return
        self.token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token)

    def heartbeat(self) -> dict[str, Any] | None:
        with self._lock:
            body: dict[str, Any] = {"agent_version": VERSION, "progress": dict(self.progress)}
            result = self.result
            if result is not None:
                body["result"] = result
        answer = self._call("POST", f"/v1/heartbeat/{self.node}", json=body)
        if result is not None:
            with self._lock:
                if self.result is result:
                    self.result = None
        self.interval = float(answer.get("heartbeat_interval", self.interval))
        cmd = answer.get("command")
        return cmd if isinstance(cmd, dict) else None

    # ---------------------------------------------------------------- commands
    def _progress(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self.progress = {"stage": stage, "bytes": done, "total": total}

    def _run(self, cmd: dict[str, Any]) -> None:
        name, params = cmd["name"], cmd.get("params") or {}
        try:
            data = getattr(self, f"do_{name}")(params)
            result = {"command_id": cmd["id"], "status": "succeeded", "data": data}
        except Exception as exc:  # every failure is reported, none kills the agent
            LOG.error("%s failed: %s", name, exc)
            result = {"command_id": cmd["id"], "status": "failed", "error": str(exc)}
        with self._lock:
            self.result = result
            self.running = None
            self.done.add(cmd["id"])
        self._finished.set()

    def do_inspect(self, params: dict[str, Any]) -> dict[str, Any]:
        """What ironic-python-agent posts after inspecting: ``{"inventory": ...,
        "boot_interface", "root_disk"}`` (:mod:`metalplane.agent.inventory`)."""
        nics = local_interfaces()
        frames = lldp.listen_raw(list(nics), self.lldp_wait)
        tlvs = {n: lldp.raw_tlvs(f) for n, f in frames.items()}
        inv = inventory.collect(nics, tlvs, self.disk, image.disk_size(self.disk),
                                self.hardware)
        return {"inventory": inv, "boot_interface": inv["boot"].get("pxe_interface"),
                "root_disk": inv["disks"][0] if inv.get("disks") else None}

    def do_erase(self, params: dict[str, Any]) -> dict[str, Any]:
        size = image.disk_size(self.disk)
        fd = os.open(self.disk, os.O_WRONLY)
        try:
            zero = bytes(image.CHUNK)
            os.pwrite(fd, zero, 0)
            os.pwrite(fd, zero, max(0, size - len(zero)))
            os.fsync(fd)
        finally:
            os.close(fd)
        return {"erased": ["first MiB", "last MiB"]}

    def do_deploy(self, params: dict[str, Any]) -> dict[str, Any]:
        size = image.disk_size(self.disk)
        src = self.work_dir / "image"
        try:
            image.download(params["image_url"], src, params["checksum_algo"],
                           params["checksum"], int(params.get("image_size") or 0),
                           self._progress)  # the boot server's: no token to it
            written = image.write_image(src, self.disk, params.get("disk_format", "raw"),
                                        size - configdrive.RESERVED, self._progress)
            # the image stops RESERVED bytes short of the disk's end; the config drive's
            # partition is added there (its offset: where to look for it on the disk)
            part = configdrive.write(self.disk, size, params.get("configdrive") or {})
        except Exception:
            if src.exists():
                src.unlink()
            raise
        src.unlink()
        return {"bytes_written": written, "configdrive_offset": part.offset,
                "configdrive_partition": part.number, "configdrive_size": part.size}

    # ---------------------------------------------------------------- the loop
    def run(self) -> int:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.lookup()
        worker: threading.Thread | None = None
        while time.monotonic() < self.deadline:
            self._finished.clear()
            busy = False
            try:
                cmd = self.heartbeat()
            except Stop as exc:
                LOG.info("the node no longer needs me: %s", exc)
                return 0
            except Busy:
                cmd, busy = None, True
            except httpx.HTTPError as exc:
                LOG.warning("heartbeat failed, retrying: %s", exc)
                cmd = None
            if cmd and cmd["id"] not in self.done and self.running is None:
                LOG.info("running %s", cmd["name"])
                self.running = cmd["id"]
                worker = threading.Thread(target=self._run, args=(cmd,), daemon=True)
                worker.start()
            # the next beat after the interval, or as soon as a command ends (its result
            # then reaches the conductor at once, whatever the interval); a result the
            # conductor did not take (node locked, API away) is offered again in 0.5 s, and
            # a beat refused because the node was locked (the conductor still finishing the
            # step that booted us) is tried again in 1 s, not a whole interval later
            wait = 0.5 if self.result is not None else 1.0 if busy else self.interval
            self._finished.wait(max(0.0, min(wait, self.deadline - time.monotonic())))
        LOG.error("giving up after --max-runtime")
        return 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="metalplane-agent", description=__doc__)
    parser.add_argument("--api-url", required=True, help="metalplane's API as the node sees it")
    parser.add_argument("--token", default=None,
                        help="an agent token issued before boot; by default the first lookup "
                             "of this boot is issued one")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="keep the token issued to this boot's first lookup in this file "
                             "(mode 0600) and use it if it is there: an agent restarted "
                             "within one boot (the ramdisk's init) is not refused")
    parser.add_argument("--disk", required=True, help="target disk (block device or file)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/metalplane-agent"))
    parser.add_argument("--lldp-wait", type=float, default=5.0,
                        help="seconds to listen for LLDP during inspection")
    parser.add_argument("--max-runtime", type=float, default=3600.0)
    parser.add_argument("--inspection-callback-url", default=None,
                        help="discovery mode: when no node has this machine's MACs, post the "
                             "inventory here (metalplane's or Ironic's /v1/continue_inspection)"
                             ", then keep looking up")
    parser.add_argument("--hardware", type=Path, default=None,
                        help="a JSON file whose keys override the inventory's (DMI identity, "
                             "BMC address...): the lab's fake hardware")
    args = parser.parse_args(argv)
    hardware = json.loads(args.hardware.read_text()) if args.hardware else {}
    if not isinstance(hardware, dict):
        parser.error("--hardware must hold a JSON object")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s")
    if not shutil.which("qemu-img"):
        LOG.warning("qemu-img not found: qcow2 images cannot be written")
    for tool in ("sfdisk", "blkid"):
        if not shutil.which(tool):
            LOG.warning("%s not found: config drives cannot be written", tool)
    agent = Agent(args.api_url, args.token, args.disk, args.work_dir, args.lldp_wait,
                  args.max_runtime, hardware, args.inspection_callback_url, args.token_file)
    sys.exit(agent.run())


if __name__ == "__main__":
    main()
