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
