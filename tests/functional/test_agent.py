"""The ramdisk agent in a namespace against a real server: inspection, cleaning and
deployment of raw and qcow2 images, tokens, checksums and flaky downloads."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metalplane.agent import configdrive, image
from metalplane.db import api as db_api
from metalplane.lifecycle.states import FAILED_STATES
from tests.helpers.peers import stop_process
from tests.helpers.rack import Host, Rack, rack
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional
API = "http://10.66.0.1:6385"
BOOT = "http://10.66.0.1:8080"  # the boot server: a listener of its own
DISK = 96 << 20


def wait(lab: Lab, name: str, want: set[str], proc: subprocess.Popen[str] | None,
         timeout: float = 90) -> dict[str, Any]:
    """Wait for the node; on failure, show what the agent said."""
    try:
        return lab.server.wait_state(name, want, timeout=timeout)
    except AssertionError as exc:
        if proc is not None:
            stop_process(proc)
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{exc}\n--- agent output ---\n{out[-4000:]}") from None
        raise


class Lab:
    def __init__(self, server: RunningServer, r: Rack, tmp: Path) -> None:
        self.server, self.rack, self.tmp = server, r, tmp
        self.procs: list[subprocess.Popen[str]] = []

    def node(self, name: str) -> tuple[dict[str, Any], Host, Path]:
        host = self.rack.add_host(name, ["10.66.0.10/24"], tag=100)
        node = self.server.create_node(name=name, boot_interface="ipxe",
                                       deploy_interface="direct", inspect_interface="agent",
                                       network_interface="noop")
        r = self.server.http.post("/v1/ports", json={"address": host.macs["eth0"],
                                                     "node_uuid": node["uuid"]})
        assert r.status_code == 201, r.text
        disk = self.tmp / f"{name}.disk"
        with open(disk, "wb") as f:
            f.truncate(DISK)
        return node, host, disk

    def boot_agent(self, name: str, host: Host, disk: Path, token: str | None = None
                   ) -> subprocess.Popen[str]:
        """What PXE would do: fetch the node's iPXE script, start the agent it names."""
        deadline = time.monotonic() + 30
        while True:
            r = self.server.boot.get(f"/boot/{self.server.node(name)['uuid']}.ipxe")
            if r.status_code == 200:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        script = r.text
        assert script.startswith("#!ipxe") and "initrd" in script
        assert "token" not in script  # the script is public: the first lookup gets the token
        api = re.search(r"metalplane\.api_url=(\S+)", script)
        assert api and api.group(1) == API
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, sys.executable, "-m", "metalplane.agent.main",
             f"--api-url={api.group(1)}", *([f"--token={token}"] if token else []),
             "--disk", str(disk),
             "--work-dir", str(self.tmp / f"work-{name}"), "--lldp-wait", "0.3",
             "--max-runtime", "120"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        self.procs.append(proc)
        return proc


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    sock, boot = tmp_path / "api.sock", tmp_path / "boot.sock"
    with rack() as r, running_server(tmp_path / "data", unix_socket=str(sock),
                                     boot_listen="", boot_unix_socket=str(boot),
                                     boot_server_url=BOOT, agent_api_url=API,
                                     agent_heartbeat_interval=0.3) as srv:
        r.add_host("svc", ["10.66.0.1/24"], tag=100)
        fwds = [subprocess.Popen(["ip", "netns", "exec", r.hosts["svc"].ns, sys.executable,
                                  "-m", "metalplane.lab.forward", "--listen", listen,
                                  "--unix", str(path)], start_new_session=True)
                for listen, path in (("10.66.0.1:6385", sock), ("10.66.0.1:8080", boot))]
        lab = Lab(srv, r, tmp_path)
        try:
            yield lab
        finally:
            for p in [*lab.procs, *fwds]:
                stop_process(p)
                if p.stdout:
                    p.stdout.close()


