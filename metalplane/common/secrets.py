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
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from metalplane.common.exceptions import MetalplaneError

__all__ = [
    "MASK",
    "RedactingFilter",
    "SecretBox",
    "install_log_redaction",
    "is_secret_key",
    "mask_driver_info",
]

MASK = "******"
_PREFIX = "fernet:"

_seen_secrets: set[str] = set()
_seen_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """True for keys that hold secrets (``*_password``, ``*_key``, ``*_secret``, ``*_token``)."""
    k = key.lower()
    return (k.endswith(("password", "_secret", "_key", "_token"))
            and not k.endswith("verify_key"))


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
        self._fernet = Fernet(self._load_or_create_key())

    def _load_or_create_key(self) -> bytes:
        if self.key_file.exists():
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

    def decrypt(self, value: str) -> str:
        """The clear text of :meth:`encrypt`'s output. Raises :class:`MetalplaneError`."""
        return str(self.decrypt_driver_info({"value": value})["value"])

    def encrypt_driver_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """Return ``info`` with secret values encrypted; already encrypted ones are kept."""
        out = dict(info)
        for k, v in info.items():
            if is_secret_key(k) and isinstance(v, str) and v and not v.startswith(_PREFIX):
                out[k] = _PREFIX + self._fernet.encrypt(v.encode()).decode()
        return out

    def decrypt_driver_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """Return ``info`` with secret values in clear text, for a driver to use."""
        out = dict(info)
        for k, v in info.items():
            if isinstance(v, str) and v.startswith(_PREFIX):
                try:
                    clear = self._fernet.decrypt(v[len(_PREFIX):].encode()).decode()
                except InvalidToken:
                    raise MetalplaneError(
                        f"driver_info/{k} was encrypted with another key than {self.key_file}"
                    ) from None
                out[k] = clear
                with _seen_lock:
                    _seen_secrets.add(clear)
        return out


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
