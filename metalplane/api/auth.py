"""HTTP Basic authentication against an htpasswd-style users file of bcrypt hashes.

File format (Apache htpasswd with bcrypt, as Ironic's ``http_basic``): one ``user:hash``
per line, ``#`` comments allowed. Verified credentials are cached for a minute (keyed by a
SHA-256 of the password, never the password) so bcrypt's deliberate slowness is paid once,
not per request. Source: RFC 7617 (Basic scheme).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from pathlib import Path

import bcrypt

from metalplane.common.exceptions import Invalid, NotAuthorized

__all__ = ["UsersFile", "hash_password"]


def hash_password(password: str) -> str:
    """A bcrypt hash of ``password`` for the users file."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


class UsersFile:
    """The users file; re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime = -1.0
        self._users: dict[str, bytes] = {}
        self._cache: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            raise Invalid(f"http_basic needs a users file; {self.path} does not exist. "
                          "Create one with: metalplane user add NAME")
        mtime = self.path.stat().st_mtime
        if mtime == self._mtime:
            return
        users = {}
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not hashed.startswith("$2"):
                raise Invalid(f"{self.path}:{n}: expected 'user:bcrypt-hash'")
            users[user] = hashed.encode()
        self._users, self._mtime = users, mtime
        self._cache.clear()

    def check(self, authorization: str | None) -> str:
        """Return the user named by a valid ``Authorization: Basic`` header.

        Raises :class:`NotAuthorized` for a missing, malformed or wrong one.
        """
        if not authorization or not authorization.lower().startswith("basic "):
            raise NotAuthorized("Authentication required (HTTP Basic)")
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise NotAuthorized("Malformed Basic credentials") from None
        user, _, password = raw.partition(":")
        key = (user, hashlib.sha256(password.encode()).hexdigest())
        with self._lock:
            self._load()
            if self._cache.get(key, 0.0) > time.monotonic():
                return user
            hashed = self._users.get(user)
        if hashed is None or not bcrypt.checkpw(password.encode(), hashed):
            raise NotAuthorized("Invalid user name or password")
        with self._lock:
            self._cache[key] = time.monotonic() + 60
        return user
