"""Kill the real server with SIGKILL in the middle of work on 20 nodes, restart it, and
check that no node is stuck in a transient state or locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers.peers import free_port, stop_process, wait_http

pytestmark = pytest.mark.functional

TRANSIENT = {"verifying", "inspecting", "cleaning", "deploying", "deleting", "adopting"}


@contextmanager
def server_process(data: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "METALPLANE_DATA_DIR": str(data), "METALPLANE_FAKE_DELAYS":
           "deploy=4,power=0.2", "METALPLANE_CONDUCTOR_HOSTNAME": "killable"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "metalplane.cli.main", "server",
                                 "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1", proc, log, "server")
        yield proc
    finally:
        stop_process(proc)


def test_sigkill_mid_deploy_leaves_nothing_stuck(tmp_path: Path) -> None:
    data, port, log = tmp_path / "data", free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    with server_process(data, port, log) as proc:
        http = httpx.Client(base_url=url, timeout=30)
        for i in range(20):
            r = http.post("/v1/nodes", json={"driver": "fake-hardware", "name": f"k{i}"})
            assert r.status_code == 201
        for verb, state in (("manage", "manageable"), ("provide", "available")):
            for i in range(20):
                assert http.put(f"/v1/nodes/k{i}/states/provision",
                                json={"target": verb}).status_code == 202
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                nodes = http.get("/v1/nodes", params={"detail": "true"}).json()["nodes"]
                if all(n["provision_state"] == state and not n["reservation"] for n in nodes):
                    break
                time.sleep(0.2)
        for i in range(20):
            assert http.put(f"/v1/nodes/k{i}/states/provision",
                            json={"target": "deploy"}).status_code == 202
        time.sleep(1)
        nodes = http.get("/v1/nodes", params={"detail": "true"}).json()["nodes"]
        assert sum(n["provision_state"] == "deploying" for n in nodes) == 20
        assert all(n["reservation"] == "killable" for n in nodes)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        http.close()

    with server_process(data, port, log):
        http = httpx.Client(base_url=url, timeout=30)
        nodes = http.get("/v1/nodes", params={"detail": "true"}).json()["nodes"]
        assert len(nodes) == 20
        for n in nodes:  # failed at once; a worker makes each safe, holding its lock
            assert n["provision_state"] == "deploy failed", n
        deadline = time.monotonic() + 30
        while any(n["reservation"] for n in nodes) and time.monotonic() < deadline:
            time.sleep(0.2)
            nodes = http.get("/v1/nodes", params={"detail": "true"}).json()["nodes"]
        for n in nodes:
            assert n["reservation"] is None, n
            assert n["provision_state"] not in TRANSIENT, n
            assert n["provision_state"] == "deploy failed"
            assert n["power_state"] == "power off", n  # made safe
            assert "killable" in n["last_error"] and "did not finish" in n["last_error"]
        # and they can be deployed again
        assert http.put("/v1/nodes/k0/states/provision",
                        json={"target": "deploy"}).status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if http.get("/v1/nodes/k0").json()["provision_state"] == "active":
                break
            time.sleep(0.2)
        assert http.get("/v1/nodes/k0").json()["provision_state"] == "active"
        http.close()
