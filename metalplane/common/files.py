"""Files only metalplane's own user may read: the data directory, the database, the key.

A data directory holds the Fernet key and a database of BMC credentials (encrypted) and
node data; another user of the machine must not read either. :func:`private_dir` and
:func:`private_file` create them so from the start (no window with the umask's mode) and
tighten ones found looser, saying so in the log.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["private_dir", "private_file"]

LOG = logging.getLogger(__name__)


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        path.chmod(mode)
        LOG.warning("%s was mode %o, readable by other users; now %o", path, current, mode)


def private_dir(path: Path) -> None:
    """Make directory ``path`` (and missing parents) mode 0700; tighten it if it exists.
    Raises :class:`OSError`."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)


def private_file(path: Path) -> None:
    """Create file ``path`` empty with mode 0600 unless it exists; tighten it if it does.
    Raises :class:`OSError`."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _tighten(path, 0o600)
