"""A BMC that accepts the connection and never answers cannot stall the service.

A loopback TCP server here accepts every connection and never sends a byte (as a wedged BMC
does). Forty nodes point at it, one at sushy-tools' emulator. While forty boot device reads
of the hung nodes are under way, the API keeps answering quickly (other requests, the
healthy node's BMC), and the hung requests end with 503 and Retry-After after
``api_bmc_wait``. Everything here is bounded in time and cleaned up.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import statistics
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import BMCError
from metalplane.conductor.manager import SYNC_ERROR_PREFIX
from metalplane.db import api as db_api
from metalplane.drivers import base
from metalplane.drivers.modules import ipmi
from tests.helpers.peers import Emulator, sushy_emulator
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.functional

HUNG = 40
API_BMC_WAIT = 4.0
# a hung BMC's call: connect at once, then no answer for bmc_read_timeout; one attempt
SETTINGS = dict(api_bmc_wait=API_BMC_WAIT, bmc_connect_timeout=1.0, bmc_read_timeout=6.0,
                bmc_slot_wait=6.0, bmc_retries=1, bmc_max_concurrent_calls=2)


@contextlib.contextmanager
def silent_tcp_server(lifetime: float = 120.0) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a server that accepts connections, keeps them open
    and never answers; it stops after ``lifetime`` s at the latest, and on exit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()
    deadline = time.monotonic() + lifetime

    def accept() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, name="silent-bmc", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with sushy_emulator(tmp_path, count=1) as emu:
        yield emu


@pytest.fixture
def hung_bmc() -> Iterator[str]:
    with silent_tcp_server() as url:
        yield url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "data", **SETTINGS) as s:
        yield s


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _timed(http: httpx.Client, path: str) -> float:
    start = time.monotonic()
    r = http.get(path)
    took = time.monotonic() - start
    assert r.status_code == 200, r.text
    return took


def test_hung_bmc_does_not_stall_the_api(server: RunningServer, emulator: Emulator,
                                         hung_bmc: str) -> None:
    system = emulator.systems[0]
    healthy = server.create_node(name="healthy", driver="redfish", driver_info={
        "redfish_address": emulator.url,
        "redfish_system_id": f"/redfish/v1/Systems/{system['uuid']}"})["uuid"]
    for i in range(HUNG):
        server.create_node(name=f"hung-{i}", driver="redfish", driver_info={
            "redfish_address": hung_bmc, "redfish_system_id": "/redfish/v1/Systems/1"})
    # the healthy BMC connected once already: what follows measures calls, not a login
    assert server.http.get(f"/v1/nodes/{healthy}/management/boot_device").status_code == 200

    answers: list[tuple[int, dict[str, str], str, float, float]] = []
    started = time.monotonic()

    def hung_get(i: int, client: httpx.Client) -> None:
        t0 = time.monotonic()
        r = client.get(f"/v1/nodes/hung-{i}/management/boot_device")
        end = time.monotonic()
        answers.append((r.status_code, dict(r.headers), r.text, end - t0, end))

    limits = httpx.Limits(max_connections=HUNG + 8, max_keepalive_connections=HUNG + 8)
    with httpx.Client(base_url=server.url, timeout=60, limits=limits) as client, \
            concurrent.futures.ThreadPoolExecutor(HUNG) as pool:
        futures = [pool.submit(hung_get, i, client) for i in range(HUNG)]
        time.sleep(0.5)  # all forty are in (no answer can come before api_bmc_wait)
        node_times, root_times = [], []
        for _ in range(200):
            node_times.append(_timed(server.http, f"/v1/nodes/{healthy}"))
            root_times.append(_timed(server.http, "/v1"))
        t0 = time.monotonic()
        r = server.http.get(f"/v1/nodes/{healthy}/management/boot_device")
        healthy_took = time.monotonic() - t0
        measured_until = time.monotonic()
        done, pending = concurrent.futures.wait(futures, timeout=API_BMC_WAIT + 30)
        assert not pending
        for fut in done:
            fut.result()

    assert r.status_code == 200, r.text
    assert r.json()["boot_device"] in ("pxe", "disk", "cdrom", "bios", None)
    first_answer = min(a[4] for a in answers)
    print(f"\nwhile {HUNG} boot device reads hung: GET /v1/nodes/<id> p99 "
          f"{_p99(node_times) * 1000:.1f} ms (max {max(node_times) * 1000:.1f}), GET /v1 p99 "
          f"{_p99(root_times) * 1000:.1f} ms (max {max(root_times) * 1000:.1f}), healthy "
          f"BMC's boot device {healthy_took * 1000:.1f} ms; hung requests answered after "
          f"{min(a[3] for a in answers):.2f}-{max(a[3] for a in answers):.2f} s; measured "
          f"{measured_until - started:.2f} s after they were sent")
    assert measured_until < first_answer, "the measurements did not overlap the hung calls"
    assert _p99(node_times) < 0.1 and _p99(root_times) < 0.1
    assert healthy_took < 1.0
    assert len(answers) == HUNG
    for status, headers, text, took, _ in answers:
        assert status == 503, text
        assert "slow" in text and "api_bmc_wait" in text
        assert int(headers["retry-after"]) >= 1
        assert API_BMC_WAIT - 0.5 <= took < API_BMC_WAIT + 2.0

    # a node whose call still runs is locked: another request is refused at once (409)
    t0 = time.monotonic()
    busy = server.http.put("/v1/nodes/hung-0/management/boot_device",
                           json={"boot_device": "pxe"})
    assert busy.status_code in (409, 503) and time.monotonic() - t0 < API_BMC_WAIT + 2.0
    # the background calls end by themselves (bounded by the timeouts and slot waits)
    deadline = time.monotonic() + 60
    while any(server.node(f"hung-{i}")["reservation"] for i in range(HUNG)):
        assert time.monotonic() < deadline, "hung BMC calls were not bounded"
        time.sleep(0.5)
    assert server.http.get(f"/v1/nodes/{healthy}/management/boot_device").status_code == 200

    # setting the boot device: the same bounded wait; the failure that comes later, in the
    # background, is recorded on the node
    t0 = time.monotonic()
    put = server.http.put("/v1/nodes/hung-1/management/boot_device", json={"boot_device": "pxe"})
    took = time.monotonic() - t0
    assert put.status_code == 503 and "slow" in put.text and put.headers["Retry-After"]
    assert API_BMC_WAIT - 0.5 <= took < API_BMC_WAIT + 2.0
    deadline = time.monotonic() + 30
    while server.node("hung-1")["reservation"]:
        assert time.monotonic() < deadline, "the hung boot device change was not bounded"
        time.sleep(0.5)
    assert hung_bmc.removeprefix("http://") in server.node("hung-1")["last_error"]


def test_a_full_bmc_refuses_more_calls_in_bounded_time(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, bmc_max_concurrent_calls=2, bmc_slot_wait=0.3)
    with base.bmc_slot(settings, "http://bmc-a"), base.bmc_slot(settings, "http://bmc-a"):
        t0 = time.monotonic()
        with pytest.raises(BMCError, match="busy or slow") as err, \
                base.bmc_slot(settings, "http://bmc-a"):
            pass
        assert err.value.retryable and 0.25 < time.monotonic() - t0 < 2.0
        with base.bmc_slot(settings, "http://bmc-b"):  # other BMCs are not held up
            pass
    with base.bmc_slot(settings, "http://bmc-a"):  # freed on exit
        pass


def test_dead_ipmi_bmc_fails_in_bounded_time(tmp_path: Path) -> None:
    """pyghmi gives up by itself on a BMC that swallows every packet."""
    swallow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    swallow.bind(("127.0.0.1", 0))
    try:
        settings = Settings(data_dir=tmp_path, bmc_retries=1)
        task: Any = types.SimpleNamespace(
            node=types.SimpleNamespace(uuid="n-ipmi"), settings=settings, cache={},
            driver_info={"ipmi_address": "127.0.0.1", "ipmi_port": swallow.getsockname()[1],
                         "ipmi_username": "admin", "ipmi_password": "pw"})
        t0 = time.monotonic()
        with pytest.raises(BMCError, match="IPMI get power"):
            ipmi.IPMIPower(settings).get_power_state(task)
        assert time.monotonic() - t0 < 20
    finally:
        swallow.close()


def test_power_sync_clears_only_its_own_stale_error(server: RunningServer,
                                                    emulator: Emulator) -> None:
    system = emulator.systems[0]
    server.create_node(name="synced", driver="redfish", driver_info={
        "redfish_address": emulator.url,
        "redfish_system_id": f"/redfish/v1/Systems/{system['uuid']}"})
    db = server.service.db
    node = db_api.get_node(db, "synced")
    db_api.update_node(db, node.id, {"provision_state": "manageable",
                                     "last_error": f"{SYNC_ERROR_PREFIX}the BMC timed out"})
    server.conductor._sync_one(node.uuid)
    assert server.node("synced")["last_error"] is None
    db_api.update_node(db, node.id, {"last_error": "deploy failed: no image"})
    server.conductor._sync_one(node.uuid)
    assert server.node("synced")["last_error"] == "deploy failed: no image"
