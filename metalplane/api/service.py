"""Wires one metalplane process: store, secrets, conductor and API, then serves HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from metalplane.api.app import create_app
from metalplane.api.auth import UsersFile
from metalplane.common.config import Settings
from metalplane.common.secrets import RedactingFilter, SecretBox, install_log_redaction
from metalplane.conductor.manager import Conductor
from metalplane.db.engine import Database

__all__ = ["Service", "configure_logging"]

LOG = logging.getLogger(__name__)


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr, with decrypted secrets scrubbed from every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class _Server(uvicorn.Server):
    """Seam on uvicorn's ``Server``: its housekeeping tick once a second, not ten times.

    Relies on uvicorn's ``Server`` (checked by tests/unit/test_library_seams.py):
    ``serve`` awaits ``self.main_loop()`` after start-up; ``on_tick(counter)`` refreshes
    the ``Date`` header when ``counter % 10 == 0`` and returns True once ``should_exit``
    is set; ``should_exit`` is a plain attribute that uvicorn's signal handler and its
    users set. Here ``main_loop`` ticks every ``tick`` seconds with counters that are
    multiples of 10 (so each tick refreshes the header), and setting ``should_exit`` (from
    a signal handler or another thread) wakes it at once, so stopping is no slower.
    Measured: idle server CPU 1.6 → 0.4 ms a second (docs/benchmarks.md, "Library seams").
    """

    tick = 1.0  # seconds between on_tick calls (uvicorn's own loop: 0.1)

    def __init__(self, config: uvicorn.Config) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._exit = False
        super().__init__(config)

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        loop, wake = self._loop, self._wake
        if value and loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # on_tick refreshes the Date on multiples of 10
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)
            should_exit = await self.on_tick(counter)


class Service:
    """A whole server: ``start()`` migrates the store and starts the conductor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.effective_database_url)
        self.secrets = SecretBox(settings.data_dir / "secret.key")
        install_log_redaction()
        self.conductor = Conductor(settings, self.db, self.secrets)
        strategy = settings.effective_auth_strategy
        users = UsersFile(settings.effective_users_file) if strategy == "http_basic" else None
        self.app = create_app(self.conductor, strategy, users)

    def start(self, periodic: bool = True) -> None:
        self.db.upgrade()
        self.conductor.start(periodic=periodic)

    def stop(self) -> None:
        self.conductor.stop()
        self.db.dispose()

    def serve(self) -> None:
        """Run until SIGINT/SIGTERM; stops the conductor gracefully."""
        server, sockets = self.http_server()  # a port in use fails before anything starts
        self.start()
        s = self.settings
        LOG.info("metalplane API on http://%s:%d (auth: %s, store: %s)", s.host, s.port,
                 s.effective_auth_strategy, _safe_url(s.effective_database_url))

        def stop(*_: Any) -> None:
            server.should_exit = True

        signal.signal(signal.SIGTERM, stop)
        try:
            server.run(sockets=sockets)
        finally:
            self.stop()

    def http_server(self) -> tuple[uvicorn.Server, list[socket.socket]]:
        """The API's uvicorn server and its listening sockets (run it with
        ``server.run(sockets=...)``): TCP on ``host:port``, the Networking API's
        ``host:network_port`` (Neutron's ``GET /`` there; not bound is a warning) and, if
        ``unix_socket`` is set,
        that unix socket (mode 0666, as uvicorn makes one), served by the same event loop.
        Exits (status 1, the error logged) when the port or the socket's path cannot be
        bound, as uvicorn does."""
        s = self.settings
        config = uvicorn.Config(self.app, host=s.host, port=s.port, log_config=None,
                                access_log=False, timeout_graceful_shutdown=5)
        sockets = [config.bind_socket()]
        if s.network_port:
            net = socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET)
            net.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                net.bind((s.host, s.network_port))
                net.listen(2048)
                sockets.append(net)
                LOG.info("metalplane Networking API also on http://%s:%d (network_port)",
                         s.host, s.network_port)
            except OSError as exc:  # secondary: /v2.0 stays on the main port
                net.close()
                LOG.warning("no Networking API listener on %s:%d (network_port): %s; "
                            "/v2.0 is served on port %d", s.host, s.network_port, exc, s.port)
        if s.unix_socket:
            path = Path(s.unix_socket)
            unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                path.unlink(missing_ok=True)
                unix.bind(str(path))
                path.chmod(0o666)
            except OSError as exc:
                LOG.error("cannot listen on unix socket %s (unix_socket): %s", path, exc)
                for sock in (*sockets, unix):
                    sock.close()
                sys.exit(1)
            LOG.info("metalplane API also on unix socket %s", path)
            sockets.append(unix)
        return _Server(config), sockets


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)
