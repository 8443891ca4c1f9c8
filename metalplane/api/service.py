"""Wires one metalplane process: store, secrets, conductor and API, then serves HTTP."""

from __future__ import annotations

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
        ``server.run(sockets=...)``): TCP on ``host:port`` and, if ``unix_socket`` is set,
        that unix socket (mode 0666, as uvicorn makes one), served by the same event loop.
        Exits (status 1, the error logged) when the port or the socket's path cannot be
        bound, as uvicorn does."""
        s = self.settings
        config = uvicorn.Config(self.app, host=s.host, port=s.port, log_config=None,
                                access_log=False, timeout_graceful_shutdown=5)
        sockets = [config.bind_socket()]
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
        return uvicorn.Server(config), sockets


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)