def make_image(tmp: Path, size: int = 3 << 20) -> tuple[Path, str]:
    """A whole-disk image: an MBR with one partition of random data from 1 MiB on (the
    agent adds the config drive's partition to that table)."""
    path = tmp / "image.raw"
    path.write_bytes(bytes(1 << 20) + os.urandom(size - (1 << 20)))
    subprocess.run(["sfdisk", "-q", str(path)], input="label: dos\nstart=2048, type=L\n",
                   text=True, check=True, timeout=30)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def same_image(disk: Path, img: Path) -> bool:
    """The image is on the disk, past the MBR sector, where the config drive's partition
    entry was added."""
    with open(disk, "rb") as f:
        return f.read(img.stat().st_size)[512:] == img.read_bytes()[512:]


def drive(lab: Lab, name: str, verb: str, want: str, host: Host, disk: Path,
          agent: bool = True) -> dict[str, Any]:
    assert lab.server.provision(name, verb).status_code == 202
    proc = lab.boot_agent(name, host, disk) if agent else None
    node = wait(lab, name, {want, *FAILED_STATES}, proc)
    assert node["provision_state"] == want, node["last_error"]
    if proc is not None:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    return node


def test_inspect_clean_and_deploy_raw(lab: Lab) -> None:
    node, host, disk = lab.node("a1")
    assert lab.server.provision("a1", "manage").status_code == 202
    lab.server.wait_state("a1", "manageable")
    inspected = drive(lab, "a1", "inspect", "manageable", host, disk)
    assert inspected["properties"]["cpus"] == os.cpu_count()
    assert inspected["properties"]["memory_mb"] > 0
    assert inspected["properties"]["local_gb"] == 0  # 96 MiB disk
    assert "agent_token_hash" not in inspected["driver_internal_info"]  # revoked

    with open(disk, "r+b") as f:
        f.write(b"OLD-OS" * 1000)
    drive(lab, "a1", "provide", "available", host, disk)
    assert Path(disk).read_bytes()[:6000] == bytes(6000)  # metadata erased

    img, digest = make_image(lab.tmp)
    r = lab.server.http.patch("/v1/nodes/a1", json=[
        {"op": "add", "path": "/instance_info", "value": {
            "image_source": str(img), "image_checksum": f"sha256:{digest}",
            "image_disk_format": "raw"}}])
    assert r.status_code == 200, r.text
    r = lab.server.http.put("/v1/nodes/a1/states/provision", json={
        "target": "deploy", "configdrive": {"user_data": "#cloud-config\nhostname: a1\n",
                                            "meta_data": {"role": "web"}}})
    assert r.status_code == 202, r.text
    proc = lab.boot_agent("a1", host, disk)
    node = wait(lab, "a1", {"active", "deploy failed"}, proc)
    assert node["provision_state"] == "active", node["last_error"]
    assert proc.wait(timeout=30) == 0
    assert same_image(disk, img)
    drive_contents = configdrive.read(str(disk), DISK)
    assert drive_contents["meta_data"]["uuid"] == node["uuid"]
    assert drive_contents["meta_data"]["role"] == "web"
    assert drive_contents["user_data"].startswith("#cloud-config")
    assert "links" in drive_contents["network_data"]
    assert node["driver_internal_info"].get("fake_boot_device") == {
        "boot_device": "disk", "persistent": True}


def test_deploy_qcow2(lab: Lab) -> None:
    _node, host, disk = lab.node("q1")
    raw, _ = make_image(lab.tmp, 5 << 20)
    qcow = lab.tmp / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)],
                   check=True, timeout=60)
    digest = hashlib.sha512(qcow.read_bytes()).hexdigest()
    for verb, state in (("manage", "manageable"), ("provide", "available")):
        drive(lab, "q1", verb, state, host, disk, agent=verb == "provide")
    lab.server.http.patch("/v1/nodes/q1", json=[{"op": "add", "path": "/instance_info",
                                                 "value": {"image_source": f"file://{qcow}",
                                                           "image_checksum": digest,
                                                           "image_disk_format": "qcow2"}}])
    drive(lab, "q1", "deploy", "active", host, disk)
    assert same_image(disk, raw)


