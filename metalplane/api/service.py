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

from metalplane.api.app import create_app, create_boot_app
from metalplane.api.auth import UsersFile
from metalplane.api.k8s_api import create_k8s_app
from metalplane.common.config import Settings
from metalplane.common.files import private_dir
from metalplane.common.secrets import (
    KEY_FILE,
    RedactingFilter,
    SecretBox,
    install_log_redaction,
)
from metalplane.conductor.hosts import KubeStore
from metalplane.conductor.machines import MachineController
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
        self.linked: list[_Server] = []  # servers that stop with this one
        self.on_exit: list[Any] = []  # called (any thread) when asked to stop: end streams
        super().__init__(config)

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        if value:  # before uvicorn waits for open responses (watches) to end
            for hook in self.on_exit:
                hook()
        for other in self.linked:
            if other._exit != value:
                other.should_exit = value
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


class Servers:
    """The API's server and, when they have listeners, the boot server's and the
    Kubernetes-style API's (``k8s``), on one event loop (``run``); setting
    ``should_exit`` (or a signal) stops them all."""

    def __init__(self, api: _Server, boot: _Server | None = None,
                 boot_sockets: list[socket.socket] | None = None,
                 k8s: _Server | None = None,
                 k8s_sockets: list[socket.socket] | None = None) -> None:
        self.api, self.boot, self.boot_sockets = api, boot, boot_sockets or []
        self.k8s, self.k8s_sockets = k8s, k8s_sockets or []
        for other in (boot, k8s):
            if other is not None:
                api.linked.append(other)
                other.linked.append(api)

    @property
    def started(self) -> bool:
        return self.api.started and all(s.started for s in (self.boot, self.k8s)
                                        if s is not None)

    @property
    def should_exit(self) -> bool:
        return self.api.should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self.api.should_exit = value

    def run(self, sockets: list[socket.socket]) -> None:
        """Serve the API on ``sockets`` (and the boot server on its own) until stopped, on
        the event loop uvicorn would pick (uvloop when installed, as ``Server.run``)."""
        with asyncio.Runner(loop_factory=self.api.config.get_loop_factory()) as runner:
            runner.run(self.serve(sockets))

    async def serve(self, sockets: list[socket.socket]) -> None:
        await asyncio.gather(self.api.serve(sockets=sockets), *(
            server.serve(sockets=socks) for server, socks in (
                (self.boot, self.boot_sockets), (self.k8s, self.k8s_sockets))
            if server is not None))


