"""How often the Redfish driver asks the BMC: one System per task, power polls backing off;
and what its BMC connections take from the environment.

A System double stands in for sushy's (unit test); the functional tests in
tests/functional/test_redfish.py drive the same code against sushy-tools' emulator. The
environment test serves the Redfish root from loopback HTTP servers.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
import sushy

from metalplane.common.config import Settings
from metalplane.common.exceptions import BMCError
from metalplane.drivers import base
from metalplane.drivers.modules import redfish


class System:
    """Powers on or off ``delay`` refreshes after a reset, as a BMC does over seconds."""

    def __init__(self, delay: int = 2) -> None:
        self.power_state = sushy.PowerState.OFF
        self.delay = delay
        self.gets = 0
        self.pending: tuple[int, str] | None = None
        self.boot: list[Any] = []

    def refresh(self) -> None:
        self.gets += 1
        if self.pending:
            left, state = self.pending
            self.pending = (left - 1, state) if left > 1 else None
            if left <= 1:
                self.power_state = state

    def reset_system(self, reset: Any) -> None:
        on = reset in (sushy.ResetType.ON, sushy.ResetType.FORCE_RESTART)
        if reset == sushy.ResetType.FORCE_RESTART:
            self.power_state = sushy.PowerState.OFF
        self.pending = (self.delay, sushy.PowerState.ON if on else sushy.PowerState.OFF)

    def set_system_boot_options(self, target: Any, enabled: Any) -> None:
        self.boot.append(target)


class FakeTask:
    def __init__(self, settings: Settings) -> None:
        self.node = types.SimpleNamespace(uuid="n-1")
        self.driver_info = {"redfish_address": "http://bmc.example", "redfish_system_id":
                            "/redfish/v1/Systems/1"}
        self.settings = settings
        self.cache: dict[str, Any] = {}


@pytest.fixture
def bmc(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> tuple[list[System], Settings]:
    """The one System of a BMC; each fetch (a new sushy System: one GET) is listed."""
    system = System()
    system.gets = 0
    made: list[System] = []

    def fetch(task: Any, settings: Any) -> System:
        system.gets += 1
        made.append(system)
        return system

    monkeypatch.setattr(redfish, "_fetch", fetch)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    return made, Settings(data_dir=tmp_path)


def test_one_task_fetches_the_system_once(bmc: tuple[list[System], Settings]) -> None:
    made, settings = bmc
    task: Any = FakeTask(settings)
    mgmt, power = redfish.RedfishManagement(settings), redfish.RedfishPower(settings)
    mgmt.set_boot_device(task, "pxe")
    power.reboot(task)  # off -> on: the delay's two polls
    power.set_power_state(task, base.POWER_OFF)
    mgmt.set_boot_device(task, "disk")
    power.set_power_state(task, base.POWER_ON)
    assert len(made) == 1
    assert made[0].boot == [sushy.BootSource.PXE, sushy.BootSource.HDD]
    assert made[0].gets == 1 + 3 * 2
    assert made[0].power_state == sushy.PowerState.ON
    # another task (another holding of the lock) reads the BMC afresh
    other: Any = FakeTask(settings)
    assert power.get_power_state(other) == base.POWER_ON and len(made) == 2


def test_a_reboot_that_does_not_wait_resets_and_never_polls(
        bmc: tuple[list[System], Settings]) -> None:
    made, settings = bmc
    task: Any = FakeTask(settings)
    power = redfish.RedfishPower(settings)
    assert power.reboot(task, wait=False) is False  # under way, not confirmed
    assert made[0].gets == 1  # the fetch that chose the reset; no poll after it
    assert made[0].pending == (made[0].delay, sushy.PowerState.ON)
    assert power.reboot(task) is True and made[0].power_state == sushy.PowerState.ON


def test_a_reading_kept_too_long_is_refreshed_before_use(
        bmc: tuple[list[System], Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    made, settings = bmc
    task: Any = FakeTask(settings)
    power = redfish.RedfishPower(settings)
    assert power.get_power_state(task) == base.POWER_OFF
    assert power.get_power_state(task) == base.POWER_OFF  # asked for: always read now
    assert made[0].gets == 2
    made[0].power_state = sushy.PowerState.ON  # someone powers it on behind our back
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + redfish._FRESH + 1)
    power.set_power_state(task, base.POWER_ON)  # the fresh reading says on: nothing to do
    assert made[0].gets == 3 and made[0].pending is None and len(made) == 1


def test_power_polls_back_off_to_the_longest_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 3))
        clock[0] += s

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with pytest.raises(BMCError, match="timed out after 12 s"):
        base.wait_for(lambda: False, 12, 1.0, "power on", longest=3.0)
    assert slept == [1.0, 1.5, 2.25, 3.0, 3.0, 1.25]  # the last poll at the deadline
    slept.clear()
    clock[0] = 0.0
    answers = iter([False, False, True])
    base.wait_for(lambda: next(answers), 12, 1.0, "power on")  # no backoff asked for
    assert slept == [1.0, 1.0, 1.0]


class _Root(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a Redfish service root and lists the request line's target
    (absolute for a request sent through a proxy); anything else is 404."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = json.dumps({"@odata.id": "/redfish/v1/", "Id": "RootService",
                           "Name": "Root Service", "RedfishVersion": "1.6.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_servers() -> Iterator[list[tuple[str, list[str]]]]:
    """Two loopback HTTP servers (127.0.0.1 and 127.0.0.2): their URL and the requests
    each saw."""
    out, servers = [], []
    for host in ("127.0.0.1", "127.0.0.2"):
        seen: list[str] = []
        handler = type("Handler", (_Root,), {"seen": seen})
        server = http.server.ThreadingHTTPServer((host, 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        out.append((f"http://{host}:{server.server_address[1]}", seen))
    try:
        yield out
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        redfish._forget()


def test_bmc_connection_takes_the_proxy_from_the_environment_once(
        http_servers: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch) -> None:
    (proxy, via_proxy), (bmc, direct) = http_servers
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    redfish._forget()
    conn = redfish._connect((bmc, None, None, True, 5.0, 15.0), 10.0)
    assert via_proxy and direct == []
    assert all(t.startswith(f"{bmc}/redfish/v1") for t in via_proxy), via_proxy
    # read when the connection was made: a later change of the environment is not seen
    monkeypatch.delenv("HTTP_PROXY")
    before = len(via_proxy)
    conn.refresh()
    assert len(via_proxy) == before + 1 and direct == []

    # NO_PROXY naming the BMC still sends it straight there
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    redfish._forget()
    before = len(via_proxy)
    redfish._connect((bmc, None, None, True, 5.0, 15.0), 10.0).refresh()
    assert len(via_proxy) == before and direct
    assert all(t.startswith("/redfish/v1") for t in direct), direct


def test_a_forgotten_connection_closes_its_session_and_drops_its_lock() -> None:
    """A changed password or a stale session leaves no connector, session or connect lock
    behind (each BMC and credential change used to leave a lock for ever)."""
    key = ("http://127.0.0.1:9", "u", "old-password", True, 1.0, 1.0)
    closed: list[bool] = []

    class Connector:
        def close(self) -> None:
            closed.append(True)

    with redfish._registry_lock:
        redfish._connections[key] = object()
        redfish._connectors[key] = Connector()  # type: ignore[assignment]
        redfish._connecting[key] = threading.Lock()
    redfish._forget(key)
    assert key not in redfish._connections and key not in redfish._connecting
    assert key not in redfish._connectors and closed == [True]
