"""The API's uvicorn server as metalplane runs it (Service.http_server): its housekeeping
tick, its Date header, and how fast it stops."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import httpx
import pytest

from metalplane.api.service import Service
from metalplane.common.config import Settings
from tests.helpers.peers import free_port
from tests.helpers.server import serve_in_thread

pytestmark = pytest.mark.functional


def test_the_server_ticks_once_a_second_and_still_stops_at_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=free_port())
    service = Service(settings)
    service.start(periodic=False)
    server, sockets = service.http_server()
    ticks: list[int] = []
    on_tick = server.api.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    server.api.on_tick = counted  # type: ignore[method-assign]
    thread = None
    try:
        thread = serve_in_thread(server, sockets)
        first = len(ticks)
        time.sleep(2.5)
        r = httpx.get(f"http://127.0.0.1:{settings.port}/", timeout=10)
        assert r.status_code == 200
        date = email.utils.parsedate_to_datetime(r.headers["date"])
        assert abs(date.timestamp() - time.time()) < 3  # refreshed on every tick
        # uvicorn's own loop would have ticked 25 times in 2.5 s
        assert 1 <= len(ticks) - first <= 4, ticks
        assert all(c % 10 == 0 for c in ticks)
        stop = time.monotonic()
        server.should_exit = True  # from another thread, as a test or a signal would
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert time.monotonic() - stop < 0.9  # woken, not left to its next tick
    finally:
        server.should_exit = True
        if thread is not None:
            thread.join(timeout=15)
        service.stop()


def test_the_servers_run_on_the_loop_uvicorn_picks(tmp_path: Path) -> None:
    """uvicorn's ``Server.run`` uses uvloop when it is installed; the API's and the boot
    server's shared loop must too (on the standard loop every answer waited 40 ms for a
    delayed ACK: bench/lifecycle.py went from 5,100 to 1,900 nodes a minute)."""
    pytest.importorskip("uvloop")
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=free_port(),
                        boot_listen=f"127.0.0.1:{free_port()}")
    service = Service(settings)
    service.start(periodic=False)
    server, sockets = service.http_server()
    assert server.boot is not None
    thread = None
    try:
        thread = serve_in_thread(server, sockets)
        assert type(server.api._loop).__module__.startswith("uvloop")
        assert server.boot._loop is server.api._loop
        boot = settings.boot_listen_addresses[0]
        assert httpx.get(f"http://{boot}/boot/none.ipxe", timeout=10).status_code == 404
        assert httpx.get(f"http://{boot}/v1", timeout=10).status_code == 404  # boot only
        r = httpx.get(f"http://127.0.0.1:{settings.port}/images/x", timeout=10)
        assert r.status_code == 404  # and the API serves no boot paths
    finally:
        server.should_exit = True  # stops both
        if thread is not None:
            thread.join(timeout=15)
            assert not thread.is_alive()
        service.stop()