def test_checksum_mismatch_fails_the_deploy_and_leaves_the_disk(lab: Lab) -> None:
    node, host, disk = lab.node("c1")
    drive(lab, "c1", "manage", "manageable", host, disk, agent=False)
    drive(lab, "c1", "provide", "available", host, disk)
    img, digest = make_image(lab.tmp)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    lab.server.http.patch("/v1/nodes/c1", json=[{"op": "add", "path": "/instance_info",
                                                 "value": {"image_source": str(img),
                                                           "image_checksum": wrong}}])
    assert lab.server.provision("c1", "deploy").status_code == 202
    node = lab.server.wait_state("c1", {"deploy failed", "active"})
    assert node["provision_state"] == "deploy failed"
    assert "deploy step 'deploy.write_image' failed" in node["last_error"]
    assert "checksum mismatch" in node["last_error"]
    assert Path(disk).read_bytes()[:1 << 20] == bytes(1 << 20)


def lookup(lab: Lab, host: Host, token: str | None = None) -> httpx.Response:
    return httpx.get(f"{lab.server.url}/v1/lookup", params={"addresses": host.macs["eth0"]},
                     headers={"X-Agent-Token": token} if token else {})


def test_agent_forgeries_are_refused_and_change_nothing(lab: Lab) -> None:
    """Issue #17's attacks: the token is not in the public script; only the first lookup of
    a boot gets it; without it no heartbeat, no forged "erase succeeded", no forged LLDP;
    after the step it is worthless."""
    node, host, disk = lab.node("t1")
    drive(lab, "t1", "manage", "manageable", host, disk, agent=False)
    r = lab.server.http.post("/v1/ports", json={"address": "52:54:00:99:99:01",
                                                "node_uuid": node["uuid"]})
    assert r.status_code == 201, r.text
    assert lab.server.provision("t1", "provide").status_code == 202
    lab.server.wait_state("t1", "clean wait")
    uuid = node["uuid"]
    script = lab.server.boot.get(f"/boot/{uuid}.ipxe").text
    assert "token" not in script and f"{BOOT}/files/agent.kernel" in script
    assert lab.server.http.get(f"/boot/{uuid}.ipxe").status_code == 404  # not on the API
    before = lab.server.node("t1")
    command = before["driver_internal_info"]["agent_command"]
    forged_results = [
        {"result": {"command_id": command["id"], "status": "succeeded"}},  # "erased"
        {"result": {"command_id": command["id"], "status": "succeeded", "data": {
            "interfaces": [{"mac_address": "52:54:00:99:99:01",
                            "lldp": {"chassis_id": "de:ad:be:ef:00:01", "port_id": "evil"}}]}}},
    ]
    for headers in ({}, {"X-Agent-Token": "forged"}, {"X-Agent-Token": "0" * 64}):
        for body in [{}, *forged_results]:
            r = httpx.post(f"{lab.server.url}/v1/heartbeat/{uuid}", json=body, headers=headers)
            assert r.status_code == 401, r.text
    r = lookup(lab, host, "forged")
    assert r.status_code == 401
    after = lab.server.node("t1")
    assert after["provision_state"] == "clean wait"
    assert after["driver_internal_info"]["agent_command"] == command  # not even sent
    assert "agent_token_hash" not in after["driver_internal_info"]  # none issued yet
    # the first lookup is issued the token, a later one is not
    first = lookup(lab, host)
    assert first.status_code == 200, first.text
    token = first.json()["config"]["agent_token"]
    assert len(token) == 64 and first.json()["config"]["agent_token_required"] is True
    second = lookup(lab, host)
    assert second.status_code == 200 and second.json()["config"]["agent_token"] == "******"
    stored = lab.server.node("t1")["driver_internal_info"]
    assert token not in str(stored)  # only its hash is kept, and shown masked
    assert lookup(lab, host, token).status_code == 200
    # an agent that finds the token issued to someone else gives up
    proc = lab.boot_agent("t1", host, disk)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "already issued" in out
    assert lab.server.node("t1")["provision_state"] == "clean wait"
    # the holder finishes the step; the token then opens nothing
    beat = httpx.post(f"{lab.server.url}/v1/heartbeat/{uuid}", json={},
                      headers={"X-Agent-Token": token})
    assert beat.status_code == 200 and beat.json()["command"]["name"] == "erase"
    done = lab.boot_agent("t1", host, disk, token=token)
    finished = wait(lab, "t1", {"available", "clean failed"}, done)
    assert finished["provision_state"] == "available", finished["last_error"]
    r = httpx.post(f"{lab.server.url}/v1/heartbeat/{uuid}", json={},
                   headers={"X-Agent-Token": token})
    assert r.status_code in (401, 409), r.text
    assert lab.server.boot.get(f"/boot/{uuid}.ipxe").status_code == 404
    assert lookup(lab, host, token).status_code == 404
    ports = lab.server.http.get("/v1/ports", params={"node": uuid, "detail": True}).json()
    assert all(p["local_link_connection"].get("port_id") != "evil" for p in ports["ports"])


