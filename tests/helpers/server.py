"""An in-process metalplane server (API + conductor) on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from metalplane.api.service import Service
from metalplane.common.config import Settings


@dataclass
class RunningServer:
    url: str
    network_url: str  # the Networking API's own listener (Neutron's GET / there)
    service: Service
    http: httpx.Client
    boot: httpx.Client  # the boot server (its own listener: iPXE scripts, images, files)
    k8s_url: str = ""  # the Kubernetes-style API's own listener (kubectl), "" if none

    @property
    def conductor(self) -> Any:
        return self.service.conductor

    def node(self, ident: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/nodes/{ident}")
        r.raise_for_status()
        return dict(r.json())

    def create_node(self, **body: Any) -> dict[str, Any]:
        body.setdefault("driver", "fake-hardware")
        r = self.http.post("/v1/nodes", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def provision(self, ident: str, verb: str) -> httpx.Response:
        return self.http.put(f"/v1/nodes/{ident}/states/provision", json={"target": verb})

    def wait_state(self, ident: str, states: set[str] | str, timeout: float = 60) -> dict[str, Any]:
        """Poll until the node rests in one of ``states`` with no lock held."""
        wanted = {states} if isinstance(states, str) else states
        deadline = time.monotonic() + timeout
        node: dict[str, Any] = {}
        while time.monotonic() < deadline:
            node = self.node(ident)
            if node["provision_state"] in wanted and node["reservation"] is None \
                    and node["target_power_state"] is None:
                return node
            time.sleep(0.1)
        raise AssertionError(f"node {ident} did not reach {wanted} in {timeout}s: "
                             f"{node.get('provision_state')} last_error={node.get('last_error')}")


def serve_in_thread(server: Any, sockets: list[Any], timeout: float = 20) -> threading.Thread:
    """Run ``server`` (from ``Service.http_server``) on ``sockets`` in a daemon thread and
    return once it has started. Raises RuntimeError if it did not within ``timeout`` s."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    return thread


def distinct_free_ports(count: int) -> list[int]:
    """``count`` free TCP ports on 127.0.0.1, all different: held open together while they
    are picked (picked one at a time, the kernel may hand out one port twice)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


@contextlib.contextmanager
def running_server(data_dir: Path, **overrides: Any) -> Iterator[RunningServer]:
    periodic = bool(overrides.pop("periodic", False))
    api_port, network_port, boot_port, k8s_port = distinct_free_ports(4)
    values: dict[str, Any] = dict(data_dir=data_dir, host="127.0.0.1", port=api_port,
                                  network_port=network_port, k8s_port=k8s_port,
                                  boot_listen=f"127.0.0.1:{boot_port}",
                                  conductor_hostname="test-conductor",
                                  power_sync_interval=3600, timeout_check_interval=3600,
                                  bmc_retries=2, bmc_retry_wait=0.1,
                                  power_state_change_timeout=30)
    values.update(overrides)
    settings = Settings(**values)
    settings.validate()
    service = Service(settings)
    service.start(periodic=periodic)
    server, sockets = service.http_server()
    thread = serve_in_thread(server, sockets)
    url = f"http://127.0.0.1:{settings.port}"
    http = httpx.Client(base_url=url, timeout=60)
    boot = (httpx.Client(base_url=f"http://{settings.boot_listen_addresses[0]}", timeout=60)
            if settings.boot_listen_addresses else
            httpx.Client(base_url="http://boot", timeout=60,
                         transport=httpx.HTTPTransport(uds=settings.boot_unix_socket)))
    try:
        yield RunningServer(url=url, network_url=f"http://127.0.0.1:{settings.network_port}",
                            service=service, http=http, boot=boot,
                            k8s_url=(f"http://127.0.0.1:{settings.k8s_port}"
                                     if settings.k8s_port else ""))
    finally:
        http.close()
        boot.close()
        server.should_exit = True
        thread.join(timeout=15)
        service.stop()
