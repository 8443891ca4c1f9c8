"""HTTP Basic authentication against an htpasswd-style users file of bcrypt hashes.

File format (Apache htpasswd with bcrypt, as Ironic's ``http_basic``): one ``user:hash``
per line, ``#`` comments allowed, optionally followed by ``:project`` and ``:role``
(``user:hash[:project[:role]]``; see :mod:`metalplane.api.policy`). No project (or an empty
one) is the system scope; the role is ``admin``, ``member`` or ``reader``, by default
``admin`` in the system scope (so a plain htpasswd line is an operator) and ``member`` in a
project. Source: RFC 7617 (Basic scheme).

Built to hold under attack (issue #17):

* verified credentials are cached for :data:`CACHE_SECONDS` (keyed by a SHA-256 of the
  password, never the password), so a right password costs bcrypt once, not per request;
* bcrypt runs off the event loop, on :data:`BCRYPT_THREADS` thread(s) of its own, with at
  most :data:`BCRYPT_QUEUE` checks waiting: more answer 429 at once instead of queueing;
* an unknown user name is checked against a dummy hash of the same cost, so it takes as
  long as a known one (no enumeration of names by timing);
* failures are counted per client address (:class:`FailureLimiter`): after five, the
  address must wait, doubling each time, and meanwhile gets 429 with ``Retry-After``
  without any bcrypt (a client whose credentials are cached is not held up).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import hashlib
import threading
import time
from pathlib import Path

import bcrypt

from metalplane.api.policy import ROLES, Principal
from metalplane.common.exceptions import Invalid, MetalplaneError, NotAuthorized

__all__ = ["FailureLimiter", "TooManyAttempts", "UsersFile", "hash_password", "parse_user_line"]

CACHE_SECONDS = 60.0
BCRYPT_THREADS = 1  # of 2 cores here: the other stays with the API
BCRYPT_QUEUE = 16


def hash_password(password: str) -> str:
    """A bcrypt hash of ``password`` for the users file."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def parse_user_line(line: str) -> tuple[Principal, bytes]:
    """The principal and bcrypt hash of a users file line ``user:hash[:project[:role]]``.
    Raises :class:`ValueError` saying what is wrong."""
    parts = line.split(":")  # a bcrypt hash has no ':'
    if len(parts) < 2 or len(parts) > 4 or not parts[0] or not parts[1].startswith("$2"):
        raise ValueError("expected 'user:bcrypt-hash[:project[:role]]'")
    user, hashed = parts[0], parts[1]
    project = parts[2].strip() if len(parts) > 2 else ""
    role = parts[3].strip() if len(parts) > 3 else ""
    role = role or ("member" if project else "admin")
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return Principal(user, project or None, role), hashed.encode()


class TooManyAttempts(MetalplaneError):
    """Too many failed authentications from this address, or too many checks waiting
    (HTTP 429); ``retry_after`` seconds."""

    code = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FailureLimiter:
    """Failed authentications per client address.

    The ``free``-th failure within ``window`` s blocks the address for ``base`` s, and each
    further one for twice as long as the last, up to ``longest`` s. A success forgets the
    address. At most ``capacity`` addresses are remembered (the oldest are forgotten
    first). Thread-safe.
    """

    def __init__(self, free: int = 5, base: float = 1.0, longest: float = 60.0,
                 window: float = 300.0, capacity: int = 10000) -> None:
        self.free, self.base, self.longest, self.window = free, base, longest, window
        self.capacity = capacity
        # address -> (failures, first failure at, blocked until), oldest first
        self._seen: collections.OrderedDict[str, tuple[int, float, float]] = (
            collections.OrderedDict())
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds ``address`` must still wait (0: it may try)."""
        with self._lock:
            entry = self._seen.get(address)
        return 0.0 if entry is None else max(0.0, entry[2] - time.monotonic())

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            count, first, _ = self._seen.pop(address, (0, now, 0.0))
            if now - first > self.window:
                count, first = 0, now
            count += 1
            over = count - self.free  # 0 at the free-th failure
            until = now + min(self.longest, self.base * 2 ** over) if over >= 0 else 0.0
            self._seen[address] = (count, first, until)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._seen.pop(address, None)


class UsersFile:
    """The users file; re-read when it changes on disk."""

    def __init__(self, path: Path, limiter: FailureLimiter | None = None) -> None:
        self.path = Path(path)
        self.limiter = limiter or FailureLimiter()
        self._mtime = -1.0
        self._users: dict[str, tuple[Principal, bytes]] = {}
        self._cache: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(BCRYPT_THREADS,
                                                           thread_name_prefix="bcrypt")
        self._waiting = 0
        # an unknown name is checked against this: the same cost as a real hash
        self._dummy = bcrypt.hashpw(b"no such user", bcrypt.gensalt())
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
            try:
                who, hashed = parse_user_line(line)
            except ValueError as exc:
                raise Invalid(f"{self.path}:{n}: {exc}") from None
            users[who.user] = (who, hashed)
        self._users, self._mtime = users, mtime
        self._cache.clear()

    @staticmethod
    def _parse(authorization: str | None) -> tuple[str, str]:
        if not authorization or not authorization.lower().startswith("basic "):
            raise NotAuthorized("Authentication required (HTTP Basic)")
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise NotAuthorized("Malformed Basic credentials") from None
        user, _, password = raw.partition(":")
        return user, password

    def _verify(self, user: str, password: str) -> bool:
        """bcrypt: as long for an unknown user as for a known one."""
        with self._lock:
            entry = self._users.get(user)
        ok = bcrypt.checkpw(password.encode(), entry[1] if entry else self._dummy)
        return ok and entry is not None

    def _principal(self, user: str) -> Principal:
        with self._lock:
            entry = self._users.get(user)
        if entry is None:  # removed from the file while its check ran
            raise NotAuthorized("Invalid user name or password")
        return entry[0]

    async def authenticate(self, authorization: str | None, address: str) -> Principal:
        """The user (with project and role) named by a valid ``Authorization: Basic``
        header from client ``address``; bcrypt runs off the event loop.

        Raises :class:`NotAuthorized` (401) for a missing, malformed or wrong one, and
        :class:`TooManyAttempts` (429) while ``address`` is blocked after failures or too
        many checks wait."""
        user, password = self._parse(authorization)
        key = (user, hashlib.sha256(password.encode()).hexdigest())
        with self._lock:
            self._load()
            if self._cache.get(key, 0.0) > time.monotonic():
                entry = self._users.get(user)
                if entry is not None:
                    return entry[0]
        wait = self.limiter.retry_after(address)
        if wait > 0:
            raise TooManyAttempts(f"Too many failed authentications from {address}; try "
                                  f"again in {wait:.0f} s", wait)
        if self._waiting >= BCRYPT_QUEUE:  # only the event loop's thread counts
            raise TooManyAttempts("Too many authentications under way; try again", 1.0)
        self._waiting += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._verify, user, password)
        finally:
            self._waiting -= 1
        if not ok:
            self.limiter.failed(address)
            raise NotAuthorized("Invalid user name or password")
        self.limiter.succeeded(address)
        with self._lock:
            self._cache[key] = time.monotonic() + CACHE_SECONDS
        return self._principal(user)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
