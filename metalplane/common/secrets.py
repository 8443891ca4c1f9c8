"""BMC secrets: encryption at rest and masking everywhere else.

Passwords in ``driver_info`` (any key ending in ``_password``, as Ironic names them) are stored
as Fernet tokens prefixed ``fernet:`` (cryptography's Fernet: AES-128-CBC + HMAC-SHA256). The
key lives in ``<data_dir>/secret.key`` (mode 0600), created on first start. Every value shown
to a user or a log goes through :func:`mask_driver_info`; :class:`RedactingFilter` is a last
line of defence that scrubs any decrypted secret from log records.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from metalplane.common.exceptions import MetalplaneError
from metalplane.common.files import private_file

__all__ = [
    "KEY_FILE",
    "MASK",
    "RedactingFilter",
    "SecretBox",
    "install_log_redaction",
    "is_sealed",
    "is_secret_key",
    "mask_driver_info",
]

MASK = "******"
KEY_FILE = "secret.key"  # in the data directory
_PREFIX = "fernet:"

_seen_secrets: set[str] = set()
_seen_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """True for keys that hold secrets (``*_password``, ``*_key``, ``*_secret``, ``*_token``)."""
    k = key.lower()
    return (k.endswith(("password", "_secret", "_key", "_token"))
            and not k.endswith("verify_key"))


def is_sealed(value: str) -> bool:
    """True for a value :meth:`SecretBox.encrypt` made (``fernet:…``)."""
    return value.startswith(_PREFIX)


def mask_driver_info(info: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``info`` with every secret value replaced by ``******``."""
    return {k: (MASK if is_secret_key(k) and v not in (None, "") else v)
            for k, v in (info or {}).items()}


class SecretBox:
    """Encrypts and decrypts driver_info secrets with the key in ``key_file``.

    Raises :class:`MetalplaneError` when the key file is unreadable or a stored token was
    made with another key.
    """

    def __init__(self, key_file: Path) -> None:
        self.key_file = Path(key_file)
        self.pending_file = pending_key_file(self.key_file)
        keys = [Fernet(self._load_or_create_key())]
        if self.pending_file.exists():
            # a key rotation under way (or interrupted): read with both, seal with the new
            private_file(self.pending_file)
            keys.insert(0, Fernet(self.pending_file.read_bytes().strip()))
        self._fernet = MultiFernet(keys)

    def _load_or_create_key(self) -> bytes:
        if self.key_file.exists():
            private_file(self.key_file)  # tightened if someone loosened it
            return self.key_file.read_bytes().strip()
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        # O_EXCL: two processes starting together must not write two keys.
        try:
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.key_file.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
        return key

    def encrypt(self, value: str) -> str:
        """``fernet:<token>`` for ``value``."""
        return _PREFIX + self._fernet.encrypt(value.encode()).decode()

    def encrypt_driver_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """Return ``info`` with secret values encrypted; already encrypted ones are kept."""
        out = dict(info)
        for k, v in info.items():
            if is_secret_key(k) and isinstance(v, str) and v and not v.startswith(_PREFIX):
                out[k] = self.encrypt(v)
        return out

    def reseal_driver_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """``info`` with every sealed secret sealed again with the newest key (a key
        rotation). Raises :class:`MetalplaneError` for one no key here opens."""
        return self._each_sealed(info, lambda token: _PREFIX + self._fernet.rotate(
            token).decode())

    def decrypt_driver_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """Return ``info`` with secret values in clear text, for a driver to use. Only the
        secret keys are decrypted: a sealed value elsewhere stays sealed, so no field that
        is shown, logged or used as an address ever holds a secret in clear."""
        def clear(token: bytes) -> str:
            text = self._fernet.decrypt(token).decode()
            with _seen_lock:
                _seen_secrets.add(text)
            return text
        return self._each_sealed(info, clear)

    def _each_sealed(self, info: dict[str, Any], fn: Callable[[bytes], str]
                     ) -> dict[str, Any]:
        """``info`` with ``fn(token)`` in place of each sealed value of a secret key.
        Raises :class:`MetalplaneError` for a token no key here opens."""
        out = dict(info)
        for k, v in info.items():
            if is_secret_key(k) and isinstance(v, str) and v.startswith(_PREFIX):
                try:
                    out[k] = fn(v[len(_PREFIX):].encode())
                except InvalidToken:
                    raise MetalplaneError(
                        f"driver_info/{k} was encrypted with another key than {self.key_file}"
                    ) from None
        return out


def pending_key_file(key_file: Path) -> Path:
    """Where a rotation keeps the new key until every secret is sealed with it."""
    return key_file.with_name(key_file.name + ".new")


def begin_key_rotation(key_file: Path) -> None:
    """Make the new key (:func:`pending_key_file`, 0600) unless an interrupted rotation
    left one: :class:`SecretBox` then seals with it and opens with both."""
    pending = pending_key_file(key_file)
    try:
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key() + b"\n")
        f.flush()
        os.fsync(f.fileno())


def finish_key_rotation(key_file: Path) -> None:
    """The new key replaces the old one (atomically); the old key is gone."""
    os.replace(pending_key_file(key_file), key_file)


_factory_installed = False


def install_log_redaction() -> None:
    """Redact decrypted secrets from every log record created in this process, whatever
    handler or logger it goes to (wraps the LogRecord factory; idempotent)."""
    global _factory_installed
    with _seen_lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()
    redactor = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.filter(record)
        return record

    logging.setLogRecordFactory(factory)


class RedactingFilter(logging.Filter):
    """Replaces any secret decrypted in this process by ``******`` in log messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _seen_lock:
            secrets = [s for s in _seen_secrets if len(s) >= 3]
        if not secrets:
            return True
        msg = record.getMessage()
        redacted = msg
        for s in secrets:
            redacted = redacted.replace(s, MASK)
        if redacted != msg:
            record.msg, record.args = redacted, None
        return True