def test_the_agents_lookup_reports_the_reboot_into_it(lab: Lab) -> None:
    """A reboot into the agent does not wait for the BMC to report the power on: the
    agent's lookup does. (The fake power interface confirms at once, so the pending
    power-on a slow BMC leaves behind is written here by hand.)"""
    _, host, disk = lab.node("p1")
    drive(lab, "p1", "manage", "manageable", host, disk, agent=False)
    assert lab.server.provision("p1", "provide").status_code == 202
    lab.server.wait_state("p1", "clean wait")
    db = lab.server.service.db
    db_api.update_node(db, db_api.get_node(db, "p1").id,
                       {"power_state": "power off", "target_power_state": "power on"})
    r = lookup(lab, host)
    assert r.status_code == 200, r.text
    after = lab.server.node("p1")
    assert (after["power_state"], after["target_power_state"]) == ("power on", None)
    assert after["provision_state"] == "clean wait"
    drive_agent = lab.boot_agent("p1", host, disk, token=r.json()["config"]["agent_token"])
    done = wait(lab, "p1", {"available", "clean failed"}, drive_agent)
    assert done["provision_state"] == "available", done["last_error"]


class _Flaky(http.server.BaseHTTPRequestHandler):
    data = b""
    cut_first = True
    requests: list[str | None] = []

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = self.data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_first:
            type(self).cut_first = False
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-download
            return
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    data = os.urandom(2 << 20)
    _Flaky.data, _Flaky.cut_first, _Flaky.requests = data, True, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/image", data
    finally:
        srv.shutdown()
        srv.server_close()


def test_download_resumes_after_a_lost_connection(flaky: tuple[str, bytes],
                                                  tmp_path: Path) -> None:
    url, data = flaky
    seen: list[int] = []
    image.download(url, tmp_path / "img", "sha256", hashlib.sha256(data).hexdigest(),
                   len(data), lambda stage, done, total: seen.append(done))
    assert (tmp_path / "img").read_bytes() == data
    assert _Flaky.requests[0] is None and _Flaky.requests[1].startswith("bytes=")
    assert seen[-1] == len(data)


def test_download_gives_up_cleanly_and_checks_the_checksum(flaky: tuple[str, bytes],
                                                           tmp_path: Path) -> None:
    url, data = flaky
    with pytest.raises(image.ImageError, match="checksum mismatch"):
        image.download(url, tmp_path / "img", "sha256", "0" * 64, len(data),
                       lambda *a: None)
    with pytest.raises(image.ImageError, match="after 2 attempts"):
        image.download("http://127.0.0.1:9/image", tmp_path / "img2", "sha256", "0" * 64, 10,
                       lambda *a: None, attempts=2)


def test_a_write_that_does_not_fit_wipes_the_disk(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(b"\x55" * (4 << 20))
    src = tmp_path / "img"
    src.write_bytes(os.urandom(3 << 20))
    with pytest.raises(image.ImageError, match="the disk has"):
        image.write_image(src, str(disk), "raw", 2 << 20, lambda *a: None)
    assert disk.read_bytes()[: 1 << 20] == bytes(1 << 20)