class Service:
    """A whole server: ``start()`` migrates the store and starts the conductor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        private_dir(settings.data_dir)  # 0700: the key and the database are in it
        self.db = Database(settings.effective_database_url)
        self.secrets = SecretBox(settings.data_dir / KEY_FILE)
        install_log_redaction()
        self.conductor = Conductor(settings, self.db, self.secrets)
        strategy = settings.effective_auth_strategy
        self.users = (UsersFile(settings.effective_users_file) if strategy == "http_basic"
                      else None)
        self.app = create_app(self.conductor, strategy, self.users)
        self.kube = KubeStore(self.conductor) if settings.k8s_port else None
        self.machines = MachineController(self.kube) if self.kube is not None else None

    def start(self, periodic: bool = True) -> None:
        self.db.upgrade()
        self.conductor.start(periodic=periodic)
        if self.kube is not None:
            self.kube.start()
        if self.machines is not None:
            self.machines.start()

    def stop(self) -> None:
        if self.machines is not None:
            self.machines.stop()
        if self.kube is not None:
            self.kube.stop()
        self.conductor.stop()
        self.db.dispose()
        if self.users is not None:
            self.users.close()

    def serve(self) -> None:
        """Run until SIGINT/SIGTERM; stops the conductor gracefully."""
        server, sockets = self.http_server()  # a port in use fails before anything starts
        self.start()
        s = self.settings
        LOG.info("metalplane API on %s://%s:%d (auth: %s, store: %s)", s.scheme, s.host,
                 s.port, s.effective_auth_strategy, _safe_url(s.effective_database_url))
        if s.insecure_transport:
            LOG.warning("%s", s.insecure_transport)

        def stop(*_: Any) -> None:
            server.should_exit = True

        signal.signal(signal.SIGTERM, stop)
        try:
            server.run(sockets=sockets)
        finally:
            self.stop()

    def http_server(self) -> tuple[Servers, list[socket.socket]]:
        """The servers and the API's listening sockets (run them with
        ``servers.run(sockets)``): TCP on ``host:port``, the Networking API's
        ``host:network_port`` (Neutron's ``GET /`` there; not bound is a warning) and, if
        ``unix_socket`` is set, that unix socket (mode 0666, as uvicorn makes one). The
        boot server, if it has listeners (``boot_listen``, ``boot_unix_socket``), is a
        server of its own on the same event loop, over plain HTTP (PXE firmware and iPXE
        fetch from it) unless ``boot_tls``. Exits (status 1, the error logged) when a port
        or a socket's path cannot be bound, as uvicorn does."""
        s = self.settings
        config = uvicorn.Config(self.app, host=s.host, port=s.port, log_config=None,
                                access_log=False, timeout_graceful_shutdown=5,
                                ssl_certfile=s.tls_cert_file or None,
                                ssl_keyfile=s.tls_key_file or None)
        sockets = [config.bind_socket()]
        if s.network_port:
            try:
                sockets.append(_tcp_listener(s.host, s.network_port))
                LOG.info("metalplane Networking API also on %s://%s:%d (network_port)",
                         s.scheme, s.host, s.network_port)
            except OSError as exc:  # secondary: /v2.0 stays on the main port
                LOG.warning("no Networking API listener on %s:%d (network_port): %s; "
                            "/v2.0 is served on port %d", s.host, s.network_port, exc, s.port)
        if s.unix_socket:
            sockets.append(_unix_listener(s.unix_socket, "unix_socket", sockets))
            LOG.info("metalplane API also on unix socket %s", s.unix_socket)
        k8s, k8s_sockets = self._k8s_server()
        boot_sockets: list[socket.socket] = []
        for address in s.boot_listen_addresses:
            host, _, port = address.rpartition(":")
            try:
                boot_sockets.append(_tcp_listener(host.strip("[]"), int(port)))
            except OSError as exc:
                LOG.error("cannot listen on %s (boot_listen): %s", address, exc)
                for other in (*sockets, *boot_sockets, *k8s_sockets):
                    other.close()
                sys.exit(1)
        if s.boot_unix_socket:
            boot_sockets.append(_unix_listener(s.boot_unix_socket, "boot_unix_socket",
                                               [*sockets, *boot_sockets]))
        if not boot_sockets:
            return Servers(_Server(config), k8s=k8s, k8s_sockets=k8s_sockets), sockets
        LOG.info("metalplane boot server on %s", ", ".join(
            [*(f"{'https' if s.boot_tls else 'http'}://{a}" for a in s.boot_listen_addresses),
             *([f"unix socket {s.boot_unix_socket}"] if s.boot_unix_socket else [])]))
        tls = s.boot_tls and bool(s.tls_cert_file)
        boot_config = uvicorn.Config(create_boot_app(self.conductor), log_config=None,
                                     access_log=False, timeout_graceful_shutdown=5,
                                     ssl_certfile=s.tls_cert_file if tls else None,
                                     ssl_keyfile=s.tls_key_file if tls else None)
        return Servers(_Server(config), _Server(boot_config), boot_sockets, k8s,
                       k8s_sockets), sockets

    def _k8s_server(self) -> tuple[_Server | None, list[socket.socket]]:
        """The Kubernetes-style API's server and socket on ``host:k8s_port`` (TLS and
        authentication as the API's), or ``(None, [])`` when ``k8s_port`` is 0. Not bound
        is a warning (the other listeners still serve)."""
        s = self.settings
        if not s.k8s_port or self.kube is None:
            return None, []
        try:
            sock = _tcp_listener(s.host, s.k8s_port)
        except OSError as exc:
            LOG.warning("no Kubernetes-style API on %s:%d (k8s_port): %s", s.host,
                        s.k8s_port, exc)
            return None, []
        host = f"[{s.host}]" if ":" in s.host else s.host
        app = create_k8s_app(self.kube, s.effective_auth_strategy, self.users,
                             f"{host}:{s.k8s_port}", self.machines)
        config = uvicorn.Config(app, log_config=None, access_log=False,
                                timeout_graceful_shutdown=5,
                                ssl_certfile=s.tls_cert_file or None,
                                ssl_keyfile=s.tls_key_file or None)
        LOG.info("metalplane Kubernetes-style API on %s://%s:%d (k8s_port)", s.scheme,
                 s.host, s.k8s_port)
        server = _Server(config)
        server.on_exit.append(self.kube.hub.close)  # open watches end at once
        return server, [sock]


def _tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 for an address with a colon), with
    ``SO_REUSEADDR`` as uvicorn binds its own. Raises :class:`OSError` (closed then)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _unix_listener(where: str, setting: str, opened: list[socket.socket]) -> socket.socket:
    """A listening unix socket at ``where`` (mode 0666, as uvicorn makes one). Exits (status
    1, closing ``opened``) when it cannot be bound."""
    path = Path(where)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)
        unix.bind(str(path))
        path.chmod(0o666)
        unix.listen(2048)
    except OSError as exc:
        LOG.error("cannot listen on unix socket %s (%s): %s", path, setting, exc)
        for sock in (*opened, unix):
            sock.close()
        sys.exit(1)
    return unix


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)
